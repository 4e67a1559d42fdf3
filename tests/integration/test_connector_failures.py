"""The connector against the simulator's failure scenarios: each failure ends in its own exit code and reason."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as aioredis

from tests.integration.test_connector import Running, make_settings, new_name, sent, start  # noqa: F401 (fixtures used below)
from tests.support import expected_events, tiktok_ids, wait_until
from tiktok_service.domain import naming
from tiktok_service.domain.connector_status import ConnectorPhase, status_from_hash
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.simulator.config import SimulatorConfig
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer
from tiktok_service_dev.simulator.tiktok_routes import fault_counts

pytestmark = pytest.mark.slow

Make = Callable[..., ConnectorSettings]
Start = Callable[..., Running]


@pytest.fixture
def settings_for(make_settings: Make) -> Make:  # noqa: F811
    return make_settings


@pytest.fixture
def run(start: Start) -> Start:  # noqa: F811
    return start


async def test_a_captcha_page_in_place_of_the_live_page_and_the_api_exits_with_the_captcha_code(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(captcha=-1))
    connector = run(settings_for(username, captcha_attempts=3))

    assert await connector.exit_code() == ExitCode.CAPTCHA
    assert connector.runner.status.reason == "captcha"
    assert fault_counts(simulator.room(username))["captcha_pages"] == 3  # three lookups, then it gave up
    assert fault_counts(simulator.room(username))["captcha_api"] == 3  # each fell back to the API


async def test_a_passing_captcha_is_retried_and_the_room_connects(
    simulator: SimulatorServer, settings_for: Make, run: Start, redis_client: aioredis.Redis
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(captcha=1, rate=100, live_end_after=50))
    settings = settings_for(username)

    assert await run(settings).exit_code() == ExitCode.LIVE_ENDED
    expected = expected_events(await sent(simulator, username))
    assert expected and set(expected) <= set(await tiktok_ids(redis_client, settings.livestream_id))


async def test_user_not_found_is_asked_again_with_backoff_before_the_connector_exits(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(not_found=True))
    connector = run(settings_for(username, not_found_attempts=3, backoff_base_s=0.2))
    began = time.monotonic()

    assert await connector.exit_code() == ExitCode.USER_NOT_FOUND
    assert connector.runner.status.reconnects == 2 and connector.runner.status.reason == "user_not_found"
    assert time.monotonic() - began >= 0.1 + 0.2  # each backoff is at least half its ceiling


async def test_a_user_without_a_room_is_not_found_not_a_captcha(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(no_room=True))  # roomId "" on the live page and in the API
    connector = run(settings_for(username, not_found_attempts=2, backoff_base_s=0.05))

    assert await connector.exit_code() == ExitCode.USER_NOT_FOUND
    assert connector.runner.status.reason == "user_not_found"
    assert "can't stream" in connector.runner.status.last_error
    assert simulator.room(username).stats.sign_requests == 0


@pytest.mark.parametrize("status", [200, 400])
async def test_a_blocked_handshake_exits_blocked_with_tiktoks_reason(
    simulator: SimulatorServer, settings_for: Make, run: Start, status: int
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(handshake_blocked=-1, handshake_status=status))
    connector = run(settings_for(username, blocked_attempts=2))

    assert await connector.exit_code() == ExitCode.BLOCKED
    assert connector.runner.status.reason == "blocked"
    assert "WebcastBlockedError" in connector.runner.status.last_error
    assert "DEVICE_BLOCKED" in connector.runner.status.last_error
    assert fault_counts(simulator.room(username))["handshakes_refused"] == 2
    assert connector.runner.proxy_rotations == 1  # the retry asked for the next proxy


async def test_a_handshake_refused_once_is_retried_and_connects(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(handshake_blocked=1, rate=100, live_end_after=30))

    assert await run(settings_for(username)).exit_code() == ExitCode.LIVE_ENDED


async def test_an_age_restricted_room_without_a_session_exits_before_using_the_sign_server(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(age_restricted=True))
    connector = run(settings_for(username))

    assert await connector.exit_code() == ExitCode.AGE_RESTRICTED
    assert connector.runner.status.reason == "age_restricted"
    stats = simulator.room(username).stats
    assert (stats.sign_requests, stats.connections_opened) == (0, 0)


async def test_the_age_restricted_room_answers_a_viewer_with_a_session_cookie(simulator: SimulatorServer) -> None:
    username = new_name()
    room = await simulator.add_room(username, Scenario(age_restricted=True))
    url = f"{simulator.base_url}/webcast/room/info/"
    async with httpx.AsyncClient() as http:
        anonymous = (await http.get(url, params={"room_id": room.room_id})).json()
        logged_in = (
            await http.get(
                url, params={"room_id": room.room_id}, headers={"Cookie": "sessionid=0123abcd; tt-target-idc=eu"}
            )
        ).json()
    assert anonymous["status_code"] == 10011 and "prompts" in anonymous["data"]
    assert logged_in["status_code"] == 0 and logged_in["data"]["id_str"] == str(room.room_id)


async def test_a_spent_sign_quota_with_a_distant_reset_exits_and_leaves_the_reset_in_its_final_status(
    simulator: SimulatorServer, settings_for: Make, run: Start, redis_client: aioredis.Redis
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(sign_429=1, retry_after_s=3600))
    settings = settings_for(username, quota_wait_max_s=60)
    connector = run(settings)

    assert await connector.exit_code() == ExitCode.SIGN_QUOTA
    final = status_from_hash(
        {
            k.decode(): v.decode()
            for k, v in (await redis_client.hgetall(naming.connector_status_key(settings.livestream_id))).items()
        }
    )
    assert final.exit_code == ExitCode.SIGN_QUOTA and final.reason == "rate_limited"
    assert final.next_retry_at_ms is not None
    assert abs(final.next_retry_at_ms / 1000 - (time.time() + 3600)) < 60


@pytest.mark.parametrize("code", [4401, 4403, 4404, 4005, 4400])
async def test_a_close_code_from_tiktoks_push_server_is_retried_not_final(
    simulator: SimulatorServer, settings_for: Make, run: Start, code: int
) -> None:
    username = new_name()
    await simulator.add_room(
        username,
        Scenario(rate=100, close_code=code, close_after=5, closes=1, close_reason="closing", live_end_after=40),
    )
    connector = run(settings_for(username))

    assert await connector.exit_code() == ExitCode.LIVE_ENDED  # the live ended by TikTok's control message
    assert connector.runner.status.reconnects == 1
    assert simulator.room(username).stats.connections_opened == 2


async def test_a_sign_429_with_only_retry_after_is_a_spent_quota_not_an_error(
    simulator: SimulatorServer, settings_for: Make, run: Start, redis_client: aioredis.Redis
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(sign_429=1, retry_after_s=3600, sign_429_retry_after_only=True))
    settings = settings_for(username, quota_wait_max_s=60)
    connector = run(settings)

    assert await connector.exit_code() == ExitCode.SIGN_QUOTA
    assert connector.runner.status.reason == "rate_limited"
    assert "SignQuotaSpent" in connector.runner.status.last_error
    retry_at_ms = connector.runner.status.next_retry_at_ms
    assert retry_at_ms is not None and abs(retry_at_ms / 1000 - (time.time() + 3600)) < 60


async def test_a_short_sign_429_with_only_retry_after_is_waited_for_then_connects(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(
        username, Scenario(rate=100, live_end_after=20, sign_429=1, retry_after_s=1, sign_429_retry_after_only=True)
    )
    connector = run(settings_for(username))
    began = time.monotonic()

    assert await connector.exit_code() == ExitCode.LIVE_ENDED
    assert time.monotonic() - began >= 1  # the announced reset was waited for
    assert simulator.room(username).stats.sign_429_sent == 1


async def test_too_many_connections_backs_off_then_connects(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(rate=100, close_code=4429, closes=2, live_end_after=40))
    connector = run(settings_for(username))

    assert await connector.exit_code() == ExitCode.LIVE_ENDED
    assert connector.runner.status.reconnects >= 2
    assert simulator.room(username).stats.connections_opened == 3


async def test_a_socket_closed_cleanly_again_and_again_backs_off_instead_of_spinning(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(rate=100, close_code=1000))
    connector = run(settings_for(username, backoff_base_s=0.2, backoff_cap_s=5, max_reconnects=4))
    began = time.monotonic()

    assert await connector.exit_code() == ExitCode.FAILED
    elapsed = time.monotonic() - began
    assert connector.runner.status.reason == "retries_exhausted:closed"
    assert simulator.room(username).stats.connections_opened == 5
    assert elapsed >= 0.1 + 0.2 + 0.4 + 0.8  # four backoffs, each at least half its ceiling


async def test_a_socket_that_lived_long_enough_reconnects_at_once_after_a_clean_close(
    simulator: SimulatorServer, settings_for: Make, run: Start
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(rate=200, close_code=1000, close_after=60, closes=2))
    # A backoff would wait 30 s: reconnecting within the timeout proves there was none.
    connector = run(settings_for(username, healthy_after_s=0.1, backoff_base_s=60, backoff_cap_s=60))

    await wait_until(
        lambda: simulator.room(username).stats.connections_opened == 3, timeout=15, what="two immediate reconnects"
    )
    await wait_until(lambda: connector.runner.status.phase is ConnectorPhase.LIVE, timeout=10, what="live again")
    assert connector.runner.status.reconnects == 2
    assert await connector.stop() == ExitCode.STOPPED


async def test_a_sign_server_rejecting_the_api_key_is_a_configuration_error(
    settings_for: Make, run: Start, redis_url: str
) -> None:
    async with SimulatorServer(SimulatorConfig(port=0, sign_api_key="the-right-key")) as keyed:
        username = new_name()
        await keyed.add_room(username, Scenario())
        settings = settings_for(
            username,
            sign_api_url=keyed.base_url,
            sign_api_key="a-wrong-key",
            tiktok_app_url=keyed.base_url,
            tiktok_webcast_url=keyed.base_url + "/webcast",
        )
        connector = run(settings)

        assert await connector.exit_code() == ExitCode.CONFIG
        assert connector.runner.status.reason == "sign_rejected"
        assert connector.runner.status.reconnects == 0
