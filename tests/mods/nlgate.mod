: A K current whose gates solve a NONLINEAR block (nocmodl's newton), in INITIAL and
: at every step, from the last solution: m + k2 h m^2 = minf(v), h^2 + m h = hinf(v).
NEURON {
    SUFFIX nlgate
    USEION k READ ek WRITE ik
    RANGE gbar, minf, hinf
}

PARAMETER {
    gbar = 0.02 (S/cm2)
    k2 = 0.5
}

STATE { m h }

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    minf
    hinf
}

INITIAL {
    m = 0.5
    h = 0.5
    SOLVE gates
}

BREAKPOINT {
    SOLVE gates
    ik = gbar*m*m*h*(v - ek)
}

NONLINEAR gates {
    LOCAL a
    minf = 1/(1 + exp(-(v + 40)/8))
    hinf = 1/(1 + exp((v + 60)/6))
    a = k2*h
    ~ m + a*m*m = minf
    ~ h*h + m*h = hinf
}
