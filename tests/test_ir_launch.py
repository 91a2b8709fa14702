"""The IR statements an epoch driver is written in (issue 18): While, Serial, Launch with
View, against a plain-Python model of what they mean, and the verifier's rules for them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portneuron.ir import (
    F64,
    I32,
    Kernel,
    Records,
    Var,
    VerifyError,
    View,
    format_kernel,
    run_kernel,
    verify_kernel,
)
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder
from portneuron.ir.passes.fold_constants import fold_constants

RECORD = (("lane", I32), ("value", F64))
#: Records a block holds where they go to arrays.
CAP = 64


def scale() -> Kernel:
    """One lane an element: v = v * s + 1, a record where it passes 2, one added to the
    count (a View of the caller's, at 0)."""
    kb = KernelBuilder("scale", "element", "v = v s + 1")
    v = kb.array("v", F64, "element")
    kb.array("count", F64, "uniform1")
    s = kb.scalar("s")
    kb.stream("rec", RECORD)
    new = kb.assign("new", b.add(b.mul(v[kb.lane], s), 1.0))
    kb.store("v", kb.lane, new)
    with kb.if_(b.gt(new, 2.0)):
        kb.emit("rec", kb.lane, new)
    kb.add_to("count", 0, 1.0)
    return verify_kernel(kb.build())


def driver(to_arrays: bool = False) -> Kernel:
    """One lane a block of elements first[b] .. first[b + 1] - 1: reps[b] times (a While),
    a Serial step counter, then, on even blocks and after the first pass on odd ones, the
    scale kernel over the block's elements through a View at first[b], with s = base + k;
    last, a record of its own. `to_arrays`: the scale kernel's records go to the block's
    region of the caller's arrays (Records), CAP a block, not to its stream."""
    kb = KernelBuilder("driver", "block", "rounds of scale over each block")
    first = kb.array("first", I32, "block")
    reps = kb.array("reps", I32, "block")
    kb.array("x", F64, "element")
    kb.array("total", F64, "uniform1")
    kb.array("steps", I32, "block")
    base = kb.scalar("base")
    kb.stream("rec", RECORD)
    lo = kb.assign("lo", first[kb.lane])
    n = kb.assign("n", b.sub(first[b.add(kb.lane, 1)], lo))
    k = kb.assign("k", 0)
    with kb.while_(b.lt(k, reps[kb.lane])):
        with kb.serial():
            kb.store("steps", kb.lane, b.add(kb.array("steps", I32, "block")[kb.lane], 1))
        with kb.if_(b.or_(b.eq(kb.array("even", I32, "block")[kb.lane], 1), b.gt(k, 0))):
            out = {}
            if to_arrays:
                kb.array("rec.lane", I32, "record")
                kb.array("rec.value", F64, "record")
                kb.array("rec.count", I32, "block")
                region = b.mul(kb.lane, CAP)
                out["rec"] = Records(
                    (View("rec.lane", region), View("rec.value", region)),
                    View("rec.count", kb.lane),
                )
            kb.launch(
                scale(),
                0,
                n,
                v=View("x", lo),
                count=View("total"),
                s=b.add(base, b.cast(F64, k)),
                **out,
            )
        kb.assign("k", b.add(k, 1))
    kb.emit("rec", b.sub(-1, kb.lane), b.cast(F64, k))
    return verify_kernel(kb.build())


def model(first, reps, x, base):
    """What the driver means, lane after lane, statement after statement."""
    x, total, steps, records = x.copy(), 0.0, np.zeros(len(reps), np.int32), []
    per_block = [[] for _ in reps]  # the scale kernel's records of each block
    for blk in range(len(reps)):
        lo, n = first[blk], first[blk + 1] - first[blk]
        k = 0
        while k < reps[blk]:
            steps[blk] += 1
            if blk % 2 == 0 or k > 0:
                s = base + float(k)
                for lane in range(n):
                    new = x[lo + lane] * s + 1.0
                    x[lo + lane] = new
                    if new > 2.0:
                        records.append((lane, new))
                        per_block[blk].append((lane, new))
                    total += 1.0
            k += 1
        records.append((-1 - blk, float(k)))
    return x, total, steps, records, per_block


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5), min_size=1, max_size=6),
    reps=st.data(),
    base=st.floats(-1.5, 1.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_launch_while_and_serial_mean_what_the_model_says(sizes, reps, base, seed):
    """Blocks of any size (empty ones too), data-dependent trips of a While around a
    Serial and a Launch taken on some lanes only (even blocks, and odd ones after their
    first pass), with the records on the caller's stream or in each block's region of
    arrays (Records, a count a block): the elements, the count added through a
    View, the Serial's memory and the records (each caller lane's, in the callee's lane
    order, then its own) are the sequential model's, bit for bit."""
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    counts = reps.draw(st.lists(st.integers(0, 3), min_size=len(sizes), max_size=len(sizes)))
    counts = np.array(counts, np.int32)
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, int(first[-1]))
    expected = model(first, counts, x, base)
    for kernel in (driver(), fold_constants(driver())):
        even = (np.arange(len(sizes)) % 2 == 0).astype(np.int32)
        args = {"first": first, "reps": counts, "x": x.copy(), "total": np.zeros(1),
                "steps": np.zeros(len(sizes), np.int32), "even": even, "base": base}  # fmt: skip
        out = run_kernel(kernel, args, len(sizes))
        np.testing.assert_array_equal(args["x"], expected[0])
        assert args["total"][0] == expected[1]
        np.testing.assert_array_equal(args["steps"], expected[2])
        records = list(zip(out["rec"]["lane"].tolist(), out["rec"]["value"].tolist()))
        assert records == expected[3]
    # the scale kernel's records into each block's region of arrays instead
    lanes, values = np.zeros(CAP * len(sizes), np.int32), np.zeros(CAP * len(sizes))
    count = np.zeros(len(sizes), np.int32)
    args = {"first": first, "reps": counts, "x": x.copy(), "total": np.zeros(1),
            "steps": np.zeros(len(sizes), np.int32), "even": even, "base": base,
            "rec.lane": lanes, "rec.value": values, "rec.count": count}  # fmt: skip
    out = run_kernel(driver(to_arrays=True), args, len(sizes))
    np.testing.assert_array_equal(args["x"], expected[0])
    own = [(lane, value) for lane, value in expected[3] if lane < 0]
    assert list(zip(out["rec"]["lane"].tolist(), out["rec"]["value"].tolist())) == own
    for blk, theirs in enumerate(expected[4]):
        region = slice(CAP * blk, CAP * blk + count[blk])
        assert list(zip(lanes[region].tolist(), values[region].tolist())) == theirs


