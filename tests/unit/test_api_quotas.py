"""The API's tenant-boundary decisions (pure): quotas, limit keys, Retry-After, reason codes."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from tiktok_service.api import errors, feeds, keys, kube, quotas, resources
from tiktok_service.api.metrics import ApiMetrics
from tiktok_service.operator import model
from tiktok_service.settings import ApiSettings


def livestream(name: str, *, state: str = "Running", phase: str | None = None) -> dict[str, Any]:
    body = resources.desired_livestream(
        namespace="ns", workspace_id="acme", username=name, wait_for_live=False, event_types=None
    )
    body["metadata"].update(name=name, uid=f"uid-{name}")
    body["spec"]["state"] = state
    if phase is not None:
        body["status"] = {"phase": phase}
    return body


def test_a_workspace_below_its_livestream_quota_may_connect_another() -> None:
    listed = [livestream("a"), livestream("b")]

    assert quotas.livestream_quota_refusal(listed, "c", 3) is None


def test_a_workspace_at_its_livestream_quota_is_refused_with_the_count_and_the_quota() -> None:
    listed = [livestream("a"), livestream("b", phase="Live"), livestream("c", phase="Pending")]

    refusal = quotas.livestream_quota_refusal(listed, "d", 3)

    assert refusal is not None and "3 active livestreams" in refusal and "quota is 3" in refusal


def test_stopped_paused_ended_and_failed_livestreams_do_not_count() -> None:
    listed = [
        livestream("a", state="Stopped"),
        livestream("b", state="Paused"),
        livestream("c", phase=model.Phase.ENDED.value),
        livestream("d", phase=model.Phase.FAILED.value),
        livestream("e", phase=model.Phase.STOPPED.value),
    ]

    assert quotas.livestream_quota_refusal(listed, "f", 1) is None


def test_connecting_again_to_an_active_livestream_needs_no_new_place() -> None:
    listed = [livestream("a"), livestream("b")]

    assert quotas.livestream_quota_refusal(listed, "b", 2) is None


def test_resuming_a_stopped_livestream_needs_a_place() -> None:
    listed = [livestream("a"), livestream("b", state="Stopped")]

    assert quotas.livestream_quota_refusal(listed, "b", 1) is not None


def test_a_quota_of_zero_allows_nothing() -> None:
    assert quotas.livestream_quota_refusal([], "a", 0) is not None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(quotas.LEASED, None), (quotas.WORKSPACE_FULL, "workspace has 5"), (quotas.KEY_FULL, "API key has 2")],
)
def test_the_lease_scripts_answer_names_the_quota_that_is_full(answer: int, expected: str | None) -> None:
    refusal = quotas.stream_refusal(answer, workspace_limit=5, key_limit=2)

    assert refusal is None if expected is None else expected in (refusal or "")


def test_limits_are_counted_by_a_keys_hash_never_by_the_key() -> None:
    new = keys.generate()

    key = quotas.key_id(new.digest)

    assert len(key) == 32 and new.secret not in key and key == new.digest[:16].hex()
    assert quotas.rate_limit_key(key).endswith(key)
    assert quotas.key_streams_key(key).startswith(quotas.PREFIX)
    assert quotas.workspace_streams_key("acme") != quotas.workspace_streams_key("acme-corp")


@pytest.mark.parametrize(("reset_in", "expected"), [(0.2, 1), (1.0, 1), (1.01, 2), (59.5, 60), (-3.0, 1)])
def test_retry_after_is_whole_seconds_and_never_zero(reset_in: float, expected: int) -> None:
    assert quotas.retry_after_s(1_000.0 + reset_in, 1_000.0) == expected


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (RedisConnectionError("Error 111 connecting to 10.0.0.7:6379"), errors.REDIS_UNAVAILABLE),
        (asyncpg.PostgresConnectionError("role tiktok_api does not exist"), errors.DATABASE_UNAVAILABLE),
        (asyncpg.InterfaceError("pool is closed"), errors.DATABASE_UNAVAILABLE),
        (aiohttp.ClientConnectionError("kube-apiserver:6443"), errors.KUBERNETES_UNAVAILABLE),
        (kube.ApiError(500, "InternalError", "etcdserver: request timed out"), errors.KUBERNETES_UNAVAILABLE),
        (TimeoutError(), errors.UNAVAILABLE),
    ],
)
def test_an_unavailable_backing_service_is_named_by_a_reason_code(exc: BaseException, reason: str) -> None:
    assert errors.unavailable_reason(exc) == reason


def test_the_rate_limit_setting_takes_the_limits_notation_only() -> None:
    assert ApiSettings(rate_limit="5/second;100/minute").rate_limit == "5/second;100/minute"
    for wrong in ("5", "0/second", "5/fortnight", "5/second;", "five/second"):
        with pytest.raises(ValidationError):
            ApiSettings(rate_limit=wrong)


def test_livestreams_streamed_at_once_leave_pool_connections_for_catch_up_reads() -> None:
    assert ApiSettings(redis_pool_size=64).sse_reader_cap == 56
    assert ApiSettings(redis_pool_size=2).sse_reader_cap == 1
    assert ApiSettings(redis_pool_size=10, sse_max_livestreams=9).sse_reader_cap == 9
    with pytest.raises(ValidationError):
        ApiSettings(redis_pool_size=10, sse_max_livestreams=10)


def test_docs_are_off_unless_asked_for() -> None:
    assert ApiSettings().docs is False


def test_a_feed_admits_subscribers_of_livestreams_it_reads_and_new_ones_only_below_its_cap() -> None:
    settings = feeds.FeedSettings(
        block_ms=10,
        batch=1,
        ring_size=16,
        ping_interval_s=1,
        phase_check_s=1,
        retry_ms=0,
        writes_per_s=100,
        max_readers=1,
    )
    all_feeds = feeds.Feeds(None, settings, end_check=lambda _: None, metrics=ApiMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    assert all_feeds.admits("a")
    all_feeds._feeds["a"] = feeds.Feed("a", 16)

    assert all_feeds.admits("a")
    assert not all_feeds.admits("b")
