"""derivimplicit and KINETIC/sparse against an independent backward-Euler step."""

from __future__ import annotations

import numpy as np
from harness import Instances
from hypothesis import given, settings
from hypothesis import strategies as st

from portneuron.nmodl import compile_source

KINETIC = """
NEURON { SUFFIX kin RANGE kf, kb }
PARAMETER { kf = 2 kb = 0.5 }
STATE { C O I }
INITIAL { C = 1 }
BREAKPOINT { SOLVE scheme METHOD sparse }
KINETIC scheme {
    ~ C <-> O (kf, kb)
    ~ O <-> I (kb, kf)
    CONSERVE C + O + I = 1
}
"""

NONLINEAR = """
NEURON { SUFFIX nl RANGE k }
PARAMETER { k = 1 }
STATE { y }
BREAKPOINT { SOLVE d METHOD derivimplicit }
DERIVATIVE d { y' = -k*y*y*y }
"""


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.01, 10), st.floats(0.01, 10), st.floats(1e-3, 1.0), st.floats(0, 1), st.floats(0, 1)
)
def test_kinetic_is_one_backward_euler_step_with_conservation(kf, kb, dt, c0, o0):
    mech = compile_source(KINETIC, "kin.mod")
    inst = Instances(mech, 1, dt=dt)
    total = c0 + o0
    i0 = max(0.0, 1.0 - total)
    inst["mech.kf"], inst["mech.kb"] = kf, kb
    inst["mech.C"], inst["mech.O"], inst["mech.I"] = c0, o0, i0
    inst.run("state")
    # (x - x0)/dt = A x, with the row of I (last in CONSERVE) replaced by C + O + I = 1.
    a = np.array([[-kf, kb, 0.0], [kf, -kb - kb, kf], [0.0, kb, -kf]])
    m = np.eye(3) - dt * a
    rhs = np.array([c0, o0, i0])
    m[2], rhs[2] = [1.0, 1.0, 1.0], 1.0
    expected = np.linalg.solve(m, rhs)
    got = [inst["mech.C"][0], inst["mech.O"][0], inst["mech.I"][0]]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    assert abs(sum(got) - 1.0) < 1e-13


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 5), st.floats(1e-3, 0.5), st.floats(-2, 2))
def test_derivimplicit_solves_the_nonlinear_backward_euler_equation(k, dt, y0):
    inst = Instances(compile_source(NONLINEAR, "nl.mod"), 1, dt=dt)
    inst["mech.k"], inst["mech.y"] = k, y0
    inst.run("state")
    y = inst["mech.y"][0]
    # y solves y - y0 = -dt*k*y^3 (the root is unique: the left side minus the right is
    # increasing) as NEURON's newton stops: its residual y' - (y - y0)/dt within 1e-8
    # (tests/test_implicit_neuron.py compares the bits with NEURON's)
    assert abs(-k * y**3 - (y - y0) / dt) <= 1e-8
    assert abs(y) <= abs(y0) + 1e-15


POWER_RATE = """
NEURON { SUFFIX pw RANGE nh }
PARAMETER { kb = 0.2 kc = 0.5 nh = 2.5 }
ASSIGNED { kf }
STATE { A B C }
BREAKPOINT { SOLVE scheme METHOD sparse }
KINETIC scheme {
    rates()
    ~ A <-> B (kf, kb)
    ~ C <-> A (kc, kc)
}
PROCEDURE rates() { kf = 3 * C^nh }
"""


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 1e-3, 0.5]),
    st.floats(1e-3, 0.2),
    st.sampled_from([2.0, 2.5, 4.0]),
)
def test_kinetic_rate_that_is_a_power_of_a_state(a0, b0, c0, dt, nh):
    """A rate computed in a PROCEDURE as a power of another state (calcium in a
    calcium-activated channel) is finite at C = 0, where NEURON runs it. nocmodl sees no
    state in the rates it pastes, so the scheme counts as linear: one Newton step, the
    rate taken at the step's start (tests/test_implicit_neuron.py compares the bits with
    NEURON's)."""
    inst = Instances(compile_source(POWER_RATE, "pw.mod"), 1, dt=dt)
    inst["mech.nh"], inst["mech.A"], inst["mech.B"], inst["mech.C"] = nh, a0, b0, c0
    for _ in range(3):
        old = [inst[f"mech.{s}"][0] for s in "ABC"]
        inst.run("state")
        a, b, c = (inst[f"mech.{s}"][0] for s in "ABC")
        assert np.isfinite([a, b, c]).all()
        ab = 3.0 * old[2] ** nh * a - 0.2 * b  # mass action A -> B, kf from the start
        ca = 0.5 * c - 0.5 * a  # C -> A
        for new, start, rate in zip((a, b, c), old, (ca - ab, ab, -ca)):
            assert abs(new - start - dt * rate) <= 1e-12 * max(1.0, abs(start))
