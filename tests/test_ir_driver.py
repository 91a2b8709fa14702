"""The epoch driver written once in IR (portneuron/sim/driver.py), run by the numpy
backend's interpreter and lowered by the llvm backend (Launch as a call, on threads): the
same spikes, voltages and every mechanism variable as the backend's stepwise loop, bit for
bit (issue 18)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from harness import slow_for, synapse_network
from portneuron.backends import backend_status, load_backend
from portneuron.ir import format_kernel
from test_cuda import negative_leak_network

from portneuron.build.ringtest import build_ringtest
from portneuron.errors import PortneuronError, SimulationError
from portneuron.sim import epoch
from portneuron.sim.driver import epoch_driver
from portneuron.sim.simulation import Simulation

BACKENDS = ["numpy"] + (["llvm"] if backend_status("llvm").available else [])


def runs(build, tstop: float, record_every: int = 3, backend: str = "numpy"):
    """The model run by the backend's stepwise loop and by the IR driver on that backend."""
    out = []
    for epochs in (False, "ir"):
        model = build()
        sim = Simulation(model, load_backend(backend), threads=1, compiled_epochs=epochs)
        result = sim.run(tstop, record=list(range(0, model.nodes.count, record_every)))
        out.append((sim, model, result))
    return out


def assert_same(stepwise, driven) -> None:
    (_, model_a, a), (sim_b, model_b, b_) = stepwise, driven
    assert sim_b.stepwise_reason == "", sim_b.stepwise_reason
    assert b_.spikes == a.spikes
    np.testing.assert_array_equal(b_.v, a.v)
    np.testing.assert_array_equal(model_b.nodes.v, model_a.nodes.v)
    for x, y in zip(model_a.mechanisms, model_b.mechanisms):
        for name, values in x.data.items():
            np.testing.assert_array_equal(y.data[name], values, f"{x.name}.{name}")


@pytest.mark.parametrize("backend", slow_for(BACKENDS, "numpy"))  # the interpreter: a minute
def test_the_ir_driver_is_the_stepwise_loop_on_the_ringtest(backend):
    """Two rings of 8 cells of different shapes (blocks of one shape and of several), hh
    and pas, ExpSyn events from the ring: 30 ms, every spike, every recorded voltage at
    every step and every variable at the end, bit for bit."""
    stepwise, driven = runs(lambda: build_ringtest(2, 8, (2, 3), (1, 2)), 30.0, 3, backend)
    assert len(stepwise[2].spikes) >= 16
    assert_same(stepwise, driven)


@pytest.mark.parametrize("backend", slow_for(BACKENDS, "numpy"))  # the interpreter: a minute
def test_the_ir_driver_delivers_events_as_the_stepwise_loop(backend):
    """Ten cells in a full and a partial block, three synapses on one node (their sums in
    one order), NetStims and a ring, over several epochs."""
    stepwise, driven = runs(lambda: synapse_network("ExpSyn").build(), 25.0, 2, backend)
    assert len(stepwise[2].spikes) >= 10
    assert_same(stepwise, driven)


@pytest.mark.parametrize("backend", slow_for(BACKENDS, "numpy"))  # the interpreter: a minute
def test_the_ir_drivers_self_event_queue_is_the_stepwise_loop(backend):
    """PulseSyn's NET_RECEIVE sends self-events (a pulse's end after dur, then a count at
    zero delay), with pulses ending just as the next event comes: the block's queue,
    merged with the epoch's events in NEURON's order (the epoch's first at equal times),
    and what is still pending carried to the next epoch, bit for bit."""
    stepwise, driven = runs(lambda: synapse_network("PulseSyn").build(), 25.0, 2, backend)
    assert len(stepwise[2].spikes) >= 10
    assert_same(stepwise, driven)
    pulses = next(m for m in driven[1].mechanisms if m.name == "PulseSyn").data
    assert pulses["n"].sum() > 100  # every pulse ended and was counted, across epochs


