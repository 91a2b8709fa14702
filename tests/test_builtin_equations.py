"""The interpreted IR of NEURON's built-in mechanisms reproduces their equations.

Each reference below is an independent NumPy transcription of the `.mod` file's equations
(not derived from the IR), with the C library's exp and log as NEURON and the kernels use
them (Exp2Syn's factor cancels to 1e-4 of its terms, so an ulp of another exp would show).
hypothesis draws voltages, states, parameters and dt. Tolerance: 1e-12 relative, with 1e-15
absolute for values near zero.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import Instances, builtin
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from portneuron.ir.libm import exp, log

RTOL, ATOL = 1e-12, 1e-15
N = 16

voltages = arrays(np.float64, N, elements=st.floats(-120.0, 80.0))
unit = arrays(np.float64, N, elements=st.floats(0.0, 1.0))
positive = arrays(np.float64, N, elements=st.floats(1e-4, 10.0))
dts = st.floats(1e-4, 0.2)
temperatures = st.floats(0.0, 40.0)


def close(actual, expected, scale=1.0):
    """Within RTOL, or ATOL times the magnitude `scale` of the operands (cnexp's update
    x + (1 - e)(c - x) cancels down to rounding of x itself when x decays to nearly 0)."""
    atol = ATOL * np.maximum(1.0, np.abs(scale))
    np.testing.assert_array_less(
        np.abs(np.asarray(actual) - expected), RTOL * np.abs(expected) + atol + 1e-300
    )


# ------------------------------------------------------------------ hh, transcribed


def vtrap(x, y):
    with np.errstate(all="ignore"):
        return np.where(np.abs(x / y) < 1e-6, y * (1 - x / y / 2), x / (exp(x / y) - 1))


def hh_rates(v, celsius):
    q10 = 3 ** ((celsius - 6.3) / 10)
    a, b = 0.1 * vtrap(-(v + 40), 10), 4 * exp(-(v + 65) / 18)
    minf, mtau = a / (a + b), 1 / (q10 * (a + b))
    a, b = 0.07 * exp(-(v + 65) / 20), 1 / (exp(-(v + 35) / 10) + 1)
    hinf, htau = a / (a + b), 1 / (q10 * (a + b))
    a, b = 0.01 * vtrap(-(v + 55), 10), 0.125 * exp(-(v + 65) / 80)
    ninf, ntau = a / (a + b), 1 / (q10 * (a + b))
    return minf, mtau, hinf, htau, ninf, ntau


def hh_rates_table(v, celsius):
    """NEURON's TABLE: 201 points on [-100, 100], linear interpolation, clamped ends."""
    x = np.empty(201)
    value = -100.0
    for i in range(201):
        x[i] = value
        value += 1.0
    tables = hh_rates(x, celsius)
    xi = (v - -100.0) * 1.0
    i = np.clip(xi.astype(int), 0, 199)
    theta = xi - i
    out = []
    for t in tables:
        inner = t[i] + theta * (t[i + 1] - t[i])
        out.append(np.where(xi <= 0, t[0], np.where(xi >= 200, t[200], inner)))
    return out


def hh_currents(v, m, h, n, p):
    # In source order, as NEURON's compiled C evaluates it: the conductance by difference
    # magnifies rounding differences by ~1/0.001.
    ina = p["gnabar"] * m * m * m * h * (v - p["ena"])
    ik = p["gkbar"] * n * n * n * n * (v - p["ek"])
    il = p["gl"] * (v - p["el"])
    return ina, ik, il


hh_params = st.fixed_dictionaries(
    {
        "gnabar": st.floats(0.0, 1.0),
        "gkbar": st.floats(0.0, 1.0),
        "gl": st.floats(0.0, 0.01),
        "el": st.floats(-80.0, -40.0),
        "ena": st.floats(20.0, 80.0),
        "ek": st.floats(-100.0, -60.0),
    }
)


@pytest.fixture(scope="module")
def hh():
    return builtin("hh")


