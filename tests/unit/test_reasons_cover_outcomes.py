"""Every connector outcome has a Livestream reason: the operator's list follows the connector's."""

from __future__ import annotations

from tiktok_service.connector.outcomes import Kind
from tiktok_service.operator.lifecycle import REASONS

#: Outcomes that never reach a Livestream as a retry reason (a stop is the operator's own doing).
NOT_SHOWN = {Kind.STOPPED}


def test_every_connector_outcome_has_a_livestream_reason() -> None:
    missing = {kind.value for kind in Kind if kind not in NOT_SHOWN} - set(REASONS)
    assert not missing, f"connector outcomes without a Livestream reason: {sorted(missing)}"


def test_reasons_name_only_connector_outcomes_in_camel_case() -> None:
    assert set(REASONS) <= {kind.value for kind in Kind}
    assert all(reason[:1].isupper() and "_" not in reason for reason in REASONS.values())
