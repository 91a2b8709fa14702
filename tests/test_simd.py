"""The llvm backend's SIMD lowering (backends/llvm/simd.py) against the interpreter: lanes
run as vectors give the sequential lanes' results to the bit, whatever the mask of each
branch (all lanes, none, some), with a remainder after the last whole vector, gathers,
scatters, accumulations into shared elements and loops inside a lane."""

from __future__ import annotations

import dataclasses
import re
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portneuron.backends import backend_status, load_backend
from portneuron.ir import F32, F64, I32, Kernel, Var, verify_kernel
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder

pytestmark = pytest.mark.skipif(
    not backend_status("llvm").available, reason="the llvm backend cannot run here"
)


def kernel(read_shared: bool = False) -> Kernel:
    """Masks, blends, gathers and accumulations; with `read_shared`, lanes also read the
    elements they accumulate into (so another lane's sum shows: they must go one by one)."""
    kb = KernelBuilder("branchy", "instance", "masks, blends, gathers and accumulations")
    x = kb.array("x", F64, "instance")[kb.lane]
    node = kb.assign("node", kb.array("node_index", I32, "instance")[kb.lane])
    gathered = kb.array("acc" if read_shared else "g", F64, "node")[node]
    kb.array("out", F64, "instance")
    kb.array("acc", F64, "node")
    kb.array("total", F64, "uniform1")
    y = kb.assign("y", x)  # reassigned under a mask and read after it: blends
    positive = kb.assign("positive", b.gt(x, 0.0))  # a bool local
    with kb.if_(positive):
        kb.assign("y", b.mul(x, 2.0))
        z = kb.assign("z", b.call("sqrt", x))  # read only under the mask: no blend
        kb.store("out", kb.lane, b.div(z, gathered))
        with kb.if_(b.lt(x, 0.5)):
            kb.add_to("acc", node, x)
    with kb.else_():
        kb.store("out", kb.lane, b.select(b.lt(x, -0.5), b.neg(x), b.pow_(x, 2.0)))
    kb.add_to("total", 0, y)
    with kb.loop("k", 0, 3) as k:  # into the lane's own element: sums in the same order
        kb.add_to("out", kb.lane, b.mul(b.cast(F64, k), y))
    return verify_kernel(kb.build())


def run_on(*names: str, k: Kernel, args: dict, lanes: int) -> list[dict]:
    """The kernel on each backend named, each on a copy of `args`: the copies after."""
    results = []
    for name in names:
        backend = load_backend(name)
        copy = {key: (v.copy() if isinstance(v, np.ndarray) else v) for key, v in args.items()}
        with np.errstate(all="ignore"):
            backend.run(backend.compile(k), copy, lanes)
        results.append(copy)
    return results


def on_both(k: Kernel, args: dict, lanes: int) -> list[dict]:
    """The kernel on numpy and on llvm, each on a copy of `args`: the copies after."""
    return run_on("numpy", "llvm", k=k, args=args, lanes=lanes)


def assert_same_bits(k: Kernel, args: dict, lanes: int) -> None:
    """The kernel on numpy and llvm, from the same arguments: out, acc and total equal."""
    results = on_both(k, args, lanes)
    for name in ("out", "acc", "total"):
        np.testing.assert_array_equal(results[1][name], results[0][name], err_msg=name)


@settings(max_examples=30, deadline=None)
@given(lanes=st.integers(1, 29), seed=st.integers(0, 2**31 - 1))
def test_stores_to_f32_arrays_round_as_numpy_does(lanes, seed):
    """An f64 value stored to an f32 array (the IR's storage type) on consecutive
    elements under a mask, scattered, and to one element: NumPy's float32 of it, to the
    bit, overflow to inf and subnormals included."""
    kb = KernelBuilder("narrow", "instance", "stores to f32 arrays")
    x = kb.assign("v", kb.array("x", F64, "instance")[kb.lane])
    at = kb.array("at", I32, "instance")[kb.lane]
    for name in ("near", "far", "one"):
        kb.array(name, F32, "out")
    with kb.if_(b.gt(x, 0.0)):
        kb.store("near", kb.lane, b.mul(x, 1e-40))
    with kb.else_():
        kb.store("near", kb.lane, b.div(x, 3.0))
    kb.store("far", at, b.mul(x, 1e38))
    kb.store("one", 0, x)
    k = verify_kernel(kb.build())
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, lanes)
    x[rng.random(lanes) < 0.2] = np.nan
    args = {"x": x, "at": rng.permutation(lanes).astype(np.int32),
            "near": np.zeros(lanes, np.float32), "far": np.zeros(lanes, np.float32),
            "one": np.zeros(1, np.float32)}  # fmt: skip
    results = on_both(k, args, lanes)
    near = np.where(x > 0, x * 1e-40, x / 3.0).astype(np.float32)
    far = np.zeros(lanes, np.float32)
    with np.errstate(over="ignore"):
        far[args["at"]] = (x * 1e38).astype(np.float32)
    for name, expected in (("near", near), ("far", far), ("one", x[-1:].astype(np.float32))):
        for result in results:
            np.testing.assert_array_equal(result[name].view(np.int32), expected.view(np.int32))


