"""Placing cells on ranks: longest-first bin packing by cost, as NEURON's load balance does.

A cell's cost is what one step of it takes; the first measure is its compartment count
(every compartment costs a row of the cable solve and its mechanisms' kernels). Cells are
taken from the costliest down (ties by gid) and each goes to the rank with the least load so
far (ties: the lowest rank), which is within 4/3 of the best possible placement's largest
load (Graham's bound).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def place(costs: Sequence[float], nranks: int) -> np.ndarray:
    """The rank of each item (cell), by longest-first bin packing of `costs`."""
    costs = np.asarray(costs, dtype=np.float64)
    rank = np.zeros(len(costs), dtype=np.int64)
    loads = [(0.0, r) for r in range(nranks)]  # (load, rank): a heap
    for item in sorted(range(len(costs)), key=lambda k: (-costs[k], k)):
        load, r = heapq.heappop(loads)
        rank[item] = r
        heapq.heappush(loads, (load + float(costs[item]), r))
    return rank


def loads(costs: Sequence[float], rank: np.ndarray, nranks: int) -> np.ndarray:
    """Each rank's summed cost under a placement."""
    return np.bincount(rank, weights=np.asarray(costs, dtype=np.float64), minlength=nranks)
