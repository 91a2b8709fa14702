"""The IR: verifier, interpreter semantics, the Hines solve as an IR kernel, passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portneuron.ir import (
    BOOL,
    F32,
    F64,
    I32,
    AddTo,
    Assign,
    Binary,
    Cast,
    Const,
    If,
    Kernel,
    Lane,
    Load,
    Param,
    Store,
    Var,
    VerifyError,
    format_kernel,
    run_kernel,
    verify_kernel,
)
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder
from portneuron.ir.passes import fold_constants


def kernel(*body):
    return Kernel("k", "instance", (Param("x"),), tuple(body))


@pytest.mark.parametrize(
    "bad, message",
    [
        (kernel(Assign("y", Var("z"))), "used before it is assigned"),
        (kernel(Store("x", Const(0, I32), Const(1, I32))), "is f64, accessed as i32"),
        (kernel(Store("x", Const(0.5), Const(1.0))), "index is not i32"),
        (kernel(Assign("y", Binary("add", Const(1.0), Const(1, I32)))), "applied to f64 and i32"),
        (kernel(Assign("x", Const(1.0))), "assignment to parameter"),
        (kernel(Store("nope", Lane(), Const(1.0))), "not an array parameter"),
        (kernel(Assign("y", b.call("erf", Const(1.0)))), "unknown intrinsic"),
        (kernel(Assign("y", Const(1.0)), Assign("y", Const(True, BOOL))), "is f64, assigned bool"),
    ],
)
def test_verifier_rejects_malformed_kernels(bad, message):
    with pytest.raises(VerifyError, match=message):
        verify_kernel(bad)


def f32_kernel(*body, scalar: bool = False) -> Kernel:
    params = (Param("x"), Param("r", F32, "uniform" if scalar else "out"))
    return Kernel("k", "instance", params, tuple(body))


@pytest.mark.parametrize(
    "bad, message",
    [
        (f32_kernel(Assign("y", Load("r", Lane(), F32))), "load from 'r', which is f32"),
        (f32_kernel(Store("x", Lane(), Load("r", Lane(), F64))), "array 'r' is f32"),
        (f32_kernel(AddTo("r", Lane(), Const(1.0))), "add to 'r', which is f32"),
        (f32_kernel(Store("r", Lane(), Const(1, I32))), "array 'r' is f32, accessed as i32"),
        (f32_kernel(Assign("y", Cast(F32, Const(1.0)))), "cast to f32"),
        (f32_kernel(Assign("y", Const(1.0, F32))), "not a valid f32"),
        (f32_kernel(scalar=True), "scalar 'r' is f32"),
    ],
)
def test_f32_is_a_storage_type_of_arrays_stored_to_only(bad, message):
    """An f32 array is written (an f64 value, rounded as it is stored), never read."""
    verify_kernel(f32_kernel(Store("r", Lane(), Load("x", Lane(), F64))))
    with pytest.raises(VerifyError, match=message):
        verify_kernel(bad)


def test_definite_assignment_needs_both_branches():
    kb = KernelBuilder("k", "instance")
    x = kb.array("x")
    with kb.if_(b.gt(x[kb.lane], 0.0)):
        kb.assign("y", 1.0)
    kb.store("x", kb.lane, Var("y", F64))
    with pytest.raises(VerifyError, match="'y' is used before"):
        verify_kernel(kb.build())


def test_masked_if_loop_addto_and_emit():
    kb = KernelBuilder("k", "instance")
    x = kb.array("x")
    kb.array("total", F64, "node")
    kb.stream("out", (("lane", I32), ("value", F64)))
    v = kb.assign("v", x[kb.lane])
    with kb.if_(b.gt(v, 0.0)):
        kb.assign("v", b.mul(v, 2.0))
        kb.emit("out", kb.lane, Var("v"))
    with kb.else_():
        with kb.loop("k", 0, b.cast(I32, b.neg(v))) as k:  # per-lane trip counts
            kb.assign("v", b.add(Var("v"), b.cast(F64, k)))
    kb.store("x", kb.lane, Var("v"))
    kb.add_to("total", 0, Var("v"))  # every lane hits the same element
    k = verify_kernel(kb.build())
    xs = np.array([1.5, -3.0, 2.0, -1.0, 0.0])
    acc = np.zeros(1)
    out = run_kernel(k, {"x": xs, "total": acc}, 5)
    expected = np.array([3.0, -3.0 + 0 + 1 + 2, 4.0, -1.0 + 0, 0.0])
    np.testing.assert_array_equal(xs, expected)
    assert acc[0] == expected.sum()
    np.testing.assert_array_equal(out["out"]["lane"], [0, 2])
    np.testing.assert_array_equal(out["out"]["value"], [3.0, 4.0])
    assert "for k in range(0, i32(-v))" in format_kernel(k)


def test_while_loops_test_before_each_iteration_lane_by_lane():
    """C's while: per-lane trip counts (zero for some lanes), a condition that reads what
    the body wrote, and a loop that ends the same way in every lane (uniform). The body
    defines nothing after the loop."""
    kb = KernelBuilder("k", "instance")
    x = kb.array("x")
    kb.array("n", I32, "instance")
    v = kb.assign("v", x[kb.lane])
    k = kb.assign("k", 0)
    with kb.while_(b.lt(v, 10.0)):  # halves toward zero below, so it doubles up to 10
        kb.assign("v", b.mul(v, 2.0))
        kb.assign("k", b.add(k, 1))
    u = kb.assign("u", 0)
    with kb.while_(b.lt(u, 3)):
        kb.assign("u", b.add(u, 1))
    kb.store("x", kb.lane, v)
    kb.store("n", kb.lane, b.add(k, u))
    kernel = verify_kernel(kb.build())
    xs, ns = np.array([1.0, 12.0, 3.0, 9.99, 0.5]), np.zeros(5, np.int32)
    run_kernel(kernel, {"x": xs, "n": ns}, 5)
    np.testing.assert_array_equal(xs, [16.0, 12.0, 12.0, 19.98, 16.0])
    np.testing.assert_array_equal(ns, np.array([4, 0, 2, 1, 5]) + 3)
    assert "while v < 10.0 {" in format_kernel(kernel)
    kb = KernelBuilder("k", "instance")
    x = kb.array("x")
    with kb.while_(b.gt(x[kb.lane], 0.0)):
        kb.assign("y", 1.0)
    kb.store("x", kb.lane, Var("y", F64))
    with pytest.raises(VerifyError, match="'y' is used before"):
        verify_kernel(kb.build())
    kb = KernelBuilder("k", "instance")
    with kb.while_(1.0):
        pass
    with pytest.raises(VerifyError, match="while condition is not bool"):
        verify_kernel(kb.build())


def hines_kernel() -> Kernel:
    """The Hines solve over one lane per cell, nodes of cell c in [first[c], first[c+1]),
    parents before children: triangularise from the leaves, then back-substitute."""
    kb = KernelBuilder("hines", "cell")
    first = kb.array("first", I32, "cell")
    parent = kb.array("parent", I32, "node")
    a, bb, d, rhs = (kb.array(n, F64, "node") for n in ("a", "b", "d", "rhs"))
    lo = kb.assign("lo", first[kb.lane])
    hi = kb.assign("hi", first[b.add(kb.lane, 1)])
    with kb.loop("i", b.sub(hi, 1), lo, step=-1) as i:
        p = kb.assign("p", parent[i])
        f = kb.assign("f", b.div(bb[i], d[i]))
        kb.store("d", p, b.sub(d[p], b.mul(f, a[i])))
        kb.store("rhs", p, b.sub(rhs[p], b.mul(f, rhs[i])))
    kb.store("rhs", lo, b.div(rhs[lo], d[lo]))
    with kb.loop("j", b.add(lo, 1), hi) as j:
        kb.store("rhs", j, b.div(b.sub(rhs[j], b.mul(a[j], rhs[parent[j]])), d[j]))
    return verify_kernel(kb.build())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_hines_solve_in_ir_matches_dense_solve(sizes, rnd):
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    n = int(first[-1])
    parent = np.full(n, -1, dtype=np.int32)
    for c, size in enumerate(sizes):
        for k in range(1, size):
            parent[first[c] + k] = first[c] + rnd.randrange(k)
    a = np.array([-rnd.uniform(0.1, 1) for _ in range(n)])
    bb = np.array([-rnd.uniform(0.1, 1) for _ in range(n)])
    d = np.array([rnd.uniform(3, 5) for _ in range(n)])
    rhs = np.array([rnd.uniform(-1, 1) for _ in range(n)])
    dense = np.diag(d)
    for i in range(n):
        if parent[i] >= 0:  # a[i]: effect of the parent on node i; b[i]: of node i on its parent
            dense[i, parent[i]], dense[parent[i], i] = a[i], bb[i]
    expected = np.linalg.solve(dense, rhs)
    args = {"first": first, "parent": parent, "a": a, "b": bb, "d": d.copy(), "rhs": rhs.copy()}
    run_kernel(hines_kernel(), args, len(sizes))
    np.testing.assert_allclose(args["rhs"], expected, rtol=1e-12, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e3, 1e3), st.floats(-10, 10), st.floats(0.1, 5))
def test_constant_folding_keeps_results_bit_identical(x, c, e):
    kb = KernelBuilder("k", "instance")
    arr = kb.array("x")
    expr = b.add(b.mul(arr[kb.lane], b.call("exp", b.div(c, e))), b.mul(b.pow_(e, 2.0), 1.0))
    with kb.if_(b.gt(Const(c), Const(0.0))):
        kb.assign("y", expr)
    with kb.else_():
        kb.assign("y", b.sub(expr, 0.0))
    kb.store("x", kb.lane, Var("y"))
    k = verify_kernel(kb.build())
    folded = verify_kernel(fold_constants(k))
    one, two = np.array([x]), np.array([x])
    run_kernel(k, {"x": one}, 1)
    run_kernel(folded, {"x": two}, 1)
    assert one[0] == two[0] or (np.isnan(one[0]) and np.isnan(two[0]))
    assert "if" not in format_kernel(folded)
    assert not any(isinstance(s, Load) for s in folded.body)


@dataclasses.dataclass(frozen=True)
class _Unknown:
    """A node no walker knows (a statement or expression added to the IR later)."""


def test_walkers_and_passes_refuse_a_node_they_do_not_know():
    """Every walker of ir/ (statements, subexpressions, own_expressions, expressions,
    emits_per_lane), the printer and constant folding raise on a statement or an expression
    they do not know, rather than skip it (folding used to drop an unknown statement); the
    llvm and cuda backends refuse it through the verifier, which each runs first."""
    from portneuron.backends import load_backend
    from portneuron.backends.cuda import CudaBackend
    from portneuron.ir import walk
    from portneuron.ir.nodes import If

    odd = _Unknown()
    in_body = Kernel("k", "instance", (), (If(Const(True, BOOL), (odd,)),))  # nested
    in_expr = Kernel("k", "instance", (), (Assign("x", odd),))
    for kernel in (in_body, in_expr):
        with pytest.raises(TypeError, match="not an IR (statement|expression)"):
            list(walk.expressions(kernel.body))
        with pytest.raises(TypeError, match="not an IR (statement|expression)"):
            format_kernel(kernel)
        with pytest.raises(TypeError, match="fold_constants: not an IR"):
            fold_constants(kernel)
    with pytest.raises(TypeError, match="not an IR statement"):
        walk.emits_per_lane(in_body)
    with pytest.raises(TypeError, match="not an IR statement"):
        walk.own_expressions(odd)
    for kernel in (in_body, in_expr):  # and the verifier and the backends' renderers
        with pytest.raises(VerifyError, match="not an? (statement|expression)"):
            verify_kernel(kernel)
        for backend, form in ((CudaBackend(), "cuda"), (load_backend("llvm"), "llvm")):
            with pytest.raises(VerifyError, match="not an? (statement|expression)"):
                backend.emit(kernel, form)  # each verifies what it is given first


@dataclasses.dataclass(frozen=True)
class Mystery:
    """A statement no walker knows."""


@dataclasses.dataclass(frozen=True)
class Riddle:
    """An expression no walker knows."""

    dtype = F64


def _unknown_kernels() -> tuple[Kernel, Kernel]:
    """A kernel with an unknown statement inside an If, and one with an unknown expression
    inside a store's value; both are otherwise well formed."""
    params = (Param("x", F64, "instance"),)
    statement = (Assign("a", Const(1.0, F64)), If(Const(True, BOOL), (Mystery(),)))  # type: ignore[arg-type]
    riddle = Binary("add", Const(1.0, F64), Riddle())  # type: ignore[arg-type]
    expression = (Assign("y", riddle), Store("x", Lane(), Var("y", F64)))
    return (
        Kernel("mystery", "instance", params, statement),
        Kernel("riddle", "instance", params, expression),
    )


