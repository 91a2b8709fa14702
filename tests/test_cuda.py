"""The cuda backend: generated CUDA C for every built-in mechanism and engine kernel, and
device-resident compiled epochs.

Without a GPU: the source compiles with `nvcc -ptx` for sm_90 with no warnings, each kernel
an entry; the backend itself, on a CPU stand-in runtime (tests/cuda_host.py: the source
built by g++, each CUDA thread a thread, real barriers and atomics), gives the numpy
reference's results, kernel by kernel and for whole simulations in compiled epochs. With a
GPU (marker `gpu`): the same checks on the device.
"""

from __future__ import annotations

import ctypes
import gc
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cuda_host import GXX, HostRuntime
from harness import Instances, builtin, kernel_inputs, randomised, slow_for, synapse_network
from libdevice_host import FUNCTIONS as LIBDEVICE_FUNCTIONS
from libdevice_host import libdevice_path
from portneuron.backends import backend_status, load_backend
from portneuron.backends.cuda.backend import NVCC_OPTIONS, CudaBackend
from portneuron.backends.cuda.mapping import UnsupportedKernel, thread_mapping
from portneuron.backends.cuda.names import Names, sanitize
from portneuron.backends.cuda.render import kernel_source, module_source, signature
from portneuron.backends.cuda.runtime import find_nvcc
from portneuron.ir import BOOL, F32, F64, I32, Kernel, Var
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder
from portneuron.ir.passes import fold_constants

from portneuron.build import Cell, Network
from portneuron.cli import main
from portneuron.sim import cable, driver, epoch, simulation
from portneuron.sim.epoch import Interleaved
from portneuron.sim.simulation import MAX_EPOCH_STEPS, Simulation, SimulationError

MECHANISMS = ["hh", "passive", "expsyn", "exp2syn", "stim", "netstim", "svclmp"]
WIDTHS = (1, 3, 8, 32)  # no split; __syncthreads; __syncwarp on 8 bits; a whole warp


NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, /usr/local/cuda/bin)")
needs_gxx = pytest.mark.skipif(
    GXX is None, reason="g++ not found: cannot run the source on the CPU"
)
CUDA = backend_status("cuda")
needs_gpu = pytest.mark.skipif(not CUDA.available, reason=f"cuda backend: {CUDA.reason}")


# ------------------------------------------------------------------ the kernels


def engine_kernels() -> list[Kernel]:
    """The kernels Simulation compiles (portneuron.sim.simulation), and the interleaved
    ones of compiled epochs."""
    kernels = [
        cable.clear_matrix(),
        cable.capacitance(),
        cable.axial(),
        cable.hines(),
        cable.update_voltage(),
        cable.threshold(),
    ]
    for ion in ("na", "ca"):
        kernels += [
            cable.ion_reset(ion, nernst=ion == "ca"),
            cable.second_order_current(ion),
            cable.ion_init(ion),
            Kernel(**{**_fields(cable.ion_init(ion, False)), "name": f"ion_wrote_{ion}"}),
        ]
    for width in WIDTHS:
        kernels += [cable.axial_interleaved(width), cable.hines_interleaved(width)]
    return kernels


def _fields(kernel: Kernel) -> dict:
    return {f: getattr(kernel, f) for f in Kernel.__dataclass_fields__}


INTRINSIC_CASES = ["exp", "expm1", "log", "log10", "sqrt", "fabs", "floor", "ceil", "sin",
                   "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh"]  # fmt: skip


