"""Every message kind through the library's own parsing: exactly one event each, none dropped silently.

Messages are encoded with TikTokLiveProto's classes and handed to a real TikTokLiveClient's
response parser, whose events are emitted exactly as its receive loop emits them (derived
events such as FollowEvent or LiveEndEvent included); only the socket is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from TikTokLive import TikTokLiveClient
from TikTokLive.events import proto_events as pe
from TikTokLive.proto import CommonMessageData, ProtoMessageFetchResult, ProtoMessageFetchResultBaseProtoMessage
from TikTokLiveProto.v3.webcast.model.message.common import Text
from TikTokLiveProto.v3.webcast.model.message.redenvelope import MessageRedEnvelopInfo

from tests.contract_support import validate_envelope
from tiktok_service.connector import metrics
from tiktok_service.connector.router import EventRouter
from tiktok_service.domain.catalogue import METHOD_TYPES
from tiktok_service.domain.connector_status import ConnectorStatus
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.events import Envelope, EventType

CREATED = 1_700_000_000_000


def common(msg_id: int, key: str = "") -> CommonMessageData:
    return CommonMessageData(msg_id=msg_id, create_time=CREATED, display_text=Text(key=key) if key else None)


def message(method: str, payload: bytes, msg_id: int) -> ProtoMessageFetchResultBaseProtoMessage:
    return ProtoMessageFetchResultBaseProtoMessage(method=method, payload=payload, msg_id=msg_id)


def encoded(method: str, msg_id: int, **fields: Any) -> ProtoMessageFetchResultBaseProtoMessage:
    event_class = pe.EVENT_MAPPINGS[method]
    return message(method, bytes(event_class(common=fields.pop("common", common(msg_id)), **fields)), msg_id)


class Harness:
    def __init__(self, client: TikTokLiveClient, **router_args: Any) -> None:
        self.published: list[Envelope] = []
        self.router = EventRouter(
            livestream_id="ls-1", sink=self.published.append, dedupe=RecentIds(10_000), status=ConnectorStatus(),
            **router_args,
        )  # fmt: skip
        self.router.attach(client)
        self.client = client

    async def deliver(
        self, messages: Sequence[ProtoMessageFetchResultBaseProtoMessage], *, first: bool = False
    ) -> None:
        """One fetch result, parsed and emitted the way TikTokLiveClient's receive loop does."""
        fetch = ProtoMessageFetchResult(messages=list(messages), is_first=first)
        async for event in self.client._parse_webcast_response(fetch):
            self.client.emit(event.get_type(), event)


@pytest.fixture
async def client() -> AsyncIterator[TikTokLiveClient]:
    made = TikTokLiveClient(unique_id="@host")
    made._room_id = 7
    yield made
    await made._web.close()


def dropped(method: str, reason: str) -> float:
    value: float = metrics.MESSAGES_DROPPED.labels(method=method, reason=reason)._value.get()
    return value


async def test_every_method_is_published_exactly_once_as_its_type(client: TikTokLiveClient) -> None:
    harness = Harness(client)
    messages = [
        encoded(method, n)
        for n, method in enumerate(sorted(pe.EVENT_MAPPINGS), start=1)
        if method not in ("WebcastControlMessage", "WebcastSocialMessage")
    ]
    # The messages for which TikTokLive also emits a derived event (FollowEvent, ShareEvent,
    # LivePauseEvent, SuperFanBoxEvent) from the same bytes: still one event each.
    messages += [
        encoded("WebcastSocialMessage", 101, common=common(101, "pm_main_follow_message_viewer_2"), follow_count=9),
        encoded("WebcastSocialMessage", 102, common=common(102, "pm_mt_guidance_share"), share_count=1),
        encoded("WebcastSocialMessage", 103),
        encoded("WebcastControlMessage", 104, action=1),
        encoded("WebcastControlMessage", 105, action=2),
        encoded("WebcastEnvelopeMessage", 106, envelope_info=MessageRedEnvelopInfo(business_type=19)),
        message("WebcastNotYetInventedMessage", b"\x08\x01", 107),
    ]
    await harness.deliver(messages, first=True)

    connect = [e for e in harness.published if e.type is EventType.CONNECT]
    by_id = {e.id: e for e in harness.published if e.type is not EventType.CONNECT}
    assert len(connect) == 1 and len(by_id) == len(harness.published) - 1 == len(messages)
    for n, method in enumerate(sorted(pe.EVENT_MAPPINGS), start=1):
        if str(n) in by_id:
            assert by_id[str(n)].type is METHOD_TYPES[method], method
    assert [by_id[str(n)].type for n in range(101, 108)] == [
        EventType.FOLLOW,
        EventType.SHARE,
        EventType.SOCIAL,
        EventType.LIVE_PAUSE,
        EventType.LIVE_UNPAUSE,
        EventType.SUPERFAN_BOX,
        EventType.UNKNOWN,
    ]
    assert by_id["107"].data["method"] == "WebcastNotYetInventedMessage"
    for envelope in harness.published:
        validate_envelope(envelope.encode())
    assert not harness.router.live_ended


async def test_a_live_end_is_published_once_and_ends_the_connector(client: TikTokLiveClient) -> None:
    harness = Harness(client)
    running = asyncio.all_tasks()
    await harness.deliver([encoded("WebcastControlMessage", 5, action=3)])
    await asyncio.gather(*(asyncio.all_tasks() - running))  # the library's own disconnect on live end
    assert [(e.type, e.data["action"]) for e in harness.published] == [(EventType.LIVE_END, 3)]
    assert harness.router.live_ended
    validate_envelope(harness.published[0].encode())


