"""The llvm backend's own exp (backends/llvm/vmath.py) against NumPy's, over the whole
double range: underflow to subnormals and zero, overflow, tiny arguments, and the
arguments hh's rate functions see near their removable singularities (vtrap)."""

from __future__ import annotations

import numpy as np
import pytest
from portneuron.backends import backend_status
from portneuron.ir import F64
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder

pytestmark = pytest.mark.skipif(not backend_status("llvm").available, reason="llvm cannot run here")
MAX_ULP = 2  # against NumPy (the C library's exp here), subnormal results included


def exp_kernel():
    kb = KernelBuilder("exp_all", "instance", "y = exp(x)")
    x = kb.array("x", F64)
    kb.array("y", F64)
    kb.store("y", kb.lane, b.call("exp", x[kb.lane]))
    return kb.build()


def our_exp(x: np.ndarray) -> np.ndarray:
    from portneuron.backends.llvm.backend import LlvmBackend

    backend = LlvmBackend(math="vector")
    y = np.empty_like(x)
    backend.run(backend.compile(exp_kernel()), {"x": x, "y": y}, len(x))
    return y


def arguments() -> np.ndarray:
    rng = np.random.default_rng(7)
    v = np.concatenate([rng.uniform(-100, 60, 20000), -40 + rng.uniform(-1e-3, 1e-3, 2000),
                        -55 + rng.uniform(-1e-3, 1e-3, 2000)])  # fmt: skip
    return np.concatenate([
        rng.uniform(-745.2, 709.79, 200000),  # the whole range
        rng.uniform(-745.2, -708.3, 20000),  # subnormal results
        rng.uniform(700, 709.79, 20000),  # near overflow
        rng.uniform(-1, 1, 20000) * 10.0 ** rng.integers(-300, 0, 20000),  # tiny
        np.arange(-745, 710, dtype=float),
        -(v + 40) / 10, -(v + 55) / 10, -(v + 65) / 18, -(v + 65) / 80, -(v + 35) / 10,
        0.025 * rng.uniform(-50, 0, 20000),  # exp(dt * a) of cnexp
    ])  # fmt: skip


def test_exp_within_one_ulp_of_numpy_everywhere():
    x = arguments()
    with np.errstate(over="ignore"):
        expected = np.exp(x)
    np.testing.assert_array_max_ulp(our_exp(x), expected, maxulp=MAX_ULP)


def test_exp_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, 710.0, 1e308,
                  -745.13, -745.14, -746.0, -1e308, 5e-324, -5e-324])  # fmt: skip
    with np.errstate(over="ignore"):
        expected = np.exp(x)
    got = our_exp(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_array_max_ulp(got[finite], expected[finite], maxulp=MAX_ULP)


def test_ringtest_with_our_exp_keeps_the_spikes():
    """hh without tables calls exp every step: our exp moves voltages by far less than the
    1e-9 mV standard and no spike."""
    from portneuron.backends.llvm.backend import LlvmBackend

    from portneuron.build.ringtest import build_ringtest
    from portneuron.sim.simulation import Simulation

    runs = []
    for math in ("libm", "vector"):
        model = build_ringtest(nring=2, ncell=8, nbranch=(2, 6), hh_tables=False)
        record = list(range(0, model.nodes.count, 5))
        runs.append(Simulation(model, LlvmBackend(math=math)).run(30.0, record=record))
    assert len(runs[0].spikes) > 10 and runs[1].spikes == runs[0].spikes
    assert np.abs(runs[1].v - runs[0].v).max() <= 1e-9
