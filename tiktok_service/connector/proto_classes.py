"""Complete the TikTok message classes TikTokLive cannot complete itself.

TikTokLive's message classes (TikTokLiveProto v3, betterproto2 on pydantic dataclasses) build
their validators lazily, on first use, resolving type annotations against the namespace of
the frame that triggers the build. That frame is betterproto2's `Message.parse(self, data)`,
whose argument `data` (the raw bytes) shadows the `data` sub-package that five annotations of
`TikTokLiveProto.v3.webcast.model` name (`"data.UserFansClubFansClubDataUserFansClubStatus"`,
...). So the first message carrying such a field fails to decode, in every fresh process:
any comment, gift or join from a member of the host's fan club (`user.fans_club.data`)
comes out as "Failed to parse" (TikTokLive 7.0.1 / TikTokLiveProto 0.2.2).

`complete()` builds those classes once, up front, from a frame where `data` means the
sub-package, so TikTok's messages decode as TikTok sends them.
"""

from __future__ import annotations

import logging
import typing
from types import ModuleType

import pydantic
import pydantic.dataclasses
from TikTokLiveProto.v3.webcast import model as proto_model

log = logging.getLogger(__name__)

#: Annotation prefix that `Message.parse`'s `data` argument shadows during a lazy build.
_SHADOWED_PREFIX = "data."
_done = False


def affected(module: ModuleType = proto_model) -> list[type]:
    """The message classes of `module` whose annotations name the shadowed sub-package."""
    found = []
    for value in vars(module).values():
        annotations = getattr(value, "__annotations__", None)
        if not isinstance(value, type) or not annotations or value.__module__ != module.__name__:
            continue
        if any(isinstance(hint, str) and _SHADOWED_PREFIX in hint for hint in annotations.values()):
            found.append(value)
    return found


def complete() -> None:
    """Build the affected classes' validators now (idempotent; a no-op once done)."""
    global _done
    if _done:
        return
    for cls in affected():
        try:
            pydantic.dataclasses.rebuild_dataclass(typing.cast(typing.Any, cls), force=True)
        except pydantic.PydanticUserError as exc:  # a library layout we do not know: log, carry on
            log.warning("could not complete a TikTok message class", extra={"class": cls.__name__, "error": str(exc)})
    _done = True