def every_construct() -> Kernel:
    """Each IR construct and intrinsic, with names that C or the generated code own
    (`lane`, `exp`, `slot`, `hi`), and a parallel loop that stays in its thread."""
    kb = KernelBuilder("every.construct", "instance", "each IR construct")
    x, n, flag = kb.array("in.x"), kb.array("in.n", I32), kb.array("in.flag", BOOL)
    for name, dtype, space in (("out.fn", F64, "out"), ("out.i", I32, "out"),
                               ("out.acc", F64, "node"), ("out.count", I32, "node"),
                               ("out.own", F64, "instance"), ("out.par", F64, "out"),
                               ("out.f32", F32, "out")):  # fmt: skip
        kb.array(name, dtype, space)
    hi, m, on = kb.scalar("hi"), kb.scalar("m", I32), kb.scalar("on", BOOL)
    kb.stream("rec", (("lane", I32), ("value", F64)))
    me = kb.assign("lane", kb.lane)
    v = kb.assign("exp", x[me])
    k = kb.assign("k.n", n[me])
    floats = [b.call(fn, v) for fn in INTRINSIC_CASES] + [
        b.call("atan2", v, hi), b.call("fmod", v, hi), b.pow_(b.call("fabs", v), hi),
        b.min_(b.call("log", v), hi), b.max_(hi, b.call("log", v)), b.select(b.and_(flag[me], on), v, b.neg(v)),
        b.select(b.or_(b.lt(v, 0.0), b.not_(flag[me])), float("inf"), float("-inf")),
        b.select(b.gt(v, 1e300), float("nan"), b.sub(v, -100.0)),
        b.cast(F64, b.cast(I32, b.mul(v, 3.7))), b.cast(F64, flag[me]), b.div(v, hi),
        b.call("random123", b.cast(F64, me), 7.0, 11.0, b.call("floor", b.call("fabs", b.mul(v, 10.0))), 5.0),
        b.neg(b.neg(v)), b.select(b.ne(v, v), 1.0, 2.0),
    ]  # fmt: skip
    for j, value in enumerate(floats):
        kb.store("out.fn", b.add(b.mul(me, len(floats)), j), value)
    with kb.if_(b.lt(v, -1.0)):
        kb.assign("band", 0)
    with kb.else_():
        with kb.if_(b.lt(v, 1.0)):
            kb.assign("band", 1)
        with kb.else_():
            kb.assign("band", 2)
    steps = kb.assign("steps", 0)
    with kb.while_(b.lt(b.cast(F64, steps), b.mul(b.call("fabs", v), 2.0))):  # trips per lane
        kb.assign("steps", b.add(steps, 1))
    ints = [b.min_(k, m), b.max_(k, m), b.neg(k), b.cast(I32, flag[me]),
            b.cast(I32, b.mul(v, 3.7)), b.max_(k, -(2**31)), b.sub(b.mul(k, 3), b.add(k, m)),
            b.cast(I32, b.select(on, 1.0, 0.0)), Var("band", I32), steps]  # fmt: skip
    for j, value in enumerate(ints):
        kb.store("out.i", b.add(b.mul(me, len(ints)), j), value)
    total = kb.assign("slot", 0.0)
    with kb.loop("i", b.add(k, 2), 0, step=-1) as i:
        kb.assign("slot", b.add(total, x[b.min_(i, 15)]))
    limit = kb.assign("limit", 3)
    with kb.loop("j", 0, limit) as j:  # the bound is read once, before the body changes it
        kb.assign("limit", b.sub(limit, 1))
        kb.assign("slot", b.add(total, b.cast(F64, j)))
    with kb.loop("q", 0, n[me]):
        kb.assign("slot", b.mul(total, 1.5))
    with kb.loop("p", 0, k, parallel=True) as p:  # bounds that vary: runs in the thread
        kb.store("out.par", b.add(b.mul(me, 8), p), b.cast(F64, p))
    kb.add_to("out.own", me, total)
    for j, value in enumerate((b.div(v, 3.0), b.mul(v, 1e39), b.mul(v, 1e-41))):
        kb.store("out.f32", b.add(b.mul(me, 3), j), value)  # rounded; past float; subnormal
    kb.add_to("out.acc", k, b.add(b.call("fabs", v), 1.0))  # any order: no cancelling
    kb.add_to("out.count", k, 1)
    kb.emit("rec", me, v)
    with kb.if_(b.gt(v, 0.0)):
        kb.emit("rec", b.add(me, 100), total)
    return kb.build()


def every_construct_args(rng: np.random.Generator, lanes: int = 16) -> dict:
    nf, ni = 31, 10
    return {
        "in.x": rng.uniform(-2.5, 2.5, lanes), "in.n": rng.integers(0, 6, lanes, dtype=np.int32),
        "in.flag": rng.random(lanes) < 0.5, "out.fn": np.zeros(lanes * nf),
        "out.i": np.zeros(lanes * ni, np.int32), "out.acc": np.zeros(6),
        "out.count": np.zeros(6, np.int32), "out.own": rng.uniform(0, 1, lanes),
        "out.par": np.zeros(lanes * 8), "out.f32": np.zeros(lanes * 3, np.float32),
        "hi": 0.75, "m": 2, "on": True,
    }  # fmt: skip


def mechanism_kernels(mod: str) -> list[tuple[Kernel, str]]:
    mechanism = builtin(mod)
    return [(k, f"{mechanism.name}_{k.name}") for k in mechanism.kernels]


