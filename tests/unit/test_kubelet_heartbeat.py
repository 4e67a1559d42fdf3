"""A restarted kubelet's node status is its own only from a heartbeat of a later second (tests/kubelet_support.py)."""

from __future__ import annotations

import datetime as dt

from tests.kubelet_support import heartbeat_after

STOPPED = dt.datetime(2026, 12, 6, 17, 40, 54, 700000, tzinfo=dt.UTC).timestamp()  # 17:40:54.7


def test_a_heartbeat_in_the_second_the_old_kubelet_stopped_is_not_fresh() -> None:
    # The old kubelet may have written it at 17:40:54.6: the API shows 17:40:54 either way.
    assert not heartbeat_after("2026-12-06T17:40:54Z", STOPPED)
    assert not heartbeat_after("2026-12-06T17:40:53Z", STOPPED)


def test_a_heartbeat_of_a_later_second_is_fresh() -> None:
    assert heartbeat_after("2026-12-06T17:40:55Z", STOPPED)
    assert heartbeat_after("2026-12-06T17:41:02Z", STOPPED)
    assert heartbeat_after("2026-12-06T17:40:55+00:00", dt.datetime(2026, 12, 6, 17, 40, 54, tzinfo=dt.UTC).timestamp())
