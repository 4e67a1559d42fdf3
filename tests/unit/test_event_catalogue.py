"""The catalogue of event types against the installed TikTokLive: every method it decodes has a type."""

from __future__ import annotations

import pytest
from TikTokLive.events import proto_events as pe

from tiktok_service.domain import catalogue, naming
from tiktok_service.domain.events import EVENT_TYPES, EventType

#: Names that must never change: consumers, the persister and stored rows use them.
STABLE = {
    "tiktok.comment",
    "tiktok.gift",
    "tiktok.gift.progress",
    "tiktok.like",
    "tiktok.join",
    "tiktok.follow",
    "tiktok.share",
    "tiktok.viewer",
    "tiktok.live_end",
    "tiktok.connect",
    "tiktok.disconnect",
    "tiktok.unknown",
}


def test_every_method_the_library_decodes_has_a_type_and_no_other() -> None:
    # A TikTokLive upgrade that maps a new method fails here: give it a type in the catalogue.
    assert set(catalogue.METHOD_TYPES) == set(pe.EVENT_MAPPINGS)
    assert len(pe.EVENT_MAPPINGS) == 62 and "WebcastControlMessage" in pe.EVENT_MAPPINGS


def test_every_type_is_described_once_and_every_described_type_exists() -> None:
    assert set(catalogue.KINDS) == EVENT_TYPES
    assert {t.value for t in EVENT_TYPES} >= STABLE


def test_generic_types_follow_the_snake_case_rule() -> None:
    assert catalogue.generic_type_name("WebcastGiftPanelUpdateMessage") == "tiktok.gift_panel_update"
    assert catalogue.generic_type_name("WebcastLinkMicArmies") == "tiktok.link_mic_armies"
    assert catalogue.generic_type_name("WebcastMsgDetectMessage") == "tiktok.msg_detect"
    assert catalogue.generic_type_name("WebcastOecLiveShoppingMessage") == "tiktok.oec_live_shopping"
    for kind in catalogue.KINDS.values():
        if kind.tier == "generic":
            assert kind.type.value == catalogue.generic_type_name(kind.methods[0])


def test_each_method_defaults_to_one_of_its_own_types() -> None:
    for method, kind in catalogue.METHOD_TYPES.items():
        assert kind in catalogue.types_of_method(method)
    assert catalogue.type_of_method("WebcastNotYetInventedMessage") is EventType.UNKNOWN


def test_the_persister_reads_one_stream_per_type() -> None:
    assert naming.all_type_streams() == sorted(t.value for t in EVENT_TYPES)


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        (1, EventType.LIVE_PAUSE),
        (2, EventType.LIVE_UNPAUSE),
        (3, EventType.LIVE_END),
        (4, EventType.LIVE_END),
        (0, EventType.CONTROL),
        (9, EventType.CONTROL),
    ],
)
def test_control_actions(action: int, kind: EventType) -> None:
    assert catalogue.classify_control(action) is kind


def test_the_library_control_action_numbers_are_ours() -> None:
    from TikTokLive.proto.custom_proto import ControlAction

    assert ControlAction.STREAM_PAUSED == catalogue.CONTROL_STREAM_PAUSED
    assert ControlAction.STREAM_UNPAUSED == catalogue.CONTROL_STREAM_UNPAUSED
    assert ControlAction.STREAM_ENDED == catalogue.CONTROL_STREAM_ENDED
    assert ControlAction.STREAM_SUSPENDED == catalogue.CONTROL_STREAM_SUSPENDED


def test_social_barrage_and_envelope_classifiers() -> None:
    assert catalogue.classify_social("pm_main_follow_message_viewer_2") is EventType.FOLLOW
    assert catalogue.classify_social("pm_mt_guidance_share") is EventType.SHARE
    assert catalogue.classify_social("") is EventType.SOCIAL
    assert catalogue.classify_barrage("ttlive_superfan_commentnotif_superfanjoined", "") is EventType.SUPERFAN_JOIN
    assert catalogue.classify_barrage("", "TTLIVE_SUPERFAN_becomes") is EventType.SUPERFAN
    assert catalogue.classify_barrage("", "") is EventType.BARRAGE
    assert catalogue.classify_envelope("ttlive_superfanbox_sent", 0) is EventType.SUPERFAN_BOX
    assert catalogue.classify_envelope("", catalogue.ENVELOPE_SUPER_FAN_BOX) is EventType.SUPERFAN_BOX
    assert catalogue.classify_envelope("", 1) is EventType.ENVELOPE