def test_the_printer_shows_launches_views_serial_and_the_callee():
    text = format_kernel(driver())
    assert "launch scale over range(0, n) (v = x[lo:], count = total[0:], s = base + " in text
    assert "serial {" in text and "while k < reps[lane] {" in text
    assert "kernel scale over element (" in text  # the callee, after the caller


def _caller(body, *, streams=True) -> Kernel:
    kb = KernelBuilder("caller", "block")
    kb.array("x", F64, "element")
    kb.array("total", F64, "uniform1")
    kb.array("ints", I32, "element")
    if streams:
        kb.stream("rec", RECORD)
    body(kb)
    return kb.build()


@pytest.mark.parametrize(
    "body, message",
    [
        (lambda kb: _in_parallel(kb), "launch of 'scale' inside a parallel loop"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("x"), count=View("total")),
         r"bind each parameter once \(missing \['s'\]"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0, t=2.0),
         r"unknown \['t'\]"),
        (lambda kb: kb.launch(scale(), 0, 1, v=1.0, count=View("total"), s=1.0),
         "array 'v' needs a View of a caller array"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("ints"), count=View("total"), s=1.0),
         "array 'ints' is i32, accessed as f64"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=View("x")),
         "scalar 's' needs a f64 expression"),
        (lambda kb: kb.launch(scale(), 0, 1.0, v=View("x"), count=View("total"), s=1.0),
         "hi is not i32"),
        (lambda kb: kb.launch(_launcher(), 0, 1, x=View("x"), total=View("total")),
         "launches another"),
        (lambda kb: _serial_then_read(kb), "local 'y' is assigned in a Serial and read after it"),
        (lambda kb: _serial_in_a_loop(kb), "local 'y' is assigned in a Serial and used outside it"),
        (lambda kb: _serial_in_parallel(kb), "a Serial inside a parallel loop"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0,
                              out=Records((View("ints"),), View("ints"))),
         "Records for 'out', which is not a stream of it"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0,
                              rec=Records((View("ints"),), View("ints"))),
         "stream 'rec' has 2 fields"),
        (lambda kb: kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0,
                              rec=Records((View("ints"), View("x")), View("x"))),
         "array 'x' is f64, accessed as i32"),
    ],
)  # fmt: skip
def test_the_verifier_refuses_what_the_statements_do_not_allow(body, message):
    with pytest.raises(VerifyError, match=message):
        verify_kernel(_caller(body))


def test_a_callee_stream_must_be_the_callers():
    def body(kb):
        kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0)

    with pytest.raises(VerifyError, match="its stream 'rec' is not the caller's"):
        verify_kernel(_caller(body, streams=False))


