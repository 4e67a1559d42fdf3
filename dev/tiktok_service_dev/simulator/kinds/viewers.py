"""Messages about viewers and what they type: chat (with emotes, mentions, language), emote chat,
joins, likes, follows, barrage banners (super fans included), deleted comments, questions, captions,
viewer counts with top viewers, pinned comments."""

from __future__ import annotations

from ..scenario import SimUser
from .base import Draft, Stage, draft
from .shapes import Body, common, image, small_user, text, user_body, user_identity

_LINES = ("hello from Lisbon", "that was amazing", "what song is this?", "gg", "love the vibe tonight")
_QUESTIONS = ("what camera do you use?", "when is the next stream?", "how long have you been playing?")
_CAPTIONS = (("en", "okay let's start the next round"), ("es", "vamos a empezar la siguiente ronda"))


def emote(stage: Stage, index: int = 0) -> Body:
    """An ``EmoteModel``: subscriber emotes have an id, an image and the SUBSCRIPTION scene."""
    emote_id = 7_202_546_868_612_680_453 + index
    return {
        "emote_id": str(emote_id),
        "image": image(f"webcast-va/sub_{emote_id:x}", avg_color="#CCB1A3"),
        "audit_status": "PASS",
        "emote_type": "EMOTE_TYPE_NORMAL",
        "package_id": str(7_202_546_000_000_000_000 + stage.host.id % 1000),
    }


def chat(stage: Stage, user: SimUser | None = None, content: str = "", *, rich: bool = True) -> Draft:
    """``WebcastChatMessage``. ``rich``: an emote placeholder and an @mention, as TikTok sends them."""
    user = user or stage.viewer()
    body: Body = {
        "common": common(),
        "user": user_body(user),
        "content": content or stage.rng.choice(_LINES),
        "content_language": "en",
        "user_identity": user_identity(user),
    }
    if rich:
        mentioned = stage.viewer()
        body["content"] = f"@{mentioned.unique_id} [sub_emote] {body['content']}"
        body["emotes"] = [{"index": len(mentioned.unique_id) + 2, "emote": emote(stage)}]
        body["at_user"] = small_user(mentioned)
        body["mention_user_list"] = [mentioned.id]
    return Draft("WebcastChatMessage", user, body)


def emote_chat(stage: Stage) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastEmoteChatMessage",
        user,
        common=common("live_room_emote_chat", "{0:user}: {1:emote}"),
        user=user_body(user),
        emote_list=[emote(stage, stage.rng.randrange(3))],
        user_identity=user_identity(user),
    )


def member(stage: Stage, member_count: int = 0) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastMemberMessage",
        user,
        common=common("live_room_enter_toast", "{0:user} joined", color="#b8ffffff"),
        user=user_body(user),
        member_count=member_count or stage.rng.randrange(200, 2000),
        action="JOINED",
        anchor_display_text=text("live_room_enter_toast", "{0:user} joined"),
        client_enter_source="homepage_hot-live_cell",
        client_enter_type="click",
    )


def like(stage: Stage, total: int = 0) -> Draft:
    user = stage.viewer()
    count = stage.rng.randrange(1, 16)
    return draft(
        "WebcastLikeMessage",
        user,
        common=common("pm_mt_msg_viewer", "{0:user} liked the LIVE"),
        count=count,
        total=total or stage.rng.randrange(1000, 90_000),
        user=user_body(user),
    )


def follow(stage: Stage, follow_count: int = 0) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastSocialMessage",
        user,
        common=common("pm_main_follow_message_viewer_2", "{0:user} followed the host"),
        user=user_body(user),
        action=1,
        follow_count=follow_count or stage.rng.randrange(1000, 50_000),
    )


def barrage(stage: Stage) -> Draft:
    """A banner for a viewer entering with a high gifter level (``GRADE_USER_ENTRANCE_NOTIFICATION``)."""
    user = stage.viewer()
    level = 25 + stage.rng.randrange(20)
    return draft(
        "WebcastBarrageMessage",
        user,
        common=common("webcast_grade_user_entrance_notify", "{0:user} joined"),
        msg_type="GRADE_USER_ENTRANCE_NOTIFICATION",
        icon=image(f"webcast-va/grade_badge_icon_lite_lv{level // 5 * 5}_v2.png"),
        content=text("webcast_grade_user_entrance_notify", "Level {1:string} {0:user} joined"),
        duration=3000,
        user=user_body(user),
        user_grade_param={"current_grade": level, "display_config": 1, "user_id": str(user.id)},
    )


