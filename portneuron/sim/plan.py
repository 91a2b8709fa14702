"""What the epoch driver is built from and given: the plan of one epoch's work (its phases,
the cells' interleaved layout, the model arrays it lays out in place) and the epoch's events.
portneuron.sim.epoch makes them from a Simulation, portneuron.sim.driver turns them into an
IR kernel and its arguments; backends see only those."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portneuron.ir import Kernel
from portneuron.memory import forget, give_back


def memory_key(array: np.ndarray) -> tuple:
    """An array's identity: where its data is, how long, of what type."""
    return array.__array_interface__["data"][0], array.nbytes, array.dtype.str


@dataclass
class Phase:
    """One kernel of the step, with its arguments; block b runs lanes ranges[b]:ranges[b+1]."""

    kernel: Kernel
    args: dict[str, Any]
    ranges: np.ndarray  # int64, nblocks + 1


class EpochEvents:
    """One epoch's events for real cells, in delivery order within each block, in buffers
    kept from epoch to epoch: `generation` changes when they move (grow).

    Block b's events are start[b]:start[b+1] of `t`, `phase` (the receive phase that runs
    it) and `lane` (its lane in that phase's `receive_args[phase]` event arrays)."""

    def __init__(self, plan: EpochPlan) -> None:
        self.plan = plan
        self.start = np.zeros(plan.nblocks + 1, dtype=np.int32)  # the driver's ev.start
        self.phase_of_set = {s: j for j, s in enumerate(plan.receive_sets)}
        self.instance_block = {s: plan.instances[s].block_of() for s in plan.receive_sets}
        self.generation = 0
        self._allocate(16)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.t = np.zeros(capacity)
        self.phase = np.zeros(capacity, dtype=np.int32)
        self.lane = np.zeros(capacity, dtype=np.int32)
        self.row = np.zeros(capacity, dtype=np.int32)  # weight rows, as event.netcon
        self.receive_args = []
        for phase in self.plan.receive:
            args = dict(phase.args)
            args["event.instance"] = np.zeros(capacity, dtype=np.int32)
            args["event.netcon"] = np.zeros(capacity, dtype=np.int32)
            args["event.t"] = np.zeros(capacity)
            args["event.flag"] = np.zeros(capacity)
            self.receive_args.append(args)
        self.generation += 1

    def pack(self, picked: list[tuple[int, int, float, int, float, int]]) -> None:
        """Store (block, phase, t, instance, flag, weight row) events, given in time order;
        instances in the plan's sorted order (`Instances`)."""
        if not picked:
            self.start[:] = 0
            return
        if len(picked) > self.capacity:
            self._allocate(2 * len(picked))
        used = [0] * len(self.receive_args)
        blocks = np.empty(len(picked), dtype=np.int64)
        lanes = np.empty(len(picked), dtype=np.int32)
        for k, (block, j, t, instance, flag, row) in enumerate(picked):
            args, lane = self.receive_args[j], used[j]
            args["event.instance"][lane], args["event.netcon"][lane] = instance, row
            args["event.t"][lane], args["event.flag"][lane] = t, flag
            used[j] += 1
            blocks[k], lanes[k] = block, lane
        order = np.argsort(blocks, kind="stable")  # keeps time order within a block
        n = len(picked)
        self.t[:n] = [picked[k][2] for k in order]
        self.phase[:n] = [picked[k][1] for k in order]
        self.lane[:n] = lanes[order]
        self.row[:n] = [picked[k][5] for k in order]
        self.start[:] = np.searchsorted(blocks[order], np.arange(len(self.start)), side="left")


def depth(parent: np.ndarray) -> np.ndarray:
    """Each node's distance from its root (parent -1), by pointer jumping: every round,
    a node's known ancestor becomes that ancestor's known ancestor."""
    up = np.where(parent >= 0, parent, np.arange(len(parent), dtype=parent.dtype))
    out = (parent >= 0).astype(np.int32)
    while (up != up[up]).any():
        out += out[up]
        up = up[up]
    return out


#: Nodes a layout works on at once (whole cells): its temporaries stay this small.
CHUNK_NODES = 1 << 16


def _chunks(cell_first: np.ndarray) -> list[tuple[int, int]]:
    """The cells in runs of whole cells of about CHUNK_NODES nodes (at least one cell)."""
    out, lo = [], 0
    ncell = len(cell_first) - 1
    while lo < ncell:
        hi = int(np.searchsorted(cell_first, cell_first[lo] + CHUNK_NODES, side="right")) - 1
        hi = min(max(hi, lo + 1), ncell)
        out.append((lo, hi))
        lo = hi
    return out


