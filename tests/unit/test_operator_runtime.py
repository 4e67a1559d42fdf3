"""How watch events reach the per-Livestream loops (no I/O: the loops are not running)."""

from __future__ import annotations

import math
from typing import Any, cast

from prometheus_client import CollectorRegistry

from tiktok_service.operator import lifecycle, model, reconciler
from tiktok_service.operator.metrics import OperatorMetrics
from tiktok_service.operator.model import Phase
from tiktok_service.settings import OperatorSettings

KEY = ("rooms", "alice")


def runtime_with_loop() -> tuple[reconciler.Runtime, reconciler.LivestreamLoop]:
    runtime = reconciler.Runtime(
        settings=OperatorSettings(),
        kube=cast(Any, None),
        store=cast(Any, None),
        metrics=OperatorMetrics(CollectorRegistry()),
    )
    loop = runtime.loops[KEY] = reconciler.LivestreamLoop(runtime, KEY)
    return runtime, loop


def body(generation: int, *, finalizers: list[str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "alice", "generation": generation, "finalizers": finalizers or []}}


def test_a_livestream_removed_without_ever_holding_the_finalizer_ends_its_loop() -> None:
    runtime, loop = runtime_with_loop()

    runtime.livestream_gone(KEY)

    assert loop.gone and loop.wakeup.is_set()


def test_a_spec_change_or_the_finalizer_arriving_wakes_the_loop_but_a_status_echo_does_not() -> None:
    runtime, loop = runtime_with_loop()
    loop.generation, loop.held = 1, False

    runtime.livestream_seen(KEY, body(1))
    assert not loop.wakeup.is_set()

    runtime.livestream_seen(KEY, body(1, finalizers=[model.FINALIZER]))
    assert loop.wakeup.is_set()

    loop.wakeup.clear()
    loop.held = True
    runtime.livestream_seen(KEY, body(2, finalizers=[model.FINALIZER]))
    assert loop.wakeup.is_set()


def test_events_of_a_livestream_without_a_loop_are_ignored() -> None:
    runtime, _ = runtime_with_loop()

    runtime.livestream_gone(("rooms", "bob"))
    runtime.livestream_seen(("rooms", "bob"), body(1))
    runtime.pod_changed(("rooms", "bob"))

    assert list(runtime.loops) == [KEY]


def test_a_pass_creating_a_pod_writes_no_status_unless_its_reason_is_news() -> None:
    _, loop = runtime_with_loop()
    create = lifecycle.Action(lifecycle.Do.RECREATE_POD, "p-1", 1)
    plain = lifecycle.Assessment(Phase.PENDING, "Restarting", "restart 1 of 3", 1, action=create)
    evicted = lifecycle.Assessment(Phase.PENDING, "Evicted", "the node was low on memory", 0, action=create, news=True)

    assert loop.status_hold_s(plain) == math.inf
    assert loop.status_hold_s(evicted) is None
