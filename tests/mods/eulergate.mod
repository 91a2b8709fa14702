COMMENT
A slow, voltage-gated leak integrated by METHOD euler (NEURON's explicit step: every
derivative at the step's start values, then each state moves by dt times its own). Its rate
`ninf` is a GLOBAL it assigns, and the file is not THREADSAFE, so nocmodl does not vectorize it:
its instances keep no `v` in NEURON's data (one value fewer per instance in a dataset).
ENDCOMMENT

NEURON {
    SUFFIX eulergate
    NONSPECIFIC_CURRENT i
    RANGE gbar, e
    GLOBAL ninf
}

PARAMETER { gbar = 0.0005 (S/cm2) e = -80 (mV) }

ASSIGNED { v (mV) i (mA/cm2) ninf }

STATE { n q }

INITIAL { n = 0.1 q = 0.2 }

BREAKPOINT {
    SOLVE states METHOD euler
    i = gbar * n * q * (v - e)
}

DERIVATIVE states {
    ninf = 1 / (1 + exp(-(v + 50) / 6))
    n' = (ninf - n) / 3
    q' = (1 - q) / 20 - 0.01 * n * q
}
