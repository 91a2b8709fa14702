"""What the epoch driver is built from and given: the plan of one epoch's work (its phases,
the cells' interleaved layout, the model arrays it lays out in place) and the epoch's events.
portneuron.sim.epoch makes them from a Simulation, portneuron.sim.driver turns them into an
IR kernel and its arguments; backends see only those."""

from __future__ import annotations

import functools
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portneuron.arrays import distinct, increasing
from portneuron.ir import Kernel
from portneuron.memory import (
    forget,
    forget_bytes,
    forget_rows,
    give_back,
    scratch,
)


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


#: Places a lay-out or restore moves at once (runs of whole blocks): its temporaries, on
#: the heap, stay this small.
RUN_PLACES = 1 << 14

#: Arrays of at least this many elements are laid out and restored a run of blocks at a
#: time, which saves a whole copy's memory (and an index array's inverse) at about three
#: times a copy's time (the 1 M-compartment ringtest: 0.5 s against 0.17 s to lay out and
#: restore every array); smaller ones are copied whole.
RUN_ARRAYS = 1 << 19


def _chunks(cell_first: np.ndarray, size: int = CHUNK_NODES) -> list[tuple[int, int]]:
    """The cells in runs of whole cells of about `size` nodes (at least one cell)."""
    out, lo = [], 0
    ncell = len(cell_first) - 1
    while lo < ncell:
        hi = int(np.searchsorted(cell_first, cell_first[lo] + size, side="right")) - 1
        hi = min(max(hi, lo + 1), ncell)
        out.append((lo, hi))
        lo = hi
    return out