async def test_a_message_the_library_cannot_decode_is_published_raw(client: TikTokLiveClient) -> None:
    harness = Harness(client)
    broken = message("WebcastPollMessage", b"\x0a\xff\xff\xff\xff", 1)  # a length beyond the payload
    await harness.deliver([broken, encoded("WebcastChatMessage", 2, content="after")])
    assert [e.type for e in harness.published] == [EventType.UNKNOWN, EventType.COMMENT]
    raw = harness.published[0]
    assert (raw.id, raw.data["method"], raw.data["payload_size"]) == ("1", "WebcastPollMessage", 5)
    # The last message of a connection is checked when it closes.
    await harness.deliver([message("WebcastPollMessage", b"\x0a\xff\xff\xff\xff", 3)])
    harness.router.disconnected("closed")
    assert [e.type for e in harness.published[2:]] == [EventType.UNKNOWN, EventType.DISCONNECT]
    for envelope in harness.published:
        validate_envelope(envelope.encode())


async def test_filtered_and_duplicate_messages_are_counted_by_method(client: TikTokLiveClient) -> None:
    harness = Harness(client, event_types=[EventType.COMMENT])
    filtered, duplicate = dropped("WebcastPollMessage", "filtered"), dropped("WebcastChatMessage", "duplicate")
    chat = encoded("WebcastChatMessage", 1, content="hi")
    await harness.deliver([encoded("WebcastPollMessage", 2), chat])
    await harness.deliver([chat])  # TikTok replays history after a reconnect
    assert [e.type for e in harness.published] == [EventType.COMMENT]
    assert dropped("WebcastPollMessage", "filtered") == filtered + 1
    assert dropped("WebcastChatMessage", "duplicate") == duplicate + 1


async def test_a_handler_error_is_counted_by_method_and_the_stream_goes_on(client: TikTokLiveClient) -> None:
    def failing_sink(envelope: Envelope) -> None:
        if envelope.type is EventType.POLL:
            raise RuntimeError("boom")
        published.append(envelope)

    published: list[Envelope] = []
    harness = Harness(client)
    harness.router._sink = failing_sink
    before = dropped("WebcastPollMessage", "handler_error")
    await harness.deliver([encoded("WebcastPollMessage", 1), encoded("WebcastChatMessage", 2, content="x")])
    assert dropped("WebcastPollMessage", "handler_error") == before + 1
    assert [e.type for e in published] == [EventType.COMMENT]


async def test_a_message_our_normaliser_fails_on_is_published_raw_not_dropped(
    client: TikTokLiveClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiktok_service.connector import normalise

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a shape our normaliser did not expect")

    monkeypatch.setattr(normalise, "comment", broken)
    harness = Harness(client)
    chat = encoded("WebcastChatMessage", 501, content="hi")
    like = encoded("WebcastLikeMessage", 502, count=1, total=1)
    await harness.deliver([chat, like])

    assert [(e.type, e.id) for e in harness.published] == [(EventType.UNKNOWN, "501"), (EventType.LIKE, "502")]
    raw = harness.published[0]
    assert raw.data["method"] == "WebcastChatMessage" and raw.data["payload_size"] == len(chat.payload)
    validate_envelope(raw.encode())


async def test_an_unmapped_method_without_msg_id_is_published_once_and_counted_under_a_bounded_label(
    client: TikTokLiveClient,
) -> None:
    harness = Harness(client)
    invented = message("WebcastSomethingTikTokInventedMessage", b"\x08\x01", 0)
    before = dropped("unmapped", "duplicate")
    await harness.deliver([invented])
    await harness.deliver([invented])  # replayed: same bytes, same content-hash id

    assert [e.type for e in harness.published] == [EventType.UNKNOWN]
    assert dropped("unmapped", "duplicate") == before + 1


async def test_a_message_the_full_buffer_refuses_is_counted_by_its_method(client: TikTokLiveClient) -> None:
    refused: list[Envelope] = []

    def full(envelope: Envelope) -> bool:
        refused.append(envelope)
        return False

    router = EventRouter(livestream_id="ls-1", sink=full, dedupe=RecentIds(100), status=ConnectorStatus())
    router.attach(client)
    before = dropped("WebcastLikeMessage", "buffer_full")
    fetch = ProtoMessageFetchResult(messages=[encoded("WebcastLikeMessage", 601, count=1, total=1)])
    async for event in client._parse_webcast_response(fetch):
        client.emit(event.get_type(), event)

    assert len(refused) == 1
    assert dropped("WebcastLikeMessage", "buffer_full") == before + 1


async def test_a_comment_from_a_fan_club_member_is_a_comment_with_the_members_level(client: TikTokLiveClient) -> None:
    from TikTokLiveProto.v3.webcast.model import FansClubData, FansClubMember, data
    from TikTokLiveProto.v3.webcast.model.base.user import User

    harness = Harness(client)  # attaching completes the message classes TikTokLive cannot complete itself
    club = FansClubData(
        club_name="c", level=7, user_fans_club_status=data.UserFansClubFansClubDataUserFansClubStatus(1)
    )
    fan = User(id=5, nickname="Fan", display_id="fan", fans_club=FansClubMember(data=club))
    await harness.deliver([encoded("WebcastChatMessage", 701, user=fan, content="hi")])

    (event,) = harness.published
    assert event.type is EventType.COMMENT and event.user is not None
    assert event.user.member_level == 7
    validate_envelope(event.encode())