def test_every_walker_and_pass_refuses_a_node_it_does_not_know():
    """Every function that walks IR raises on a node it does not know, naming it, rather
    than skipping it (a pass that dropped or ignored a statement would change what a
    kernel does without a word)."""
    from portneuron.backends import backend_status, load_backend
    from portneuron.backends.cuda import mapping, render
    from portneuron.ir import walk
    from portneuron.ir.passes.fold_constants import fold_constants
    from portneuron.ir.types import dtype_of

    from portneuron import cost
    from portneuron.nmodl import symbolic
    from portneuron.nmodl.mechanism import SharedUse

    statement, expression = _unknown_kernels()
    on_body = {
        "walk.statements": lambda k: list(walk.statements(k.body)),
        "walk.expressions": lambda k: list(walk.expressions(k.body)),
        "walk.emits_per_lane": walk.emits_per_lane,
        "walk.written": lambda k: walk.written(k.body),
        "verify_kernel": verify_kernel,
        "run_kernel": lambda k: run_kernel(k, {"x": np.zeros(2)}, 2),
        "format_kernel": format_kernel,
        "fold_constants": fold_constants,
        "numpy": lambda k: load_backend("numpy").compile(k),
        "cuda source": render.kernel_source,
        "cuda live_variables": lambda k: render.live_variables(k.body),
        "cuda lane_private_arrays": mapping.lane_private_arrays,
        "cuda thread_mapping": mapping.thread_mapping,
        "cuda outer_parallel_loops": lambda k: mapping.outer_parallel_loops(k.body),
        "shared-GLOBAL analysis": lambda k: SharedUse({"a"}, lambda name: True).kernel(k.body),
        "cost": cost.kernel_ops,
        "symbolic": lambda k: symbolic.execute(k.body, {}),
    }
    if backend_status("llvm").available:
        from portneuron.backends.llvm import simd

        # verified, folded and lowered where it first runs (compile defers them)
        on_body["llvm"] = lambda k: load_backend("llvm").compile(k).function
        on_body["llvm independent_lanes"] = lambda k: simd.independent_lanes(k.body)
        on_body["llvm lane_analysis"] = simd.lane_analysis
    # walkers of statements only: the unknown statement is enough
    statements_only = {"walk.statements", "walk.emits_per_lane", "walk.written",
                       "cuda lane_private_arrays", "cuda outer_parallel_loops",
                       "cuda thread_mapping"}  # fmt: skip
    silent = []
    for name, walker in on_body.items():
        cases = [(statement, "Mystery")]
        if name not in statements_only:
            cases.append((expression, "Riddle"))
        for kernel, node in cases:
            try:
                walker(kernel)
            except Exception as e:  # noqa: BLE001 (any error, as long as it names the node)
                if node not in str(e):
                    silent.append(f"{name} on {node}: {e}")
            else:
                silent.append(f"{name} on {node}: no error")
    assert not silent, silent
    with pytest.raises(TypeError, match="Riddle"):
        dtype_of(Binary("add", Riddle(), Const(1.0, F64)))  # type: ignore[arg-type]
