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
    # y solves y - y0 = -dt*k*y^3 (the root is unique: the left side minus the right is increasing)
    assert abs(y - y0 + dt * k * y**3) <= 1e-12 * max(1.0, abs(y0))
    assert abs(y) <= abs(y0) + 1e-15
