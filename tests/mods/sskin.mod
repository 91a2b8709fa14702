COMMENT
A three-state channel (KINETIC, linear in its states) that INITIAL puts in its steady state
with SOLVE ... STEADYSTATE sparse: NEURON takes one implicit step of dt = 1e9. (Not
THREADSAFE: with THREADSAFE and CONSERVE, NEURON 9 leaves the states where INITIAL set them.)
ENDCOMMENT

NEURON {
    SUFFIX sskin
    NONSPECIFIC_CURRENT i
    RANGE gbar
}

PARAMETER { gbar = 0.0001 (S/cm2) e = -80 (mV) }

ASSIGNED { v (mV) i (mA/cm2) a (/ms) b (/ms) }

STATE { C O I }

INITIAL {
    C = 1
    SOLVE kin STEADYSTATE sparse
}

BREAKPOINT {
    SOLVE kin METHOD sparse
    i = gbar * O * (v - e)
}

KINETIC kin {
    a = 0.1 * exp((v + 60) / 10)
    b = 0.1 * exp(-(v + 60) / 10)
    ~ C <-> O (a, b)
    ~ O <-> I (0.05, 0.01)
    CONSERVE C + O + I = 1
}
