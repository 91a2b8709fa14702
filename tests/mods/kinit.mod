: SOLVE without STEADYSTATE in INITIAL (as BBP's nakpump): one sparse step of dt of a
: KINETIC scheme, and one derivimplicit step (no METHOD) of a DERIVATIVE block, from
: their INITIAL values; both solved at every step as usual.
NEURON {
    SUFFIX kinit
    USEION k READ ek WRITE ik
    RANGE gbar
}

PARAMETER {
    gbar = 0.02 (S/cm2)
    tau = 3 (ms)
}

STATE { c o s }

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    a (/ms)
    b (/ms)
}

INITIAL {
    c = 1
    o = 0
    s = 0.2
    SOLVE kin METHOD sparse
    SOLVE slow
}

BREAKPOINT {
    SOLVE kin METHOD sparse
    SOLVE slow METHOD derivimplicit
    ik = gbar*o*s*(v - ek)
}

KINETIC kin {
    a = 0.5*exp((v + 40)/20)
    b = 0.3*exp(-(v + 40)/25)
    ~ c <-> o (a, b)
    CONSERVE c + o = 1
}

DERIVATIVE slow {
    s' = (1/(1 + exp(-(v + 50)/10)) - s)/tau
}
