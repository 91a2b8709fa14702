"""Placing cells on ranks: longest-first bin packing by cost, as NEURON's load balance does.

The unit placed is a block: cells of one shape, as many as a compiled epoch runs as vector
lanes together (place_blocks); splitting a shape's block between ranks would leave lanes
idle on each.

A cell's cost is what one step of it runs, counted from the IR (portneuron.cost); a
dataset's group, until its cells are read, the size of its files. Items are taken from the
costliest down (ties by index) and each goes to the rank with the least load so far (ties:
the lowest rank), which is within 4/3 of the best possible placement's largest load
(Graham's bound).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from portneuron.errors import PortneuronError


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


def place_blocks(
    costs: Sequence[float], shapes: Sequence[int], width: int, nranks: int
) -> np.ndarray:
    """The rank of each cell, placing whole blocks: cells of one shape, `width` at a time
    in index order (what a compiled epoch runs as one block of vector lanes: split over
    ranks, a shape's cells would leave lanes empty on each), by longest-first packing of
    the blocks' summed costs."""
    costs = np.asarray(costs, dtype=np.float64)
    shapes = np.asarray(shapes)
    blocks: list[np.ndarray] = []
    for shape in np.unique(shapes):
        cells = np.flatnonzero(shapes == shape)
        blocks += [cells[k : k + width] for k in range(0, len(cells), width)]
    where = place([costs[b].sum() for b in blocks], nranks)
    rank = np.zeros(len(costs), dtype=np.int64)
    for block, r in zip(blocks, where):
        rank[block] = r
    return rank


def loads(costs: Sequence[float], rank: np.ndarray, nranks: int) -> np.ndarray:
    """Each rank's summed cost under a placement."""
    return np.bincount(rank, weights=np.asarray(costs, dtype=np.float64), minlength=nranks)


def imbalance(loads: Sequence[float]) -> float:
    """The largest load over the mean, less 1."""
    mean = sum(loads) / len(loads)
    return max(loads) / mean - 1 if mean > 0 else 0.0


def mine(rank: np.ndarray, this: int, nranks: int, what: str) -> np.ndarray:
    """Which items a placement gives rank `this`; a rank left without any is an error
    (`what`: the items and their number, for the message)."""
    here = rank == this
    if not here.any():
        raise PortneuronError(
            f"{what} for {nranks} ranks, none for this one; run on at most {len(rank)} ranks"
        )
    return here
