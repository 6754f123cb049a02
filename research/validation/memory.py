"""Give the C allocator's free memory back to the system between sweep batches.

A threaded sweep allocates and frees bars-long arrays (moving averages, targets) in each worker
thread; glibc keeps what a thread frees in that thread's arena for reuse, so the process's
resident memory grows with the garbage of every thread, never shrinking, though the live data
stay the same. :func:`release_free_memory` asks glibc to return the free pages of all arenas
(``malloc_trim(0)``), which changes no live object. Elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free memory to the system; ``True`` if any was released."""
    import os

    if os.environ.get("NOTRIM"):
        return False
    import os

    if os.environ.get("NOTRIM"):
        return False
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