def test_a_full_queue_is_one_line(monkeypatch):
    from portneuron.sim import driver

    monkeypatch.setattr(driver, "queue_capacity", lambda plan: 1)
    sim = Simulation(synapse_network("PulseSyn").build(), load_backend("numpy"),
                     compiled_epochs="ir")  # fmt: skip
    with pytest.raises(SimulationError, match=r"^more than 1 self-events \(net_send\) pending "
                       r"at once in one block of cells; run with compiled epochs off$"):  # fmt: skip
        sim.run(25.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_blow_up_in_the_ir_driver_names_the_cell(backend):
    sim = Simulation(negative_leak_network().build(), load_backend(backend), compiled_epochs="ir")
    with pytest.raises(SimulationError, match=r"cell gid 2: voltage is not finite at t = "):
        sim.run(50.0, v_init=-60.0)
    assert sim.stepwise_reason == ""


def test_the_driver_is_one_kernel_of_launches():
    model = build_ringtest(1, 8, (2, 3), (1, 1))
    plan = epoch.plan(Simulation(model, load_backend("numpy"), compiled_epochs="ir"), 8)
    text = format_kernel(epoch_driver(plan))
    assert text.startswith("kernel epoch over block (")
    assert "while (step < nsteps) && (!bad) {" in text
    assert "launch hines_interleaved8 over range(k9.ranges[lane], k9.ranges[lane + 1])" in text


def test_the_queue_is_sized_from_the_plan():
    """16 entries for each self-event one delivery to each of a block's instances may send,
    for the block with the most: PulseSyn sends 2, 5 synapses a cell, 8 cells a block; none
    where no NET_RECEIVE sends."""
    from portneuron.sim.driver import IrEpoch, queue_capacity

    sim = Simulation(
        synapse_network("PulseSyn").build(), load_backend("numpy"), compiled_epochs="ir"
    )
    plan = epoch.plan(sim, 8)
    assert queue_capacity(plan) == 16 * 2 * 5 * 8
    program = IrEpoch(plan, load_backend("numpy"))
    assert len(program.bound.args["q.t"]) == plan.nblocks * 16 * 2 * 5 * 8
    sim = Simulation(synapse_network("ExpSyn").build(), load_backend("numpy"), compiled_epochs="ir")
    assert queue_capacity(epoch.plan(sim, 8)) == 0


def test_the_state_is_laid_out_in_place():
    """One copy of the state: every float array of the nodes, instances, ions and spike
    detectors that the driver's phases use is the model's own memory (its node arrays
    with room for the layout's padding after them), laid out in place; laid out, the
    arrays equal the interleaved copies, and restored, the model's arrays bit for bit."""
    from portneuron.ir import F64

    model = build_ringtest(2, 6, (2, 3), (1, 2))  # cells of several shapes: padding
    sim = Simulation(model, load_backend("numpy"), compiled_epochs="ir")
    sim.finitialize()
    plan = sim.epoch_program().plan
    assert plan.layout.size > model.nodes.count
    nodes = model.nodes
    owned = [nodes.v, nodes.a, nodes.b, nodes.area, nodes.diam, sim.rhs, sim.d]
    owned += [a for m in model.mechanisms for a in m.data.values()]
    owned += [a for ion in model.ions for a in ion.data.values()]
    owned += [sim.threshold_args["presyn.threshold"], sim.threshold_args["presyn.flag"]]
    checked = 0
    for phase in plan.phases():
        for p in phase.kernel.params:
            spaces = p.space in ("node", "instance", "presyn") or p.space.startswith("ion:")
            if p.is_array and p.dtype == F64 and spaces and p.name in phase.args:
                assert any(np.shares_memory(phase.args[p.name], a) for a in owned), p.name
                checked += 1
    assert checked > 20
    kept = [item.array.copy() for item in plan.permuted]
    expected = plan.layout.args({"node.v": nodes.v, "node.parent": nodes.parent_index})
    plan.lay_out()
    np.testing.assert_array_equal(plan.v, expected["node.v"])
    np.testing.assert_array_equal(epoch.storage(nodes.parent_index, plan.layout.size),
                                  expected["node.parent"])  # fmt: skip
    plan.restore()
    for item, array in zip(plan.permuted, kept):
        np.testing.assert_array_equal(item.array, array)


@pytest.mark.skipif("llvm" not in BACKENDS, reason="llvm is not available")
@pytest.mark.skipif(sys.platform != "linux", reason="pages handed back read as zeros on Linux")
def test_the_matrix_is_each_blocks_scratch():
    """The matrix (rhs, d) is each block's scratch in the driver ("lane:" arrays): llvm
    runs each thread's blocks in storage of their own, and finitialize hands the
    model-sized arrays' pages back (memory.forget), so after a run they hold nothing."""
    model = build_ringtest(2, 8, (2, 3), (1, 2))
    sim = Simulation(model, load_backend("llvm"), threads=2)
    assert len(sim.run(10.0).spikes) > 0
    kernel = sim.epoch_program().kernel
    assert {p.name: p.regions for p in kernel.params if p.regions} == {
        "m.node.rhs": "lane.nodes",
        "m.node.d": "lane.nodes",
    }
    assert not sim.rhs.any() and not sim.d.any()


def test_a_simulation_whose_model_was_laid_out_again_says_so():
    model = build_ringtest(1, 5, (2, 6), (1, 3))  # 5 cells in a block of 8: padding
    narrow = load_backend("numpy")
    narrow.epoch_width = 1
    first = Simulation(model, narrow, compiled_epochs="ir")
    Simulation(model, load_backend("numpy"), compiled_epochs="ir")  # the node arrays move
    with pytest.raises(PortneuronError, match="node arrays were replaced"):
        first.run(1.0)


def test_a_sorted_space_is_the_stable_sort_of_its_places():
    """A space's elements sorted by their node's place (Sorted): where each node holds one
    element at most, by ranking the places taken (no sort); else by a stable sort. Both
    equal the stable argsort and its blocks' ranges, on random layouts."""
    from types import SimpleNamespace

    from portneuron.sim.plan import Sorted

    rng = np.random.default_rng(18)
    for _ in range(200):
        size = int(rng.integers(1, 300))
        cuts = rng.integers(0, size, int(rng.integers(0, 5)))
        base = np.sort(np.concatenate([[0, size], cuts, [0] * int(rng.integers(0, 2))]))
        layout = SimpleNamespace(size=size, base=base.astype(np.int64))
        n = int(rng.integers(0, size + 1))
        for nodes in (rng.choice(size, n, replace=False), rng.integers(0, size, n)):
            nodes = nodes.astype(np.int32)
            space = Sorted(nodes, layout)
            order = np.argsort(nodes, kind="stable")
            np.testing.assert_array_equal(space.order, order)
            np.testing.assert_array_equal(space.ranges, np.searchsorted(nodes[order], base))
            assert space.perm.dtype == np.int32 and space.ranges.dtype == np.int64


def probes_of(model) -> list:
    """hh's m of every third soma, every ExpSyn's g (events change it), sodium currents, a
    pas conductance and a node's v: each from the model's own arrays."""
    hh, syn, pas = (model.mechanism_set(name) for name in ("hh", "ExpSyn", "pas"))
    na = model.ion("na")
    return ([(hh.data["m"], i) for i in range(0, hh.count, 3)]
            + [(syn.data["g"], i) for i in range(syn.count)]
            + [(na.data["ina"], i) for i in range(0, na.count, 5)]
            + [(pas.data["g"], 7), (model.nodes.v, 5)])  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_epochs_record_any_array_as_the_stepwise_loop_samples_it(backend):
    """Probes of mechanism, ion and node arrays: the IR driver records them, a Launch an
    array, where the stepwise loop samples them (NEURON's Vector.record: before the step's
    last events), bit for bit, with the voltages; a run without them after goes back to the
    driver that records v alone, and one with a probe of no laid-out array steps."""
    tstop = 12.0 if backend == "llvm" else 3.0  # the interpreter: 3 ms, no spike yet
    out = []
    for epochs in (False, "ir"):
        model = build_ringtest(2, 8, (2, 5), (1, 3))
        sim = Simulation(model, load_backend(backend), threads=1, compiled_epochs=epochs)
        record = list(range(0, model.nodes.count, 5))
        out.append((sim, sim.run(tstop, record=record, probes=probes_of(model))))
    (_, stepwise), (sim, compiled) = out
    assert sim.stepwise_reason == "" and compiled.values.shape == stepwise.values.shape
    assert compiled.spikes == stepwise.spikes and (len(stepwise.spikes) > 0 or tstop < 5)
    assert stepwise.values[:, 6:38].max() > 0  # ExpSyns' g (columns 6 to 37): events came
    np.testing.assert_array_equal(compiled.v, stepwise.v)
    np.testing.assert_array_equal(compiled.values, stepwise.values)
    assert len(sim._programs) == 2
    plain = sim.run(2.0, record=[0, 3])
    assert sim._program is sim._programs[()] and plain.values is None
    elsewhere = np.zeros(4)
    probed = sim.run(1.0, probes=[(elsewhere, 2)])
    assert "sampled step by step" in sim.stepwise_reason and probed.values.shape[1] == 1


def pointer_cells(ncell: int = 10):
    """`ncell` cells of tests/mods' POINTER mechanisms, of two shapes (full and partial
    blocks): each dendrite segment's axial current from its parent's v (axcur, AFTER
    SOLVE and AFTER INITIAL) summed into the soma's AxSum, which reads the far end's v,
    and a current from what a BEFORE STEP block sampled (bstep); an IClamp and a spike
    detector each."""
    from pathlib import Path

    from portneuron.build import Cell, Network, Place
    from portneuron.library import MechanismLibrary

    net = Network(MechanismLibrary([Path(__file__).parent / "mods"]), v_init=-65.0)
    for gid in range(ncell):
        nseg = 3 + gid % 2
        cell = Cell("axial")
        s = cell.section("soma", L=20, diam=20)
        cell.insert(s, "hh")
        d = cell.section("dend", L=200 + 10 * gid, diam=1, nseg=nseg, parent=s, x=1.0)
        cell.insert(d, "pas")
        cell.insert(d, "axcur")
        cell.insert(d, "bstep")
        total = cell.point_process(s, 0.5, "AxSum")
        cell.point_process(s, 0.5, "IClamp", **{"del": 1 + gid % 3, "dur": 19, "amp": 0.3})
        cell.spike_detector(s, 0.5, -20.0)
        net.add_cell(cell, gid)
        where = [(s, 1.0)] + [(d, (k + 0.5) / nseg) for k in range(nseg)]
        for (sec, x), (_, xd) in zip(where, where[1:]):
            net.setpointer(Place(gid, d, xd, "axcur", "vparent"), Place(gid, sec, x))
            net.setpointer(Place(gid, d, xd, "axcur", "total"),
                           Place(gid, point=total, variable="sum"))  # fmt: skip
        net.setpointer(Place(gid, point=total, variable="vremote"), Place(gid, d, 0.9))
    return net.build()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pointers_and_before_after_blocks_in_compiled_epochs(backend):
    """POINTERs to a node's v and to a point process's variable, AFTER SOLVE and BEFORE
    STEP blocks (tests/test_engine_neuron.py: NEURON's bits): the IR driver gives the
    stepwise loop's spikes, voltages, every variable and each AxSum's sum at every step,
    bit for bit."""
    tstop = 15.0 if backend == "llvm" else 3.0  # the interpreter: 3 ms
    out = []
    for epochs in (False, "ir"):
        model = pointer_cells()
        sim = Simulation(model, load_backend(backend), threads=1, compiled_epochs=epochs)
        sums = model.mechanism_set("AxSum").data["sum"]
        record = list(range(0, model.nodes.count, 2))
        result = sim.run(tstop, record=record, probes=[(sums, i) for i in range(len(sums))])
        out.append((sim, model, result))
    assert_same(*out)
    (_, _, stepwise), (_, _, driven) = out
    np.testing.assert_array_equal(driven.values, stepwise.values)
    assert np.ptp(stepwise.values) > 0 and (len(stepwise.spikes) >= 10 or tstop < 5)


@pytest.mark.parametrize(("ncell", "width"), [(1, 1), (3, 4)])
def test_fewer_cells_than_a_block_take_narrower_blocks(ncell, width):
    """A lone cell is a block of one, three cells a block of four (no masked lanes for
    slots no cell fills), and llvm's compiled epochs are the stepwise loop's bit for bit."""
    if "llvm" not in BACKENDS:
        pytest.skip("llvm cannot run here")
    out = []
    for epochs in (False, True):
        model = pointer_cells(ncell)
        sim = Simulation(model, load_backend("llvm"), threads=1, compiled_epochs=epochs)
        out.append((sim, model, sim.run(20.0, record=list(range(model.nodes.count)))))
    assert out[1][0].layout.width == width and len(out[0][2].spikes) >= ncell
    assert_same(*out)


def test_a_sorted_space_by_cells_is_the_sort_of_them_all(monkeypatch):
    """Sorted.by_cells (a run of blocks at a time, where each cell's elements are one run)
    gives the perm and ranges of sorting every element at once: the ringtest's spaces, and
    random elements on its nodes, several to a node, over runs of a few blocks."""
    from portneuron.sim import plan as plan_module
    from portneuron.sim.plan import Sorted, cell_starts

    monkeypatch.setattr(plan_module, "RUN_PLACES", 40)
    model = build_ringtest(3, 8, (2, 5), (1, 3))
    layout = epoch.layout(model)
    rng = np.random.default_rng(7)
    spaces = [m.node_index for m in model.mechanisms if len(m.node_index)]
    spaces += [
        np.sort(rng.integers(0, model.nodes.count, n)).astype(np.int32) for n in (1, 90, 900)
    ]
    for node_index in spaces:
        starts = cell_starts(node_index, layout.cell_first)
        ours, whole = (
            Sorted.by_cells(node_index, layout, starts),
            Sorted(layout.perm[node_index], layout),
        )
        np.testing.assert_array_equal(ours.perm, whole.perm)
        np.testing.assert_array_equal(ours.ranges, whole.ranges)
    assert cell_starts(np.array([3, 1], dtype=np.int32), layout.cell_first) is None


def test_runs_of_blocks_lay_out_and_restore_as_whole_copies(monkeypatch):
    """Arrays of RUN_ARRAYS elements or more are laid out and restored a run of blocks at a
    time through scratch pages: laid out, every array equals what whole copies make of it
    (padding included), and restored, the model's bit for bit; the small index arrays'
    inverses are tables of the places they hold."""
    from portneuron.sim import plan as plan_module

    model = build_ringtest(3, 6, (2, 5), (1, 3))
    sim = Simulation(model, load_backend("numpy"), compiled_epochs="ir")
    sim.run(2.0)
    plan = sim.epoch_program().plan
    kept = [item.array.copy() for item in plan.permuted]
    plan.lay_out()  # every array small: whole copies
    whole = [item.array.copy() for item in plan.permuted]
    plan.restore()
    for item, array in zip(plan.permuted, kept):
        np.testing.assert_array_equal(item.array, array)

    moved = []
    for name in ("lay_out_in_runs", "restore_in_runs"):
        real = getattr(plan_module.Permuted, name)

        def spy(item, *args, real=real, name=name):
            moved.append((name, item.array.dtype.str))
            return real(item, *args)

        monkeypatch.setattr(plan_module.Permuted, name, spy)
    monkeypatch.setattr(plan_module, "RUN_PLACES", 50)
    monkeypatch.setattr(plan_module, "RUN_ARRAYS", 100)
    plan.lay_out()
    for item, array in zip(plan.permuted, whole):
        np.testing.assert_array_equal(item.array, array)
    plan.restore()
    for item, array in zip(plan.permuted, kept):
        np.testing.assert_array_equal(item.array, array)
    large = sum(len(item.array) >= 100 for item in plan.permuted)
    assert moved.count(("lay_out_in_runs", "<i4")) >= 2  # node.parent, node_index
    assert len(moved) == 2 * large > 10


def test_forgotten_rows_read_as_zeros_and_nothing_else_moves():
    """memory.forget_rows hands back only the pages wholly inside the rows: the values
    around them stay, and on Linux the pages inside read as zeros after."""
    import mmap

    from portneuron.memory import forget_rows

    array = np.arange(5 * mmap.PAGESIZE // 8, dtype=np.float64) + 1.0
    view = array[3:]  # not page-aligned
    before = view.copy()
    lo, hi = 100, 100 + 3 * mmap.PAGESIZE // 8
    forget_rows(view, lo, hi)
    start = view.__array_interface__["data"][0]
    addresses = start + 8 * np.arange(len(view))
    inside = (addresses >= -(-(start + 8 * lo) // mmap.PAGESIZE) * mmap.PAGESIZE) & (
        addresses + 8 <= (start + 8 * hi) // mmap.PAGESIZE * mmap.PAGESIZE
    )
    assert inside.sum() >= mmap.PAGESIZE // 8  # one page at least went
    np.testing.assert_array_equal(view[~inside], before[~inside])
    if sys.platform == "linux":
        assert not view[inside].any()
    forget_rows(view, len(view) - 10, len(view) + 10**6)  # past the end: nothing beyond it
    np.testing.assert_array_equal(array[:3], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sink_takes_the_rows_a_bounded_call_at_a_time(backend, monkeypatch):
    """With a sink, recorded rows every 3 steps go out after every call (the driver's
    buffer: a sink copies what it keeps), and a call holds RECORD_BUFFER bytes of them at
    most (here 2 rows: calls of 6 steps, within 1 ms epochs): the same times and voltages
    as a run that keeps them all, the same spikes."""
    from portneuron.sim import simulation

    epochs = "ir" if backend == "numpy" else True  # the driver, on the interpreter too
    model = build_ringtest(2, 8, (2, 3), (1, 2))
    record = list(range(0, model.nodes.count, 7))
    kept = Simulation(model, load_backend(backend), threads=1, compiled_epochs=epochs)
    whole = kept.run(3.0, record=record, record_every=3)
    monkeypatch.setattr(simulation, "RECORD_BUFFER", 2 * 8 * len(record))
    calls, chunks = [], []
    advance = simulation.Simulation._advance

    def counted(self, program, nsteps, *args):
        calls.append(nsteps)
        return advance(self, program, nsteps, *args)

    monkeypatch.setattr(simulation.Simulation, "_advance", counted)
    model = build_ringtest(2, 8, (2, 3), (1, 2))
    sim = Simulation(model, load_backend(backend), threads=1, compiled_epochs=epochs)
    sunk = sim.run(
        3.0, record=record, record_every=3, sink=lambda t, v: chunks.append((t, v.copy()))
    )
    assert set(calls) == {6, 4}  # 40-step epochs: 6 calls of 6, one of 4
    assert sunk.v.shape == (0, len(record)) and sunk.spikes == whole.spikes
    np.testing.assert_array_equal(np.concatenate([t for t, _ in chunks]), whole.t)
    np.testing.assert_array_equal(np.concatenate([v for _, v in chunks]), whole.v)
