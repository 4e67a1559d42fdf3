"""First-class kinds and richer users, from messages encoded with TikTokLiveProto and decoded by TikTokLive.

Each message is built with the protocol's own classes, serialised, and parsed back through
the library's event class (as the connector receives it); every envelope must also
validate against its type's JSON Schema.
"""

from __future__ import annotations

from typing import Any

from TikTokLive.events import proto_events as pe
from TikTokLive.proto import CommonMessageData
from TikTokLiveProto.v3.webcast.model import Gift
from TikTokLiveProto.v3.webcast.model.base import ImageModel
from TikTokLiveProto.v3.webcast.model.base.emoji import EmoteModel, EmoteWithIndex
from TikTokLiveProto.v3.webcast.model.base.user import BadgeStruct, FollowInfo, PrivilegeLogExtra, User
from TikTokLiveProto.v3.webcast.model.gift.model import LiveStreamGoal, LiveStreamSubGoal
from TikTokLiveProto.v3.webcast.model.message import (
    CaptionContent,
    Contributor,
    PollEndContent,
    PollOptionInfo,
    PollStartContent,
    PollUpdateVotesContent,
    Question,
    WebcastChatMessage,
)
from TikTokLiveProto.v3.webcast.model.message.battle import (
    BattleResult,
    BattleUserArmies,
    BattleUserArmy,
    UserArmiesWrapper,
)
from TikTokLiveProto.v3.webcast.model.message.common import Text
from TikTokLiveProto.v3.webcast.model.message.linker import LinkerLeaveContent
from TikTokLiveProto.v3.webcast.model.message.redenvelope import MessageRedEnvelopInfo

from tests.contract_support import validate_envelope
from tiktok_service.connector import normalise
from tiktok_service.domain.events import Envelope, EventType

CTX = normalise.Context(livestream_id="ls-1", room_id=77)
NOW = 1_700_000_000_000
HOST, RIVAL = 7_100_000_000_000_000_001, 7_100_000_000_000_000_002


def wire(method: str, msg_id: int = 1, **fields: Any) -> Any:
    """The library's event for a message built from `fields`, through bytes as on the wire."""
    event_class = pe.EVENT_MAPPINGS[method]
    fields.setdefault("common", CommonMessageData(msg_id=msg_id, create_time=NOW + 1))
    return event_class().parse(bytes(event_class(**fields)))


def published(method: str, **fields: Any) -> Envelope:
    event = wire(method, **fields)
    envelope = normalise.decoded(event, normalise.classify(method, event), CTX, NOW).envelope
    validate_envelope(envelope.encode())
    return envelope


def viewer(user_id: int = 42, handle: str = "alice", **extra: Any) -> User:
    return User(id=user_id, display_id=handle, nickname=handle.title(), **extra)


def test_a_battle_has_each_sides_score_result_and_supporters() -> None:
    army = BattleUserArmy(user_id=5, nickname="Bo", score=100)
    envelope = published(
        "WebcastLinkMicBattle",
        battle_id=99,
        action=5,
        battle_result={
            HOST: BattleResult(user_id=HOST, result=0, score=120),
            RIVAL: BattleResult(user_id=RIVAL, result=1, score=80),
        },
        armies=[UserArmiesWrapper(key=HOST, value=BattleUserArmies(hostscore=120, user_armies=[army]))],
    )
    assert envelope.type is EventType.BATTLE
    sides = {side["anchor_id"]: side for side in envelope.data["sides"]}
    assert sides[str(HOST)] == {
        "anchor_id": str(HOST),
        "score": 120,
        "result": "WIN",
        "supporters": [{"user_id": "5", "nickname": "Bo", "score": 100}],
    }
    assert sides[str(RIVAL)] == {"anchor_id": str(RIVAL), "score": 80, "result": "LOSE"}
    # The decoded message is kept too, 64-bit ids as strings.
    assert envelope.data["battle_id"] == "99" and envelope.data["action"] == "FINISH"
    assert str(HOST) in envelope.data["battle_result"]


def test_a_running_battle_has_scores_but_no_result_yet() -> None:
    running = published("WebcastLinkMicBattle", action=4, battle_result={HOST: BattleResult(user_id=HOST, score=7)})
    assert running.data["sides"] == [{"anchor_id": str(HOST), "score": 7}]


