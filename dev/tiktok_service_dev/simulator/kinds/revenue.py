"""Money features: gifts (with recipient), gift broadcasts, treasure chests (envelopes), LIVE goals,
subscriptions and sub pins, LIVE shopping, viewer picks, boost cards, gift panel notices and
partnership (game) notices."""

from __future__ import annotations

from collections.abc import Iterator

from ..scenario import GIFT_CATALOGUE, GiftSpec, SimUser
from .base import Draft, Stage, draft
from .shapes import Body, avatar, common, image, small_user, user_body, user_identity


def gift_struct(gift: GiftSpec) -> Body:
    return {
        "image": image(f"img/maliva/webcast-va/sim-gift-{gift.id}", avg_color="#7C9BA3"),
        "describe": f"sent {gift.name}",
        "id": gift.id,
        "combo": gift.streakable,
        "type": gift.type,
        "diamond_count": gift.diamond_count,
        "name": gift.name,
        "icon": image(f"img/maliva/webcast-va/sim-gift-{gift.id}"),
    }


def gift(stage: Stage, *, to_guest: bool = True) -> Draft:
    """A non-streak gift sent to a guest of a multi-guest room (``to_user`` set), as TikTok sends them."""
    user = stage.viewer()
    spec = GIFT_CATALOGUE[7]  # Cap: not streakable, so repeat_end=1 right away
    body: Body = {
        "common": common("webcast_aweme_gift_send_message", "{0:user} sent {1:gift} {2:string}", color="#ffface15"),
        "gift_id": spec.id,
        "fan_ticket_count": spec.diamond_count,
        "group_count": 1,
        "repeat_count": 1,
        "combo_count": 1,
        "user": user_body(user),
        "repeat_end": 1,
        "group_id": stage.now_ms,
        "gift": gift_struct(spec),
        "log_id": f"{stage.now_ms}{stage.rng.randrange(16**8):08X}",
        "send_type": 1,
        "user_identity": user_identity(user, gifted=True),
    }
    if to_guest:
        guest = stage.viewer()
        body["to_user"] = small_user(guest)
        body["to_member_id_int"] = guest.id
        body["to_member_nickname"] = guest.nickname
    return Draft("WebcastGiftMessage", user, body)


def gift_broadcast(stage: Stage) -> Draft:
    """A big gift announced to other rooms (``notify`` is a room notify message inside)."""
    user = stage.viewer()
    spec = GIFT_CATALOGUE[-1]
    notify = {
        "schema": f"sslocal://webcast_room?room_id={stage.room_id}",
        "notify_type": 1,
        "content": f"{user.nickname} sent {spec.name} to {stage.host.nickname}",
        "user": small_user(user),
        "notify_class": 2,
        "from_user_id": user.id,
        "to_anchor_id": stage.host.id,
    }
    return draft(
        "WebcastGiftBroadcastMessage",
        user,
        common=common(),
        from_user_id=user.id,
        left_icon=gift_struct(spec)["icon"],
        notify=notify,
    )


def envelope(stage: Stage, *, super_fan: bool = False) -> Draft:
    """A treasure chest: diamonds shared among ``people_count`` viewers, opened at ``unpack_at``."""
    user = stage.viewer()
    key = "ttlive_superfanbox_envelope" if super_fan else "live_room_envelope_new"
    info = {
        "envelope_id": str(stage.new_id()),
        "business_type": 19 if super_fan else "BUSINESS_TYPE_USER_DIAMOND",
        "envelope_idc": "useast2a",
        "send_user_name": user.nickname,
        "diamond_count": stage.rng.choice((99, 199, 500, 1000)),
        "people_count": stage.rng.choice((5, 10, 20)),
        "unpack_at": stage.now_s + 180,
        "send_user_id": str(user.id),
        "send_user_avatar": avatar(user.id),
        "create_at": str(stage.now_s),
        "room_id": str(stage.room_id),
        "follow_show_status": "ENVELOPE_FOLLOW_SHOW",
    }
    return draft(
        "WebcastEnvelopeMessage",
        user,
        common=common(key, "{0:user} sent a treasure chest"),
        envelope_info=info,
        display="NEW",
    )


def goal_update(stage: Stage, progress: int = 0, contributor: SimUser | None = None) -> Draft:
    """A LIVE goal made progress: the goal with its sub-goal and the contributor."""
    contributor = contributor or stage.viewer()
    spec = GIFT_CATALOGUE[0]
    target = 1000
    progress = progress or stage.rng.randrange(1, target)
    goal_id = 7_250_000_000_000_000_000 + stage.host.id % 10**15
    sub_goal = {
        "type": 1,
        "id": goal_id + 1,
        "progress": progress,
        "target": target,
        "gift": {
            "name": spec.name,
            "icon": gift_struct(spec)["icon"],
            "diamond_count": spec.diamond_count,
            "type": spec.type,
        },
        "id_str": str(goal_id + 1),
    }
    goal = {
        "id": goal_id,
        "type": 1,
        "status": 1,
        "sub_goals": [sub_goal],
        "description": "1000 roses for a dance!",
        "id_str": str(goal_id),
    }
    return draft(
        "WebcastGoalUpdateMessage",
        contributor,
        common=common(),
        goal=goal,
        contributor_id=contributor.id,
        contributor_avatar=avatar(contributor.id),
        contributor_display_id=contributor.unique_id,
        contribute_subgoal=sub_goal,
        contribute_count=1,
        contribute_score=spec.diamond_count,
        contributor_id_str=str(contributor.id),
        update_source="PROGRESS_UPDATE",
    )


