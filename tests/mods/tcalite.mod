COMMENT
A T-type calcium current in the style of many ModelDB files: not THREADSAFE, reading cai
again by VERBATIM in INITIAL (so nocmodl's C is not thread safe: no `v` among the values),
and declaring its ion current RANGE (so nocmodl lays it out among the RANGE ASSIGNEDs).
ENDCOMMENT

NEURON {
    SUFFIX tcalite
    USEION ca READ cai, cao WRITE ica
    RANGE gbar, ica, g
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (mM) = (milli/liter)
}

PARAMETER { gbar = 0.0002 (S/cm2) }

ASSIGNED { v (mV) cai (mM) cao (mM) ica (mA/cm2) g (S/cm2) minf }

STATE { m }

INITIAL {
    rates(v)
    m = minf
    VERBATIM
    cai = _ion_cai;
    ENDVERBATIM
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar * m * m
    ica = g * (v - 12.5 * log(cao / cai))
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / 2
}

PROCEDURE rates(v (mV)) {
    minf = 1 / (1 + exp(-(v + 55) / 6))
}
