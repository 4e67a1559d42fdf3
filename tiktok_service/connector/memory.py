"""Give freed heap memory back to the OS.

A connector decodes bursts of messages; glibc keeps the freed memory of a burst in its heap,
so RSS (what the scheduler and the autoscaler see) stays at the burst's peak. `malloc_trim`
returns free pages at the top and inside the heap. It costs about a millisecond and runs once
per heartbeat. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_loaded = False


def release() -> None:
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = libc.malloc_trim
        except (OSError, AttributeError):
            _trim = None
    if _trim is not None:
        _trim(0)