def local_parents(parent: np.ndarray, first: int) -> np.ndarray:
    """Parents numbered from node `first` on (roots -1)."""
    return np.where(parent >= 0, parent - first, -1)


class Interleaved:
    """The nodes of each block of `width` cells stored interleaved, as CoreNEURON's
    cell_permute: row k of a block holds the k-th node of each of its cells, node
    base[block] + k*width + j for the cell in slot j. Slot s holds model cell cells[s]
    (-1: empty); a block's cells need not be neighbours in the model. A cell's nodes go to
    rows by depth (level by level from the root, nodes of one level in model order): a
    parent's row is before its children's, siblings stay in order (so every sum is formed
    in the same order as in the model's numbering), and consecutive rows are mostly
    independent, which keeps the divisions of the Hines solve from waiting on each other.

    A block has as many rows as its largest cell has nodes; the rows a smaller cell lacks
    are padding, which `count` (the nodes of each cell slot) keeps kernels off. Where the
    cells of a block have one shape (`uniform`), `row_parent[row0[block] + k]` is the
    parent row of row k. `perm` takes the model's node numbers to the interleaved ones;
    `place` (`size` long, `perm` its start) also gives the padding a place: a node array
    `size` long (the model's nodes first, then padding) is laid out by moving element i
    to place[i] (EpochPlan.lay_out)."""

    NODE_INDEX = ("node_index", "presyn.node")

    def __init__(self, cell_first: np.ndarray, parent: np.ndarray, cells: np.ndarray, width: int):
        counts = np.diff(cell_first).astype(np.int32)
        ncell, nnode = len(counts), int(cell_first[-1])
        nblocks = len(cells) // width
        self.cells, self.width = np.asarray(cells, dtype=np.int64), width
        slot = np.empty(ncell, dtype=np.int64)
        filled = np.flatnonzero(self.cells >= 0)
        slot[self.cells[filled]] = filled
        self.count = np.zeros(nblocks * width, dtype=np.int32)
        self.count[filled] = counts[self.cells[filled]]
        self.rows = self.count.reshape(nblocks, width).max(axis=1, initial=0).astype(np.int32)
        self.base = np.zeros(nblocks + 1, dtype=np.int64)
        np.cumsum(self.rows.astype(np.int64) * width, out=self.base[1:])
        # the place of each cell's row 0; node i of a cell goes to start + row(i) * width
        start = self.base[slot // width] + slot % width
        self.place = np.empty(int(self.base[-1]), dtype=np.int32)
        self.perm = self.place[:nnode]
        for lo_cell, hi_cell in _chunks(cell_first):  # bounded temporaries
            lo, hi = int(cell_first[lo_cell]), int(cell_first[hi_cell])
            local = local_parents(parent[lo:hi], lo)
            cell = np.repeat(np.arange(lo_cell, hi_cell), counts[lo_cell:hi_cell])
            order = np.lexsort((depth(local), cell))  # stable: a level's nodes in model order
            row = np.empty(hi - lo, dtype=np.int64)
            row[order] = np.arange(hi - lo)
            row -= cell_first[cell] - lo
            self.perm[lo:hi] = start[cell] + row * width
        padding = np.ones(len(self.place), dtype=bool)
        padding[self.perm] = False
        self.place[nnode:] = np.flatnonzero(padding)
        del padding
        roots = self.perm[cell_first[:-1]]
        # the root of each slot's cell; an empty slot watches its block's first node
        self.slot_root = np.repeat(self.base[:-1], width).astype(np.int32)
        self.slot_root[filled] = roots[self.cells[filled]]
        self.row0 = np.zeros(nblocks, dtype=np.int32)
        self.row0[1:] = np.cumsum(self.rows)[:-1]
        self.row_parent = np.full(int(self.rows.sum()), -1, dtype=np.int32)
        self.uniform = np.zeros(nblocks, dtype=np.int32)
        for block in range(nblocks):
            members = [c for c in self.cells[block * width : (block + 1) * width] if c >= 0]
            if not members or len({counts[c] for c in members}) != 1:
                continue
            lo = [int(cell_first[c]) for c in members]
            n = int(counts[members[0]])
            shape = local_parents(parent[lo[0] : lo[0] + n], lo[0])
            if all((local_parents(parent[x : x + n], x) == shape).all() for x in lo[1:]):
                row = (self.perm[lo[0] : lo[0] + n] - start[members[0]]) // width
                self.uniform[block] = 1
                self.row_parent[self.row0[block] + row] = np.where(
                    shape >= 0, row[np.maximum(shape, 0)], -1
                )

    def block_cells(self, block: int) -> list[int]:
        """The model cells of a block."""
        return [int(c) for c in self.cells[block * self.width : (block + 1) * self.width] if c >= 0]

    def block_args(self) -> dict[str, np.ndarray]:
        """The arguments of the interleaved cable kernels that describe the blocks."""
        return {
            "block.base": self.base[:-1].astype(np.int32),
            "block.rows": self.rows,
            "block.uniform": self.uniform,
            "block.row0": self.row0,
            "row.parent": self.row_parent,
            "slot.count": self.count,
        }

    @property
    def size(self) -> int:
        return int(self.base[-1])

    @property
    def nblocks(self) -> int:
        return len(self.base) - 1

    def node_array(self, name: str, array: np.ndarray) -> np.ndarray:
        """An interleaved copy of node array `name`: padding is 0, or for node.parent the
        node itself (what EpochPlan.lay_out makes of a padded array in place)."""
        if name == "node.parent":
            out = np.arange(self.size, dtype=np.int32)
            child = np.asarray(array) >= 0
            out[self.perm[child]] = self.perm[np.asarray(array)[child]]
        else:
            out = np.zeros(self.size, dtype=np.asarray(array).dtype)
            out[self.perm] = array
        return out

    def args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Interleaved copies of kernel arguments: node arrays laid out, node numbers
        mapped (the plan lays out the model's own arrays instead)."""
        out = dict(args)
        for name, value in args.items():
            if name.startswith("node."):
                out[name] = self.node_array(name, value)
            elif name in self.NODE_INDEX or name.endswith(".node_index"):
                out[name] = self.perm[value]
        return out


class Sorted:
    """The elements of one array space (a mechanism set's instances, an ion's, the spike
    detectors) sorted by their node in the interleaved layout, stably (elements of one
    node keep their order, so every sum into a node is formed as in the model's order).
    Block b's elements are then ranges[b]:ranges[b+1]. `perm` takes a model element to
    its place, `order` a place to its model element."""

    def __init__(self, layout_node: np.ndarray, layout: Interleaved) -> None:
        taken = np.zeros(layout.size, dtype=bool)
        taken[layout_node] = True
        if np.count_nonzero(taken) == len(layout_node):  # one element per node at most:
            before = np.cumsum(taken, dtype=np.int32)  # a place's rank, without a sort
            del taken
            self.perm = before[layout_node]
            self.perm -= 1
            base = np.asarray(layout.base, dtype=np.int64)
            self.ranges = np.where(base > 0, before[np.maximum(base - 1, 0)], 0).astype(np.int64)
            return
        del taken
        order = np.argsort(layout_node, kind="stable")
        self.ranges = np.searchsorted(layout_node[order], layout.base).astype(np.int64)
        self.perm = np.empty(len(order), dtype=np.int32)
        self.perm[order] = np.arange(len(order), dtype=np.int32)

    @functools.cached_property
    def order(self) -> np.ndarray:
        """The model element at each place (kept only for the spaces that ask)."""
        order = np.empty_like(self.perm)
        order[self.perm] = np.arange(len(order), dtype=order.dtype)
        return order

    def block_of(self) -> np.ndarray:
        """The block of each of the model's elements."""
        places = np.arange(len(self.perm))
        return (np.searchsorted(self.ranges, places, side="right") - 1)[self.perm]


@dataclass
class Permuted:
    """A model array that the plan's kernels read in the layout's order, in place: from
    `EpochPlan.lay_out` to `restore` element i is at place[i]. An index array's values are
    then places too (`points_to`: the places of the space it numbers), and a node's
    parent (`parent`) is a root's own place, not -1."""

    array: np.ndarray
    place: np.ndarray  # int32, as long as `array`
    points_to: np.ndarray | None = None
    parent: bool = False

    def lay_out(self) -> None:
        """Into the layout: one whole copy of the array, the rest a chunk at a time."""
        values = self.array.copy()
        for part in _parts(len(values)):
            place, chunk = self.place[part], values[part]
            if self.parent:
                chunk = np.where(chunk >= 0, self.points_to[np.maximum(chunk, 0)], place)
            elif self.points_to is not None:
                chunk = self.points_to[chunk]
            self.array[place] = chunk

    def restore(self, inverse: np.ndarray | None) -> None:
        """Back to the model's order; `inverse`: of `points_to`."""
        values = np.empty_like(self.array)
        for part in _parts(len(values)):
            place = self.place[part]
            chunk = self.array[place]
            if self.parent:
                root = chunk == place
                chunk = inverse[chunk]
                chunk[root] = -1
            elif self.points_to is not None:
                chunk = inverse[chunk]
            values[part] = chunk
        self.array[:] = values


def _parts(n: int) -> list[slice]:
    """0 .. n - 1 in slices of CHUNK_NODES: what indexing with a slice's places makes (their
    64-bit copy, the values taken) stays that small."""
    return [slice(lo, lo + CHUNK_NODES) for lo in range(0, n, CHUNK_NODES)]


def _inverse(places: np.ndarray) -> np.ndarray:
    """The element at each place (a chunk at a time)."""
    inverse = np.empty_like(places)
    for part in _parts(len(places)):
        inverse[places[part]] = np.arange(
            part.start, part.start + len(places[part]), dtype=places.dtype
        )
    return inverse


@dataclass
class EpochPlan:
    width: int
    layout: Interleaved  # layout.cells: the model cells of each block's slots
    v: np.ndarray  # the voltages, with padding: laid out from lay_out to restore
    permuted: list[Permuted]  # every model array the kernels see, v among them
    instances: dict[int, Sorted]  # of each real mechanism set
    dt: float
    threshold: Phase | None
    first_half: list[Phase]
    second_half: list[Phase]
    receive: list[Phase]  # NET_RECEIVE of the mechanism sets in `receive_sets`
    receive_sets: list[int]
    threshold_presyn: np.ndarray  # int64: presyn of each threshold lane
    sends: bool  # whether a NET_RECEIVE sends self-events (net_send)
    # the recorded nodes, sorted: block b records record_node[record_start[b]:...] into
    # columns record_column[...] of each step's row
    record_start: np.ndarray = field(init=False)  # int64 [nblocks + 1]
    record_node: np.ndarray = field(init=False)  # int32
    record_column: np.ndarray = field(init=False)  # int32
    laid_out: bool = False
    #: node arrays each block's step writes before it reads them and nothing reads after
    #: it (the matrix): not laid out, and a backend may give each block storage of its own
    scratch: list[np.ndarray] = field(default_factory=list)

    def lay_out(self) -> None:
        """The model's arrays into the layout, in place: from here to `restore` the state
        is the layout's (CoreNEURON permutes its data once, at setup)."""
        if not self.laid_out:
            for item in self.permuted:
                item.lay_out()
            for array in self.scratch:  # what a step before left there is dead
                forget(array)
            self.laid_out = True
            give_back()  # each array's temporary copy

    def restore(self) -> None:
        """The model's arrays back in the model's order, where a user reads them."""
        if not self.laid_out:
            return
        by_space: dict[int, list[Permuted]] = {}  # one inverse alive at a time
        for item in self.permuted:
            key = -1 if item.points_to is None else id(item.points_to)
            by_space.setdefault(key, []).append(item)
        for items in by_space.values():
            inverse = None
            if items[0].points_to is not None:
                inverse = _inverse(items[0].points_to)
            for item in items:
                item.restore(inverse)
            del inverse
        self.laid_out = False
        give_back()

    @property
    def nblocks(self) -> int:
        return self.layout.nblocks

    def places(self, array: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where elements `index` of model array `array` are from `lay_out` to `restore`:
        the array they are in then (a node array's buffer, with the padding), and their
        places there (`array` and `index` themselves where the plan does not lay it out)."""
        start = memory_key(array)[0]
        for item in self.permuted:
            if memory_key(item.array)[0] == start and item.array.dtype == array.dtype:
                return item.array, item.place[index]
        return array, index

    def phases(self) -> list[Phase]:
        """Every phase, in the order backends number them: threshold (if any), first
        half, second half, receive."""
        head = [self.threshold] if self.threshold is not None else []
        return head + self.first_half + self.second_half + self.receive

    def set_record(self, record: np.ndarray) -> None:
        at = self.layout.perm[np.asarray(record, dtype=np.int64)]
        order = np.argsort(at, kind="stable")
        self.record_node = at[order]
        self.record_start = np.searchsorted(self.record_node, self.layout.base, side="left")
        self.record_column = order.astype(np.int32)
