"""Placing cells on ranks: longest-first bin packing by cost, as NEURON's load balance does.

The unit placed is a block: cells of one shape, as many as a compiled epoch runs as vector
lanes together (place_blocks); splitting a shape's block between ranks would leave lanes
idle on each. Cells that must share a rank (gap junctions' components) are placed by
component instead.

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


def place(costs: Sequence[float], nranks: int, speeds: Sequence[float] | None = None) -> np.ndarray:
    """The rank of each item (cell), by longest-first bin packing of `costs`. With `speeds`
    (ranks that run at different rates: different backends), each item goes where it
    would finish first, (load + cost) / speed (ties: the lowest rank)."""
    costs = np.asarray(costs, dtype=np.float64)
    rank = np.zeros(len(costs), dtype=np.int64)
    order = sorted(range(len(costs)), key=lambda k: (-costs[k], k))
    if speeds is not None:
        rate = np.asarray(speeds, dtype=np.float64)
        load = np.zeros(nranks)
        for item in order:
            r = int(np.argmin((load + costs[item]) / rate))
            rank[item] = r
            load[r] += costs[item]
        # a rank too slow to be given anything still takes one item, the smallest of the
        # rank that finishes last, while there are items enough: a rank runs what it has
        for empty in np.flatnonzero(np.bincount(rank, minlength=nranks) == 0):
            counts = np.bincount(rank, minlength=nranks)
            donors = np.flatnonzero(counts > 1)
            if len(donors) == 0:
                break
            donor = donors[np.argmax(load[donors] / rate[donors])]
            item = next(k for k in reversed(order) if rank[k] == donor)
            rank[item] = empty
            load[donor] -= costs[item]
            load[empty] += costs[item]
        return rank
    loads = [(0.0, r) for r in range(nranks)]  # (load, rank): a heap
    for item in order:
        load, r = heapq.heappop(loads)
        rank[item] = r
        heapq.heappush(loads, (load + float(costs[item]), r))
    return rank


def place_blocks(
    costs: Sequence[float],
    shapes: Sequence[int],
    width: int,
    nranks: int,
    together: Sequence[Sequence[int]] = (),
    speeds: Sequence[float] | None = None,
) -> np.ndarray:
    """The rank of each cell, placing whole blocks: cells of one shape, `width` at a time
    in index order (what a compiled epoch runs as one block of vector lanes: split over
    ranks, a shape's cells would leave lanes empty on each), by longest-first packing of
    the items' summed costs. Each group of cells in `together` (cells coupled within a
    step, as gap junctions couple them) lands on one rank: the cells that groups join are
    one item, placed by cell (a rank's layout fills its blocks with whatever cells it is
    given), and the other cells go by blocks as before. (Joining the blocks that hold a
    group's cells instead made random pairs join every block into one.) `speeds`: as
    place's."""
    costs = np.asarray(costs, dtype=np.float64)
    shapes = np.asarray(shapes)
    groups = [np.asarray(g, dtype=np.int64) for g in together if len(g) > 1]
    key = join(len(costs), groups)  # a coupled cell's key: its component's representative
    coupled = np.zeros(len(costs), dtype=bool)
    for group in groups:
        coupled[group] = True
    block = len(costs)  # the other cells' keys: their blocks', after every cell's number
    for shape in np.unique(shapes[~coupled]):
        cells = np.flatnonzero((shapes == shape) & ~coupled)
        for k in range(0, len(cells), width):
            key[cells[k : k + width]] = block
            block += 1
    _, item_of_cell = np.unique(key, return_inverse=True)
    where = place(np.bincount(item_of_cell, weights=costs), nranks, speeds)
    return where[item_of_cell].astype(np.int64)


def join(n: int, groups: Sequence[np.ndarray]) -> np.ndarray:
    """Each of `n` elements' representative once every group's elements are joined
    (union-find): elements share a representative exactly when groups connect them."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        if len(group):
            first = root(int(group[0]))
            for x in group[1:]:
                parent[root(int(x))] = first
    return np.array([root(x) for x in range(n)], dtype=np.int64)


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
