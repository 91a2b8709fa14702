"""Compiled epochs: real cells advance through a whole min-delay epoch in one backend call.

Cells are grouped into blocks of `width` consecutive cells. Within an epoch cells do not
interact (every NetCon delay is at least the epoch's length), so a backend may take each
block through all of the epoch's steps before it starts the next: the block's data stay in
cache for the whole epoch. A block's nodes are stored interleaved (`Interleaved`), so that
the Hines solve and the axial terms of its cells go at once as SIMD lanes, and each
mechanism set's instances are stored in the order of their nodes there (`Instances`), so
that a kernel's consecutive lanes touch consecutive nodes. The model's own arrays are put
in that order, in place, when a run starts and back when it ends (`Permuted`): one copy of
the state; the node arrays have room for the layout's padding (`pad_nodes`). Each step of
a block is `Simulation.step`, operation for operation, on the block's share of every
array:

    threshold check; events due by t + dt/2; t += dt/2; first-half kernels (ion reset,
    currents, capacitance, axial, Hines, update); t += dt/2; state kernels; events due by t

The events of real cells known when the epoch starts (NetCon events, self-events sent
before it) go to the backend sorted per block; the self-events a NET_RECEIVE sends during
the epoch (net_send) join them in a queue of the block's, in NEURON's order (time, then
the order they were sent in, events known at the start first), and those still pending
at the epoch's end come back to the simulation's queue (Simulation._queue_pending). A
NET_RECEIVE that calls net_event needs the stepwise loop. Artificial cells have no per-step
work: Python delivers their events for the whole epoch first, in time order
(Simulation._collect_events); their spikes, like all spikes, reach targets in a later
epoch. `plan` reads a simulation through `StepSource`, so this module imports none.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Protocol

import numpy as np

from portneuron.backends.base import profiling
from portneuron.ir import F64, Kernel
from portneuron.memory import give_back

from . import cable
from .plan import (  # noqa: F401 (re-exported)
    EpochEvents,
    EpochPlan,
    Interleaved,
    Permuted,
    Phase,
    Sorted,
    cell_starts,
    depth,
    local_parents,
    memory_key,
)


class StepSource(Protocol):
    """What a plan is made from: a simulation's model, its bound mechanisms and the
    arguments of the step's kernels (portneuron.sim.simulation.Simulation has them)."""

    model: Any
    backend: Any
    layout: Interleaved | None  # the model's node arrays have its padding (pad_nodes)
    players: list
    mechanisms: list
    ir: dict[str, Kernel]
    dt: float
    voltage_presyn: np.ndarray
    cable_args: dict
    ion_kernels: list
    capacitance_sets: list
    capacitance: list
    threshold_args: dict
    crosses_ranks: bool  # gap junction values cross ranks each step
    fast_imem: bool  # each step computes i_membrane_ (cable.FAST_IMEM)


#: Cells per block: the Hines and axial walks of this many cells run interleaved.
BLOCK_WIDTH = 8


