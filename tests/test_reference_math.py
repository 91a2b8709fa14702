"""The reference's transcendental functions are the C library's, on every machine.

NumPy's own exp, log, pow and trigonometric ufuncs depend on its build and on the CPU
features it dispatches to; the C library's are what NEURON's compiled mechanisms and the llvm
backend call. These tests hold the numpy backend to the C library's bits (called through
ctypes, independently of `math`), and run the reference with NumPy's SIMD dispatch switched
off in a subprocess: the voltages must not change by a bit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portneuron.ir import libm

C = ctypes.CDLL(ctypes.util.find_library("m"))

UNARY = {
    "exp": (-745.5, 709.9), "expm1": (-50.0, 709.9), "log": (1e-300, 1e300),
    "log10": (1e-300, 1e300), "sin": (-1e4, 1e4), "cos": (-1e4, 1e4), "tan": (-1e4, 1e4),
    "asin": (-1.0, 1.0), "acos": (-1.0, 1.0), "atan": (-1e6, 1e6), "sinh": (-710.0, 710.0),
    "cosh": (-710.0, 710.0), "tanh": (-30.0, 30.0),
}  # fmt: skip
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-320, 800.0, -800.0])


def c_function(name: str, nargs: int):
    fn = getattr(C, name)
    fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_double] * nargs
    return fn


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to the bit, a NaN equal to a NaN (CPython's math returns its own NaN for a NaN
    argument of atan2, where C passes the argument's payload through: no result depends on a
    NaN's payload)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nan = np.isnan(a) & np.isnan(b)
    return bool(np.all((a.view(np.int64) == b.view(np.int64)) | nan))


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_functions_are_the_c_librarys(name):
    lo, hi = UNARY[name]
    x = np.concatenate([np.random.default_rng(1).uniform(lo, hi, 20000), SPECIAL])
    expected = np.array([c_function(name, 1)(v) for v in x.tolist()])
    assert same_bits(getattr(libm, name)(x), expected)
    assert same_bits(getattr(libm, name)(np.float64(x[0])), expected[0])


@settings(max_examples=300, deadline=None)
@given(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)
def test_pow_and_atan2_are_the_c_librarys_everywhere(x, y):
    """Special values included: overflow, domain errors and poles give the C result."""
    for name in ("pow", "atan2"):
        expected = c_function(name, 2)(x, y)
        assert same_bits(getattr(libm, name)(np.array([x, 2.0]), np.array([y, 0.5]))[0], expected)
        assert same_bits(getattr(libm, name)(np.float64(x), y), expected)


def test_broadcasting_as_numpy():
    x = np.linspace(0.1, 3.0, 12).reshape(3, 4)
    assert libm.pow(x, 2.0).shape == (3, 4) and libm.pow(2.0, x).shape == (3, 4)
    assert same_bits(libm.pow(x, 2.0), x * x)  # pow(x, 2) is exactly rounded in the C library


def fingerprint() -> dict[str, str]:
    """SHA-256 of what the numpy backend computes on hh's kernels (random inputs) and on a
    ring of 8 cells for 15 ms (every node's voltage at every step)."""
    import harness
    from portneuron.backends import load_backend

    from portneuron.build.ringtest import build_ringtest
    from portneuron.sim.simulation import Simulation

    numpy_backend = load_backend("numpy")
    out = {}
    inst = harness.Instances(harness.builtin("hh"), 257)
    inst.build_tables()
    inst = harness.randomised(inst, np.random.default_rng(7))
    for kernel, args, lanes in harness.kernel_inputs(inst, np.random.default_rng(8)):
        numpy_backend.run(numpy_backend.compile(kernel), args, lanes)
        digest = hashlib.sha256()
        for key in sorted(args):
            digest.update(np.ascontiguousarray(args[key]).tobytes())
        out[f"hh.{kernel.name}"] = digest.hexdigest()
    model = build_ringtest(nring=1, ncell=8)
    result = Simulation(model, numpy_backend).run(15.0, record=range(model.nodes.count))
    out["ring.v"] = hashlib.sha256(result.v.tobytes()).hexdigest()
    return out


def fingerprint_in_subprocess(env: dict[str, str]) -> dict[str, str]:
    run = subprocess.run(
        [sys.executable, __file__], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_reference_does_not_depend_on_numpys_cpu_dispatch():
    """NPY_DISABLE_CPU_FEATURES switches off every SIMD extension NumPy dispatches to here
    (AVX-512 and AVX2 on the CI's machines); the reference's bits stay the same."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    enabled = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    if not enabled:
        pytest.skip("NumPy dispatches to no SIMD extension on this CPU")
    off = fingerprint_in_subprocess({"NPY_DISABLE_CPU_FEATURES": " ".join(enabled)})
    on = fingerprint_in_subprocess({})
    assert off.pop("dispatch") == [] and on.pop("dispatch") == enabled
    assert off == on


def test_numpy_and_llvm_voltages_are_the_same_bits():
    """With the same math the reference and the compiled backend agree to the bit on a ring
    (the README's claim), whatever NumPy's SIMD."""
    from portneuron.backends import backend_status, load_backend

    from portneuron.build.ringtest import build_ringtest
    from portneuron.sim.simulation import Simulation

    if not backend_status("llvm").available:
        pytest.skip(backend_status("llvm").reason)
    runs = []
    for name in ("numpy", "llvm"):
        model = build_ringtest(nring=1, ncell=8)
        runs.append(Simulation(model, load_backend(name)).run(15.0, record=range(0, 120, 7)))
    assert runs[0].spikes == runs[1].spikes and runs[0].spikes
    assert same_bits(runs[0].v, runs[1].v)


if __name__ == "__main__":
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    sys.path.insert(0, os.path.dirname(__file__))
    result = fingerprint()
    result["dispatch"] = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    print(json.dumps(result))
