"""Give the memory a finished trial freed back to the operating system (glibc Linux only).

A search trains candidates of very different sizes one after another in the same process.
glibc's ``malloc`` keeps the pages of freed heap blocks resident (it hands them back only from
the top of the heap, and raises its mmap threshold to the size of every large block freed, so
later large tensors come from the heap too); the holes that candidates of other sizes leave
stay in the process's resident set and it grows from trial to trial.  ``malloc_trim(0)``
(glibc >= 2.8) walks every arena and returns the whole free pages inside the heap as well as
its top (``madvise(MADV_DONTNEED)``).  The cost is a walk over the free lists: 4-8 ms of CPU
after a training here, against trials of seconds (``benchmarks/RESULTS.md``, "Memory").

Elsewhere (macOS, musl, Windows) there is no such call and :func:`release_freed_memory` does
nothing.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys
from collections.abc import Callable

__all__ = ["release_freed_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter is linked with
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the free pages of the C heap to the OS; whether any were returned (False where
    the C library offers no way to, i.e. everywhere but glibc Linux)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