def hh_instances(hh, v, celsius, usetable, dt=0.025):
    inst = Instances(hh, N, celsius=celsius, usetable=float(usetable), dt=dt)
    inst["node.v"] = v
    inst.build_tables()
    return inst


@settings(max_examples=40, deadline=None)
@given(v=voltages, celsius=temperatures, usetable=st.booleans())
def test_hh_init(hh, v, celsius, usetable):
    inst = hh_instances(hh, v, celsius, usetable)
    inst.run("init")
    minf, _, hinf, _, ninf, _ = (hh_rates_table if usetable else hh_rates)(v, celsius)
    close(inst["mech.m"], minf)
    close(inst["mech.h"], hinf)
    close(inst["mech.n"], ninf)


@settings(max_examples=40, deadline=None)
@given(v=voltages, m=unit, h=unit, n=unit, p=hh_params)
def test_hh_current(hh, v, m, h, n, p):
    inst = hh_instances(hh, v, 6.3, True)
    for name, value in (("m", m), ("h", h), ("n", n)):
        inst[f"mech.{name}"] = value
    for name in ("gnabar", "gkbar", "gl", "el"):
        inst[f"mech.{name}"] = p[name]
    inst["ion.na.ena"], inst["ion.k.ek"] = p["ena"], p["ek"]
    inst.run("current")
    ina, ik, il = hh_currents(v, m, h, n, p)
    ina1, ik1, il1 = hh_currents(v + 0.001, m, h, n, p)
    close(inst["node.rhs"], -(ina + ik + il))
    close(inst["node.d"], ((ina1 + ik1 + il1) - (ina + ik + il)) / 0.001)
    close(inst["ion.na.ina"], ina)
    close(inst["ion.k.ik"], ik)
    close(inst["ion.na.dinadv"], (ina1 - ina) / 0.001)
    close(inst["mech.il"], il)


@settings(max_examples=40, deadline=None)
@given(v=voltages, m=unit, h=unit, n=unit, dt=dts, celsius=temperatures, usetable=st.booleans())
def test_hh_state_is_exact_exponential(hh, v, m, h, n, dt, celsius, usetable):
    inst = hh_instances(hh, v, celsius, usetable, dt)
    inst["mech.m"], inst["mech.h"], inst["mech.n"] = m, h, n
    inst.run("state")
    minf, mtau, hinf, htau, ninf, ntau = (hh_rates_table if usetable else hh_rates)(v, celsius)
    for state, old, inf, tau in (("m", m, minf, mtau), ("h", h, hinf, htau), ("n", n, ninf, ntau)):
        close(inst[f"mech.{state}"], inf + (old - inf) * exp(-dt / tau), scale=old)


# ------------------------------------------------------------------ pas, IClamp


@settings(max_examples=30, deadline=None)
@given(v=voltages, g=positive, e=st.floats(-90.0, 0.0))
def test_pas_current(v, g, e):
    inst = Instances(builtin("passive"), N)
    inst["node.v"], inst["mech.g"], inst["mech.e"] = v, g * 1e-3, e
    inst.run("current")
    close(inst["node.rhs"], -(g * 1e-3 * (v - e)))
    close(inst["node.d"], (g * 1e-3 * (v + 0.001 - e) - g * 1e-3 * (v - e)) / 0.001)


@settings(max_examples=30, deadline=None)
@given(
    t=st.floats(0.0, 100.0),
    delay=arrays(np.float64, N, elements=st.floats(0.0, 100.0)),
    dur=arrays(np.float64, N, elements=st.floats(0.0, 100.0)),
    amp=arrays(np.float64, N, elements=st.floats(-5.0, 5.0)),
    area=arrays(np.float64, N, elements=st.floats(1.0, 1e4)),
)
def test_iclamp_current(t, delay, dur, amp, area):
    inst = Instances(builtin("stim"), N, t=t)
    inst["mech.del"], inst["mech.dur"], inst["mech.amp"], inst["node.area"] = delay, dur, amp, area
    inst.run("init")
    assert np.all(inst["mech.i"] == 0)
    inst.run("current")
    i = np.where((t < delay + dur) & (t >= delay), amp, 0.0)
    close(inst["mech.i"], i)
    # An electrode current is inward: it adds to the right-hand side, in mA/cm2.
    close(inst["node.rhs"], i * 100.0 / area)
    close(inst["node.d"], 0.0 * i)