def sub_notify(stage: Stage, user: SimUser | None = None, months: int = 0) -> Draft:
    """A viewer subscribed (first time or renewal, ``sub_month`` months)."""
    user = user or stage.viewer()
    months = months or stage.rng.choice((1, 1, 1, 2, 3, 6, 12))
    return draft(
        "WebcastSubNotifyMessage",
        user,
        common=common("webcast_sub_notify_sub_success", "{0:user} just subscribed!"),
        user=user_body(user),
        exhibition_type="PUBLIC_SCREEN",
        sub_month=months,
        subscribe_type="AUTO",
        old_subscribe_status="FIRST" if months == 1 else "RESUB",
        message_type="SUB_SUCCESS",
        subscribing_status="CIRCLE",
        package_id=str(7_180_000_000_000_000_000 + stage.host.id % 10**15),
    )


def sub_pin(stage: Stage, *, unpin: bool = False) -> Draft:
    """The host pins (or unpins) the subscription card."""
    card = {
        "time_to_live": 300,
        "title": {"type": "TEXT_TYPE_ORIGINAL", "content": "Subscribe"},
        "desc": {"type": "TEXT_TYPE_ORIGINAL", "content": "Sub badge, emotes and a sub-only chat"},
        "type": "CUSTOMIZED_BENEFIT_E_NUM",
        "id": 7_181_000_000_000_000_000 + stage.host.id % 10**15,
        "last_pin_timestamp": stage.now_s,
    }
    return draft(
        "WebcastSubPinEventMessage",
        stage.host,
        common=common(),
        action_type="UNPIN" if unpin else "SUB_PIN_EVENT_MESSAGE_ACTION_TYPE_PIN",
        card=card,
        operator_user_id=stage.host.id,
    )


def subscription_sequence(stage: Stage) -> Iterator[Draft]:
    """The host pins the sub card, viewers subscribe (some renew), the card is unpinned."""
    yield sub_pin(stage)
    for _ in range(stage.rng.randrange(1, 4)):
        yield sub_notify(stage)
    yield sub_pin(stage, unpin=True)


# -- shopping, picks, boosts, partnership -----------------------------------------------------------


def oec_live_shopping(stage: Stage) -> Draft:
    """The host pins a product card (TikTok Shop)."""
    product_id = 1_729_000_000_000_000_000 + stage.rng.randrange(10**15)
    return draft(
        "WebcastOecLiveShoppingMessage",
        None,
        common=common(),
        action_type=1,
        live_product_number=stage.rng.randrange(1, 30),
        pop_product={
            "title": "Wireless earbuds, 30h battery",
            "price": "$19.99",
            "image_url": f"https://p16-oec-va.ibyteimg.com/tos-maliva-i-o3syd03w52-us/sim-product-{product_id}~tplv-o3syd03w52-origin-jpeg.jpeg",
            "product_id": product_id,
            "product_type": "1",
            "source": "live",
        },
        trace_info={"operate_time": stage.now_ms - 300, "send_time": stage.now_ms - 100},
        hot_tags=[{"product_id": str(product_id), "hot_count": stage.rng.randrange(5, 500)}],
    )


def viewer_picks(stage: Stage) -> Draft:
    return draft(
        "WebcastViewerPicksUpdateMessage",
        None,
        common=common(),
        update_type=1,
        info={
            "viewer_picks_id": stage.new_id(),
            "status": 1,
            "round_duration_sec": 120,
            "start_time_ms": stage.now_ms,
            "has_duration": True,
            "has_score": True,
        },
    )


def boost_card(stage: Stage) -> Draft:
    return draft(
        "WebcastBoostCardMessage",
        None,
        common=common(),
        cards=[{"m_card_id": stage.new_id(), "task_source": 1, "task_id": stage.new_id()}],
    )


def gift_panel_update(stage: Stage) -> Draft:
    return draft("WebcastGiftPanelUpdateMessage", None, common=common(), room_id=stage.room_id, timestamp=stage.now_ms)


def gift_prompt(stage: Stage) -> Draft:
    return draft(
        "WebcastGiftPromptMessage",
        None,
        common=common(),
        title="Take a break?",
        body="You have sent a lot of gifts today.",
        block_num_days=1,
    )


def gift_dynamic_restriction(stage: Stage) -> Draft:
    return draft(
        "WebcastGiftDynamicRestrictionMessage",
        None,
        common=common(),
        dynamic_restriction={
            "scenes": {"match_hidden_gids": [7312, 6369]},
            "receivers": [{"user_id": stage.host.id, "hidden_gids": [7312]}],
        },
    )


def partnership_drops(stage: Stage) -> Draft:
    return draft(
        "WebcastPartnershipDropsUpdateMessage",
        None,
        common=common(),
        change_mode="CHANGE_MODE_UPDATE",
        drops_id=str(stage.new_id()),
        task_id=str(stage.new_id()),
        anchor_uid=stage.host.id,
    )


def partnership_game_offline(stage: Stage) -> Draft:
    return draft(
        "WebcastPartnershipGameOfflineMessage",
        None,
        common=common(),
        offline_game_list=[
            {
                "task_id": str(stage.new_id()),
                "toast_text": "This game task has ended",
                "offline_type": "TASK_OFFLINE",
                "game_id": "7",
            }
        ],
    )


def partnership_punish(stage: Stage) -> Draft:
    return draft(
        "WebcastPartnershipPunishMessage",
        None,
        common=common(),
        punish_info={
            "punish_type": "ban_game_partnership",
            "punish_id": str(stage.new_id()),
            "violation_uid": stage.host.id,
            "punish_type_id": "BAN_GAME_PARTNERSHIP",
            "duration": 86_400,
        },
    )