def probe_groups(probes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(array, element) pairs by array: each array once, with its elements and their
    positions among `probes` (int64)."""
    groups: dict[tuple, tuple[np.ndarray, list, list]] = {}
    for k, (array, index) in enumerate(probes):
        group = groups.setdefault(memory_key(array), (array, [], []))
        group[1].append(index)
        group[2].append(k)
    return [(a, np.array(i, dtype=np.int64), np.array(c, dtype=np.int64))
            for a, i, c in groups.values()]  # fmt: skip


def local_parents(parent: np.ndarray, first: int) -> np.ndarray:
    """Parents numbered from node `first` on (roots -1)."""
    return np.where(parent >= 0, parent - first, -1)


def spans(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """starts[0]:stops[0], starts[1]:stops[1], ... one after another (int64)."""
    lengths = np.asarray(stops, dtype=np.int64) - starts
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def cell_starts(node_index: np.ndarray, cell_first: np.ndarray) -> np.ndarray | None:
    """Where elements on nodes `node_index` are in node order (so each cell's are one run,
    cells in order), each cell's first element and the end (int64); otherwise None."""
    if not increasing(node_index, strict=False):
        return None
    return np.searchsorted(node_index, cell_first).astype(np.int64)


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
        self.cell_first = np.asarray(cell_first, dtype=np.int64)
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

    def run_cells(self, b0: int, b1: int) -> np.ndarray:
        """The model cells of blocks b0:b1."""
        cells = self.cells[b0 * self.width : b1 * self.width]
        return cells[cells >= 0]

    def elements(self, b0: int, b1: int) -> tuple[np.ndarray, int, int]:
        """The model nodes (padding after the model's, as `place` numbers it) whose
        places are those of blocks b0:b1, and those places' first and end."""
        cells = self.run_cells(b0, b1)
        nodes = spans(self.cell_first[cells], self.cell_first[cells + 1])
        lo, hi = int(self.base[b0]), int(self.base[b1])
        nnode = int(self.cell_first[-1])
        padding = np.searchsorted(self.place[nnode:], [lo, hi])  # increasing: flatnonzero's
        return np.concatenate([nodes, np.arange(*(padding + nnode))]), lo, hi

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
    its place, `order` a place to its model element. `cell_start` (cell_starts), where
    the model's elements are in node order, lets `elements` find a block's."""

    def __init__(
        self, layout_node: np.ndarray, layout: Interleaved, cell_start: np.ndarray | None = None
    ) -> None:
        self.cell_start = cell_start
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

    @classmethod
    def by_cells(
        cls, node_index: np.ndarray, layout: Interleaved, cell_start: np.ndarray
    ) -> Sorted:
        """The space of elements on model nodes `node_index` where each cell's are one
        run (`cell_start`): sorted a run of blocks at a time (the same order as sorting
        them all), with temporaries of a run's size."""
        self = cls.__new__(cls)
        self.cell_start = cell_start
        counts = np.diff(cell_start)
        slots = np.zeros(len(layout.cells), dtype=np.int64)
        filled = layout.cells >= 0
        slots[filled] = counts[layout.cells[filled]]
        self.ranges = np.zeros(layout.nblocks + 1, dtype=np.int64)
        np.cumsum(slots.reshape(layout.nblocks, layout.width).sum(axis=1), out=self.ranges[1:])
        self.perm = np.empty(int(cell_start[-1]), dtype=np.int32)
        for b0, b1 in _chunks(layout.base, RUN_PLACES):
            elements, lo, _ = self.elements(layout, b0, b1)
            order = np.lexsort((elements, layout.perm[node_index[elements]]))
            self.perm[elements[order]] = np.arange(lo, lo + len(elements), dtype=np.int32)
        return self

    @functools.cached_property
    def order(self) -> np.ndarray:
        """The model element at each place (kept only for the spaces that ask)."""
        order = np.empty_like(self.perm)
        order[self.perm] = np.arange(len(order), dtype=order.dtype)
        return order

    def elements(self, layout: Interleaved, b0: int, b1: int) -> tuple[np.ndarray, int, int]:
        """The model elements whose places are those of blocks b0:b1 (`cell_start` known),
        and those places' first and end."""
        cells = layout.run_cells(b0, b1)
        elements = spans(self.cell_start[cells], self.cell_start[cells + 1])
        return elements, int(self.ranges[b0]), int(self.ranges[b1])

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
        if len(values) <= CHUNK_NODES:  # one chunk (a small model's arrays: few calls)
            self.array[self.place] = self._laid(values, self.place)
            return
        for part in _parts(len(values)):
            place = self.place[part]
            self.array[place] = self._laid(values[part], place)

    def restore(self, inverse: _Inverse | None) -> None:
        """Back to the model's order; `inverse`: of `points_to`."""
        lookup = None if inverse is None else inverse.__getitem__
        if len(self.array) <= CHUNK_NODES:
            self.array[:] = self._restored(self.array[self.place], self.place, lookup)
            return
        values = np.empty_like(self.array)
        for part in _parts(len(values)):
            place = self.place[part]
            values[part] = self._restored(self.array[place], place, lookup)
        self.array[:] = values

    def _laid(self, chunk: np.ndarray, place: np.ndarray) -> np.ndarray:
        """Model values of elements at `place` as the layout holds them (an index array's
        as places, a root's parent as its own place)."""
        if self.parent:
            return np.where(chunk >= 0, self.points_to[np.maximum(chunk, 0)], place)
        return chunk if self.points_to is None else self.points_to[chunk]

    def _restored(self, chunk: np.ndarray, place: np.ndarray, lookup) -> np.ndarray:
        """`_laid` undone; `lookup`: the element at each of `points_to`'s places."""
        if self.points_to is None:
            return chunk
        root = chunk == place
        chunk = lookup(chunk)
        if self.parent:
            chunk[root] = -1
        return chunk

    def fits(self, runs: list[tuple[int, int]], own: Space, to: Space) -> bool:
        """Whether the values held in each run of blocks number elements that the same
        blocks hold in their space (a cell's own nodes or ion instances), as
        `restore_in_runs` needs."""
        for b0, b1 in runs:
            elements, _, _ = own.elements(b0, b1)
            chunk = self.array[self.place[elements]]
            _, lo, hi = to.elements(b0, b1)
            if len(chunk) and (chunk.min() < lo or chunk.max() >= hi):
                return False
        return True

    def lay_out_in_runs(self, runs: list[tuple[int, int]], own: Space) -> None:
        """As `lay_out`, a run of blocks at a time: into a scratch array, the array's own
        pages going back as the cells on them are read, then back into the array as the
        scratch's go; so about one array's worth is resident throughout, not two."""
        out = scratch(len(self.array), self.array.dtype, self.array.shape[1:])
        read = _Reader(self.array, own.starts)
        for b0, b1 in runs:
            elements, _, _ = own.elements(b0, b1)
            place = self.place[elements]
            out[place] = self._laid(self.array[elements], place)
            read.cells(own.cells(b0, b1))
        _take(self.array, out)

    def restore_in_runs(
        self, runs: list[tuple[int, int]], own: Space, to: Space | None = None
    ) -> None:
        """As `restore`, a run of blocks at a time: into a scratch array whose pages fill
        as the array's go back, then back into the array as the scratch's go. `to`: the
        space the values number (`fits`)."""
        out = scratch(len(self.array), self.array.dtype, self.array.shape[1:])
        for b0, b1 in runs:
            elements, lo, hi = own.elements(b0, b1)
            place = self.place[elements]
            lookup = None
            if to is not None:  # the run's own inverse: its places are the run's
                targets, t_lo, t_hi = to.elements(b0, b1)
                inverse = np.empty(t_hi - t_lo, dtype=np.int64)
                inverse[self.points_to[targets] - t_lo] = targets
                lookup = lambda at, inverse=inverse, t_lo=t_lo: inverse[at - t_lo]  # noqa: E731
            out[elements] = self._restored(self.array[place], place, lookup)
            forget_rows(self.array, lo, hi)
        _take(self.array, out)


@dataclass
class Space:
    """Where a space's elements are, run by run of blocks: `elements(b0, b1)` the model
    elements placed in blocks b0:b1 and those places' first and end; `starts` each model
    cell's first element (cell c's are starts[c]:starts[c + 1]); `cells(b0, b1)` the
    model cells of blocks b0:b1."""

    elements: Callable[[int, int], tuple[np.ndarray, int, int]]
    starts: np.ndarray
    cells: Callable[[int, int], np.ndarray]


def _take(array: np.ndarray, out: np.ndarray) -> None:
    """`out`'s values into `array`, a chunk at a time, `out`'s pages going back as read."""
    for part in _parts(len(out)):
        array[part] = out[part]
        forget_rows(out, part.start, part.stop)


class _Reader:
    """Hands back the pages of a model array as a lay-out reads the cells on them: a page
    goes once every cell with elements on it is read (cell c's are starts[c]:starts[c+1];
    what lies after the last cell's, the nodes' padding, stays). Where a page does not
    hold whole elements, nothing goes."""

    def __init__(self, array: np.ndarray, starts: np.ndarray) -> None:
        self.array, self.starts = array, np.asarray(starts, dtype=np.int64)
        self.read = np.zeros(len(starts) - 1, dtype=bool)
        self.row = array.strides[0] if array.ndim > 1 else array.itemsize
        self.address = array.__array_interface__["data"][0]
        self.usable = mmap.PAGESIZE % self.row == 0 and self.address % self.row == 0

    def cells(self, cells: np.ndarray) -> None:
        """Cells `cells` are read: the pages now wholly read go back."""
        if not self.usable or not len(cells):
            return
        self.read[cells] = True
        page, row, address, starts = mmap.PAGESIZE, self.row, self.address, self.starts
        lo, hi = starts[cells], starts[cells + 1]
        lo, hi = lo[hi > lo], hi[hi > lo]
        pages = distinct(spans((address + lo * row) // page, (address + hi * row - 1) // page + 1))
        first = (pages * page - address) // row  # each page's first element
        end = first + page // row
        inside = (first >= 0) & (end <= starts[-1])  # wholly in, before the padding
        pages, first, end = pages[inside], first[inside], end[inside]
        c0 = np.searchsorted(starts, first, side="right") - 1
        c1 = np.searchsorted(starts, end - 1, side="right") - 1
        count = np.concatenate([[0], np.cumsum(self.read)])
        pages = pages[count[c1 + 1] - count[c0] == c1 - c0 + 1]
        if len(pages):
            cut = np.flatnonzero(np.diff(pages) != 1) + 1  # runs of adjacent pages
            lows, highs = pages[np.r_[0, cut]], pages[np.r_[cut - 1, len(pages) - 1]] + 1
            for a, b in zip((lows * page).tolist(), (highs * page).tolist()):
                forget_bytes(a, b)


def _large(item: Permuted, spaces: dict[int, Space]) -> Space | None:
    """The space of an array that a plan moves a run of blocks at a time (RUN_ARRAYS), if
    its cells' elements are known."""
    return spaces.get(id(item.place)) if len(item.array) >= RUN_ARRAYS else None


def _parts(n: int) -> list[slice]:
    """0 .. n - 1 in slices of CHUNK_NODES: what indexing with a slice's places makes (their
    64-bit copy, the values taken) stays that small."""
    return [slice(lo, lo + CHUNK_NODES) for lo in range(0, n, CHUNK_NODES)]


class _Inverse:
    """The element at each place of `places` (`inverse[places] = elements`), for the
    places that arrays `held` hold: where those are few, a sorted table of them alone
    (found a chunk of `places` at a time), else every place's."""

    def __init__(self, places: np.ndarray, held: list[np.ndarray]) -> None:
        self.keys = None
        if 4 * sum(a.size for a in held) >= len(places):
            self.table = _inverse(places)
            return
        self.keys = distinct(np.concatenate([a.ravel() for a in held]))
        self.table = np.full(len(self.keys), -1, dtype=places.dtype)
        if not len(self.keys):
            return
        for part in _parts(len(places)):
            chunk = places[part]
            at = np.minimum(np.searchsorted(self.keys, chunk), len(self.keys) - 1)
            hit = self.keys[at] == chunk
            self.table[at[hit]] = np.flatnonzero(hit) + part.start

    def __getitem__(self, places: np.ndarray) -> np.ndarray:
        if self.keys is None:
            return self.table[places]
        return self.table[np.searchsorted(self.keys, places)]


def _inverse(places: np.ndarray) -> np.ndarray:
    """The element at each place (a chunk at a time)."""
    inverse = np.empty_like(places)
    for part in _parts(len(places)):
        inverse[places[part]] = np.arange(
            part.start, part.start + len(places[part]), dtype=places.dtype
        )
    return inverse


@dataclass
class Values:
    """Recorded values of one laid-out array other than v: block b records places
    places[start[b]:start[b + 1]] of `array` into columns column[...] of each row."""

    array: np.ndarray  # the array as laid out (a node array's buffer with its padding)
    start: np.ndarray  # int64, nblocks + 1
    places: np.ndarray  # int32, by block
    column: np.ndarray  # int32


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
    _record_kept: tuple | None = field(default=None, init=False, repr=False)
    laid_out: bool = False
    #: node arrays each block's step writes before it reads them and nothing reads after
    #: it (the matrix): not laid out, and a backend may give each block storage of its own
    scratch: list[np.ndarray] = field(default_factory=list)
    #: every sorted space (mechanism sets', ions', spike detectors')
    spaces: list[Sorted] = field(default_factory=list)
    #: the recorded values of other arrays than v, their columns after the voltages'
    values: list[Values] = field(default_factory=list)
    #: the model's values outside the cells that POINTERs reach (Model.outside), which
    #: stay in place, and the block of the cell whose POINTERs reach each (-1: none)
    outside: np.ndarray | None = None
    outside_block: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def lay_out(self) -> None:
        """The model's arrays into the layout, in place: from here to `restore` the state
        is the layout's (CoreNEURON permutes its data once, at setup). A run of blocks at
        a time where the array's space knows its cells' elements, else a whole copy."""
        if not self.laid_out:
            runs, spaces = _chunks(self.layout.base, RUN_PLACES), self._spaces()
            for item in self.permuted:
                own = _large(item, spaces)
                if own is not None:
                    item.lay_out_in_runs(runs, own)
                else:
                    item.lay_out()
            for array in self.scratch:  # what a step before left there is dead
                forget(array)
            self.laid_out = True
            give_back()  # each array's temporaries

    def _spaces(self) -> dict[int, Space]:
        """The spaces whose cells' elements are known, by id of their `place` arrays."""
        layout = self.layout
        spaces = {id(layout.place): Space(layout.elements, layout.cell_first, layout.run_cells)}
        for space in self.spaces:
            if space.cell_start is not None:
                elements = functools.partial(space.elements, layout)
                spaces[id(space.perm)] = Space(elements, space.cell_start, layout.run_cells)
        return spaces

    def restore(self) -> None:
        """The model's arrays back in the model's order, where a user reads them: a run
        of blocks at a time where each space knows its cells' elements and index arrays
        point within their cells, else through whole copies and inverses."""
        if not self.laid_out:
            return
        runs, spaces = _chunks(self.layout.base, RUN_PLACES), self._spaces()
        rest = []
        for item in self.permuted:
            own = _large(item, spaces)
            to = None if item.points_to is None else spaces.get(id(item.points_to))
            if own is not None and (item.points_to is None or (to and item.fits(runs, own, to))):
                item.restore_in_runs(runs, own, to)
            else:
                rest.append(item)
        by_space: dict[int, list[Permuted]] = {}  # one inverse alive at a time
        for item in rest:
            key = -1 if item.points_to is None else id(item.points_to)
            by_space.setdefault(key, []).append(item)
        for items in by_space.values():
            inverse = None
            if items[0].points_to is not None:
                inverse = _Inverse(items[0].points_to, [item.array for item in items])
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
        item = self._permuted(array)
        return (array, index) if item is None else (item.array, item.place[index])

    def _permuted(self, array: np.ndarray) -> Permuted | None:
        """The item that lays out model array `array` (its buffer may be longer)."""
        start = memory_key(array)[0]
        for item in self.permuted:
            if memory_key(item.array)[0] == start and item.array.dtype == array.dtype:
                return item
        return None

    def phases(self) -> list[Phase]:
        """Every phase, in the order backends number them: threshold (if any), first
        half, second half, receive."""
        head = [self.threshold] if self.threshold is not None else []
        return head + self.first_half + self.second_half + self.receive

    def set_record(self, record: np.ndarray, values: list[Values] = ()) -> None:
        """Record v at model nodes `record` (columns 0, 1, ...) and `values`
        (`recorded_values`) after them. The last nodes given are kept in the layout's
        order: the same array (unchanged) again costs nothing (a report's million nodes
        are sorted in a run's setup, not in its simulation)."""
        kept = self._record_kept
        if kept is None or kept[0] is not record:
            at = self.layout.perm[np.asarray(record, dtype=np.int64)]
            order = np.argsort(at, kind="stable")
            node = at[order]
            start = np.searchsorted(node, self.layout.base, side="left")
            kept = (record, node, start, order.astype(np.int32))
            if len(record):
                self._record_kept = kept
        _, self.record_node, self.record_start, self.record_column = kept
        self.values = list(values)

    def _outside_values(self, index: np.ndarray, column: np.ndarray) -> Values:
        """Values outside the cells, each recorded by the block whose cell's POINTERs
        reach it (block 0 where none does: nothing changes it)."""
        blocks = np.maximum(self.outside_block[index], 0)
        order = np.argsort(blocks, kind="stable")
        start = np.searchsorted(blocks[order], np.arange(self.layout.nblocks + 1))
        return Values(
            self.outside, start, index[order].astype(np.int32), column.astype(np.int32)[order]
        )

    def recorded_values(self, probes, first: int) -> list[Values]:
        """Where `probes` ((model array, element) pairs) are from `lay_out` to `restore`,
        an array at a time, into columns `first`, `first + 1`, ...; LookupError where
        one is not an array of values the plan lays out."""
        out = []
        for array, index, column in probe_groups(probes):
            if self.outside is not None and array is self.outside:
                out.append(self._outside_values(index, first + column))
                continue
            item = self._permuted(array)
            if item is None or item.points_to is not None or item.array.dtype != np.float64:
                raise LookupError("not an array of values the plan lays out")
            if item.place is self.layout.place:
                ranges = self.layout.base
            else:
                ranges = next(s.ranges for s in self.spaces if s.perm is item.place)
            places = item.place[index]
            order = np.argsort(places, kind="stable")
            places = places[order]
            out.append(Values(
                item.array, np.searchsorted(places, ranges, side="left"),
                places.astype(np.int32), (first + column).astype(np.int32)[order],
            ))  # fmt: skip
        return out