def test_battle_armies_give_points_per_side_and_per_user() -> None:
    envelope = published(
        "WebcastLinkMicArmies",
        battle_id=99,
        armies={
            RIVAL: BattleUserArmies(hostscore=15, user_armies=[BattleUserArmy(user_id=6, nickname="Cy", score=15)])
        },
        gift_id=5655,
    )
    assert envelope.type is EventType.BATTLE_ARMIES
    assert envelope.data["sides"] == [
        {"anchor_id": str(RIVAL), "score": 15, "supporters": [{"user_id": "6", "nickname": "Cy", "score": 15}]}
    ]


def test_a_poll_reports_its_phase_options_and_votes() -> None:
    options = [
        PollOptionInfo(option_idx=0, display_content="Yes", votes=3),
        PollOptionInfo(option_idx=1, display_content="No"),
    ]
    start = published(
        "WebcastPollMessage", poll_id=4, start_content=PollStartContent(title="Tea?", option_list=options)
    )
    assert (start.type, start.data["poll_phase"], start.data["title"]) == (EventType.POLL, "start", "Tea?")
    assert start.data["options"] == [{"index": 0, "text": "Yes", "votes": 3}, {"index": 1, "text": "No", "votes": 0}]
    update = published(
        "WebcastPollMessage", poll_id=4, update_votes_content=PollUpdateVotesContent(option_list=options)
    )
    end = published("WebcastPollMessage", poll_id=4, end_content=PollEndContent(option_list=options))
    assert (update.data["poll_phase"], end.data["poll_phase"]) == ("update", "end")
    assert "title" not in update.data


def test_a_question_carries_its_text_and_asker() -> None:
    envelope = published("WebcastQuestionNewMessage", data=Question(question_id=12, content="When?", user=viewer()))
    assert envelope.type is EventType.QUESTION
    assert (envelope.data["question_id"], envelope.data["text"]) == ("12", "When?")
    assert envelope.user is not None and envelope.user.unique_id == "alice"


def test_emotes_pins_captions_goals_and_guests_have_their_summaries() -> None:
    emote = published(
        "WebcastEmoteChatMessage",
        user=viewer(),
        emote_list=[EmoteModel(emote_id="e1", image=ImageModel(url_list=["https://e/1.png"]))],
    )
    assert emote.data["emotes"] == [{"emote_id": "e1", "image_url": "https://e/1.png"}]
    pin = published(
        "WebcastRoomPinMessage", chat_message=WebcastChatMessage(content="pinned!", user=viewer()), action=1
    )
    assert (pin.data["pinned_kind"], pin.data["pinned_text"]) == ("comment", "pinned!")
    assert pin.data["pinned_user"]["unique_id"] == "alice"
    caption = published("WebcastCaptionMessage", content=[CaptionContent(lang="en", content="hello all")])
    assert caption.data["captions"] == {"en": "hello all"}
    goal = published(
        "WebcastGoalUpdateMessage",
        goal=LiveStreamGoal(description="100 roses", sub_goals=[LiveStreamSubGoal(id=3, progress=40, target=100)]),
    )
    assert goal.data["sub_goals"] == [{"id": "3", "progress": 40, "target": 100}]
    guest = published("WebcastLinkMessage", leave_content=LinkerLeaveContent(user_id=5))
    assert (guest.type, guest.data["guest_action"]) == (EventType.LINK_MIC_GUEST, "leave")


def test_super_fan_barrages_and_boxes_are_their_own_types() -> None:
    joined = published("WebcastBarrageMessage", content=Text(key="ttlive_superfan_commentnotif_superfanjoined"))
    became = published("WebcastBarrageMessage", common_barrage_content=Text(key="ttlive_superfan_becomesuperfan"))
    other = published("WebcastBarrageMessage", content=Text(key="pm_mt_barrage"))
    assert (joined.type, became.type, other.type) == (EventType.SUPERFAN_JOIN, EventType.SUPERFAN, EventType.BARRAGE)
    box = published("WebcastEnvelopeMessage", envelope_info=MessageRedEnvelopInfo(business_type=19, diamond_count=50))
    chest = published("WebcastEnvelopeMessage", envelope_info=MessageRedEnvelopInfo(diamond_count=50, people_count=9))
    assert (box.type, chest.type) == (EventType.SUPERFAN_BOX, EventType.ENVELOPE)
    assert chest.data["envelope_info"] == {"diamond_count": 50, "people_count": 9}