@settings(max_examples=30, deadline=None)
@given(
    lanes=st.integers(1, 29),
    exponent=st.sampled_from([1.0, 2.0, 0.5, -1.0, 1.0 + 2**-52, 3.7]),
    seed=st.integers(0, 2**31 - 1),
)
def test_powers_with_one_exponent_are_the_c_librarys(lanes, exponent, seed):
    """x ** y with y the same in every lane (a GLOBAL, as kca.mod's cai^caix with caix =
    1): the C library's pow, lane by lane, to the bit, where y is 1 without calling it;
    NaN, the infinities, -0 and negative bases included."""
    kb = KernelBuilder("power", "instance", "x ** y, y uniform")
    x = kb.assign("v", kb.array("x", F64, "instance")[kb.lane])
    kb.array("out", F64, "instance")
    kb.store("out", kb.lane, b.pow_(x, kb.scalar("y")))
    k = verify_kernel(kb.build())
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, lanes) * 10.0 ** rng.integers(-300, 300, lanes)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, -2.0, 5e-324]
    x[: min(lanes, len(specials))] = specials[: min(lanes, len(specials))]
    numpy, llvm = (
        r["out"] for r in on_both(k, {"x": x, "out": np.zeros(lanes), "y": exponent}, lanes)
    )
    np.testing.assert_array_equal(llvm.view(np.int64), numpy.view(np.int64))
    if exponent == 1.0:
        np.testing.assert_array_equal(llvm.view(np.int64), x.view(np.int64))


@settings(max_examples=20, deadline=None)
@given(lanes=st.integers(1, 29), seed=st.integers(0, 2**31 - 1))
def test_calls_on_the_kernels_scalars_are_made_once(lanes, seed):
    """tadj = q10^((celsius - temp)/10), as hh2.mod and kca.mod compute it in every lane
    (q10 a local assigned a scalar once, temp a GLOBAL's element the kernel does not
    write; and a log of them under a mask): one call each a kernel call, where the call
    first needs it, not one a vector of lanes; numpy's bits in every lane."""
    from portneuron.backends.llvm import simd

    kb = KernelBuilder("tadj", "instance", "a power of the kernel's scalars in every lane")
    x = kb.assign("v", kb.array("x", F64, "instance")[kb.lane])
    q10 = kb.assign("q", kb.scalar("q10"))  # a local, assigned once, as kca.mod's q10
    celsius, temp = kb.scalar("celsius"), kb.array("temp", F64, "uniform1")[0]
    kb.array("out", F64, "instance")
    tadj = kb.assign("tadj", b.pow_(q10, b.div(b.sub(celsius, temp), 10.0)))
    kb.store("out", kb.lane, b.mul(x, tadj))
    with kb.if_(b.gt(x, 0.0)):
        kb.store("out", kb.lane, b.add(x, b.call("log", q10)))
    k = verify_kernel(kb.build())
    rng = np.random.default_rng(seed)
    args = {"x": rng.uniform(-3, 3, lanes), "out": np.zeros(lanes), "q10": 2.3,
            "celsius": float(rng.uniform(6, 37)), "temp": np.array([23.0])}  # fmt: skip
    numpy, llvm = (r["out"] for r in on_both(k, args, lanes))
    np.testing.assert_array_equal(llvm.view(np.int64), numpy.view(np.int64))
    text = load_backend("llvm").emit(k, "llvm")
    # a site in each path to it (whole vectors, the last vector, a masked one, lanes one by
    # one; both sides of a branch's fast path), each made once a call: a call a lane would
    # be KERNEL_LANES sites in each of the three vector bodies
    for fn in ("pow", "log"):
        sites = len(re.findall(rf'call double @"?portneuron\.{fn}"?\(', text))
        assert 1 <= sites < 2 * simd.KERNEL_LANES, fn