# ------------------------------------------------------------------ ExpSyn, Exp2Syn


@settings(max_examples=30, deadline=None)
@given(
    v=voltages, g=positive, tau=positive, e=st.floats(-90.0, 20.0), dt=dts, area=st.floats(1.0, 1e4)
)
def test_expsyn(v, g, tau, e, dt, area):
    inst = Instances(builtin("expsyn"), N, dt=dt)
    inst["node.v"], inst["mech.g"], inst["mech.tau"], inst["mech.e"], inst["node.area"] = (
        v,
        g,
        tau,
        e,
        area,
    )
    inst.run("current")
    i, i1 = g * (v - e), g * (v + 0.001 - e)
    close(inst["mech.i"], i)
    close(inst["node.rhs"], -i * 100.0 / area)
    close(inst["node.d"], (i1 - i) / 0.001 * 100.0 / area)
    inst.run("state")
    close(inst["mech.g"], g * exp(-dt / tau), scale=g)


def test_expsyn_net_receive_adds_weight():
    inst = Instances(builtin("expsyn"), 4)
    inst["mech.g"] = 0.5
    inst.values["netcon.weight"] = np.array([0.01, 0.02, 0.03])
    inst.run(
        "net_receive",
        **{
            "event.instance": np.array([3, 1], dtype=np.int32),
            "event.netcon": np.array([2, 0], dtype=np.int32),
            "event.t": np.array([1.0, 1.0]),
            "event.flag": np.zeros(2),
        },
    )
    np.testing.assert_array_equal(inst["mech.g"], [0.5, 0.51, 0.5, 0.53])


def exp2syn_factor(tau1, tau2):
    ratio = tau1 / tau2
    tau1 = np.where(ratio > 0.9999, 0.9999 * tau2, tau1)
    tau1 = np.where(tau1 / tau2 < 1e-9, tau2 * 1e-9, tau1)
    tp = (tau1 * tau2) / (tau2 - tau1) * log(tau2 / tau1)
    return tau1, 1 / (-exp(-tp / tau1) + exp(-tp / tau2))


@settings(max_examples=30, deadline=None)
@given(tau1=positive, tau2=positive, a=positive, bb=positive, v=voltages, dt=dts)
def test_exp2syn(tau1, tau2, a, bb, v, dt):
    inst = Instances(builtin("exp2syn"), N, dt=dt)
    inst["mech.tau1"], inst["mech.tau2"], inst["node.v"] = tau1, tau2, v
    inst.run("init")
    tau1_used, factor = exp2syn_factor(tau1, tau2)
    close(inst["mech.tau1"], tau1_used)
    close(inst["mech.factor"], factor)
    assert np.all(inst["mech.A"] == 0) and np.all(inst["mech.B"] == 0)
    inst["mech.A"], inst["mech.B"] = a, bb
    inst.run("current")
    close(inst["mech.g"], bb - a)
    close(inst["mech.i"], (bb - a) * (v - 0.0))
    inst.run("state")
    close(inst["mech.A"], a * exp(-dt / tau1_used), scale=a)
    close(inst["mech.B"], bb * exp(-dt / tau2), scale=bb)
    inst.values["netcon.weight"] = np.array([0.25])
    inst.run(
        "net_receive",
        **{
            "event.instance": np.array([0], dtype=np.int32),
            "event.netcon": np.array([0], dtype=np.int32),
            "event.t": np.array([0.0]),
            "event.flag": np.zeros(1),
        },
    )
    close(inst["mech.A"][0], a[0] * exp(-dt / tau1_used[0]) + 0.25 * factor[0], scale=a[0])