def _in_parallel(kb):
    with kb.loop("i", 0, 4, parallel=True):
        kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0)


def _launcher() -> Kernel:
    kb = KernelBuilder("launcher", "block")
    kb.array("x", F64, "element")
    kb.array("total", F64, "uniform1")
    kb.stream("rec", RECORD)
    kb.launch(scale(), 0, 1, v=View("x"), count=View("total"), s=1.0)
    return kb.build()


def _serial_in_a_loop(kb):
    """y read at the top of each pass, assigned by the Serial later in it: on a GPU only the
    Serial's thread would see the new value."""
    kb.assign("y", 0.0)
    with kb.loop("i", 0, 3):
        kb.store("x", Var("i", I32), Var("y", F64))
        with kb.serial():
            kb.assign("y", 1.0)


def _serial_in_parallel(kb):
    with kb.loop("i", 0, 4, parallel=True), kb.serial():
        kb.store("x", Var("i", I32), 1.0)


def _serial_then_read(kb):
    with kb.serial():
        kb.assign("y", 1.0)
    kb.store("x", 0, Var("y", F64))


def prefix_sums() -> Kernel:
    """One lane a block first[b] .. first[b + 1] - 1 of x: out = x + the running sum of
    the block's x before it, through `scratch` (each lane's own region of it): written,
    then read, within the lane (a launched kernel reads it too)."""
    kb = KernelBuilder("prefix", "block", "running sums through scratch")
    first = kb.array("first", I32, "block")
    x = kb.array("x", F64, "element")
    kb.array("out", F64, "element")
    kb.array("scratch", F64, "lane:first")
    lo, hi = first[kb.lane], first[b.add(kb.lane, 1)]
    kb.assign("sum", 0.0)
    with kb.loop("i", lo, hi) as i:
        kb.assign("sum", b.add(Var("sum", F64), x[i]))
        kb.store("scratch", i, Var("sum", F64))
    kb.launch(_add_scratch(), lo, hi, out=View("out"), x=View("x"), scratch=View("scratch"))
    return kb.build()


def _add_scratch() -> Kernel:
    kb = KernelBuilder("add", "element")
    x, scratch = kb.array("x", F64, "element"), kb.array("scratch", F64, "element")
    kb.array("out", F64, "element")
    kb.store("out", kb.lane, b.add(x[kb.lane], scratch[kb.lane]))
    return kb.build()


@pytest.mark.parametrize("name", ["numpy", "llvm"])
def test_a_lanes_scratch_is_its_own(name):
    """A "lane:<regions>" array is each lane's scratch: the results are the sequential
    ones on every backend; the interpreter runs in the caller's array (filled with NaN
    first), llvm in storage of each call's own, so the caller's array keeps its values."""
    from portneuron.backends import load_backend

    backend = load_backend(name)
    sizes = [3, 0, 5, 1, 7]
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    x = np.random.default_rng(4).uniform(-1, 1, int(first[-1]))
    expected = np.concatenate([x[lo:hi] + np.cumsum(x[lo:hi]) for lo, hi in zip(first, first[1:])])
    scratch = np.full(len(x), 7.0)
    args = {"first": first, "x": x, "out": np.zeros(len(x)), "scratch": scratch}
    backend.run(backend.compile(verify_kernel(prefix_sums())), args, len(sizes))
    np.testing.assert_array_equal(args["out"], expected)
    assert (scratch == 7.0).all() == (name == "llvm")


def test_a_lane_that_reads_its_scratch_first_reads_nan():
    """The interpreter fills scratch with NaN before the lanes run, so a kernel that reads
    what it did not write (breaking the promise) shows it."""
    kb = KernelBuilder("early", "block")
    first = kb.array("first", I32, "block")
    kb.array("out", F64, "block")
    scratch = kb.array("scratch", F64, "lane:first")
    kb.store("out", kb.lane, scratch[first[kb.lane]])
    args = {"first": np.array([0, 2, 4], np.int32), "out": np.zeros(2), "scratch": np.zeros(4)}
    run_kernel(verify_kernel(kb.build()), args, 2)
    assert np.isnan(args["out"]).all()


def test_a_lanes_scratch_needs_its_regions():
    kb = KernelBuilder("bad", "block")
    kb.array("first", F64, "block")
    kb.array("scratch", F64, "lane:first")
    with pytest.raises(VerifyError, match="scratch's regions 'first' are not an i32 array"):
        verify_kernel(kb.build())
    kb = KernelBuilder("bad", "block")
    kb.array("scratch", F64, "lane:nowhere")
    with pytest.raises(VerifyError, match="regions 'nowhere' are not an i32 array"):
        verify_kernel(kb.build())
