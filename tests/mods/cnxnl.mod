: A K gate asked to be solved by cnexp, but its equation is not linear in n: nocmodl says
: "Could not translate using cnexp method; using derivimplicit", and NEURON solves it so.
NEURON {
    SUFFIX cnxnl
    USEION k READ ek WRITE ik
    RANGE gbar
}

PARAMETER {
    gbar = 0.02 (S/cm2)
    tau = 2 (ms)
}

STATE { n }

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
}

INITIAL {
    n = 1/(1 + exp(-(v + 30)/9))
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar*n*n*n*n*(v - ek)
}

DERIVATIVE states {
    n' = (1/(1 + exp(-(v + 30)/9)) - n)/(tau*(1 + n*n))
}