def test_lanes_that_see_each_other_run_one_by_one():
    """Lanes that read the elements they accumulate into at an index variable run as
    vectors only where the vector's indices are consecutive (each lane its own element);
    lanes that read an element at one index and write it at another never do."""
    from portneuron.backends.llvm import simd

    assert simd.lane_analysis(kernel()).consecutive_only is False
    assert simd.lane_analysis(kernel(read_shared=True)).consecutive_only is True
    kb = KernelBuilder("shifted", "instance", "reads at the node, writes at the lane")
    node = kb.assign("node", kb.array("node_index", I32, "instance")[kb.lane])
    kb.store("acc", kb.lane, b.mul(kb.array("acc", F64, "node")[node], 2.0))
    assert simd.lane_analysis(verify_kernel(kb.build())) is None


@settings(max_examples=40, deadline=None)
@given(
    lanes=st.integers(1, 29),
    fraction=st.sampled_from([0.0, 0.3, 1.0]),
    nodes=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_vector_lanes_equal_sequential_lanes(lanes, fraction, nodes, seed):
    """`fraction` of the lanes take the branch: 0 and 1 give whole vectors one way."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random(lanes) < fraction, rng.uniform(0, 1, lanes), rng.uniform(-1, 0, lanes))
    args = {
        "x": x,
        "node_index": rng.integers(0, nodes, lanes).astype(np.int32),  # repeats: shared sums
        "g": rng.uniform(1, 2, nodes),
        "out": np.zeros(lanes),
        "acc": rng.uniform(-1, 1, nodes),
        "total": np.zeros(1),
    }
    assert_same_bits(kernel(), args, lanes)


@settings(max_examples=20, deadline=None)
@given(lanes=st.integers(1, 29), seed=st.integers(0, 2**31 - 1))
def test_masked_off_lanes_read_nothing(lanes, seed):
    """A lane whose branch is not taken does not load: here its index is far out of range,
    which sequential code never touches and a vector gather must not either."""
    kb = KernelBuilder("guarded", "instance", "a lookup guarded by a range check")
    at = kb.assign("k", kb.array("at", I32, "instance")[kb.lane])
    table = kb.array("table", F64, "table")
    kb.array("out", F64, "instance")
    with kb.if_(b.lt(at, kb.scalar("n", I32))):
        kb.store("out", kb.lane, table[at])
    with kb.else_():
        kb.store("out", kb.lane, -1.0)
    kernel = verify_kernel(kb.build())
    rng = np.random.default_rng(seed)
    table = rng.uniform(0, 1, 5)
    at = np.where(rng.random(lanes) < 0.5, rng.integers(0, 5, lanes), 2**30).astype(np.int32)
    backend = load_backend("llvm")
    out = np.zeros(lanes)
    backend.run(backend.compile(kernel), {"at": at, "table": table, "n": 5, "out": out}, lanes)
    np.testing.assert_array_equal(out, np.where(at < 5, table[np.minimum(at, 4)], -1.0))


@settings(max_examples=30, deadline=None)
@given(
    nodes=st.lists(st.tuples(st.integers(0, 10), st.integers(1, 20)), min_size=1, max_size=6),
    ions=st.lists(st.tuples(st.integers(0, 10), st.integers(1, 20)), min_size=1, max_size=6),
    seed=st.integers(0, 2**31 - 1),
)
def test_two_index_variables_each_consecutive_or_not(nodes, ions, seed):
    """A current kernel's two index variables (its node's, its ion's): where a vector's
    lanes are consecutive in one and not in the other, loads and accumulations at the one
    go as whole vectors, at the other element by element; the interpreter's bits. Indices
    are runs (start, length), cut to the shorter list."""
    kb = KernelBuilder("two", "instance", "loads and sums at two index variables")
    node = kb.assign("node", kb.array("node_index", I32, "instance")[kb.lane])
    ion = kb.assign("ion", kb.array("ion_index", I32, "instance")[kb.lane])
    x = kb.array("x", F64, "instance")[kb.lane]
    v, c = kb.array("g", F64, "node")[node], kb.array("conc", F64, "ion")[ion]
    kb.array("out", F64, "instance")
    kb.array("acc", F64, "node")
    kb.array("current", F64, "ion")
    kb.store("out", kb.lane, b.mul(v, c))
    kb.add_to("acc", node, b.add(v, x))
    kb.add_to("current", ion, b.mul(c, x))
    kernel = verify_kernel(kb.build())
    node_index = np.concatenate([np.arange(s, s + n) for s, n in nodes])
    ion_index = np.concatenate([np.arange(s, s + n) for s, n in ions])
    lanes = min(len(node_index), len(ion_index))
    rng = np.random.default_rng(seed)
    args = {"node_index": node_index[:lanes].astype(np.int32),
            "ion_index": ion_index[:lanes].astype(np.int32), "x": rng.uniform(-1, 1, lanes),
            "g": rng.uniform(-1, 1, 31), "conc": rng.uniform(0, 1, 31), "out": np.zeros(lanes),
            "acc": rng.uniform(-1, 1, 31), "current": rng.uniform(-1, 1, 31)}  # fmt: skip
    numpy, llvm = on_both(kernel, args, lanes)
    for name in ("out", "acc", "current"):
        np.testing.assert_array_equal(llvm[name].view(np.int64), numpy[name].view(np.int64))


@settings(max_examples=40, deadline=None)
@given(
    elements=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    seed=st.integers(0, 2**31 - 1),
)
def test_accumulations_at_repeated_elements_sum_in_lane_order(elements, seed):
    """Lanes that add into elements others add into too (a point process's POINTER sums,
    runs of one element, repeats after other elements, one element for every lane): the
    interpreter's sums, to the bit, in lane order."""
    kb = KernelBuilder("sums", "instance", "accumulations at repeated elements")
    x = kb.assign("value", kb.array("x", F64, "instance")[kb.lane])
    at = kb.assign("element", kb.array("at", I32, "instance")[kb.lane])
    kb.array("acc", F64, "element")
    kb.array("total", F64, "uniform1")
    kb.add_to("acc", at, b.mul(x, 3.0))
    kb.add_to("total", 0, x)
    kernel = verify_kernel(kb.build())
    rng = np.random.default_rng(seed)
    lanes = len(elements)
    args = {"x": rng.uniform(-1, 1, lanes) * 10.0 ** rng.integers(-8, 8, lanes),
            "at": np.array(elements, dtype=np.int32), "acc": rng.uniform(-1, 1, 6),
            "total": rng.uniform(-1, 1, 1)}  # fmt: skip
    numpy, llvm = on_both(kernel, args, lanes)
    for name in ("acc", "total"):
        np.testing.assert_array_equal(llvm[name].view(np.int64), numpy[name].view(np.int64))


@settings(max_examples=30, deadline=None)
@given(
    lanes=st.integers(1, 29),
    outside=st.sampled_from([0.0, 0.2, 1.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_table_lookups_take_the_unmasked_path_with_the_same_bits(lanes, outside, seed):
    """A TABLE's lookup, as the front end writes it: three nested branches (NaN, below,
    above the table) around an interpolation that assigns locals only. Vectors whose lanes
    all interpolate load element by element without a mask; the others gather under it,
    and a lane outside the table (its index negative or huge) reads nothing there. The
    interpreter's bits either way; `outside`: the share of lanes outside."""
    kb = KernelBuilder("lookup", "instance", "a TABLE's linear interpolation")
    x = kb.array("x", F64, "instance")[kb.lane]
    table = kb.array("table", F64, "table")
    kb.array("out", F64, "instance")
    xi = kb.assign("xi", b.mul(4.0, b.sub(x, -10.0)))
    value = Var("value", F64)
    with kb.if_(b.ne(xi, xi)):
        kb.assign("value", xi)
    with kb.else_():
        with kb.if_(b.le(xi, 0.0)):
            kb.assign("value", table[0])
        with kb.else_():
            with kb.if_(b.ge(xi, 80.0)):
                kb.assign("value", table[80])
            with kb.else_():
                i = kb.assign("i", b.cast(I32, xi))
                theta = kb.assign("theta", b.sub(xi, b.cast(F64, i)))
                step = b.sub(table[b.add(i, 1)], table[i])
                kb.assign("value", b.add(table[i], b.mul(theta, step)))
    kb.store("out", kb.lane, value)
    kernel = verify_kernel(kb.build())
    rng = np.random.default_rng(seed)
    inside = rng.uniform(-10, 10, lanes)
    far = rng.choice([np.nan, -1e300, 1e300, -10.5, 10.5], lanes)
    args = {"x": np.where(rng.random(lanes) < outside, far, inside),
            "table": rng.uniform(-1, 1, 81), "out": np.zeros(lanes)}  # fmt: skip
    numpy, llvm = (r["out"] for r in on_both(kernel, args, lanes))
    np.testing.assert_array_equal(llvm.view(np.int64), numpy.view(np.int64))


@settings(max_examples=30, deadline=None)
@given(
    runs=st.lists(st.tuples(st.integers(0, 10), st.integers(1, 20)), min_size=1, max_size=6),
    seed=st.integers(0, 2**31 - 1),
)
@pytest.mark.parametrize("read_shared", [False, True])
def test_consecutive_indices_take_the_vector_path_with_the_same_bits(runs, seed, read_shared):
    """A mechanism's node_index[lane] is checked per vector: where a vector's lanes have
    consecutive nodes, loads and accumulations at them go as whole vectors; elsewhere
    (runs that break inside a vector, repeated nodes) element by element, or with
    `read_shared` (lanes read what others accumulate) lane by lane. Either way the
    results are the interpreter's; with `read_shared` and repeated nodes, where the lanes
    see each other, those of the kernel's lanes one after another (as NEURON runs a
    mechanism's instances), which the interpreter, a vector of every lane, does not give.
    Indices are runs (start, length) of consecutive nodes."""
    from portneuron.backends.llvm import simd

    k = kernel(read_shared)
    assert [array for _, array in simd.lane_analysis(k).gathers] == ["node_index"]
    rng = np.random.default_rng(seed)
    node_index = np.concatenate([np.arange(s, s + n) for s, n in runs]).astype(np.int32)
    lanes, nodes = len(node_index), int(node_index.max()) + 1
    args = {
        "x": rng.uniform(-1, 1, lanes),
        "node_index": node_index,
        "g": rng.uniform(1, 2, nodes),
        "out": np.zeros(lanes),
        "acc": rng.uniform(-1, 1, nodes),
        "total": np.zeros(1),
    }
    if not read_shared:
        assert_same_bits(k, args, lanes)
        return
    sequential = dataclasses.replace(k, name="branchy_lane_by_lane")
    with mock.patch.object(simd, "lane_analysis", lambda kernel: None):
        (expected,) = run_on("llvm", k=sequential, args=args, lanes=lanes)
    (vectors,) = run_on("llvm", k=k, args=args, lanes=lanes)
    for name in ("out", "acc", "total"):
        np.testing.assert_array_equal(vectors[name], expected[name], err_msg=name)


@settings(max_examples=20, deadline=None)
@given(lanes=st.integers(1, 29), seed=st.integers(0, 2**31 - 1))
def test_while_loops_run_lane_by_lane_with_the_same_bits(lanes, seed):
    """A while loop leaves each lane at its own iteration: such a kernel runs its lanes
    one by one (no vectors), each through the loop as the interpreter does."""
    from portneuron.backends.llvm import simd

    kb = KernelBuilder("series", "instance", "exp(x) summed until its terms are negligible")
    x = kb.array("x", F64, "instance")[kb.lane]
    kb.array("out", F64, "instance")
    term, total, k = kb.assign("term", 1.0), kb.assign("total", 1.0), kb.assign("k", 0)
    with kb.while_(b.gt(b.call("fabs", term), b.mul(1e-16, b.call("fabs", total)))):
        kb.assign("k", b.add(k, 1))
        kb.assign("term", b.div(b.mul(term, x), b.cast(F64, k)))
        kb.assign("total", b.add(total, term))
    kb.store("out", kb.lane, total)
    k = verify_kernel(kb.build())
    assert simd.lane_analysis(k) is None
    rng = np.random.default_rng(seed)
    args = {"x": rng.uniform(-20, 20, lanes), "out": np.zeros(lanes)}
    results = []
    for name in ("numpy", "llvm"):
        backend = load_backend(name)
        copy = {key: value.copy() for key, value in args.items()}
        backend.run(backend.compile(k), copy, lanes)
        results.append(copy["out"])
    np.testing.assert_array_equal(results[1], results[0])
