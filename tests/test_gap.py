"""Gap junctions (issue 19): NEURON's models with ParallelContext.source_var / target_var,
written by nrncore_write and run from the dataset. The value a target takes is its source's
v after the voltage update, before the SOLVE blocks, and at finitialize before INITIAL
(NEURON's nonvint and nrn_finitialize); portneuron copies it at the same points, so the
voltages are NEURON's to the bit on the backends that compute as NEURON does
(harness.neuron_backends), and within 1e-9 mV on the others, with the same spikes.
tests/gap_models.py builds the models in NEURON; tests/mods/halfgap.mod is the junction
(i = g (vgap - v), an ELECTRODE_CURRENT, as NEURON's own tests write it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neuron")

from cuda_host import GXX  # noqa: E402
from harness import last_json, neuron_backends, nrnivmodl_folder  # noqa: E402
from portneuron.backends import backend_names, backend_status, load_backend  # noqa: E402

from portneuron.io.dataset import DatasetError, load_dataset  # noqa: E402
from portneuron.io.spikes import format_spikes  # noqa: E402
from portneuron.library import MechanismLibrary  # noqa: E402
from portneuron.sim.simulation import Simulation  # noqa: E402

pytestmark = pytest.mark.neuron

HERE = Path(__file__).parent
MOD = HERE / "mods" / "halfgap.mod"
#: Backends that compute as NEURON does (its bits), each on 1 and 2 threads where threaded.
EXACT = [f"{b}:{n}" for b in neuron_backends() for n in ((1, 2) if b == "llvm" else (1,))]
#: The others: NEURON's voltages within 1e-9 mV, its spikes.
OTHERS = [
    f"{b}:1"
    for b in backend_names()
    if b not in neuron_backends() and b != "cuda" and backend_status(b).available
] + (["cuda stand-in:1"] if GXX is not None else [])


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    return nrnivmodl_folder(tmp_path_factory.mktemp("gap") / "mods", [MOD])


def neuron_and_portneuron(mods: Path, model: str, folder: Path, runs: list[str], tstop=50.0):
    """NEURON's run of `model`, its dataset in `folder`, and portneuron's `runs` of it."""
    done = subprocess.run(
        [sys.executable, str(HERE / "gap_models.py"), str(mods), model, str(folder),
         ",".join(runs), str(tstop)],
        capture_output=True, text=True, cwd=HERE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return last_json(done.stdout)


def portneuron_run(data: Path, out: Path) -> str:
    """`portneuron run -d data` for 50 ms: the out.dat it wrote."""
    run = subprocess.run(
        [sys.executable, "-m", "portneuron", "run", "-d", str(data),
         "--mechanisms", str(MOD.parent), "-e", "50", "-o", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return (out / "out.dat").read_text()


@pytest.mark.parametrize(
    "model, runs",
    [*(pytest.param(m, EXACT, id=m) for m in ("two", "chain", "network")),
     *(pytest.param(m, OTHERS, marks=pytest.mark.slow, id=f"{m}-others")
       for m in ("two", "chain", "network"))],
)  # fmt: skip
def test_gap_junctions_are_neurons(mods, tmp_path, model, runs):
    """Two passive cells; 10 hh cells in a chain, spikes running down it; 100 spiking cells
    with 150 random junctions and 300 NetCons. The other backends (opencl: PoCL compiles
    every kernel, 45 s a model; cuda's host stand-in) are slow tests."""
    if not runs:
        pytest.skip("no other backend runs here")
    out = neuron_and_portneuron(mods, model, tmp_path / "data", runs)
    if model != "two":
        assert len(out["spikes"]) >= {"chain": 10, "network": 100}[model]
        assert out["range"] > 100.0
    for run, got in out["runs"].items():
        assert got["same_spikes"], run
        if run in EXACT:
            assert got["max_dv"] == 0.0, (run, got)
        else:
            assert got["max_dv"] <= 1e-9, (run, got)
        if run.startswith("numpy:"):  # numpy runs step by step
            assert "step by step" in got["stepwise"], (run, got)
        else:  # compiled epochs, step-major: the driver copies after each step
            assert got["stepwise"] == "", (run, got)


def test_the_command_runs_a_dataset_with_gap_junctions(mods, tmp_path):
    """`portneuron run -d`: out.dat is NEURON's spikes of the chain."""
    out = neuron_and_portneuron(mods, "chain", tmp_path / "data", [])
    spikes = [(t, g) for t, g in out["spikes"]]
    assert portneuron_run(tmp_path / "data", tmp_path / "out") == format_spikes(spikes)


@pytest.mark.parametrize("model", ["chain", "network"])
def test_built_natively_is_neurons(mods, tmp_path, model):
    """The same model built by portneuron.build (tests/gap_native.py: Network.gap_junction,
    Network.point_process for one cell's synapses and stimulus): NEURON's voltages bit for
    bit and its spikes; written by save_dataset (files.dat's -1, 0_gap.dat) and run by
    `portneuron run -d`, NEURON's out.dat again."""
    import gap_native

    from portneuron.io.write import save_dataset

    out = neuron_and_portneuron(mods, model, tmp_path / "data", [])
    expected = np.load(tmp_path / "data" / "neuron_v.npy")
    spikes = [(t, g) for t, g in out["spikes"]]
    library = MechanismLibrary([MOD.parent])
    for backend in neuron_backends():
        net, places = gap_native.MODELS[model](library)
        built = net.build()
        nodes = [net.node(p.gid, p.section, p.x) for p in places]
        result = Simulation(built, load_backend(backend)).run(50.0, record=nodes)
        assert np.abs(result.v - expected).max() == 0.0, backend
        assert [(float(t), int(g)) for t, g in result.spikes] == spikes, backend
    save_dataset(gap_native.MODELS[model](library)[0].build(), tmp_path / "native")
    assert (tmp_path / "native" / "files.dat").read_text().split("\n")[1] == "-1"
    assert portneuron_run(tmp_path / "native", tmp_path / "out") == format_spikes(spikes)


@pytest.mark.parametrize("model", ["chain", "network"])
def test_compiled_epochs_copy_between_steps_as_the_stepwise_loop(model):
    """A coupled model's compiled epochs run step-major, the driver copying its junctions
    after every block's step where the layout keeps the values (NEURON copies after the
    voltage update; at the step's end the sources, node voltages, are the same, and only the
    junctions' BREAKPOINT reads the targets): the stepwise loop's voltages to the bit and its
    spikes, on llvm (1 thread, however many are asked for) and through the IR driver on
    numpy's interpreter (the chain's first 5 ms: it interprets 35 ms a step)."""
    import gap_native

    library = MechanismLibrary([MOD.parent])
    tstop = {"chain": 30.0, "network": 20.0}[model]
    ways = [("stepwise", "numpy", False, 1, tstop)]
    if model == "chain":
        ways.append(("ir", "numpy", "ir", 1, 5.0))
    if backend_status("llvm").available:
        ways += [("llvm:1", "llvm", True, 1, tstop), ("llvm:2", "llvm", True, 2, tstop)]
    runs = {}
    for name, backend, epochs, threads, until in ways:
        net, places = gap_native.MODELS[model](library)
        built = net.build()
        nodes = [net.node(p.gid, p.section, p.x) for p in places]
        sim = Simulation(built, load_backend(backend), threads=threads, compiled_epochs=epochs)
        runs[name] = sim.run(until, record=nodes)
        assert (sim.stepwise_reason == "") == bool(epochs), (name, sim.stepwise_reason)
        if epochs:
            assert sim.epoch_program().step_major and sim.threads_used == 1, name
    stepwise = runs.pop("stepwise")
    assert len(stepwise.spikes) >= {"chain": 5, "network": 20}[model]
    for name, run in runs.items():
        steps = len(run.t)
        np.testing.assert_array_equal(run.v, stepwise.v[:steps], name)
        assert run.spikes == [s for s in stepwise.spikes if s[0] <= run.t[-1]], name


def test_a_blow_up_in_step_major_epochs_names_the_cell():
    """12 coupled cells in 2 blocks, gid 2's leak negative (backward Euler multiplies its
    v - e by 8 each step): the step-major driver stops and names the cell the stepwise loop names; the
    block after the bad one in the step is not marked (it was, while one flag stood for
    every block)."""
    from portneuron.build import Cell, Network, Place
    from portneuron.errors import SimulationError

    llvm = backend_status("llvm").available
    backend = "llvm" if llvm else "numpy"  # numpy interprets the driver: 20 s
    messages, blowups = [], []
    for epochs in (False, True):
        net, somas = Network(MechanismLibrary([MOD.parent])), {}
        for gid in range(12):
            cell = Cell()
            somas[gid] = cell.section("soma", L=20.0, diam=20.0)
            cell.insert(somas[gid], "pas", g=-0.035 if gid == 2 else 1e-4, e=-70.0)
            net.add_cell(cell, gid)
        for a in range(11):
            net.gap_junction(Place(a, somas[a]), Place(a + 1, somas[a + 1]), "HalfGap", g=1e-4)
        compiled = (True if llvm else "ir") if epochs else False
        sim = Simulation(net.build(), load_backend(backend), compiled_epochs=compiled)
        if epochs:
            program = sim.epoch_program()
            assert program.step_major and program.plan.nblocks == 2
            advance = program.advance

            def advanced(*args, advance=advance):
                result = advance(*args)
                blowups.append(result.blowup)
                return result

            program.advance = advanced
        with pytest.raises(SimulationError) as stop:
            sim.run(50.0, v_init=-60.0)
        messages.append(str(stop.value))
    marked = [b for b in blowups if b is not None]
    assert len(marked) == 1 and list(marked[0] < np.inf) == [True, False]
    # the same cell; the time within a step of the stepwise loop's (which checks every
    # node, the driver the roots; for a model without junctions the two differ by a step too)
    times = [float(re.search(r"cell 2 \(no gid\): voltage is not finite at t = ([0-9.]+) ms", m)[1])
             for m in messages]  # fmt: skip
    assert abs(times[1] - times[0]) <= 0.025 + 1e-9, messages


def test_a_source_that_is_no_voltage_is_neurons(mods, tmp_path):
    """A target taking a mechanism's variable (hh's m, which NEURON copies after the voltage
    update and before the SOLVE blocks change it), written by nrncore_write as hh's value:
    NEURON's voltages to the bit and its spikes, step by step (a compiled epoch's copy at
    the step's end would take m after its update)."""
    out = neuron_and_portneuron(mods, "gating", tmp_path / "data", EXACT, tstop=30.0)
    assert len(out["spikes"]) >= 2
    for run, got in out["runs"].items():
        assert got["max_dv"] == 0.0 and got["same_spikes"], (run, got)
        if run.startswith("llvm:"):
            assert "source is not a node's v (mech:" in got["stepwise"], got


STATE_GAP = """
NEURON { POINT_PROCESS StateGap RANGE g, vgap, i ELECTRODE_CURRENT i }
PARAMETER { g = 0.01 (uS) }
ASSIGNED { v (mV) vgap (mV) i (nA) }
STATE { s }
INITIAL { s = 0 }
BREAKPOINT { SOLVE relax METHOD cnexp  i = g*(vgap - v) + 0*s }
DERIVATIVE relax { s' = vgap - s }
"""


@pytest.mark.parametrize("case", ["target read by a state", "source not a v"])
def test_junctions_compiled_epochs_cannot_copy_run_step_by_step(tmp_path, case):
    """Where a copy at a step's end would not be NEURON's (a target its mechanism's SOLVE
    block reads, after NEURON's copy; a source other than a node's v, which SOLVE blocks
    change after it), the model runs step by step and says why."""
    from portneuron.build import Cell, Network, Place

    (tmp_path / "stategap.mod").write_text(STATE_GAP)
    library = MechanismLibrary([MOD.parent, tmp_path])
    net = Network(library)
    cell = Cell("hh")
    soma = cell.section("soma", L=20, diam=20)
    cell.insert(soma, "hh")
    for gid in (0, 1):
        net.add_cell(cell, gid)
    if case == "target read by a state":
        net.gap_junction(Place(0, soma), Place(1, soma), "StateGap", g=0.05)
        says = "StateGap.vgap, a gap junction's target, is read by its state block"
    else:
        point = net.point_process(1, soma, 0.5, "HalfGap", g=0.05)
        net.transfer(Place(0, soma, 0.5, "hh", "m"), Place(1, point=point, variable="vgap"))
        says = "a gap junction's source is not a node's v (mech:"
    backend = "llvm" if backend_status("llvm").available else "numpy"
    sim = Simulation(net.build(), load_backend(backend), compiled_epochs="ir")
    sim.run(2.0)
    assert says in sim.stepwise_reason, sim.stepwise_reason


@pytest.fixture(scope="module")
def special_core(tmp_path_factory):
    """CoreNEURON built with the junction (nrnivmodl -coreneuron: some minutes)."""
    folder = tmp_path_factory.mktemp("gapcore")
    nrnivmodl = Path(sys.executable).parent / "nrnivmodl"
    if not nrnivmodl.exists():
        pytest.skip("nrnivmodl is not installed")
    (folder / MOD.name).write_bytes(MOD.read_bytes())
    made = subprocess.run([str(nrnivmodl), "-coreneuron", "."], cwd=folder, capture_output=True, text=True)  # fmt: skip
    core = folder / "x86_64" / "special-core"
    if made.returncode != 0 or not core.exists():
        pytest.skip(f"nrnivmodl -coreneuron cannot build here: {made.stderr.strip()[-300:]}")
    return core


@pytest.mark.slow
@pytest.mark.parametrize("model", ["chain", "network"])
def test_the_same_spikes_as_coreneuron(mods, special_core, tmp_path, model):
    """nrniv-core (CoreNEURON with the junction) and `portneuron run -d` on the same
    dataset: the same out.dat, which is NEURON's spikes; and nrniv-core on the same model
    built natively and written by save_dataset, too."""

    def coreneuron(data: Path) -> str:
        """nrniv-core on `data` for 50 ms from the dataset's voltages: its out.dat."""
        out = data.parent / f"core-{data.name}"
        core = subprocess.run(
            [str(special_core), "-d", str(data), "-e", "50", "-o", str(out), "--voltage=1000"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert core.returncode == 0, (core.stdout + core.stderr)[-2000:]
        return (out / "out.dat").read_text()

    out = neuron_and_portneuron(mods, model, tmp_path / "data", [])
    written = portneuron_run(tmp_path / "data", tmp_path / "ours")
    assert written == coreneuron(tmp_path / "data")
    assert written == format_spikes([(t, g) for t, g in out["spikes"]])
    # the natively built model, as save_dataset writes it: CoreNEURON runs it to the same
    import gap_native

    from portneuron.io.write import save_dataset

    save_dataset(
        gap_native.MODELS[model](MechanismLibrary([MOD.parent]))[0].build(), tmp_path / "native"
    )
    assert coreneuron(tmp_path / "native") == written


@pytest.mark.mpi
def test_junctions_between_ranks(mods, tmp_path):
    """The network written by NEURON on 4 threads (4 cell groups, junctions between them),
    run on one process and under mpiexec on 1 to 4 ranks: a target whose source is on
    another rank takes its value from every step's exchange (NEURON's nrnmpi_v_transfer):
    out.dat is NEURON's on every rank count."""
    from test_mpi import MPIEXEC, PORTNEURON, mpi_ready

    if mpi_ready():
        pytest.skip(mpi_ready())
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, str(HERE / "gap_models.py"), str(mods), "network", str(data), "",
         "50", "0.025", "4"],
        capture_output=True, text=True, cwd=HERE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (data / "files.dat").read_text().split()[1:3] == ["-1", "4"]
    expected = format_spikes([(t, g) for t, g in last_json(done.stdout)["spikes"]])
    for ranks in (0, 1, 2, 3, 4):
        command = [PORTNEURON, "run", "-d", str(data), "--mechanisms", str(MOD.parent),
                   "-e", "50", "--threads", "1", "-o", str(tmp_path / f"out{ranks}")]  # fmt: skip
        if ranks:
            command = [MPIEXEC, "-n", str(ranks), *command]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert (tmp_path / f"out{ranks}" / "out.dat").read_text() == expected, ranks


NATIVE_ON_RANKS = """
import json, sys
from pathlib import Path
import gap_native
from portneuron.backends import load_backend
from portneuron.library import MechanismLibrary
from portneuron.parallel import world
from portneuron.sim.simulation import Simulation
ranks = world()
net, _ = gap_native.network(MechanismLibrary([Path("mods")]))
model = net.build(ranks=ranks)
result = Simulation(model, load_backend(sys.argv[1]), ranks=ranks, threads=1).run(50.0)
parts = ranks.gather(result.spikes)
cells = ranks.gather(model.ncell)
if ranks.rank == 0:
    print(json.dumps({"spikes": sorted(s for p in parts for s in p), "cells": cells}))
"""


@pytest.mark.mpi
def test_a_native_network_on_ranks(mods, tmp_path):
    """The 100-cell network built natively with Network.build(ranks=...) on 2 to 4 ranks:
    its cells spread over the ranks, junctions between them exchanged every step; NEURON's
    spikes on every rank count."""
    from test_mpi import MPIEXEC, mpi_ready

    if mpi_ready():
        pytest.skip(mpi_ready())
    out = neuron_and_portneuron(mods, "network", tmp_path / "data", [])
    for ranks in (2, 3, 4):
        run = subprocess.run(
            [MPIEXEC, "-n", str(ranks), sys.executable, "-c", NATIVE_ON_RANKS, "llvm"],
            capture_output=True, text=True, cwd=HERE, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        got = last_json(run.stdout)
        assert len(got["cells"]) == ranks and min(got["cells"]) > 0
        assert got["spikes"] == out["spikes"], ranks


def analytic(model, v0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The two coupled one-compartment cells' voltages at times `t` [ms] (a row per time)
    from `v0`, exactly: C dV/dt = -gL (V - E) + gc (V_other - V), with each cell's C, gL and E and the
    junction's gc read from the model."""
    nodes = model.nodes
    cap = model.mechanism_set("capacitance")
    pas = model.mechanism_set("pas")
    gap = model.mechanism_set("HalfGap")
    assert cap.count == pas.count == gap.count == 2
    at = pas.node_index
    assert list(cap.node_index) == list(at) and list(gap.node_index) == list(at)
    area = nodes.area[at] * 1e-8  # [cm2]
    c = cap.data["cm"] * area  # [uF]
    gl = pas.data["g"] * area * 1e3  # [mS]: mS x mV = uA
    gc = gap.data["g"] * 1e-3  # [mS]
    a = np.array([[-(gl[0] + gc[0]), gc[0]], [gc[1], -(gl[1] + gc[1])]]) / c[:, None]
    b = gl * pas.data["e"] / c
    rest = np.linalg.solve(a, -b)
    values, vectors = np.linalg.eig(a)
    start = np.linalg.solve(vectors, v0 - rest)
    return rest + (vectors @ (start[:, None] * np.exp(values[:, None] * t[None, :]))).T


def test_two_cells_approach_the_exact_solution_at_first_order(mods, tmp_path):
    """NEURON's step takes the other side's v from the step before (its "modified Euler"
    for gap junctions), so the error is first order in dt: halving dt halves it (within
    10 %), and at dt = 0.025 ms it is under 1 % of the voltages' range."""
    out = neuron_and_portneuron(mods, "pair", tmp_path / "data", ["numpy:1"], tstop=20.0)
    assert out["runs"]["numpy:1"]["max_dv"] == 0.0  # portneuron's run is NEURON's
    errors = []
    for dt in (0.025, 0.0125):
        model = load_dataset(tmp_path / "data", MechanismLibrary([MOD.parent]))
        nodes = list(model.mechanism_set("pas").node_index)
        v0 = model.nodes.v[nodes].copy()
        result = Simulation(model, load_backend("numpy"), dt=dt).run(20.0, record=nodes)
        exact = analytic(model, v0, result.t)
        errors.append(float(np.abs(result.v - exact).max()))
        span = float(np.ptp(exact))
    assert span > 4.0, span
    assert 1.8 < errors[0] / errors[1] < 2.2, errors
    assert errors[0] < 0.01 * span, errors


def _damaged(folder: Path, offset_from_end: int, value: bytes) -> None:
    """`value` written over 0_gap.dat's bytes from `offset_from_end` before its end (the
    first target's index at 8, its type at 25, its sid at 42, the second source's sid at 89:
    'chkpnt N' lines between)."""
    path = folder / "0_gap.dat"
    data = bytearray(path.read_bytes())
    at = len(data) - offset_from_end
    data[at : at + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "where, value, says",
    [
        (8, (99).to_bytes(4, "little", signed=True), "target 0 is value 99 of HalfGap"),
        (25, (3).to_bytes(4, "little", signed=True), "is of type 3, which is not a point process"),
        (42, (7).to_bytes(4, "little", signed=True), "takes sid 7, which no source gives"),
        (89, (0).to_bytes(4, "little", signed=True), "source sid 0 is given twice"),
    ],
    ids=["index", "type", "sid", "twice"],
)  # fmt: skip
def test_a_damaged_gap_file_is_one_line(mods, tmp_path, where, value, says):
    """A target past its mechanism's values, of a type that is no point process, taking a
    sid no source gives, or two sources of one sid: one DatasetError naming the file (or
    the dataset)."""
    neuron_and_portneuron(mods, "two", tmp_path / "data", [], tstop=1.0)
    _damaged(tmp_path / "data", where, value)
    with pytest.raises(DatasetError, match=says) as refused:
        load_dataset(tmp_path / "data", MechanismLibrary([MOD.parent]))
    assert str(tmp_path / "data") in str(refused.value)
