"""Every available backend against the numpy reference: kernels within a few ulps, and
whole simulations with identical spikes.

hypothesis draws the kernels' inputs (voltages, states, parameters, dt, temperature) and
random small networks built natively (random trees, mechanism mixes, stimuli, connections).
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import Instances, builtin, kernel_inputs, randomised, slow_for, synapse_network
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portneuron.backends import backend_names, backend_status, load_backend
from test_cuda import GPU

from portneuron.build import Cell, Network
from portneuron.io.spikes import format_spikes
from portneuron.sim import cable
from portneuron.sim.epoch import Interleaved
from portneuron.sim.simulation import Simulation

OTHERS = [n for n in backend_names() if n != "numpy" and backend_status(n).available]
MAX_ULP = 4  # per kernel: libm against NumPy's math, operations in the same order
#: A backend with its device's own math (Backend.own_math: CUDA's libdevice, an OpenCL
#: driver's library) is held to test_cuda's GPU tolerance, 1e-14 of a value or of its
#: array's largest. PoCL's exp differs from the C library's in 10 % of arguments, by 1 ulp;
#: over 40 random draws of each built-in mechanism its kernels were within 32 ulps of a
#: value, 2.8e-15 of the array's largest.
DEVICE_MATH = GPU
MECHANISMS = ["hh", "passive", "expsyn", "exp2syn", "stim", "netstim", "svclmp"]

pytestmark = pytest.mark.skipif(not OTHERS, reason="no backend besides numpy can run here")


def assert_close(expected: np.ndarray, actual: np.ndarray, what: str) -> None:
    if expected.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    same = (expected == actual) | (np.isnan(expected) & np.isnan(actual))
    if same.all():
        return
    np.testing.assert_array_max_ulp(expected[~same], actual[~same], maxulp=MAX_ULP)


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("mod", MECHANISMS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), dt=st.floats(1e-3, 0.2), celsius=st.floats(0, 37))
def test_mechanism_kernels_match_numpy(backend, mod, seed, dt, celsius):
    mechanism = builtin(mod)
    reference, other = load_backend("numpy"), load_backend(backend)
    close = DEVICE_MATH if other.own_math else assert_close
    rng = np.random.default_rng(seed)
    base = randomised(Instances(mechanism, 12, dt=dt, celsius=celsius), rng)
    base.build_tables()
    for kernel, args, lanes in kernel_inputs(base, rng):
        copies = [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
                  for _ in range(2)]  # fmt: skip
        out = [b.run(b.compile(kernel), c, lanes) for b, c in zip((reference, other), copies)]
        for name, value in copies[0].items():
            if isinstance(value, np.ndarray):
                close(value, copies[1][name], f"{mod} {kernel.name} {name}")
        for stream, fields in out[0].items():
            for field, value in fields.items():
                close(value, out[1][stream][field], f"{mod} {kernel.name} {stream}.{field}")


@pytest.mark.parametrize("backend", OTHERS)
@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_cable_kernels_match_numpy(backend, sizes, rnd):
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    n = int(first[-1])
    parent = np.full(n, -1, np.int32)
    for c, size in enumerate(sizes):
        for k in range(1, size):
            parent[first[c] + k] = first[c] + rnd.randrange(k)
    rng = np.random.default_rng(rnd.randrange(2**31))
    args = {
        "cell.first": first, "node.parent": parent, "node.a": -rng.uniform(0.1, 1, n),
        "node.b": -rng.uniform(0.1, 1, n), "node.v": rng.uniform(-80, 40, n),
        "node.rhs": rng.uniform(-1, 1, n), "node.d": rng.uniform(3, 5, n), "factor": 1.0,
        "t": 1.0, "presyn.node": np.arange(n, dtype=np.int32),
        "presyn.threshold": np.zeros(n), "presyn.flag": rng.choice([0.0, 1.0], n),
    }  # fmt: skip
    for make, lanes in ((cable.axial, len(sizes)), (cable.hines, len(sizes)),
                        (cable.update_voltage, n), (cable.threshold, n)):  # fmt: skip
        kernel = make()
        copies = [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
                  for _ in range(2)]  # fmt: skip
        backends = (load_backend("numpy"), load_backend(backend))
        out = [b.run(b.compile(kernel), c, lanes) for b, c in zip(backends, copies)]
        for name, value in copies[0].items():
            if isinstance(value, np.ndarray):
                assert_close(value, copies[1][name], f"{kernel.name} {name}")
        assert out[0].keys() == out[1].keys()


@st.composite
def networks(draw):
    """2-3 random cells (random trees, hh and pas mixes), IClamps, NetStims and NetCons."""
    net = Network()
    ncells = draw(st.integers(2, 3))
    for gid in range(ncells):
        cell = Cell()
        soma = cell.section("soma", L=draw(st.floats(8, 25)), diam=draw(st.floats(8, 25)))
        cell.insert(soma, "hh", gnabar=draw(st.floats(0.08, 0.2)))
        sections = [soma]
        for k in range(draw(st.integers(1, 5))):
            parent = sections[draw(st.integers(0, len(sections) - 1))]
            sec = cell.section(f"d{k}", L=draw(st.floats(20, 300)), diam=draw(st.floats(0.5, 3)),
                               nseg=draw(st.integers(1, 7)), Ra=draw(st.floats(50, 200)),
                               parent=parent, x=draw(st.sampled_from([1.0, 0.5, 0.0])))  # fmt: skip
            cell.insert(sec, "pas", g=draw(st.floats(1e-5, 1e-3)), e=-65.0)
            if draw(st.booleans()):
                cell.insert(sec, "hh", gnabar=draw(st.floats(0.0, 0.05)))
            sections.append(sec)
        syn = draw(st.sampled_from(["ExpSyn", "Exp2Syn"]))
        where = sections[draw(st.integers(0, len(sections) - 1))]
        cell.point_process(where, draw(st.floats(0, 1)), syn)
        if draw(st.booleans()):
            cell.point_process(soma, 0.5, "IClamp", **{"del": draw(st.floats(0, 5)), "dur": 3.0,
                                                     "amp": draw(st.floats(0, 0.5))})  # fmt: skip
        cell.spike_detector(soma, 0.5, 0.0)
        net.add_cell(cell, gid)
    for gid in range(ncells):
        stim = net.artificial_cell("NetStim", start=draw(st.floats(0, 5)), number=3,
                                   interval=draw(st.floats(1, 5)), noise=draw(st.sampled_from([0, 0.5])))  # fmt: skip
        net.connect(gid, 0, draw(st.floats(0.005, 0.05)), draw(st.floats(0.5, 3)), source_stim=stim)
        target = draw(st.integers(0, ncells - 1))
        net.connect(
            target, 0, draw(st.floats(0.005, 0.05)), draw(st.floats(0.5, 3)), source_gid=gid
        )
    return net


@pytest.mark.parametrize("backend", slow_for(OTHERS, "opencl"))  # opencl: a minute
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(), threads=st.integers(1, 3))
def test_random_networks_give_identical_spikes(backend, net, threads):
    """The numpy reference steps; a compiled backend runs whole epochs on 1-3 threads."""
    runs = []
    for name in ("numpy", backend):
        model = net.build()
        record = list(range(0, model.nodes.count, 3))
        sim = Simulation(model, load_backend(name), threads=threads)
        runs.append(sim.run(15.0, record=record))
        if load_backend(name).compiled_epochs:
            assert sim.stepwise_reason == ""
    assert format_spikes(runs[0].spikes) == format_spikes(runs[1].spikes)
    np.testing.assert_array_equal(runs[0].t, runs[1].t)
    assert np.abs(runs[0].v - runs[1].v).max() <= 1e-9


@pytest.mark.parametrize("backend", ["numpy", *OTHERS])
@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=1, max_size=11),
    st.integers(1, 8),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_interleaved_cable_kernels_equal_the_per_cell_ones(backend, sizes, width, same, rnd):
    """axial_interleaved and hines_interleaved take a block's cells at once (SIMD lanes on
    llvm), stored interleaved, each cell's nodes in its own order: the result is the
    per-cell kernels' to the bit, for cells of any sizes (padding) and any parents, and
    for blocks of cells of one shape (`same`: whole rows of parents). Blocks take the
    cells in any order, with empty slots anywhere."""
    if same:
        sizes = [sizes[0]] * len(sizes)
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    n = int(first[-1])
    parent = np.full(n, -1, np.int32)
    shape = [rnd.randrange(k) for k in range(1, max(sizes))]
    for c, size in enumerate(sizes):
        for k in range(1, size):
            parent[first[c] + k] = first[c] + (shape[k - 1] if same else rnd.randrange(k))
    rng = np.random.default_rng(rnd.randrange(2**31))
    args = {
        "cell.first": first, "node.parent": parent,
        "node.a": -rng.uniform(0.1, 1, n), "node.b": -rng.uniform(0.1, 1, n),
        "node.v": rng.uniform(-80, 40, n), "node.rhs": rng.uniform(-1, 1, n),
        "node.d": rng.uniform(3, 5, n),
    }  # fmt: skip
    nblocks = -(-len(sizes) // width) + rnd.randrange(2)
    cells = np.append(rng.permutation(len(sizes)), [-1] * (nblocks * width - len(sizes)))
    layout = Interleaved(first, parent, rng.permutation(cells), width)
    interleaved = {**layout.args(args), **layout.block_args()}
    assert layout.uniform[layout.rows > 0].all() or not same
    reference, other = load_backend("numpy"), load_backend(backend)
    for per_cell, block in (
        (cable.axial, cable.axial_interleaved),
        (cable.hines, cable.hines_interleaved),
    ):
        reference.run(reference.compile(per_cell()), args, len(sizes))
        other.run(other.compile(block(width)), interleaved, nblocks)
        for name in ("node.rhs", "node.d"):
            np.testing.assert_array_equal(interleaved[name][layout.perm], args[name], name)


@pytest.mark.parametrize(
    "backend",
    [b for b in OTHERS if load_backend(b).compiled_epochs and load_backend(b).device_kind == "cpu"],
)
def test_ringtest_identical_for_any_thread_count(backend):
    """Spikes and voltages do not depend on how the cell blocks are spread over threads."""
    from portneuron.build.ringtest import build_ringtest

    runs = []
    for threads in (1, 2, 3):
        model = build_ringtest(nring=3, ncell=8, nbranch=(2, 6), ncompart=(1, 3))
        record = list(range(0, model.nodes.count, 7))
        sim = Simulation(model, load_backend(backend), threads=threads)
        runs.append(sim.run(30.0, record=record))
        assert sim.threads_used == threads and sim.stepwise_reason == ""
    assert len(runs[0].spikes) > 20
    for other in runs[1:]:
        assert other.spikes == runs[0].spikes
        np.testing.assert_array_equal(other.v, runs[0].v)


@pytest.mark.skipif("llvm" not in OTHERS, reason="llvm cannot run here")
@pytest.mark.parametrize("linker", ["ld", "none"])
def test_llvm_compile_cache_and_dumps(tmp_path, linker):
    """Compiled kernels come back from the disk cache in a new process, as shared
    libraries (where the system has a linker) or as objects for LLVM's JIT
    (PORTNEURON_LINKER=none); a damaged one is compiled again; the stages can be printed
    (PORTNEURON_DUMP, portneuron compile --emit llvm|asm)."""
    import os
    import shutil
    import subprocess
    import sys

    if linker != "none" and (sys.platform != "linux" or shutil.which(linker) is None):
        pytest.skip(f"no {linker} here")

    code = (
        "from harness import builtin\n"
        "from portneuron.backends import load_backend\n"
        "from portneuron.backends.llvm.runtime import Jit\n"
        "b = load_backend('llvm')\n"
        "[b.compile(k).function for k in builtin('hh').kernels]  # JIT on first use\n"
        "print(Jit.get().hits)\n"
    )
    run = (  # a run's voltages, to the bit
        "import hashlib\n"
        "from portneuron.backends import load_backend\n"
        "from portneuron.build.ringtest import build_ringtest\n"
        "from portneuron.sim.simulation import Simulation\n"
        "model = build_ringtest(nring=2, ncell=4)\n"
        "Simulation(model, load_backend('llvm')).run(5.0)\n"
        "print(hashlib.sha256(model.nodes.v.tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PORTNEURON_CACHE": str(tmp_path), "PORTNEURON_LINKER": linker}
    tests = os.path.dirname(__file__)
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=tests,
            check=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    hh_kernels = len(builtin("hh").kernels)
    assert int(runs[0].stdout) == 0 and int(runs[1].stdout) >= hh_kernels
    objects = sorted((tmp_path / "llvm").glob("pn_*.so" if linker != "none" else "pn_*.o"))
    assert 2 <= len(objects) <= hh_kernels and not list((tmp_path / "llvm").glob("*.tmp"))
    objects[0].write_bytes(objects[0].read_bytes()[:-40])  # cut short
    objects[1].write_bytes(b"\0" * 64 + objects[1].read_bytes()[64:])  # overwritten
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, cwd=tests, check=True)  # fmt: skip
    assert int(again.stdout) == int(runs[1].stdout) - 2  # compiled again, not loaded
    voltages = {
        way: subprocess.run([sys.executable, "-c", run], capture_output=True, text=True,
                            env={**env, "PORTNEURON_LINKER": way}, cwd=tests, check=True).stdout
        for way in {linker, "ld" if shutil.which("ld") else "none"}
    }  # fmt: skip
    assert len(set(voltages.values())) == 1, "a shared library and the JIT run the same code"
    dumped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "PORTNEURON_DUMP": "ir,llvm"}, cwd=tests, check=True)  # fmt: skip
    assert "kernel current over instance" in dumped.stderr and "define" in dumped.stderr
    for stage, marker in (("llvm", "define void"), ("asm", "retq")):
        out = subprocess.run([sys.executable, "-m", "portneuron", "compile", "hh", "--emit", stage],
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert marker in out.stdout


@pytest.mark.skipif("llvm" not in OTHERS, reason="llvm cannot run here")
def test_a_warm_llvm_run_loads_no_llvm(tmp_path):
    """A run whose kernels are all in the cache neither loads llvmlite's library nor
    verifies or folds a kernel again (both were done before they went in): the host's
    triple, CPU and features come from the cache's record of this processor, LLVM's own
    answer (a record cut short is asked again); the voltages are the cold run's."""
    import os
    import subprocess
    import sys

    import llvmlite.binding as llvm

    run = (
        "import hashlib, sys\n"
        "import portneuron.ir.verify as verify\n"
        "from portneuron.backends import load_backend\n"
        "from portneuron.build.ringtest import build_ringtest\n"
        "from portneuron.sim.simulation import Simulation\n"
        "import portneuron.backends.llvm.backend as backend\n"
        "calls = []\n"
        "checked = backend.verify_kernel\n"
        "backend.verify_kernel = lambda k: calls.append(k) or checked(k)\n"
        "model = build_ringtest(nring=2, ncell=4)\n"
        "Simulation(model, load_backend('llvm')).run(5.0)\n"
        "print(hashlib.sha256(model.nodes.v.tobytes()).hexdigest())\n"
        "print('llvmlite.binding' in sys.modules, len(calls))\n"
    )
    env = {**os.environ, "PORTNEURON_CACHE": str(tmp_path)}

    def once() -> list[str]:
        return subprocess.run([sys.executable, "-c", run], capture_output=True, text=True,
                              env=env, check=True).stdout.split("\n")  # fmt: skip

    cold, warm = once(), once()
    assert cold[1].startswith("True ") and int(cold[1].split()[1]) > 5
    assert warm[1] == "False 0" and warm[0] == cold[0]
    (record,) = (tmp_path / "llvm").glob("host-*.txt")
    llvm.initialize_native_target()
    answer = [llvm.get_process_triple(), llvm.get_host_cpu_name(),
              llvm.get_host_cpu_features().flatten(), "end"]  # fmt: skip
    assert record.read_text().split("\n") == answer
    record.write_text("\n".join(answer[:2]))  # cut short: LLVM is asked again
    again = once()
    assert again[1] == "True 0" and again[0] == cold[0]
    assert record.read_text().split("\n") == answer