def test_subscriptions_deleted_comments_and_generic_kinds_keep_the_decoded_message() -> None:
    sub = published("WebcastSubNotifyMessage", user=viewer(), sub_month=3)
    assert (sub.type, sub.data["sub_month"], sub.user is not None) == (EventType.SUBSCRIPTION, "3", True)
    deleted = published("WebcastImDeleteMessage", delete_msg_ids=[2**62, 5], delete_user_ids=[42])
    assert deleted.data == {"delete_msg_ids": [str(2**62), "5"], "delete_user_ids": ["42"]}
    panel = published("WebcastGiftPanelUpdateMessage", room_id=9)
    assert panel.type.value == "tiktok.gift_panel_update" and panel.data["room_id"] == "9"


def test_a_user_keeps_avatar_badges_levels_and_follow_role() -> None:
    badges = [
        BadgeStruct(scene_type=1),
        BadgeStruct(scene_type=4, privilege_log_extra=PrivilegeLogExtra(level="2")),
        BadgeStruct(scene_type=8, privilege_log_extra=PrivilegeLogExtra(level="27")),
        BadgeStruct(scene_type=10, privilege_log_extra=PrivilegeLogExtra(level="5")),
    ]
    sender = viewer(
        avatar_thumb=ImageModel(url_list=["https://p16/a.webp", "https://p16/a.jpeg"]),
        follow_info=FollowInfo(follow_status=1, follower_count=10, following_count=20),
        badge_list=badges,
    )
    event = wire("WebcastChatMessage", user=sender, content="hi")
    user = normalise.comment(event, CTX, NOW).envelope.user
    assert user is not None
    doc = user.to_json()
    assert doc["id"] == "42" and doc["unique_id"] == "alice" and doc["nickname"] == "Alice"
    assert doc["avatar_url"] == "https://p16/a.webp"
    assert (doc["follow_role"], doc["follower_count"], doc["following_count"]) == (1, 10, 20)
    assert (doc["is_moderator"], doc["is_subscriber"], doc["is_top_gifter"]) == (True, True, False)
    assert (doc["gifter_level"], doc["member_level"]) == (27, 5)
    assert [b["scene"] for b in doc["badges"]] == ["admin", "subscriber", "user_grade", "fans"]


def test_a_bare_user_has_only_what_tiktok_sent() -> None:
    event = wire("WebcastChatMessage", user=viewer(), content="hi")
    envelope = normalise.comment(event, CTX, NOW).envelope
    assert envelope.user is not None and envelope.user.to_json() == {
        "id": "42",
        "unique_id": "alice",
        "nickname": "Alice",
    }


def test_a_comment_keeps_emotes_mentions_and_language() -> None:
    event = wire(
        "WebcastChatMessage",
        user=viewer(),
        content="hi @bob [e]",
        content_language="en",
        emotes=[EmoteWithIndex(index=8, emote=EmoteModel(emote_id="e9", image=ImageModel(url_list=["https://e/9"])))],
        mention_users=[viewer(43, "bob")],
        mention_user_list=[43],
    )
    envelope = normalise.comment(event, CTX, NOW).envelope
    validate_envelope(envelope.encode())
    assert envelope.data["language"] == "en"
    assert envelope.data["emotes"] == [{"index": 8, "emote_id": "e9", "image_url": "https://e/9"}]
    assert envelope.data["mentions"][0]["unique_id"] == "bob" and envelope.data["mention_user_ids"] == ["43"]


def test_a_gift_keeps_its_recipient_and_image() -> None:
    event = wire(
        "WebcastGiftMessage",
        user=viewer(),
        to_user=viewer(HOST, "guest"),
        gift_id=5655,
        repeat_end=1,
        gift=Gift(id=5655, name="Rose", diamond_count=1, type=1, icon=ImageModel(url_list=["https://g/rose.png"])),
    )
    _, description, _, _ = normalise.gift_step(event, NOW)
    assert description["to_user"]["unique_id"] == "guest" and description["to_user"]["id"] == str(HOST)
    assert description["gift_image_url"] == "https://g/rose.png"


def test_viewer_counts_come_with_the_top_viewers() -> None:
    event = wire(
        "WebcastRoomUserSeqMessage",
        total=300,
        total_user=4000,
        ranks=[Contributor(rank=1, score=500, user=viewer()), Contributor(rank=2, score=100, user=viewer(43, "bob"))],
    )
    envelope = normalise.viewers(event, CTX, NOW).envelope
    validate_envelope(envelope.encode())
    top = envelope.data["top_viewers"]
    assert [(t["rank"], t["score"], t["user"]["unique_id"]) for t in top] == [(1, 500, "alice"), (2, 100, "bob")]
