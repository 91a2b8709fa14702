: Values NEURON keeps one of, which each instance reads before it assigns them: a GLOBAL
: rate set at each instance's v in the states and read by BREAKPOINT, a file-scope LOCAL and
: a GLOBAL set from each instance's diameter in INITIAL, and a counter every call updates.
NEURON {
    SUFFIX gshare
    NONSPECIFIC_CURRENT i
    RANGE g, e
    GLOBAL scale, calls, minf
    THREADSAFE
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}

PARAMETER {
    g = 2e-4 (S/cm2)
    e = -60 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    diam (um)
    scale (1)
    calls (1)
    minf (1)
}

STATE {
    m
}

LOCAL width

INITIAL {
    width = diam
    scale = 1 + diam / 10
    rates(v)
    m = minf
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    PROTECT calls = calls + 1
    i = g * scale * (m + minf) / 2 * (v - e) * (1 + width / 100) + 1e-9 * calls
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / 2
}

PROCEDURE rates(v (mV)) {
    minf = 1 / (1 + exp(-(v + 50) / 5))
}
