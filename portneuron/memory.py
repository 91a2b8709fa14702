"""Handing freed memory back to the operating system after setup's large temporaries.

glibc's malloc serves a block below its mmap threshold from the heap, and raises that
threshold to the size of each large block freed (up to 32 MiB), so after a model's build or
a plan's setup the temporaries' pages stay with the process: it stays as large as its
busiest moment. `give_back` returns the free pages (malloc_trim); elsewhere it does
nothing."""

from __future__ import annotations

import ctypes
import functools
import gc


@functools.cache
def _trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library: no search
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def give_back(collect: bool = False) -> None:
    """Return the heap's free pages to the operating system (glibc), after a step that
    freed large temporaries; `collect`: unreachable objects first (gc), after a step that
    made many Python objects."""
    if collect:
        gc.collect()
    trim = _trim()
    if trim is not None:
        trim(0)
