"""Handing freed memory back to the operating system after setup's large temporaries.

glibc's malloc serves a block below its mmap threshold from the heap, and raises that
threshold to the size of each large block freed (up to 32 MiB), so after a model's build or
a plan's setup the temporaries' pages stay with the process: it stays as large as its
busiest moment. Importing this module pins the threshold (MAPPED_BLOCK), and `give_back`
returns the heap's free pages (malloc_trim); elsewhere both do nothing.

A `scratch` array (the Hines matrix: each step clears it first) is a mapping of its own,
whose pages `forget` hands back between uses: a compiled epoch that gives each block
storage of its own then leaves the model-sized one untouched."""

from __future__ import annotations

import ctypes
import functools
import gc
import mmap

import numpy as np

#: Blocks at least this large get mappings of their own (glibc's M_MMAP_THRESHOLD).
MAPPED_BLOCK = 1 << 20


def _map_large_blocks() -> None:
    """Pin glibc's mmap threshold at MAPPED_BLOCK: a large temporary, once freed, goes back
    to the system at once, where glibc would otherwise serve blocks up to the largest
    freed yet (up to 32 MiB) from the heap, and the smaller ones it then carves there keep
    the big ones' pages (a model's setup and a run's lay-out free one model-sized array
    after another). Elsewhere nothing."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(-3, MAPPED_BLOCK)  # M_MMAP_THRESHOLD


_map_large_blocks()


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


def scratch(n: int) -> np.ndarray:
    """`n` float64 zeros, in pages of their own that `forget` can hand back."""
    if n == 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return np.zeros(n)
    private = mmap.mmap(-1, 8 * n, flags=mmap.MAP_PRIVATE)  # shared pages would stay whole
    return np.frombuffer(private, dtype=np.float64)


def forget(array: np.ndarray) -> None:
    """The pages of a `scratch` array (or a view of one) back to the operating system:
    its values are dead (they read as zeros after, or as they were where the system keeps
    them); elsewhere nothing."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer's
        base = base.obj
    if isinstance(base, mmap.mmap):
        base.madvise(mmap.MADV_DONTNEED)
