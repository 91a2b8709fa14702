"""Handing freed memory back to the operating system after setup's large temporaries.

glibc's malloc serves a block below its mmap threshold from the heap, and raises that
threshold to the size of each large block freed (up to 32 MiB), so after a model's build or
a plan's setup the temporaries' pages stay with the process: it stays as large as its
busiest moment. Importing this module pins the threshold (MAPPED_BLOCK), and `give_back`
returns the heap's free pages (malloc_trim); elsewhere both do nothing.

A `scratch` array (the Hines matrix: each step clears it first) is a mapping of its own,
whose pages `forget` hands back between uses: a compiled epoch that gives each block
storage of its own then leaves the model-sized one untouched. `forget_rows` hands back the
pages of part of any array whose values there are dead (a copy moving through it)."""

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


def scratch(n: int, dtype=np.float64, shape: tuple[int, ...] = ()) -> np.ndarray:
    """`n` zeros (rows of `shape`), in pages of their own that `forget` can hand back."""
    dtype = np.dtype(dtype)
    size = n * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size == 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return np.zeros((n, *shape), dtype=dtype)
    private = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)  # shared pages would stay whole
    return np.frombuffer(private, dtype=dtype).reshape(n, *shape)


@functools.cache
def _madvise():
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        madvise = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def forget_rows(array: np.ndarray, lo: int, hi: int) -> None:
    """The pages wholly inside rows lo:hi of C-contiguous `array` back to the operating
    system: the values there are dead (they read as zeros after, or as they were where
    the system keeps them). Only whole pages go, so nothing else's memory is touched;
    where the system has no madvise, nothing."""
    lo, hi = max(lo, 0), min(hi, len(array))
    if hi > lo:
        start = array.__array_interface__["data"][0]
        row = array.strides[0] if array.ndim > 1 else array.itemsize
        forget_bytes(start + lo * row, start + hi * row)


def forget_bytes(start: int, end: int) -> None:
    """The pages wholly inside addresses start:end back to the operating system (their
    values dead, as `forget_rows`)."""
    madvise = _madvise()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    end = end // mmap.PAGESIZE * mmap.PAGESIZE
    if madvise is not None and end > first:
        madvise(first, end - first, mmap.MADV_DONTNEED)


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
