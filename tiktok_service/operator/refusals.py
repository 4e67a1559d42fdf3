"""A connector pod the API server refuses to create (pure decisions).

Bad quantities, an unknown PriorityClass, an exhausted ResourceQuota, a policy: the API server
answers 4xx, and asking again every few seconds only repeats the answer (and fills the API
server's audit log). Instead the Livestream shows `BackingOff` with reason `PodRefused` and
the API server's own reason and message (so its `Ready` condition is False with them), an
Event is recorded, and the next attempt waits exponentially longer: the Livestream's
`restartPolicy` backoff (`backoffBaseSeconds * 2^(n-1)`, capped at `backoffCapSeconds`),
counting refusals in a row. A refusal is no connector failure: it does not count against
`maxRestarts`, because the cause (a quota, a missing class) is usually fixed from outside and
the Livestream should then start without anyone touching it.

The count is kept in the Livestream's status (`podRefusals`, beside `nextRetryAt`), so an
operator that restarts, or its peer taking over, goes on counting where the last one stopped
instead of starting the backoff again from its base.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiktok_service.domain import backoff
from tiktok_service.operator import model

POD_REFUSED: Final = "PodRefused"
#: The status field holding the refusals in a row (present only while the reason is PodRefused).
STATUS_FIELD: Final = "podRefusals"
#: 4xx answers that are not a refusal of this pod: it exists already (the create is
#: idempotent), or the API server asks us to slow down (its own priority and fairness).
_NOT_REFUSALS: Final = frozenset({409, 429})


@dataclass(frozen=True, slots=True)
class PodRefusal:
    status: int  # HTTP status: 400, 403, 422...
    api_reason: str  # the Status reason: Forbidden, Invalid, BadRequest...
    message: str  # the Status message, e.g. 'pods "x" is forbidden: exceeded quota: ...'
    attempts: int  # refusals in a row, this one included


def refuses(status: int) -> bool:
    """Whether an API error on a pod create is the API server refusing this pod (back off, report)."""
    return 400 <= status < 500 and status not in _NOT_REFUSALS


def next_refusal(previous: PodRefusal | None, status: int, api_reason: str, message: str) -> PodRefusal:
    """This refusal, counted after `previous` (None: the last create succeeded, or there was none)."""
    attempts = previous.attempts + 1 if previous is not None else 1
    return PodRefusal(status, api_reason or "Refused", message, attempts)


def refusal_delay(attempts: int, policy: model.RestartPolicy) -> float:
    """Seconds before the next create after `attempts` refusals in a row: doubling, capped."""
    return backoff.ceiling(attempts, base=policy.backoff_base_s, cap=policy.backoff_cap_s)


def from_status(status: Mapping[str, Any]) -> PodRefusal | None:
    """The refusal a Livestream's status records (what an operator that just started continues from)."""
    if status.get("reason") != POD_REFUSED:
        return None
    try:
        attempts = int(status.get(STATUS_FIELD) or 0)
    except (TypeError, ValueError):
        return None
    return PodRefusal(0, "", "", attempts) if attempts > 0 else None


def status_fields(reason: str, refusal: PodRefusal | None) -> dict[str, int]:
    """What a status with `reason` records of the refusals in a row: `podRefusals` only with PodRefused."""
    if reason != POD_REFUSED or refusal is None or refusal.attempts <= 0:
        return {}
    return {STATUS_FIELD: refusal.attempts}
