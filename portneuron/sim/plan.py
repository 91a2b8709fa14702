"""What the epoch driver is built from and given: the plan of one epoch's work (its phases,
the cells' interleaved layout, the arrays it copies in and out) and the epoch's events.
portneuron.sim.epoch makes them from a Simulation, portneuron.sim.driver turns them into an
IR kernel and its arguments; backends see only those."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portneuron.ir import F64, Kernel


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

    def __init__(self, plan: EpochPlan, node_index: dict[int, np.ndarray]) -> None:
        """`node_index`: the node of each instance of every set in `plan.receive_sets`."""
        self.plan = plan
        self.start = np.zeros(plan.nblocks + 1, dtype=np.int64)
        self.phase_of_set = {s: j for j, s in enumerate(plan.receive_sets)}
        self.instance_block = {s: plan.layout.block_of(node_index[s]) for s in plan.receive_sets}
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
    up = np.where(parent >= 0, parent, np.arange(len(parent)))
    out = (parent >= 0).astype(np.int64)
    while (up != up[up]).any():
        out += out[up]
        up = up[up]
    return out


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
    parent row of row k. `perm` takes the model's node numbers to the interleaved ones."""

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
        cell = np.repeat(np.arange(ncell), counts)
        order = np.lexsort((np.arange(nnode), depth(parent), cell))
        row = np.empty(nnode, dtype=np.int64)
        row[order] = np.arange(nnode) - cell_first[cell[order]]
        node_slot = slot[cell]
        self.perm = (self.base[node_slot // width] + row * width + node_slot % width).astype(
            np.int32
        )
        roots = self.perm[cell_first[:-1]]
        # the root of each slot's cell; an empty slot watches its block's first node
        self.slot_root = np.repeat(self.base[:-1], width).astype(np.int32)
        self.slot_root[filled] = roots[self.cells[filled]]
        self.row0 = np.zeros(nblocks, dtype=np.int32)
        self.row0[1:] = np.cumsum(self.rows)[:-1]
        self.row_parent = np.full(int(self.rows.sum()), -1, dtype=np.int32)
        self.uniform = np.zeros(nblocks, dtype=np.int32)
        local_parent = np.where(parent >= 0, parent - cell_first[cell], -1)
        parent_row = np.where(parent >= 0, row[np.maximum(parent, 0)], -1)
        for block in range(nblocks):
            members = [c for c in self.cells[block * width : (block + 1) * width] if c >= 0]
            if not members or len({counts[c] for c in members}) != 1:
                continue
            shapes = [local_parent[cell_first[c] : cell_first[c + 1]] for c in members]
            if all((x == shapes[0]).all() for x in shapes):
                nodes = slice(cell_first[members[0]], cell_first[members[0] + 1])
                self.uniform[block] = 1
                self.row_parent[self.row0[block] + row[nodes]] = parent_row[nodes]
        self.arrays: dict[str, np.ndarray] = {}

    def block_of(self, node: np.ndarray) -> np.ndarray:
        """The block of each of the model's nodes `node`."""
        return np.searchsorted(self.base, self.perm[node], side="right") - 1

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

    def node_array(self, name: str, array: np.ndarray) -> np.ndarray:
        """The interleaved copy of node array `name` (one per name); padding is 0, or for
        node.parent the node itself."""
        if name not in self.arrays:
            if name == "node.parent":
                out = np.arange(self.size, dtype=np.int32)
                child = np.asarray(array) >= 0
                out[self.perm[child]] = self.perm[np.asarray(array)[child]]
            else:
                out = np.zeros(self.size, dtype=np.asarray(array).dtype)
                out[self.perm] = array
            self.arrays[name] = out
        return self.arrays[name]

    def args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Kernel arguments with node arrays and node numbers in the interleaved layout."""
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
    Block b's elements are then ranges[b]:ranges[b+1]. Kernels get the space's arrays in
    this order: index arrays permuted once, the others copies that the backend fills each
    epoch (and writes back where a kernel writes them). `perm` takes a model element to
    its place, `order` a place to its model element."""

    def __init__(self, layout_node: np.ndarray, layout: Interleaved) -> None:
        self.order = np.argsort(layout_node, kind="stable")
        self.perm = np.empty(len(self.order), dtype=np.int32)
        self.perm[self.order] = np.arange(len(self.order), dtype=np.int32)
        self.ranges = np.searchsorted(layout_node[self.order], layout.base).astype(np.int64)
        self.copies: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name: (model, sorted)
        self.written: set[str] = set()
        self.src = self.order.astype(np.int32)
        self.dst = np.arange(len(self.order), dtype=np.int32)

    def array(self, name: str, value: np.ndarray, dtype, points_to: Sorted | None) -> np.ndarray:
        """`value` (the model's array `name`) in the sorted order; `points_to`: the space
        whose elements an index array holds."""
        if dtype != F64:  # node numbers, ion instances: fixed, permuted once
            return (value if points_to is None else points_to.perm[value])[self.order]
        if name not in self.copies:
            self.copies[name] = (value, np.zeros_like(value))
        return self.copies[name][1]

    def copy_list(self) -> list[Copy]:
        return [
            Copy(model, copy, self.dst, self.src, self.ranges, name in self.written)
            for name, (model, copy) in self.copies.items()
        ]


@dataclass
class Copy:
    """A float64 array the backend copies into the epoch's layout when it starts a block,
    layout[dst[k]] = model[src[k]] for k in ranges[b]:ranges[b+1], and, if `back`, out
    again when it finishes the block's epoch."""

    model: np.ndarray
    layout: np.ndarray
    dst: np.ndarray  # int32
    src: np.ndarray  # int32
    ranges: np.ndarray  # int64 [nblocks + 1]
    back: bool


@dataclass
class EpochPlan:
    width: int
    layout: Interleaved  # layout.cells: the model cells of each block's slots
    copies: list[Copy]  # the voltages first
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

    @property
    def v(self) -> np.ndarray:
        """The voltages, interleaved."""
        return self.layout.arrays["node.v"]

    @property
    def nblocks(self) -> int:
        return len(self.layout.base) - 1

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
