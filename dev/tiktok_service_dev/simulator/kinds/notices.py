"""What the platform itself says in a room: live pause/unpause/end (control), notices, toasts, system
lines, room banners and marquees, moderation and verification prompts, game intros."""

from __future__ import annotations

from .base import Draft, Stage, draft
from .shapes import common, image, small_user, text

# ``ControlAction`` values (TikTokLiveProto v3): TikTokLive emits LivePauseEvent / LiveUnpauseEvent for
# 1/2 and LiveEndEvent - and disconnects - for 3 (STREAM_ENDED) and 4 (STREAM_SUSPENDED).
STREAM_PAUSED = 1
STREAM_UNPAUSED = 2
STREAM_ENDED = 3


def control(stage: Stage, action: int) -> Draft:
    tips = {
        STREAM_PAUSED: "The LIVE is paused",
        STREAM_UNPAUSED: "The LIVE is back",
        STREAM_ENDED: "The LIVE has ended",
    }
    return draft("WebcastControlMessage", None, common=common(), action=action, tips=tips.get(action, ""))


def notice(stage: Stage) -> Draft:
    return draft(
        "WebcastNoticeMessage",
        None,
        common=common(),
        content="Welcome to TikTok LIVE! Have fun interacting with others in real time.",
        notice_type=1,
        title=text("live_room_notice_title", "LIVE notice"),
        scene="room_enter",
    )


def toast(stage: Stage) -> Draft:
    return draft(
        "WebcastToastMessage",
        None,
        common=common("pm_mt_toast_host_back", "The host will be right back"),
        display_duration_millisecond=3000,
        scene="anchor_leave",
    )


def system(stage: Stage) -> Draft:
    return draft(
        "WebcastSystemMessage", None, common=common(), message="Creators must follow the Community Guidelines."
    )


def room(stage: Stage) -> Draft:
    return draft(
        "WebcastRoomMessage",
        None,
        common=common("live_room_welcome", "Welcome to the LIVE"),
        content="Welcome to the LIVE! Please be respectful.",
        source=1,
        scene="welcome",
        is_welcome=True,
        show_duration_ms=5000,
    )


def room_notify(stage: Stage) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastRoomNotifyMessage",
        user,
        common=common(),
        schema=f"sslocal://webcast_room?room_id={stage.room_id}",
        notify_type=1,
        content=f"{user.nickname} is sharing a treasure chest",
        user=small_user(user),
        notify_class=2,
        from_user_id=user.id,
        to_anchor_id=stage.host.id,
    )


def room_verify(stage: Stage) -> Draft:
    return draft(
        "WebcastRoomVerifyMessage",
        None,
        common=common(),
        action=1,
        content="Your LIVE is being reviewed",
        notice_type=1,
    )


def bottom(stage: Stage) -> Draft:
    return draft(
        "WebcastBottomMessage",
        None,
        common=common(),
        content="Comments are limited for new viewers",
        show_type="HOVER",
        duration=5000,
        biz_type="RETHINK_CHAT",
    )


def capsule(stage: Stage) -> Draft:
    return draft(
        "WebcastCapsuleMessage",
        None,
        common=common(),
        icon=image("webcast-va/capsule_icon.png"),
        desc=text("live_capsule_desc", "Top viewer rewards are on"),
        button_text=text("live_capsule_button", "View"),
        type=1,
        scene="reward",
    )


def guide(stage: Stage) -> Draft:
    return draft(
        "WebcastGuideMessage",
        None,
        common=common(),
        guide_type=1,
        gift_id=5655,
        description="Send a Rose to support the host",
        duration=5000,
        scene="gift_guide",
        frequency_rule={"room_show_count": 1, "day_show_count": 3},
    )


def in_room_banner(stage: Stage) -> Draft:
    return draft("WebcastInRoomBannerMessage", None, common=common())


def marquee(stage: Stage) -> Draft:
    user = stage.viewer()
    return draft(
        "WebcastMarqueeAnnouncementMessage",
        user,
        common=common(),
        message_scene="gift_broadcast",
        message_entity=[
            {
                "notify": {
                    "notify_type": 1,
                    "content": f"{user.nickname} sent a Lion!",
                    "user": small_user(user),
                    "notify_class": 2,
                }
            }
        ],
    )


def msg_detect(stage: Stage) -> Draft:
    return draft(
        "WebcastMsgDetectMessage",
        None,
        common=common(),
        d_type=1,
        t_condition={"detect_room_msg": True},
        t_info={"api_recv_time_ms": stage.now_ms - 20, "api_send_to_goim_ms": stage.now_ms - 10},
        trigger_by=1,
        from_region="US",
    )


def perception(stage: Stage) -> Draft:
    return draft(
        "WebcastPerceptionMessage",
        None,
        common=common(),
        dialog={
            "icon_type": "ICON_TYPE_WARNING",
            "title": text("live_perception_title", "Your LIVE may be limited"),
            "sub_title": text("live_perception_sub", "It may not follow our Community Guidelines"),
            "target_room_id": stage.room_id,
        },
        end_time=stage.now_s + 600,
        show_violation_warning=True,
        toast=text("live_perception_toast", "Please review the guidelines"),
    )


def access_control(stage: Stage) -> Draft:
    return draft(
        "WebcastAccessControlMessage",
        None,
        common=common(),
        captcha={"captcha_record_id": stage.new_id(), "room_id": stage.room_id, "verify_duration_in_sec": 300},
    )


def access_recall(stage: Stage) -> Draft:
    return draft(
        "WebcastAccessRecallMessage",
        None,
        common=common(),
        status=1,
        duration=600,
        end_time=stage.now_s + 600,
        scene="game_partnership",
        notice=text("live_access_recall_notice", "Access restored"),
    )


def live_game_intro(stage: Stage) -> Draft:
    return draft(
        "WebcastLiveGameIntroMessage",
        None,
        common=common(),
        content=text("live_game_intro", "Playing: Minecraft"),
        has_rank_info=True,
    )
