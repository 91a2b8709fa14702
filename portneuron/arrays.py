"""Array helpers the start-up path shares."""

from __future__ import annotations

import numpy as np


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-D array: np.unique's, without its first call's
    import of numpy.ma (numpy 2: 15 to 35 ms of a run's start-up)."""
    ordered = np.sort(values, kind="stable")
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def increasing(values: np.ndarray, strict: bool = True, chunk: int = 1 << 16) -> bool:
    """Whether `values` increase (`strict`) or never decrease, looked at `chunk` at a time
    (no temporary as long as they)."""
    for lo in range(0, len(values) - 1, chunk):
        part = values[lo : lo + chunk + 1]
        if not ((part[1:] > part[:-1]) if strict else (part[1:] >= part[:-1])).all():
            return False
    return True
