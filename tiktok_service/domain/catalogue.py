"""Which TikTok LIVE message becomes which event type: the catalogue of every kind.

TikTok pushes messages tagged with a `method` (`WebcastChatMessage`, ...). Every method the
TikTokLive library decodes is listed here with the event type we publish it as, so a
message is never dropped for want of a type: the bulk kinds have hand-written types,
a set of first-class kinds carry documented summary fields, and every other method is
published as `tiktok.<method in snake case>` with the decoded message as its data.

Four methods can produce more than one type, decided from the message itself (the same
rules TikTokLive uses for its own derived events, so our types line up with its docs):
control actions (end / pause / unpause / other), social messages (follow / share /
other), barrages (super fan / super fan joined / other) and envelopes (super fan box /
other). Those rules are the `classify_*` functions below, pure so they are unit-tested.

A unit test outside the domain holds this catalogue to the installed library's
`EVENT_MAPPINGS`: a library upgrade that maps a new method fails that test loudly. At
run time such a method is still published, as `tiktok.unknown` with its raw payload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tiktok_service.domain.events import EventType

E = EventType


@dataclass(frozen=True, slots=True)
class Kind:
    """What one event type is: where it comes from and what it means (for docs and schemas)."""

    type: EventType
    methods: tuple[str, ...]
    summary: str
    #: "core": hand-normalised; "first_class": decoded message + documented fields;
    #: "generic": the decoded message only; "connector": made by the connector itself.
    tier: str


def generic_type_name(method: str) -> str:
    """`tiktok.<snake case>` of a method, without its `Webcast` prefix and `Message` suffix.

    `WebcastGiftPanelUpdateMessage` -> `tiktok.gift_panel_update`,
    `WebcastLinkMicArmies` -> `tiktok.link_mic_armies`.
    """
    name = method.removeprefix("Webcast").removesuffix("Message") or method
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return f"tiktok.{snake}"


# fmt: off
_KINDS: Final[tuple[Kind, ...]] = (
    # -- core: the bulk of the traffic --------------------------------------------------
    Kind(E.COMMENT, ("WebcastChatMessage",), "A chat comment, with emotes, mentions and language.", "core"),
    Kind(E.GIFT, ("WebcastGiftMessage",), "A gift; one event per streak, when the streak ends.", "core"),
    Kind(E.GIFT_PROGRESS, ("WebcastGiftMessage",), "A step of a running gift streak (opt-in).", "core"),
    Kind(E.LIKE, ("WebcastLikeMessage",), "Likes sent by a viewer, with the room's running total.", "core"),
    Kind(E.JOIN, ("WebcastMemberMessage",), "A viewer joined the room.", "core"),
    Kind(E.FOLLOW, ("WebcastSocialMessage",), "A viewer followed the host.", "core"),
    Kind(E.SHARE, ("WebcastSocialMessage",), "A viewer shared the LIVE.", "core"),
    Kind(E.VIEWER, ("WebcastRoomUserSeqMessage",), "Viewer count and the top viewers.", "core"),
    Kind(E.LIVE_END, ("WebcastControlMessage",), "The LIVE ended (or was suspended by TikTok).", "core"),
    # -- made by the connector ----------------------------------------------------------
    Kind(E.CONNECT, (), "The connector connected to the room.", "connector"),
    Kind(E.DISCONNECT, (), "The connector's connection closed (reason in data).", "connector"),
    Kind(E.UNKNOWN, (), "A message TikTokLive does not know or failed to decode, with its raw payload.", "connector"),
    # -- first-class kinds --------------------------------------------------------------
    Kind(E.SOCIAL, ("WebcastSocialMessage",), "A social message other than follow or share.", "first_class"),
    Kind(E.LIVE_PAUSE, ("WebcastControlMessage",), "The host paused the LIVE.", "first_class"),
    Kind(E.LIVE_UNPAUSE, ("WebcastControlMessage",), "The host resumed a paused LIVE.", "first_class"),
    Kind(E.CONTROL, ("WebcastControlMessage",), "Any other room control action.", "first_class"),
    Kind(E.BATTLE, ("WebcastLinkMicBattle",), "A battle started, updated or ended: scores per side and per user.",
         "first_class"),
    Kind(E.BATTLE_ARMIES, ("WebcastLinkMicArmies",), "Battle score update: each side's points and its top supporters.",
         "first_class"),
    Kind(E.BATTLE_PUNISH_FINISH, ("WebcastLinkMicBattlePunishFinish",), "A battle's punishment phase finished.",
         "first_class"),
    Kind(E.BATTLE_TASK, ("WebcastLinkmicBattleTaskMessage",), "A battle task started, progressed or settled.",
         "first_class"),
    Kind(E.BATTLE_ITEM_CARD, ("WebcastLinkMicBattleItemCard",), "A battle item card was obtained or used.",
         "first_class"),
    Kind(E.LINK_MIC, ("WebcastLinkMicMethod",), "A link-mic (co-host) signal: invite, reply, join, fan tickets.",
         "first_class"),
    Kind(E.LINK_MIC_FAN_TICKET, ("WebcastLinkMicFanTicketMethod",), "Fan tickets of the linked hosts.",
         "first_class"),
    Kind(E.LINK_MIC_LAYOUT, ("WebcastLinkMicLayoutStateMessage",), "The link-mic layout changed.", "first_class"),
    Kind(E.LINK_MIC_STATE, ("WebcastLinkStateMessage",), "The link-mic state of the users on screen.",
         "first_class"),
    Kind(E.LINK_MIC_GUEST, ("WebcastLinkMessage",), "Multi-guest: guests invited, joining, leaving, kicked...",
         "first_class"),
    Kind(E.POLL, ("WebcastPollMessage",), "A poll started, got votes or ended: options and votes.", "first_class"),
    Kind(E.QUESTION, ("WebcastQuestionNewMessage",), "A viewer asked a question (Q&A).", "first_class"),
    Kind(E.SUBSCRIPTION, ("WebcastSubNotifyMessage",), "A viewer subscribed (or renewed, or gifted a sub).",
         "first_class"),
    Kind(E.SUBSCRIPTION_PIN, ("WebcastSubPinEventMessage",), "A subscriber's message was pinned or unpinned.",
         "first_class"),
    Kind(E.EMOTE, ("WebcastEmoteChatMessage",), "A viewer sent subscriber emotes.", "first_class"),
    Kind(E.ENVELOPE, ("WebcastEnvelopeMessage",), "A treasure chest (envelope) was sent.", "first_class"),
    Kind(E.SUPERFAN, ("WebcastBarrageMessage",), "A viewer became a super fan.", "first_class"),
    Kind(E.SUPERFAN_JOIN, ("WebcastBarrageMessage",), "A super fan joined the LIVE.", "first_class"),
    Kind(E.SUPERFAN_BOX, ("WebcastEnvelopeMessage",), "A super fan box (envelope) was sent.", "first_class"),
    Kind(E.GOAL, ("WebcastGoalUpdateMessage",), "The LIVE goal progressed.", "first_class"),
    Kind(E.PIN, ("WebcastRoomPinMessage",), "A message was pinned or unpinned in the room.", "first_class"),
    Kind(E.RANK, ("WebcastRankUpdateMessage",), "The room's position in a ranking changed.", "first_class"),
    Kind(E.RANK_TEXT, ("WebcastRankTextMessage",), "A ranking announcement shown in the room.", "first_class"),
    Kind(E.RANK_HOURLY_REWARD, ("WebcastHourlyRankRewardMessage",), "Hourly ranking rewards and winners.",
         "first_class"),
    Kind(E.COMMENT_DELETED, ("WebcastImDeleteMessage",), "Comments (or all comments of users) were deleted.",
         "first_class"),
    Kind(E.CAPTION, ("WebcastCaptionMessage",), "Automatic captions of the host's speech.", "first_class"),
    Kind(E.BARRAGE, ("WebcastBarrageMessage",), "A banner (barrage) shown over the LIVE.", "first_class"),
    Kind(E.ROOM_MESSAGE, ("WebcastRoomMessage",), "A room message (announcement text).", "first_class"),
    Kind(E.ROOM_NOTIFY, ("WebcastRoomNotifyMessage",), "A room notification.", "first_class"),
    Kind(E.NOTICE, ("WebcastNoticeMessage",), "A notice shown in the room.", "first_class"),
    Kind(E.TOAST, ("WebcastToastMessage",), "A toast shown in the room.", "first_class"),
    Kind(E.SYSTEM, ("WebcastSystemMessage",), "A system message.", "first_class"),
    Kind(E.SHOPPING, ("WebcastOecLiveShoppingMessage",), "LIVE shopping: a product was shown or updated.",
         "first_class"),
    Kind(E.GIFT_BROADCAST, ("WebcastGiftBroadcastMessage",), "A gift broadcast to other rooms.", "first_class"),
    # -- every other method: the decoded message ----------------------------------------
    *(
        Kind(EventType(generic_type_name(m)), (m,), f"`{m}`, decoded.", "generic")
        for m in (
            "WebcastAccessControlMessage", "WebcastAccessRecallMessage", "WebcastBoostCardMessage",
            "WebcastBottomMessage", "WebcastCapsuleMessage", "WebcastGameRankNotifyMessage",
            "WebcastGiftDynamicRestrictionMessage", "WebcastGiftPanelUpdateMessage", "WebcastGiftPromptMessage",
            "WebcastGuideMessage", "WebcastInRoomBannerMessage", "WebcastLinkLayerMessage",
            "WebcastLiveGameIntroMessage", "WebcastLiveIntroMessage", "WebcastMarqueeAnnouncementMessage",
            "WebcastMsgDetectMessage", "WebcastPartnershipDropsUpdateMessage",
            "WebcastPartnershipGameOfflineMessage", "WebcastPartnershipPunishMessage", "WebcastPerceptionMessage",
            "WebcastRoomVerifyMessage", "WebcastSpeakerMessage", "WebcastUnauthorizedMemberMessage",
            "WebcastViewerPicksUpdateMessage",
        )
    ),
)
# fmt: on

#: Every event type, described (one entry per type, in documentation order).
KINDS: Final = MappingProxyType({kind.type: kind for kind in _KINDS})

#: The type a method is published as when no classifier says otherwise.
_DEFAULTS: Final = {
    "WebcastGiftMessage": E.GIFT,
    "WebcastSocialMessage": E.SOCIAL,
    "WebcastControlMessage": E.CONTROL,
    "WebcastBarrageMessage": E.BARRAGE,
    "WebcastEnvelopeMessage": E.ENVELOPE,
}


def _method_types() -> dict[str, EventType]:
    table: dict[str, EventType] = {}
    for kind in _KINDS:
        for method in kind.methods:
            table.setdefault(method, _DEFAULTS.get(method, kind.type))
    return table


#: method -> its default event type, for every method TikTokLive decodes.
METHOD_TYPES: Final = MappingProxyType(_method_types())


def types_of_method(method: str) -> frozenset[EventType]:
    """Every type one method can be published as."""
    return frozenset(kind.type for kind in _KINDS if method in kind.methods)


def type_of_method(method: str) -> EventType:
    """The type of a method we know; `tiktok.unknown` for any other."""
    return METHOD_TYPES.get(method, E.UNKNOWN)


# -- classifiers of the methods that carry several kinds ------------------------------------
#: TikTok's ControlAction values (TikTokLiveProto `ControlAction`).
CONTROL_STREAM_PAUSED: Final = 1
CONTROL_STREAM_UNPAUSED: Final = 2
CONTROL_STREAM_ENDED: Final = 3
CONTROL_STREAM_SUSPENDED: Final = 4
#: Actions after which the room is gone: the connector stops (TikTokLive disconnects too).
LIVE_END_ACTIONS: Final = frozenset({CONTROL_STREAM_ENDED, CONTROL_STREAM_SUSPENDED})


def classify_control(action: int) -> EventType:
    if action in LIVE_END_ACTIONS:
        return E.LIVE_END
    if action == CONTROL_STREAM_PAUSED:
        return E.LIVE_PAUSE
    if action == CONTROL_STREAM_UNPAUSED:
        return E.LIVE_UNPAUSE
    return E.CONTROL


def classify_social(display_type: str) -> EventType:
    """Follow and share are social messages told apart by their display text's key."""
    if "follow" in display_type:
        return E.FOLLOW
    if "share" in display_type:
        return E.SHARE
    return E.SOCIAL


def classify_barrage(*display_types: str) -> EventType:
    """Super fan barrages carry a `ttlive_superfan...` display type in either text."""
    lowered = [d.lower() for d in display_types if d]
    if any("ttlive_superfan_commentnotif_superfanjoined" in d for d in lowered):
        return E.SUPERFAN_JOIN
    if any("ttlive_superfan" in d for d in lowered):
        return E.SUPERFAN
    return E.BARRAGE


#: `EnvelopeBusinessType` of a super fan box (the wire value TikTokLive compares with).
ENVELOPE_SUPER_FAN_BOX: Final = 19


def classify_envelope(display_type: str, business_type: int) -> EventType:
    if "ttlive_superfanbox" in display_type.lower() or business_type == ENVELOPE_SUPER_FAN_BOX:
        return E.SUPERFAN_BOX
    return E.ENVELOPE
