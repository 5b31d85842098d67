"""Returning a trial's freed heap to the OS (neuronas.search.heap): real allocations, real RSS."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from neuronas.search.heap import release_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's (Linux); elsewhere a no-op")
def test_freed_heap_blocks_below_a_live_one_go_back_to_the_os() -> None:
    # 96 MiB in 64 KiB blocks (under glibc's mmap threshold: from the heap), the last kept
    # alive so that the freed ones are a hole glibc's free() does not return by itself
    blocks = [bytearray(b"\x01" * (64 * 1024)) for _ in range(1536)]
    keep = blocks[-1]
    del blocks
    before = _rss_mib()
    assert release_freed_memory()
    after = _rss_mib()
    assert before - after > 48, (before, after)
    assert keep[0] == 1


@pytest.mark.skipif(GLIBC, reason="on glibc Linux the call is made (tested above)")
def test_elsewhere_it_does_nothing() -> None:
    assert release_freed_memory() is False