@pytest.mark.parametrize(
    "backend", slow_for([b for b in OTHERS if load_backend(b).compiled_epochs], "opencl")
)
@pytest.mark.parametrize("synapse", ["ExpSyn", "PulseSyn"])
def test_compiled_epochs_equal_the_stepwise_loop_to_the_bit(backend, synapse):
    """Compiled epochs run cells in blocks grouped by shape, each mechanism set's instances
    sorted by their interleaved node (several synapses on one node keep their order) on
    copies of the per-instance arrays, and self-events in a queue of the block's, merged
    with the epoch's events in NEURON's order: spikes, voltages and every mechanism
    variable written back are the stepwise loop's, bit for bit, on the same backend (where
    several synapses add to one node in lane order; with atomics, in any order: within
    1e-9 mV and 1e-9 relative, as against numpy); and the numpy reference's spikes."""
    runs, models = [], []
    for name, epochs in (("numpy", False), (backend, False), (backend, True)):
        model = synapse_network(synapse).build()
        sim = Simulation(model, load_backend(name), threads=2, compiled_epochs=epochs)
        runs.append(sim.run(25.0, record=list(range(0, model.nodes.count, 2))))
        models.append(model)
        assert (sim.stepwise_reason == "") == epochs
    assert len(runs[0].spikes) >= 10  # every cell fires
    assert runs[1].spikes == runs[0].spikes and runs[2].spikes == runs[0].spikes
    exact = load_backend(backend).ordered_sums
    if exact:
        np.testing.assert_array_equal(runs[2].v, runs[1].v)
    assert np.abs(runs[2].v - runs[0].v).max() <= 1e-9
    for stepwise, compiled in zip(models[1].mechanisms, models[2].mechanisms):
        for name, values in stepwise.data.items():
            what = f"{stepwise.name}.{name}"
            if exact:
                np.testing.assert_array_equal(compiled.data[name], values, what)
            else:
                np.testing.assert_allclose(compiled.data[name], values, 1e-9, 1e-12, err_msg=what)
    if synapse == "PulseSyn":  # every pulse ended and was counted, across epochs
        pulses = next(m for m in models[2].mechanisms if m.name == "PulseSyn").data
        assert pulses["n"].sum() > 100


@pytest.mark.skipif(not backend_status("llvm").available, reason="the llvm backend cannot run")
def test_llvm_epoch_queue_overflow_is_one_line(monkeypatch):
    """A block's self-event queue that fills stops the run with one line (the driver says
    so, the simulation words it), not a lost event."""
    from portneuron.errors import SimulationError
    from portneuron.sim import driver

    monkeypatch.setattr(driver, "queue_capacity", lambda plan: 1)
    sim = Simulation(synapse_network("PulseSyn").build(), load_backend("llvm"))
    with pytest.raises(SimulationError, match=r"^more than 1 self-events .* one block of cells"):
        sim.run(15.0)
