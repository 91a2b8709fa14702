"""The llvm backend's exps (backends/llvm/vmath.py). Its default, glibc's algorithm in
vector IR, gives the host C library's bits on 10^8 random arguments and the special
cases, and both of glibc's builds give what glibc's published algorithm gives in exact
arithmetic; its own Cephes exp stays within 2 ulp of NumPy's over the whole double range:
underflow to subnormals and zero, overflow, tiny arguments, and the arguments hh's rate
functions see near their removable singularities (vtrap)."""

from __future__ import annotations

import math
import struct

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


def our_exp(x: np.ndarray, math: str = "vector") -> np.ndarray:
    from portneuron.backends.llvm.backend import LlvmBackend

    backend = LlvmBackend(math=math)
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
    for mode in ("libm", "vector"):
        model = build_ringtest(nring=2, ncell=8, nbranch=(2, 6), hh_tables=False)
        record = list(range(0, model.nodes.count, 5))
        runs.append(Simulation(model, LlvmBackend(math=mode)).run(30.0, record=record))
    assert len(runs[0].spikes) > 10 and runs[1].spikes == runs[0].spikes
    assert np.abs(runs[1].v - runs[0].v).max() <= 1e-9


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 709.782712893384, 709.79, 710.0,
                    1e308, -1e308, -745.1332191019411, -745.14, -746.0, -708.4, 5e-324, -5e-324,
                    2.0**-54, -(2.0**-54), 2.0**-55, 511.99, 512.0, -512.0, 1023.99, -1023.99,
                    1024.0, -1024.0, 0.5 * np.log(2) / 128])  # fmt: skip


def random_arguments(rng: np.random.Generator, n: int) -> np.ndarray:
    """Half over the range where exp is finite and nonzero and a little beyond (normal,
    subnormal and overflowing results), half random bit patterns (every double, NaNs,
    infinities, subnormal and huge arguments among them)."""
    half = n // 2
    return np.concatenate(
        [
            rng.uniform(-760.0, 720.0, half),
            rng.integers(0, 2**64, n - half, np.uint64).view(np.float64),
        ]
    )


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal to the bit, a NaN to any NaN (NaN payloads and signs aside)."""
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


def host_exp_math() -> str:
    from portneuron.backends.llvm.vmath import host_math

    if host_math() == "libm":
        pytest.skip("the C library's exp is not glibc's here: the llvm backend calls it")
    return host_math()


def test_exp_is_the_c_librarys_bit_for_bit():
    """The default exp against the C library's own (called lane by lane) on the
    arguments above, the special cases and a million random ones."""
    math = host_exp_math()
    x = np.concatenate([arguments(), SPECIAL, random_arguments(np.random.default_rng(1), 10**6)])
    assert same_bits(our_exp(x, math), our_exp(x, "libm")).all()


def test_exp_is_the_c_librarys_on_a_hundred_million_arguments():
    math = host_exp_math()
    rng = np.random.default_rng(20)
    for _ in range(10):
        x = random_arguments(rng, 10**7)
        differ = ~same_bits(our_exp(x, math), our_exp(x, "libm"))
        assert not differ.any(), x[differ][:5].tolist()


def glibc_exp(x: float, fused: bool) -> float:
    """glibc's exp (sysdeps/ieee754/dbl-64/e_exp.c) as its algorithm is published, one
    double operation at a time in Python (each rounded once); `fused`: its build with
    fused multiply-add, each a*b + c GCC fuses computed exactly and rounded once."""
    from fractions import Fraction

    from portneuron.backends.llvm import vmath

    def bits(value: float) -> int:
        return struct.unpack("<Q", struct.pack("<d", value))[0]

    def double(word: int) -> float:
        return struct.unpack("<d", struct.pack("<Q", word % 2**64))[0]

    def mul_add(a: float, b: float, c: float) -> float:
        return float(Fraction(a) * Fraction(b) + Fraction(c)) if fused else a * b + c

    table = vmath.exp_table()
    abstop = (bits(x) >> 52) & 0x7FF
    if (abstop - 0x3C9) % 2**32 >= 0x408 - 0x3C9:
        if (abstop - 0x3C9) % 2**32 >= 0x80000000:
            return 1.0 + x
        if abstop >= 0x409:
            if x == -math.inf:
                return 0.0
            if abstop >= 0x7FF:
                return 1.0 + x
            return 0.0 if bits(x) >> 63 else math.inf
        abstop = 0
    kd = mul_add(vmath.EXP_INV_LN2_N, x, vmath.EXP_SHIFT)
    ki = bits(kd)
    kd -= vmath.EXP_SHIFT
    r = mul_add(kd, vmath.EXP_NEG_LN2_LO_N, mul_add(kd, vmath.EXP_NEG_LN2_HI_N, x))
    if not fused:
        r = x + kd * vmath.EXP_NEG_LN2_HI_N + kd * vmath.EXP_NEG_LN2_LO_N
    index = 2 * (ki % 128)
    tail, sbits = double(table[index]), (table[index + 1] + (ki << 45)) % 2**64
    r2 = r * r
    low = mul_add(r2, mul_add(r, vmath.EXP_C3, vmath.EXP_C2), tail + r)
    tmp = mul_add(r2 * r2, mul_add(r, vmath.EXP_C5, vmath.EXP_C4), low)
    if abstop != 0:
        scale = double(sbits)
        return mul_add(scale, tmp, scale)
    if ki & 0x80000000 == 0:  # k > 0
        scale = double(sbits - (1009 << 52))
        return 2.0**1009 * mul_add(scale, tmp, scale)
    scale = double(sbits + (1022 << 52))
    y = scale + scale * tmp  # not fused in either build (see vmath.exp_libc)
    if y < 1.0:
        lo = scale - y + scale * tmp
        hi = 1.0 + y
        lo = 1.0 - hi + y + lo
        y = (hi + lo) - 1.0
        y = 0.0 if y == 0.0 else y
    return 2.0**-1022 * y


@pytest.mark.parametrize("build", ["libc-fused", "libc-plain"])
def test_both_builds_are_glibcs_algorithm(build):
    """Each build bit for bit what the published algorithm gives, on random arguments
    over the range, around the special case's bounds and the special values: the build a
    host does not run is checked here too."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-760, 720, 6000), rng.uniform(500, 720, 1500),
                        rng.uniform(-760, -500, 1500), SPECIAL])  # fmt: skip
    expected = np.array([glibc_exp(float(v), build == "libc-fused") for v in x])
    assert same_bits(our_exp(x, build), expected).all()


def test_an_unknown_math_setting_is_one_line(tmp_path):
    """PORTNEURON_MATH set to no known way: `portneuron run` says so in one line, exit 1,
    and writes nothing."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "portneuron", "run", "-e", "1", "--backend", "llvm", "-o", str(out)],
        capture_output=True, text=True, env={**os.environ, "PORTNEURON_MATH": "fast"},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "PORTNEURON_MATH must be one of libm, vector, libc-fused, libc-plain" in done.stderr
    assert not (out / "out.dat").exists()
