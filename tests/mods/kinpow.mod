COMMENT
A KINETIC scheme whose rate is a power of one of its own states, computed in a PROCEDURE
(kf = 3*C^nh, as a calcium-activated scheme computes its rates): nocmodl's matrix holds kf
as a plain rate, so it solves the scheme as linear and NEURON's sparse takes a single Newton
iteration, which leaves a (small) backward-Euler residual; portneuron does the same.
ENDCOMMENT

NEURON {
    SUFFIX kinpow
    NONSPECIFIC_CURRENT i
    RANGE gbar, nh
}

PARAMETER { gbar = 0.0002 (S/cm2) e = -75 (mV) kb = 0.2 kc = 0.5 nh = 2.5 }

ASSIGNED { v (mV) i (mA/cm2) kf }

STATE { A B C }

INITIAL { A = 0.5 C = 0.3 }

BREAKPOINT {
    SOLVE scheme METHOD sparse
    i = gbar * B * (v - e)
}

KINETIC scheme {
    rates()
    ~ A <-> B (kf, kb)
    ~ C <-> A (kc, kc)
}

PROCEDURE rates() { kf = 3 * C^nh * exp((v + 65) / 30) }