def shape_order(cell_first: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """The cells grouped by shape (node count, then a digest of each node's parent),
    stably: cells of one shape fill blocks together, which makes those blocks `uniform`."""
    keys = []
    for c in range(len(cell_first) - 1):
        lo, hi = int(cell_first[c]), int(cell_first[c + 1])
        local = local_parents(parent[lo:hi], lo).astype(np.int64)
        keys.append((hi - lo, hashlib.blake2b(local).digest()))
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


BEFORE_AFTER = (
    "before_initial",
    "after_initial",
    "before_breakpoint",
    "after_solve",
    "before_step",
)


class Unsupported(Exception):
    """The model needs the stepwise loop; the message says why."""


def check(model) -> None:
    """Unsupported where the model needs the stepwise loop, with the reason."""
    if model.vecplay:
        raise Unsupported("Vector.play needs the stepwise loop")
    if model.transfers.sources or model.transfers.targets:
        _check_transfers(model)
    for mset in model.mechanisms:
        mech = mset.mechanism
        if mset.is_artificial and (
            mech.pointers or any(k.name in BEFORE_AFTER for k in mech.kernels)
        ):
            raise Unsupported(
                f"{mset.name}: an artificial cell's POINTERs and BEFORE/AFTER blocks need the "
                f"stepwise loop"
            )
        if mech.pointers:
            _check_pointers(model, mset)
        if mech.watch_flags:
            raise Unsupported(f"{mset.name}: WATCH conditions need the stepwise loop")
        if mech.diffusion:
            raise Unsupported(f"{mset.name}: LONGITUDINAL_DIFFUSION needs the stepwise loop")
        if set(mech.sequential) - {"init"}:  # per step: one instance after another
            raise Unsupported(
                f"{mset.name}: blocks that update GLOBALs every instance shares need the "
                f"stepwise loop"
            )
        arrays = [v.name for v in mech.variables if v.length]
        if arrays and not mset.is_artificial:
            raise Unsupported(
                f"{mset.name}: array variables ({', '.join(arrays)}) need the stepwise loop"
            )
    places, cells = _outside_owners(model)
    order = np.lexsort((cells, places))
    places, cells = places[order], cells[order]
    if ((places[1:] == places[:-1]) & (cells[1:] != cells[:-1])).any():
        raise Unsupported(
            "POINTERs of two cells reach one place outside the model: the stepwise loop "
            "takes the cells a step at a time"
        )


def _check_pointers(model, mset) -> None:
    """A block takes its cells through a whole epoch before the next block starts, so an
    instance's POINTER may reach only its own cell's values (a node's v, a mechanism's or
    an ion's variable there), or a place outside the model that no other cell's POINTERs
    reach (hnn-core's dipole of the cell; `check`): Unsupported otherwise."""
    mine = _cells_of(model, mset.node_index)
    for name, target in mset.pointers.items():
        kind, _, rest = target.space.partition(":")
        index = target.index.astype(np.int64)
        if target.space == "node.v":
            theirs = _cells_of(model, index)
        elif kind == "mech":
            number, _, variable = rest.partition(":")
            owner = model.mechanisms[int(number)]
            length = max(next(v.length for v in owner.mechanism.variables if v.name == variable), 1)
            theirs = _cells_of(model, owner.node_index[index // length])
        elif kind == "ion":
            theirs = _cells_of(model, model.ion(rest.partition(":")[0]).node_index[index])
        else:
            continue  # outside the model
        if (theirs != mine).any():
            raise Unsupported(
                f"{mset.name}: POINTER {name} reaches another cell's values: the stepwise "
                f"loop takes the cells a step at a time"
            )


def _cells_of(model, nodes: np.ndarray) -> np.ndarray:
    return np.searchsorted(model.nodes.first, nodes, side="right") - 1


def _outside_owners(model) -> tuple[np.ndarray, np.ndarray]:
    """(place, cell) of each instance's POINTER into the model's values outside the cells."""
    places, cells = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for mset in model.mechanisms:
        for target in mset.pointers.values():
            if target.space == "outside" and mset.count:
                places.append(target.index.astype(np.int64))
                cells.append(_cells_of(model, mset.node_index))
    return np.concatenate(places), np.concatenate(cells)


#: Of a mechanism's kernels, those a step does not run (a gap junction's target may be
#: read there: the copy before them is the stepwise loop's, at finitialize).
NOT_STEPS = ("init",)


def _check_transfers(model) -> None:
    """A coupled model's compiled epochs copy its gap junctions at each step's end (in the
    driver, or between calls a step each where values cross ranks), where NEURON copies
    after the voltage update, before the SOLVE blocks. The two give the same values where
    the sources are node voltages (which nothing changes after the update) and nothing that
    runs after the update reads a target (its mechanism's BREAKPOINT current reads it in the
    next step): Unsupported, with the reason, otherwise."""
    for _, source in model.transfers.sources:
        if source.space != "node.v":
            raise Unsupported(
                f"a gap junction's source is not a node's v ({source.space}): its value after "
                f"the SOLVE blocks is not NEURON's, so it needs the stepwise loop"
            )
    for _, target in model.transfers.targets:
        kind, index, variable = (target.space.split(":") + ["", ""])[:3]
        mset = model.mechanisms[int(index)] if kind == "mech" else None
        if mset is None or mset.data[variable].ndim != 1:
            raise Unsupported(f"a gap junction's target in {target.space} needs the stepwise loop")
        for kernel in mset.mechanism.kernels:
            reads = any(p.name == f"mech.{variable}" for p in kernel.params)
            if reads and kernel.name not in ("current", *NOT_STEPS):
                raise Unsupported(
                    f"{mset.name}.{variable}, a gap junction's target, is read by its "
                    f"{kernel.name} block, which runs after NEURON's copy: the stepwise loop "
                    f"copies it there"
                )


def block_width(model, backend) -> int:
    """Cells a block: the backend's; on a CPU, for a model of fewer cells, the least power
    of two that holds them (a lone cell: 1), so that the Hines and axial walks, which take
    a block's cells as SIMD lanes, do not work masked lanes for cells that are not there."""
    widest = backend.epoch_width
    if backend.device_kind != "cpu" or model.ncell >= widest:
        return widest
    return 1 << max(model.ncell - 1, 0).bit_length()


def layout(model, width: int = BLOCK_WIDTH) -> Interleaved:
    """The interleaved layout of the model's cells, `width` a block."""
    cell_first = model.nodes.first.astype(np.int64)
    parent = model.nodes.parent_index
    cells = shape_order(cell_first, parent)
    nblocks = -(-len(cells) // width)
    cells = np.append(cells, np.full(nblocks * width - len(cells), -1))
    return Interleaved(cell_first, parent, cells, width)


#: Node arrays that are the step's scratch (EpochPlan.scratch): the matrix and the
#: membrane conductance's sum, which each step clears first and whose last use is the
#: voltage update's.
SCRATCH = ("node.rhs", "node.d", "node.sav_d")

#: The model's node arrays (portneuron.model.Nodes) and what their padding holds.
NODE_ARRAYS = {"v": 0.0, "area": 0.0, "diam": 0.0, "a": 0.0, "b": 0.0, "parent_index": -1}


def padded(array: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """`array` as the start of a buffer `size` long (itself, where it is one already)."""
    if storage(array, size) is not None:
        return array
    buffer = np.full(size, fill, dtype=array.dtype)
    buffer[: len(array)] = array
    return buffer[: len(array)]


def storage(array: np.ndarray, size: int) -> np.ndarray | None:
    """The buffer `size` long that `array` starts (None: none)."""
    if len(array) == size and array.flags.c_contiguous:
        return array
    base = array.base
    if (
        isinstance(base, np.ndarray)
        and base.ndim == 1
        and len(base) == size
        and base.dtype == array.dtype
        and base.flags.c_contiguous
        and base.__array_interface__["data"][0] == array.__array_interface__["data"][0]
    ):
        return base
    return None


def pad_nodes(model, layout: Interleaved) -> None:
    """Room for the layout's padding after the model's node arrays: each becomes the start
    of a buffer `layout.size` long, which a plan lays out in place (one copy of the state)."""
    for name, fill in NODE_ARRAYS.items():
        setattr(model.nodes, name, padded(getattr(model.nodes, name), layout.size, fill))


def plan(sim: StepSource, width: int = BLOCK_WIDTH) -> EpochPlan:
    """The epoch plan of a simulation's model, or Unsupported with the reason."""
    model = sim.model
    check(model)
    if sim.crosses_ranks and sim.backend.device_kind != "cpu":
        raise Unsupported(
            f"gap junctions whose values cross ranks run step by step on the "
            f"{sim.backend.name} backend, which keeps the model's arrays on its device "
            f"(compiled epochs copy them on the host between steps)"
        )
    layout = sim.layout
    if layout is None or layout.width != width:
        raise Unsupported(f"the model's nodes are not laid out in blocks of {width}")
    whole_blocks = np.arange(layout.nblocks + 1, dtype=np.int64)
    ir = sim.ir
    permuted: dict[tuple, Permuted] = {}
    scratch: dict[tuple, np.ndarray] = {}
    spaces: dict[bytes, Sorted] = {}

    def space(node_index: np.ndarray) -> Sorted:
        """The sorted space of elements on nodes `node_index`, one for spaces alike."""
        node_index = np.ascontiguousarray(node_index)
        key = node_index.dtype.str.encode() + hashlib.sha256(node_index).digest()
        if key not in spaces:
            starts = cell_starts(node_index, layout.cell_first)
            if starts is None:
                spaces[key] = Sorted(layout.perm[node_index], layout)
            else:
                spaces[key] = Sorted.by_cells(node_index, layout, starts)
            give_back()  # its temporaries, before the next space's
        return spaces[key]

    ions = {ion.name: space(ion.node_index) for ion in model.ions}
    real = [m for m in sim.mechanisms if not m.set.is_artificial]
    instances = {m.index: space(m.set.node_index) for m in real}
    presyns = space(model.presyns.node[sim.voltage_presyn])

    def laid_out(name: str, array: np.ndarray, place: np.ndarray, points_to=None) -> np.ndarray:
        """Model array `array` (kernel argument `name`), laid out by the plan in place."""
        item = Permuted(array, place, points_to, name == "node.parent")
        if len(array) != len(place) or not array.flags.c_contiguous:
            raise Unsupported(f"{name}: not one contiguous value for each element of its space")
        known = permuted.setdefault(memory_key(array), item)
        if known.place is not place or known.points_to is not points_to:
            raise Unsupported(f"{name}: one array in two places of the layout")
        return array

    def sorted_args(kernel: Kernel, args: dict, owner: int) -> dict:
        """The kernel's arguments, its model arrays laid out by the plan: node arrays
        interleaved (with their padding), each space's arrays sorted, node numbers and ion
        instances as places (`owner`: the mechanism set whose instances are the kernel's)."""
        out = dict(args)
        for p in kernel.params:
            if p.name not in args or not p.is_array:
                continue
            value = np.asarray(args[p.name])
            if p.space == "node":
                buffer = storage(value, layout.size)
                if buffer is None:
                    raise Unsupported(f"{p.name}: no room for the layout's padding")
                if p.name in SCRATCH:
                    out[p.name] = scratch.setdefault(memory_key(buffer), buffer)
                    continue
                points_to = layout.place if p.name == "node.parent" else None
                out[p.name] = laid_out(p.name, buffer, layout.place, points_to)
                continue
            if p.space.startswith("pointer:"):  # the target's array, where the plan has it
                place = pointer_place(owner, p.space[8:])
                if place is not None:
                    buffer = storage(value, len(place))
                    if buffer is None:
                        raise Unsupported(f"{p.name}: not one value for each element it reaches")
                    name = "node.v" if place is layout.place else p.name
                    out[p.name] = laid_out(name, buffer, place)
                continue
            if p.space == "instance" and owner in instances:
                sorted_ = instances[owner]
            elif p.space.startswith("ion:"):
                sorted_ = ions[p.space[4:]]
            elif p.space == "presyn":
                sorted_ = presyns
            else:
                continue
            points_to = None
            if p.name in Interleaved.NODE_INDEX or p.name.endswith(".node_index"):
                points_to = layout.place
            elif p.name.startswith("pointer."):  # pointer.<name>.index: into its target
                points_to = pointer_place(owner, p.name[8:].removesuffix(".index"))
            elif p.name.endswith(".index"):
                points_to = ions[p.name.split(".")[1]].perm
            elif p.dtype != F64:
                raise Unsupported(f"{p.name}: an integer array of no known space")
            out[p.name] = laid_out(p.name, value, sorted_.perm, points_to)
        return out

    def pointer_place(owner: int, name: str) -> np.ndarray | None:
        """Where the plan puts the array a POINTER of set `owner` reaches (None: outside
        the model, which stays as it is)."""
        space = model.mechanisms[owner].pointers[name].space
        kind, _, rest = space.partition(":")
        if space == "node.v":
            return layout.place
        if kind == "ion":
            return ions[rest.partition(":")[0]].perm
        if kind == "mech":
            number, _, variable = rest.partition(":")
            if int(number) not in instances:
                raise Unsupported(f"POINTER {name} reaches an artificial cell's {variable}")
            variables = model.mechanisms[int(number)].mechanism.variables
            if any(v.name == variable and v.length for v in variables):
                raise Unsupported(f"POINTER {name} reaches an element of an array variable")
            return instances[int(number)].perm
        return None

    def phase(kernel: Kernel, args: dict, ranges: np.ndarray, owner: int = -1) -> Phase:
        if kernel.streams:
            raise Unsupported(f"kernel {kernel.name} emits events during the step")
        if owner >= 0 and profiling():  # a profiler's name: the mechanism's and the block's
            name = f"{model.mechanisms[owner].name}_{kernel.name}"
            kernel = dataclasses.replace(kernel, name=name)
        return Phase(kernel, sorted_args(kernel, args, owner), ranges)

    node_ranges = layout.base

    def each_set(name: str) -> list[Phase]:
        """Kernel `name` of every set that has one, set by set (a current, a state, the
        BEFORE or AFTER blocks of one kind, as NEURON's nrn_ba)."""
        return [
            phase(m.ir[name], m.args, instances[m.index].ranges, m.index)
            for m in real
            if m.has(name)
        ]

    first: list[Phase] = [phase(ir["clear_matrix"], sim.cable_args, node_ranges)]
    first += each_set("before_breakpoint")
    for ion, args, _, _ in sim.ion_kernels:
        kernel = ir[f"ion_reset_{ion.name}"]
        first.append(phase(kernel, args, ions[ion.name].ranges))
    first += each_set("current")
    for m, args in zip(sim.capacitance_sets, sim.capacitance):
        first.append(phase(ir["capacitance"], args, instances[m].ranges, m))
    if sim.fast_imem:
        first.append(phase(ir["membrane_sums"], sim.cable_args, node_ranges))
    block_args = {**sim.cable_args, **layout.block_args()}
    first.append(phase(cable.axial_interleaved(width), block_args, whole_blocks))
    first.append(phase(cable.hines_interleaved(width), block_args, whole_blocks))
    if model.secondorder == 2:
        for ion, args, _, _ in sim.ion_kernels:
            kernel = ir[f"second_order_{ion.name}"]
            first.append(phase(kernel, args, ions[ion.name].ranges))
    first.append(phase(ir["update_voltage"], sim.cable_args, node_ranges))
    second = each_set("state") + each_set("after_solve") + each_set("before_step")
    receive, receive_sets = [], []
    for m in real:
        if m.has("net_receive"):
            kernel = m.ir["net_receive"]
            others = [s.name for s in kernel.streams if s.name != "net_send"]
            if others:
                raise Unsupported(f"{m.set.name}: NET_RECEIVE calls {', '.join(others)}")
            receive.append(Phase(kernel, sorted_args(kernel, m.args, m.index), whole_blocks))
            receive_sets.append(m.index)
    threshold = None
    if len(sim.voltage_presyn):
        kernel = ir["threshold"]  # its spike stream goes to the driver's buffer
        threshold = Phase(kernel, sorted_args(kernel, sim.threshold_args, -1), presyns.ranges)

    v = storage(sim.node_arrays["node.v"], layout.size)
    laid_out("node.v", v, layout.place)
    result = EpochPlan(
        width=width,
        layout=layout,
        v=v,
        permuted=list(permuted.values()),
        instances=instances,
        dt=sim.dt,
        threshold=threshold,
        first_half=first,
        second_half=second,
        receive=receive,
        receive_sets=receive_sets,
        threshold_presyn=sim.voltage_presyn.astype(np.int64)[presyns.order],
        sends=any(phase.kernel.streams for phase in receive),
        scratch=list(scratch.values()),
        spaces=list(spaces.values()),
    )
    if len(model.outside):
        result.outside, result.outside_block = model.outside, outside_blocks(model, layout)
    result.set_record(np.zeros(0, dtype=np.int64))
    return result


def outside_blocks(model, layout: Interleaved) -> np.ndarray:
    """The block of the cell whose POINTERs reach each of the model's values outside the
    cells (`check`: one cell each), -1 where none does."""
    block_of_cell = np.full(model.ncell, -1, dtype=np.int64)
    slots = np.flatnonzero(layout.cells >= 0)
    block_of_cell[layout.cells[slots]] = slots // layout.width
    out = np.full(len(model.outside), -1, dtype=np.int64)
    places, cells = _outside_owners(model)
    out[places] = block_of_cell[cells]
    return out
