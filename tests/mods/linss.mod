COMMENT
A four-state channel whose INITIAL finds its equilibrium by a LINEAR block (NEURON's simeq:
Gaussian elimination with partial pivoting, so rows are exchanged here), then moves by
KINETIC. The equations have constants on both sides, leading minus signs, coefficients
that are products and quotients, and an assignment between equations.
ENDCOMMENT

NEURON {
    SUFFIX linss
    NONSPECIFIC_CURRENT i
    RANGE gbar
}

PARAMETER { gbar = 0.0002 (S/cm2) e = -75 (mV) }

ASSIGNED { v (mV) i (mA/cm2) a (/ms) b (/ms) c (/ms) k }

STATE { C1 C2 O I }

INITIAL {
    rates(v)
    SOLVE equilibrium
}

BREAKPOINT {
    SOLVE kin METHOD sparse
    i = gbar * O * (v - e)
}

PROCEDURE rates(v (mV)) {
    a = 0.2 * exp((v + 55) / 12)
    b = 0.05 * exp(-(v + 55) / 15)
    c = 0.03
}

LINEAR equilibrium {
    ~ 1e-3 * C2 + C1*a - 2*C2*b/2 = 1e-3 * C2 - 0
    ~ -C2*(b + a) + C1*a + O*b = 0
    k = c / 3
    ~ O*(b + c) - C2*a - I*k*3 = 0
    ~ 1 - O = C1 + C2 + I
}

KINETIC kin {
    rates(v)
    ~ C1 <-> C2 (a, b)
    ~ C2 <-> O (a, b)
    ~ O <-> I (c, 0.01)
}
