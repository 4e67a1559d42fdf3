"""TikTok messages from fan-club members decode in a fresh process once the classes are completed."""

from __future__ import annotations

import base64
import subprocess
import sys

from TikTokLive.events import proto_events as pe
from TikTokLiveProto.v3.webcast.model import FansClubData, FansClubMember, data
from TikTokLiveProto.v3.webcast.model.base.user import User

from tiktok_service.connector import proto_classes

DECODE = """
import base64, sys
{prepare}
from TikTokLive.events import proto_events as pe
event = pe.CommentEvent().parse(base64.b64decode(sys.argv[1]))
print(event.user.fans_club.data.level)
"""


def fan_comment() -> str:
    status = data.UserFansClubFansClubDataUserFansClubStatus(1)
    club = FansClubData(club_name="c", level=7, user_fans_club_status=status)
    fan = User(id=5, nickname="Fan", display_id="fan", fans_club=FansClubMember(data=club))
    return base64.b64encode(bytes(pe.CommentEvent(user=fan, content="hi"))).decode()


def decode_in_a_fresh_process(prepare: str) -> subprocess.CompletedProcess[str]:
    code = DECODE.format(prepare=prepare)
    return subprocess.run([sys.executable, "-c", code, fan_comment()], capture_output=True, text=True, timeout=120)


def test_the_library_alone_cannot_decode_a_fan_club_members_comment() -> None:
    """If this starts passing, TikTokLive fixed it and `proto_classes` can go."""
    alone = decode_in_a_fresh_process("")
    assert alone.returncode != 0 and "UserFansClubFansClubDataUserFansClubStatus" in alone.stderr


def test_completed_classes_decode_it() -> None:
    fixed = decode_in_a_fresh_process("from tiktok_service.connector import proto_classes; proto_classes.complete()")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "7"


def test_the_affected_classes_are_the_ones_that_name_the_shadowed_package() -> None:
    assert {cls.__name__ for cls in proto_classes.affected()} >= {"FansClubData"}
