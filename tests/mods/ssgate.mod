COMMENT
A gate that INITIAL settles with SOLVE ... STEADYSTATE derivimplicit: NEURON takes one
derivimplicit step with dt = 1e-9 (_ss_derivimplicit_thread), which leaves the gate nearly
where INITIAL put it (taking 1e9 there would settle it, and differ from NEURON by millivolts).
ENDCOMMENT

NEURON {
    SUFFIX ssgate
    NONSPECIFIC_CURRENT i
    RANGE gbar
    THREADSAFE
}

PARAMETER { gbar = 0.0001 (S/cm2) e = -90 (mV) }

ASSIGNED { v (mV) i (mA/cm2) }

STATE { m }

INITIAL { m = 0 SOLVE states STEADYSTATE derivimplicit }

BREAKPOINT {
    SOLVE states METHOD derivimplicit
    i = gbar * m * (v - e)
}

DERIVATIVE states { m' = (1 / (1 + exp(-(v + 60) / 5)) - m) / 20 }
