"""A node that keeps ending connector pods: replaced at once the first time, then with backoff, never counted."""

from __future__ import annotations

from typing import Any

from tests.unit.test_operator_lifecycle import NOW, POLICY, SETTINGS, assess, failed, livestream, pod
from tiktok_service.operator import lifecycle, status
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.model import Phase

PRESSURE = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
SHORT = "Pod was rejected: Node didn't have enough resource: memory, requested: 117440512, used: 0, capacity: 0"


def _ended(uid: str, restarts: int = 3, finished_ago: float = 1.0) -> Any:
    return failed(
        exit_code=None, restarts=restarts, finished_ago=finished_ago, uid=uid, reason="OutOfmemory", message=SHORT
    )


def _written(body: dict[str, Any], found: lifecycle.Assessment, observed: Any) -> dict[str, Any]:
    return status.desired_status(body, observed, None, None, NOW, SETTINGS, assessment=found)


def test_the_first_pod_its_node_ends_is_replaced_at_once_and_counted_in_the_status() -> None:
    body = livestream({"phase": "Live", "reason": "Connected", "restarts": 3})
    ended = _ended("p-1")

    found = assess(body, ended)
    written = _written(body, found, ended)

    assert (found.phase, found.reason, found.action.do) == (Phase.PENDING, "NodeResourcesShort", Do.RECREATE_POD)
    assert (written["nodeDisruptions"], written["disruptedPod"], written["restarts"]) == (1, "p-1", 3)


def test_the_next_ones_in_a_row_wait_the_refusal_backoff_and_never_count_toward_max_restarts() -> None:
    # base 5 s, cap 12 s: the 2nd in a row waits 5 s, the 3rd 10 s, the 4th 12 s.
    for in_a_row, delay in ((2, 5.0), (3, 10.0), (4, 12.0)):
        body = livestream({"phase": "Pending", "reason": "NodeResourcesShort", "restarts": 3,
                           "nodeDisruptions": in_a_row - 1, "disruptedPod": "p-earlier"})  # fmt: skip
        ended = _ended("p-new", restarts=3)

        found = assess(body, ended)

        assert (found.phase, found.reason, found.restarts) == (Phase.BACKING_OFF, "NodeResourcesShort", 3)
        assert found.next_retry_at == ended.finished_at + delay
        assert found.action == lifecycle.Action(requeue_after=found.next_retry_at - NOW)
        assert (found.node_disruptions, found.disrupted_pod) == (in_a_row, "p-new")
        assert f"{in_a_row} pods in a row" in found.message and "not counted toward maxRestarts" in found.message


def test_a_pod_is_counted_once_however_often_it_is_looked_at_and_replaced_when_due() -> None:
    body = livestream({"phase": "Pending", "reason": "Evicted", "nodeDisruptions": 1, "disruptedPod": "p-0"})
    ended = failed(exit_code=None, uid="p-1", reason="Evicted", message=PRESSURE, disruption="TerminationByKubelet")
    first = assess(body, ended)
    body["status"] = _written(body, first, ended)

    again = assess(body, ended)
    due = assess(body, ended, now=first.next_retry_at or 0.0)

    assert (first.phase, again.phase, again.node_disruptions, again.next_retry_at) == (
        Phase.BACKING_OFF, Phase.BACKING_OFF, 2, first.next_retry_at,
    )  # fmt: skip
    assert (due.phase, due.node_disruptions, due.action.do, due.action.pod_uid) == (
        Phase.PENDING, 2, Do.RECREATE_POD, "p-1",
    )  # fmt: skip
    assert not due.news  # the BackingOff status announced it


def test_the_count_is_kept_while_the_replacement_starts_and_reset_once_a_pod_goes_live() -> None:
    kept = {"phase": "Pending", "reason": "Evicted", "nodeDisruptions": 3, "disruptedPod": "p-1"}
    body = livestream(kept)
    starting = pod(uid="p-2", phase="Pending", reason="", node_name="node-2")

    pending = _written(body, assess(body, starting), starting)
    live_body = livestream({**kept, "phase": "Live", "reason": "Connected"})
    after_live = assess(live_body, _ended("p-3"))

    assert (pending["nodeDisruptions"], pending["disruptedPod"]) == (3, "p-1")
    assert after_live.node_disruptions == 1 and after_live.action.do is Do.RECREATE_POD


def test_the_delay_is_none_for_the_first_then_the_refusal_backoff() -> None:
    policy = lifecycle.model.RestartPolicy.from_spec({"restartPolicy": POLICY})

    assert [lifecycle.node_disruption_delay(n, policy) for n in range(1, 6)] == [0.0, 5.0, 10.0, 12.0, 12.0]
    assert lifecycle.node_disruptions_in_a_row({"nodeDisruptions": "x"}) == 0


def test_each_evicted_pod_gets_its_event_even_back_to_back_with_the_same_reason() -> None:
    body = livestream({"phase": "Live", "reason": "Connected"})
    first_pod = failed(exit_code=0, uid="p-1", reason="Evicted", message=PRESSURE, disruption="TerminationByKubelet")
    first = _written(body, assess(body, first_pod), first_pod)
    again = _written(livestream(first), assess(livestream(first), first_pod), first_pod)
    # The replacement starts, is evicted before it goes Live: same reason, a new pod.
    second_pod = failed(exit_code=0, uid="p-2", reason="Evicted", message=PRESSURE, disruption="TerminationByKubelet")
    second = _written(livestream(first), assess(livestream(first), second_pod), second_pod)

    assert [e.reason for e in status.transition_events(body["status"], first)] == ["Evicted"]
    assert [e.reason for e in status.transition_events(first, again) if e.reason == "Evicted"] == []
    assert (first["reason"], second["reason"]) == ("Evicted", "Evicted")
    assert [e.reason for e in status.transition_events(first, second) if e.reason == "Evicted"] == ["Evicted"]


def test_a_counted_eviction_is_announced_once_across_its_backoff_and_restart() -> None:
    own = 'Container connector exceeded its local ephemeral storage limit "1Mi". '
    body = livestream({"phase": "Live", "reason": "Connected"})
    evicted = failed(exit_code=137, uid="p-1", reason="Evicted", message=own)
    backing_off = _written(body, assess(body, evicted), evicted)
    due = assess(livestream(backing_off), evicted, now=NOW + 60)
    restarting = _written(livestream(backing_off), due, evicted)

    announced = status.transition_events(body["status"], backing_off)
    restarted = status.transition_events(backing_off, restarting, disruption=due.disruption)

    assert (backing_off["disruptedPod"], restarting["reason"]) == ("p-1", "Restarting")
    assert "Evicted" in [e.reason for e in announced] and "Evicted" not in [e.reason for e in restarted]
