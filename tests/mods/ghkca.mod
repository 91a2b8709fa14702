COMMENT
A calcium current by the Goldman-Hodgkin-Katz equation through NEURON's own nrn_ghk
(eion.cpp), gated by one Hodgkin-Huxley-style activation m: near v = 0 its efun takes the
series branch.
ENDCOMMENT

NEURON {
    SUFFIX ghkca
    USEION ca READ cai, cao WRITE ica
    RANGE pbar
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
}

PARAMETER {
    pbar = 2e-4 (cm/s)
}

ASSIGNED {
    v (mV)
    cai (mM)
    cao (mM)
    ica (mA/cm2)
}

STATE { m }

INITIAL { m = minf(v) }

BREAKPOINT {
    SOLVE gate METHOD cnexp
    ica = pbar*m*m*nrn_ghk(v, cai, cao, 2)
}

DERIVATIVE gate { m' = (minf(v) - m)/2 }

FUNCTION minf(v (mV)) { minf = 1/(1 + exp(-(v + 20)/6)) }