def superfan_barrage(stage: Stage, *, joined: bool = True) -> Draft:
    """A super fan banner: TikTok marks it by a ``ttlive_superfan...`` display type on the content."""
    user = stage.viewer()
    key = "ttlive_superfan_commentnotif_superfanjoined" if joined else "ttlive_superfan_commentnotif_renewed"
    pattern = "{0:user} became a Super Fan!" if joined else "{0:user} renewed their Super Fan"
    return draft(
        "WebcastBarrageMessage",
        user,
        common=common(key, pattern),
        msg_type="SUBSCRIBE",
        content=text(key, pattern),
        common_barrage_content=text(key, pattern),
        duration=4000,
        user=user_body(user),
    )


def im_delete(stage: Stage, msg_ids: list[int], user: SimUser) -> Draft:
    """A moderator removed comments: the msg_ids of the deleted chat messages and their author."""
    return draft("WebcastImDeleteMessage", None, common=common(), delete_msg_ids=msg_ids, delete_user_ids=[user.id])


def question(stage: Stage) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastQuestionNewMessage",
        user,
        common=common("live_question_new", "{0:user} asked a question"),
        data={
            "question_id": stage.new_id(),
            "content": stage.rng.choice(_QUESTIONS),
            "create_time": stage.now_s,
            "user": user_body(user),
        },
    )


def caption(stage: Stage) -> Draft:
    now = stage.now_ms
    return draft(
        "WebcastCaptionMessage",
        None,
        common=common(),
        timestamp_ms=now - 2500,
        duration_ms=2300,
        content=[{"lang": lang, "content": line} for lang, line in _CAPTIONS],
        sentence_id=stage.rng.randrange(1, 10_000),
        sequence_id=stage.rng.randrange(1, 100),
        definite=True,
    )


def room_user_seq(stage: Stage, total: int = 0) -> Draft:
    """Viewer count with the top-3 viewers by coins (``ranks``), as the Node connector's topViewers."""
    top = stage.viewers(3)
    scores = sorted((stage.rng.randrange(10, 5000) for _ in top), reverse=True)
    total = total or stage.rng.randrange(200, 2000)
    return draft(
        "WebcastRoomUserSeqMessage",
        None,
        common=common(),
        ranks=[
            {"score": s, "user": small_user(u), "rank": i + 1} for i, (u, s) in enumerate(zip(top, scores, strict=True))
        ],
        total=total,
        popularity=total * 3,
        total_user=total + stage.rng.randrange(100, 5000),
        pop_str=f"{total / 1000:.1f}K" if total >= 1000 else str(total),
    )


def unauthorized_member(stage: Stage) -> Draft:
    return draft(
        "WebcastUnauthorizedMemberMessage",
        None,
        common=common("live_room_enter_toast", "{0:string} joined"),
        action=1,
        nick_name_prefix=text("webcast_unauthorized_member_prefix", "Someone"),
        nick_name="Someone",
        enter_text=text("live_room_enter_toast", "joined"),
    )


def live_intro(stage: Stage) -> Draft:
    host = stage.host
    return draft(
        "WebcastLiveIntroMessage",
        host,
        common=common(),
        id=stage.room_id,
        audit_status=2,
        content="Chill stream, requests open - be kind 💜",
        user=user_body(host),
        content_language="en",
    )


def speaker(stage: Stage) -> Draft:
    return draft("WebcastSpeakerMessage", None, common=common())


def room_pin(stage: Stage, pinned_msg_id: int | None = None) -> Draft:
    """The host pins a comment: the pinned chat message travels inside, with its own common header."""
    pinned = chat(stage, rich=False).body
    msg_id = pinned_msg_id or stage.new_id()
    pinned["common"] = {
        **pinned["common"],
        "method": "WebcastChatMessage",
        "msg_id": msg_id,
        "room_id": stage.room_id,
        "create_time": stage.now_ms - 15_000,
    }
    return draft(
        "WebcastRoomPinMessage",
        stage.host,
        common=common(),
        chat_message=pinned,
        method="WebcastChatMessage",
        pin_time=stage.now_ms,
        operator=small_user(stage.host),
        action="PIN",
        display_duration=60,
        pin_msg_id=msg_id,
    )