def all_kernels() -> list[tuple[Kernel, str]]:
    kernels = [(k, sanitize(k.name)) for k in [*engine_kernels(), every_construct()]]
    for mod in MECHANISMS:
        kernels += mechanism_kernels(mod)
    return [(fold_constants(k), name) for k, name in kernels]


# ------------------------------------------------------------------ nvcc


def nvcc_ptx(source: str, folder: Path) -> str:
    """PTX for sm_90 of `source`; nvcc must succeed without a warning."""
    cu, ptx = folder / "kernels.cu", folder / "kernels.ptx"
    cu.write_text(source)
    command = [NVCC, "-ptx", "-arch=sm_90", *NVCC_OPTIONS, "-Werror", "all-warnings"]
    run = subprocess.run([*command, "-o", str(ptx), str(cu)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr.lower(), run.stderr
    return ptx.read_text()


def entries(ptx: str) -> dict[str, str]:
    """Each `.entry` of a PTX module with its body."""
    parts = re.split(r"\.visible \.entry ", ptx)[1:]
    return {part.split("(", 1)[0]: part for part in parts}


@needs_nvcc
@pytest.mark.parametrize("mod", MECHANISMS)
def test_builtin_mechanism_compiles_to_ptx(mod, tmp_path):
    kernels = [(fold_constants(k), name) for k, name in mechanism_kernels(mod)]
    ptx = entries(nvcc_ptx(module_source(kernels), tmp_path))
    assert sorted(ptx) == sorted(name for _, name in kernels)


@needs_nvcc
def test_engine_kernels_compile_to_ptx(tmp_path):
    """Every engine kernel is an entry; the split interleaved kernels synchronise their
    lane's threads (a warp barrier, or the block's where a lane does not divide a warp);
    no multiply-add is fused (kernels without math calls have no fma at all)."""
    kernels = [
        (fold_constants(k), sanitize(k.name)) for k in [*engine_kernels(), every_construct()]
    ]
    ptx = entries(nvcc_ptx(module_source(kernels), tmp_path))
    assert sorted(ptx) == sorted(name for _, name in kernels)
    for width in WIDTHS:
        for kind in ("axial", "hines"):
            body = ptx[f"{kind}_interleaved{width}"]
            barrier = {1: None, 3: "bar.sync", 8: "bar.warp.sync", 32: "bar.warp.sync"}[width]
            assert barrier is None or barrier in body, (kind, width)
    for name in ("axial", "hines", "update_voltage", "capacitance", "hines_interleaved8"):
        assert "fma." not in ptx[name], name


@needs_nvcc
@pytest.mark.parametrize("synapse", ["ExpSyn", "PulseSyn"])
def test_epoch_driver_compiles_to_ptx(synapse, tmp_path):
    """A whole epoch is one kernel, the IR driver's: every phase of the step a device
    function, barriers between them, thread 0's event delivery and (PulseSyn) self-event
    queue (Serial)."""
    numpy = load_backend("numpy")
    numpy.epoch_width = 32  # cuda's blocks, planned without a device
    numpy.device_kind = "gpu"  # as a device's: 32 cells a block, however few cells there are
    sim = Simulation(synapse_network(synapse).build(), numpy, compiled_epochs="ir")
    source = kernel_source(driver.epoch_driver(epoch.plan(sim, 32)), "pn_epoch", 256)
    ptx = entries(nvcc_ptx(source, tmp_path))
    assert list(ptx) == ["pn_epoch"] and "bar.sync" in ptx["pn_epoch"]
    assert "if (thread == 0) {  // Serial" in source
    assert ("q_full[lane] = 1;" in source) == (synapse == "PulseSyn")


# ------------------------------------------------------------------ the source itself


@pytest.mark.parametrize("width", WIDTHS)
def test_interleaved_kernels_run_one_thread_per_cell(width):
    for kernel in (cable.axial_interleaved(width), cable.hines_interleaved(width)):
        mapping = thread_mapping(fold_constants(kernel))
        assert mapping.threads_per_lane == width and mapping.reason == ""
        assert mapping.barrier == {1: "", 3: "__syncthreads", 8: "__syncwarp"}.get(
            width, "__syncwarp"
        )
        assert mapping.block % width == 0 and mapping.grid(5) * mapping.block >= 5 * width
    assert thread_mapping(cable.hines()).threads_per_lane == 1


def test_source_names_atomics_and_fallbacks():
    kernel = every_construct()
    source = kernel_source(kernel)
    assert 'extern "C" __global__ void every_construct(' in source
    names = [decl.split()[-1] for decl in signature(kernel, Names())]
    assert names[:3] == ["in_x", "in_n", "in_flag"] and "hi_1" in names  # `hi` is the bound
    assert "rec_order" in names and names[-1] == "rec_count"
    for line in ("lane_1 = lane;", "exp_1 = in_x[lane_1];", "out_own[lane_1] += slot_1;",
                 "atomicAdd(&out_acc[k_n], fabs(exp_1) + 1.0);", "atomicAdd(&out_count[k_n], 1);",
                 "rec_order[slot] = (long long)lane * 2 + 1;", "j_stop = limit;"):  # fmt: skip
        assert line in source, line
    assert "the parallel loops run in it: parallel loop 'p' has bounds that vary" in source
    assert source == kernel_source(every_construct())  # deterministic


def test_emit_inside_a_loop_is_refused_by_name():
    kb = KernelBuilder("looping", "instance")
    kb.stream("s", (("x", F64),))
    with kb.loop("i", 0, 3):
        kb.emit("s", 1.0)
    with pytest.raises(UnsupportedKernel, match="kernel 'looping': emit to 's' inside a loop"):
        kernel_source(kb.build())


# ------------------------------------------------------------------ command line


def test_cli_emits_cuda_without_a_gpu(capsys):
    assert main(["compile", "hh", "--emit", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "// ==== hh.state (cuda)" in out and out.count("__global__") == 4
    assert main(["backends"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("cuda"))
    assert ("unavailable" in line) == (not CUDA.available) and CUDA.reason in line


@pytest.mark.skipif(CUDA.available, reason="the cuda backend is available here")
def test_cli_run_on_cuda_fails_with_one_line(capsys, tmp_path):
    assert main(["run", "--backend", "cuda", "-e", "1", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"backend 'cuda' is unavailable: {CUDA.reason}" in err


# ------------------------------------------------------------------ running the source


@pytest.fixture(scope="module")
def host_backend(tmp_path_factory) -> CudaBackend:
    """The cuda backend on the CPU stand-in runtime (tests/cuda_host.py): its own host
    code, the generated source built by g++, each CUDA thread a thread."""
    if GXX is None:
        pytest.skip("g++ not found: cannot run the source on the CPU")
    return CudaBackend(
        HostRuntime(tmp_path_factory.mktemp("host")), epoch_width=8, epoch_threads=64
    )


@pytest.fixture(scope="module")
def host(host_backend):
    return runner(host_backend)


def runner(backend: CudaBackend):
    """A function that compiles and runs one kernel on `backend`."""

    def run(kernel: Kernel, args: dict, lanes: int) -> dict:
        return backend.run(backend.compile(kernel), args, lanes)

    return run


# ------------------------------------------------------------------ comparisons


def ulps(max_ulp: int):
    """Floats within `max_ulp` units in the last place (NaN where NaN); others equal."""

    def close(expected: np.ndarray, actual: np.ndarray, what: str) -> None:
        if expected.dtype.kind != "f":
            np.testing.assert_array_equal(actual, expected, err_msg=what)
            return
        same = (expected == actual) | (np.isnan(expected) & np.isnan(actual))
        if not same.all():
            np.testing.assert_array_max_ulp(expected[~same], actual[~same], maxulp=max_ulp)

    return close


def relative(rtol: float):
    """Floats within `rtol` of the expected value, or of the array's largest (for values
    that cancel towards 0); others equal."""

    def close(expected: np.ndarray, actual: np.ndarray, what: str) -> None:
        if expected.dtype.kind != "f":
            np.testing.assert_array_equal(actual, expected, err_msg=what)
            return
        finite = np.abs(expected[np.isfinite(expected)])
        scale = finite.max() if len(finite) else 0.0
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)

    return close


def copies(args: dict) -> list[dict]:
    return [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
            for _ in range(2)]  # fmt: skip


def compare(run, kernel: Kernel, args: dict, lanes: int, close, what: str) -> None:
    """`run` (kernel, args, lanes) against the numpy reference on copies of `args`, each
    array and stream field compared by `close` (expected, actual, what)."""
    numpy = load_backend("numpy")
    mine, theirs = copies(args)
    expected = numpy.run(numpy.compile(kernel), mine, lanes)
    actual = run(kernel, theirs, lanes)
    for name, value in mine.items():
        if isinstance(value, np.ndarray):
            close(value, theirs[name], f"{what} {kernel.name} {name}")
    assert expected.keys() == actual.keys()
    for stream, fields in expected.items():
        for field, value in fields.items():
            assert len(value) == len(actual[stream][field]), f"{what} {stream} records"
            close(value, actual[stream][field], f"{what} {stream}.{field}")


def check_mechanism(run, mod: str, seed: int, close) -> None:
    """Every kernel of a built-in mechanism on random states and parameters."""
    mechanism = builtin(mod)
    rng = np.random.default_rng(seed)
    base = Instances(mechanism, 12, dt=rng.uniform(1e-3, 0.2), celsius=rng.uniform(0, 37))
    randomised(base, rng)
    base.build_tables()
    for kernel, args, lanes in kernel_inputs(base, rng):
        compare(run, kernel, args, lanes, close, mod)


def random_cells(rng: np.random.Generator, ncell: int, same: bool) -> dict:
    """Node arrays of `ncell` random trees (of one shape where `same`)."""
    sizes = rng.integers(1, 13, ncell)
    if same:
        sizes[:] = sizes[0]
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    n = int(first[-1])
    parent = np.full(n, -1, np.int32)
    shape = [int(rng.integers(k)) for k in range(1, int(sizes.max()))]
    for c, size in enumerate(sizes):
        for k in range(1, size):
            parent[first[c] + k] = first[c] + (shape[k - 1] if same else rng.integers(k))
    return {
        "cell.first": first, "node.parent": parent, "node.a": -rng.uniform(0.1, 1, n),
        "node.b": -rng.uniform(0.1, 1, n), "node.v": rng.uniform(-80, 40, n),
        "node.rhs": rng.uniform(-1, 1, n), "node.d": rng.uniform(3, 5, n), "factor": 1.0,
        "t": 1.0, "presyn.node": np.arange(n, dtype=np.int32), "cj": 40.0,
        "presyn.threshold": np.zeros(n), "presyn.flag": rng.choice([0.0, 1.0], n),
        "node_index": rng.integers(0, n, 2 * n, dtype=np.int32), "mech.cm": rng.uniform(0.5, 2, 2 * n),
    }  # fmt: skip


def check_cable(run, seed: int, close, sums=None) -> None:
    """The per-cell cable kernels, threshold (records) and capacitance (several instances
    on one node). `sums`: the tolerance for capacitance, whose two lanes per node add into
    one element by atomics, in the order they arrive (CudaBackend.ordered_sums is False:
    d + a + b or d + b + a, one rounding apart); `close` where None."""
    rng = np.random.default_rng(seed)
    args = random_cells(rng, int(rng.integers(1, 40)), same=False)
    ncell, n = len(args["cell.first"]) - 1, len(args["node.v"])
    kernels = [(cable.clear_matrix(), n, close), (cable.axial(), ncell, close),
               (cable.hines(), ncell, close), (cable.update_voltage(), n, close),
               (cable.threshold(), n, close), (cable.capacitance(), 2 * n, sums or close)]  # fmt: skip
    for kernel, lanes, tolerance in kernels:
        compare(run, kernel, args, lanes, tolerance, "cable")


def check_interleaved(run, seed: int, width: int, same: bool) -> None:
    """axial_interleaved and hines_interleaved equal the per-cell kernels to the bit."""
    rng = np.random.default_rng(seed)
    args = random_cells(rng, int(rng.integers(1, 3 * width + 2)), same)
    first, parent = args["cell.first"], args["node.parent"]
    nblocks = -(-(len(first) - 1) // width)
    cells = np.append(np.arange(len(first) - 1), [-1] * (nblocks * width - len(first) + 1))
    layout = Interleaved(first, parent, cells, width)
    interleaved = {**layout.args(args), **layout.block_args()}
    numpy = load_backend("numpy")
    for per_cell, block in ((cable.axial, cable.axial_interleaved), (cable.hines, cable.hines_interleaved)):  # fmt: skip
        numpy.run(numpy.compile(per_cell()), args, len(first) - 1)
        run(block(width), interleaved, nblocks)
        for name in ("node.rhs", "node.d"):
            np.testing.assert_array_equal(interleaved[name][layout.perm], args[name], name)


def check_every_construct(run, seed: int, close) -> None:
    args = every_construct_args(np.random.default_rng(seed))
    compare(run, every_construct(), args, 16, close, "every construct")


# ------------------------------------------------------------------ on the CPU

HOST = ulps(4)  # the C library's math on both sides; NumPy's own tanh differs by an ulp
#: A GPU's math (CUDA's libdevice) is not the C library's: exp differs in 6 % of arguments,
#: pow in 25 % (by 1 ulp; measured with libdevice run on the CPU, libdevice_host.py), and
#: the kernels' arithmetic can grow that (1 - exp(-dt/tau) loses bits as dt/tau -> 0; a
#: state near 0 takes a large step): up to 33 ulps of a value, 3.2e-15 of the array's
#: largest, over 40 random draws of each built-in mechanism.
GPU = relative(1e-14)
#: CUDA's documented maximum errors of libdevice (CUDA Math API, double precision), in ulps.
LIBDEVICE_MAX_ULP = {"exp": 1, "expm1": 1, "log": 1, "log10": 2, "sin": 2, "cos": 2, "tan": 2,
                     "asin": 2, "acos": 2, "atan": 2, "sinh": 2, "cosh": 1, "tanh": 1,
                     "atan2": 2, "pow": 2}  # fmt: skip


@needs_gxx
@pytest.mark.parametrize("mod", MECHANISMS)
def test_host_run_of_mechanism_kernels_matches_numpy(host, mod):
    for seed in range(3):
        check_mechanism(host, mod, seed, HOST)


@needs_gxx
def test_host_run_of_engine_kernels_matches_numpy(host):
    for seed in range(5):
        check_cable(host, seed, ulps(0), sums=ulps(1))
        check_every_construct(host, seed, HOST)
    for width in WIDTHS:
        for seed in range(4):
            check_interleaved(host, seed, width, same=seed % 2 == 0)


@pytest.fixture(scope="module")
def gpu_math(tmp_path_factory):
    """The stand-in with a GPU's math: CUDA's libdevice, compiled for the CPU."""
    if GXX is None or libdevice_path() is None:
        pytest.skip("g++ or the CUDA toolkit's libdevice not found")
    runtime = HostRuntime(tmp_path_factory.mktemp("gpu_math"), gpu_math=True)
    return CudaBackend(runtime, epoch_width=8, epoch_threads=64)


@needs_gxx
def test_libdevice_on_the_cpu_keeps_cudas_documented_error(gpu_math, tmp_path):
    """Each libdevice function as the stand-in runs it, against NumPy's (the C library's,
    within an ulp of exact): within CUDA's documented error and one ulp more; a wrong
    stand-in for a PTX operation would be far off."""
    library = tmp_path / "libdevice.so"
    objects = gpu_math.runtime.math[1]
    subprocess.run([GXX, "-shared", "-o", str(library), *objects], check=True)
    functions = ctypes.CDLL(str(library))
    rng = np.random.default_rng(7)
    numpy_name = {"pow": "power", "atan2": "arctan2", "asin": "arcsin", "acos": "arccos",
                  "atan": "arctan"}  # fmt: skip
    for name, arity in LIBDEVICE_FUNCTIONS.items():
        f = getattr(functions, f"__nv_{name}")
        f.restype, f.argtypes = ctypes.c_double, [ctypes.c_double] * arity
        x = rng.uniform(-20, 20, (2000, arity))
        if name in ("asin", "acos"):
            x = rng.uniform(-1, 1, (2000, 1))
        elif name in ("log", "log10", "pow"):
            x[:, 0] = np.exp(x[:, 0])
        expected = getattr(np, numpy_name.get(name, name))(*x.T)
        actual = np.array([f(*map(float, row)) for row in x])
        np.testing.assert_array_max_ulp(actual, expected, LIBDEVICE_MAX_ULP[name] + 1)
        assert (actual != expected).any() or name == "log", f"{name}: the C library's bits"


@needs_gxx
@pytest.mark.parametrize("mod", MECHANISMS)
def test_host_run_with_gpu_math_matches_numpy(gpu_math, mod):
    """What the GPU tests below demand, with the GPU's math, on the CPU."""
    for seed in range(3):
        check_mechanism(runner(gpu_math), mod, seed, GPU)


@needs_gxx
@pytest.mark.slow
def test_host_epochs_with_gpu_math_match_numpy(gpu_math):
    check_epochs(gpu_math, "ExpSyn")


def check_epochs(backend: CudaBackend, synapse: str) -> None:
    """Whole simulations in device-resident epochs against the numpy reference's stepwise
    loop: the same spikes, voltages within 1e-9 mV, membrane currents (i_membrane_)
    within 1e-9 of their largest, every mechanism variable within 1e-9 relative (several
    synapses on one node add atomically, in any order), and PulseSyn's pulses all ended
    and counted; over two runs, the second continuing the first (the model's state comes
    back from the device and goes up again)."""
    runs, models = [], []
    for device in (False, True):
        model = synapse_network(synapse).build()
        sim = Simulation(model, backend if device else load_backend("numpy"), fast_imem=True)
        record = list(range(0, model.nodes.count, 2))
        probes = [(sim.i_membrane, i) for i in record]
        first = sim.run(15.0, record=record, probes=probes)
        second = sim.run(25.0, record=record, initialize=False, probes=probes)
        runs.append((first, second))
        models.append(model)
        assert (sim.stepwise_reason == "") == device, sim.stepwise_reason
    (ref1, ref2), (dev1, dev2) = runs
    assert len(ref1.spikes) >= 10 and dev1.spikes == ref1.spikes and dev2.spikes == ref2.spikes
    assert np.abs(dev1.v - ref1.v).max() <= 1e-9 and np.abs(dev2.v - ref2.v).max() <= 1e-9
    for dev, ref in ((dev1, ref1), (dev2, ref2)):
        assert np.abs(dev.values - ref.values).max() <= 1e-9 * np.abs(ref.values).max()
    for reference, device in zip(*(m.mechanisms for m in models)):
        for name, values in reference.data.items():
            what = f"{reference.name}.{name}"
            np.testing.assert_allclose(device.data[name], values, 1e-9, 1e-12, err_msg=what)
    if synapse == "PulseSyn":
        pulses = [next(m for m in ms.mechanisms if m.name == "PulseSyn").data for ms in models]
        assert pulses[0]["n"].sum() > 100
        np.testing.assert_array_equal(pulses[1]["n"], pulses[0]["n"])


def negative_leak_network(leak: float = -0.02) -> Network:
    """Three cells, no NetCons; gid 2's leak is `leak`: with -0.02 backward Euler doubles
    its v - e every step."""
    net = Network()
    for gid in range(3):
        cell = Cell()
        soma = cell.section("soma", L=20.0, diam=20.0)
        cell.insert(soma, "pas", g=leak if gid == 2 else 1e-4, e=-70.0)
        cell.spike_detector(soma, 0.5, 0.0)
        net.add_cell(cell, gid)
    return net


@needs_gxx
@pytest.mark.parametrize("synapse", slow_for(["ExpSyn", "PulseSyn"], "PulseSyn"))
def test_host_epochs_match_numpy(host_backend, synapse):
    check_epochs(host_backend, synapse)


@needs_gxx
@pytest.mark.slow
def test_host_epochs_match_numpy_at_the_default_shape(host_backend):
    """The GPU's shape (32 cells a block, 256 threads: the Hines solve on a whole warp,
    eight warps on the mechanisms), the same source and host code (20 s on 2 cores)."""
    warp = CudaBackend(host_backend.runtime)
    assert (warp.epoch_width, warp.epoch_threads) == (32, 256)
    check_epochs(warp, "PulseSyn")


@needs_gxx
@pytest.mark.slow  # 25 to 45 s: the stand-in starts a thread per CUDA thread a launch
def test_host_runs_gap_junctions_in_compiled_epochs(host_backend):
    """A coupled model on the cuda backend (its host stand-in), every junction its own: the
    step-major IR driver runs whole epochs on the device, copying the junctions after each
    step; numpy's voltages within 1e-9 mV, its spikes (tests/gap_native.py's chain of 10 hh
    cells and its 100-cell network, 10 ms: the first spikes down the chain)."""
    import gap_native

    from portneuron.library import MechanismLibrary

    library = MechanismLibrary([Path(__file__).parent / "mods"])
    for build in (gap_native.chain, gap_native.network):
        runs = []
        for backend in (load_backend("numpy"), host_backend):
            net, places = build(library)
            model = net.build()
            nodes = [net.node(p.gid, p.section, p.x) for p in places]
            sim = Simulation(model, backend)
            runs.append(sim.run(10.0, record=nodes))
        assert sim.stepwise_reason == "" and sim.epoch_program().step_major
        assert len(runs[0].spikes) >= 2 and runs[1].spikes == runs[0].spikes
        assert np.abs(runs[1].v - runs[0].v).max() <= 1e-9


@needs_gxx
def test_host_epoch_blow_up_names_the_cell(host_backend):
    sim = Simulation(negative_leak_network().build(), host_backend)
    with pytest.raises(SimulationError, match=r"cell gid 2: voltage is not finite at t = "):
        sim.run(50.0, v_init=-60.0)
    assert sim.stepwise_reason == ""


@needs_gxx
def test_host_epochs_without_netcons_are_bounded(host_backend, monkeypatch):
    """With no min-delay an epoch is Simulation.longest_epoch long at most (for this small
    model LONGEST_EPOCH, here 1500), so what the device holds for one (spikes, recorded
    voltages) is bounded, not the whole run's."""
    calls = []
    advance = driver.IrEpoch.advance

    def counted(self, t0, nsteps, events, *recording):
        calls.append(nsteps)
        return advance(self, t0, nsteps, events, *recording)

    monkeypatch.setattr(driver.IrEpoch, "advance", counted)
    monkeypatch.setattr(simulation, "LONGEST_EPOCH", 1500)
    sim = Simulation(negative_leak_network(1e-4).build(), host_backend)
    steps = 2 * 1500 + 10
    result = sim.run(steps * sim.dt, record=[0])
    assert calls == [1500, 1500, 10] and result.v.shape == (steps + 1, 1)
    many = Simulation(negative_leak_network(1e-4).build(), host_backend)
    monkeypatch.setattr(simulation, "EPOCH_NODE_STEPS", many.model.nodes.count * 10)
    assert many.longest_epoch == MAX_EPOCH_STEPS  # a larger model: the floor


@needs_gxx
def test_host_epoch_frees_its_device_memory(host_backend):
    """A dropped simulation's compiled epoch gives back every allocation it made."""
    memory = host_backend.runtime.memory
    before = len(memory)
    sim = Simulation(synapse_network("PulseSyn").build(), host_backend)
    sim.run(3.0)
    assert len(memory) > before + 20
    del sim
    gc.collect()
    assert len(memory) == before


@needs_gxx
def test_host_epoch_queue_overflow_is_an_error(host_backend, monkeypatch):
    """A block's self-event queue that fills stops the run with one line, not a lost event."""
    monkeypatch.setattr(driver, "queue_capacity", lambda plan: 1)
    sim = Simulation(synapse_network("PulseSyn").build(), host_backend)
    with pytest.raises(SimulationError, match=r"more than 1 self-events .* one block of cells"):
        sim.run(15.0)


# ------------------------------------------------------------------ on a GPU


def gpu_run(kernel: Kernel, args: dict, lanes: int) -> dict:
    return runner(load_backend("cuda"))(kernel, args, lanes)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("mod", MECHANISMS)
def test_gpu_mechanism_kernels_match_numpy(mod):
    for seed in range(3):
        check_mechanism(gpu_run, mod, seed, GPU)


@pytest.mark.gpu
@needs_gpu
def test_gpu_engine_kernels_match_numpy():
    """The cable kernels have no math calls and no fused multiply-adds: the same bits,
    except where several lanes add to one element (capacitance), in any order."""
    for seed in range(5):
        check_cable(gpu_run, seed, ulps(8))
        check_every_construct(gpu_run, seed, GPU)
    for width in (*WIDTHS, 16):
        for seed in range(4):
            check_interleaved(gpu_run, seed, width, same=seed % 2 == 0)


@pytest.mark.gpu
@needs_gpu
def test_gpu_records_come_back_in_lane_order():
    """Many lanes emit at once (atomic slots): the records are sorted back into the
    interpreter's order."""
    n = 100_000
    args = {"presyn.node": np.arange(n, dtype=np.int32), "presyn.threshold": np.zeros(n),
            "presyn.flag": np.zeros(n), "node.v": np.linspace(-1, 1, n), "t": 2.0}  # fmt: skip
    compare(gpu_run, cable.threshold(), args, n, ulps(0), "threshold")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("synapse", ["ExpSyn", "PulseSyn"])
def test_gpu_epochs_match_numpy(synapse):
    check_epochs(load_backend("cuda"), synapse)


@pytest.mark.gpu
@needs_gpu
def test_gpu_epoch_blow_up_names_the_cell():
    sim = Simulation(negative_leak_network().build(), load_backend("cuda"))
    with pytest.raises(SimulationError, match=r"cell gid 2: voltage is not finite at t = "):
        sim.run(50.0, v_init=-60.0)
