"""A decoded message as proto3 JSON: the generic `data` of every kind not normalised by hand."""

from __future__ import annotations

import base64

from TikTokLive.events import proto_events as pe
from TikTokLive.proto import CommonMessageData
from TikTokLiveProto.v3.webcast.model.base import ImageModel
from TikTokLiveProto.v3.webcast.model.base.user import User
from TikTokLiveProto.v3.webcast.model.message.battle import BattleUserArmies

from tiktok_service.connector.normalise.proto_json import TOP_LEVEL_SKIP, message_to_json


def decoded(event: object) -> object:
    return type(event)().parse(bytes(event))  # type: ignore[call-arg,attr-defined]


def test_64_bit_integers_are_strings_and_32_bit_integers_numbers() -> None:
    event = decoded(
        pe.LinkMicArmiesEvent(battle_id=2**62 + 1, gift_count=3, armies={2**61: BattleUserArmies(hostscore=9)})
    )
    doc = message_to_json(event)
    assert doc["battle_id"] == str(2**62 + 1) and doc["gift_count"] == 3
    assert doc["armies"] == {str(2**61): {"hostscore": "9"}}


def test_bytes_are_base64_enums_are_names_and_defaults_are_left_out() -> None:
    event = decoded(pe.JoinEvent(effect_config=b"\x00\xff", action=1, member_count=0, pop_str=""))
    doc = message_to_json(event)
    assert doc == {"effect_config": base64.b64encode(b"\x00\xff").decode(), "action": "JOINED"}


def test_nested_messages_and_lists_are_walked_and_common_and_user_are_left_out() -> None:
    event = decoded(
        pe.LinkMicMethodEvent(
            common=CommonMessageData(msg_id=5),
            linked_users=[User(id=42, nickname="A", avatar_thumb=ImageModel(url_list=["u"]))],
        )
    )
    assert message_to_json(event, TOP_LEVEL_SKIP) == {
        "linked_users": [{"id": "42", "nickname": "A", "avatar_thumb": {"url_list": ["u"]}}]
    }
    assert "common" in message_to_json(event)


def test_the_output_holds_only_json_types() -> None:
    event = decoded(pe.LinkMicMethodEvent(message_type=2, win=True, user_scores=[b"a"], linked_users=[User(id=1)]))

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return type(value) in (str, int, float, bool)

    assert plain(message_to_json(event))
