: A leak through a spine neck: the current and the spine's voltage solve a LINEAR block
: SOLVEd in a PROCEDURE that BREAKPOINT calls (as NEURON's expsynspine.mod); an EXTERNAL
: (IntFire4's GLOBAL eps) that only a hoc-called FUNCTION reads.
NEURON {
    SUFFIX spinelin
    NONSPECIFIC_CURRENT i
    RANGE rsp, g, e, vsp
    EXTERNAL eps_IntFire4
}

PARAMETER {
    rsp = 50 (megohm/cm2)
    g = 0.0004 (S/cm2)
    e = -50 (mV)
}

ASSIGNED {
    v (mV)
    eps_IntFire4
}

STATE {
    i (mA/cm2)
    vsp (mV)
}

BREAKPOINT {
    neck()
}

PROCEDURE neck() {
    SOLVE spine
}

LINEAR spine SOLVEFOR i, vsp {
    ~ rsp*i = v - vsp
    ~ i = g*vsp - g*e
}

FUNCTION eps() {
    eps = eps_IntFire4
}
