: An exponential synapse whose CONSTRUCTOR sets its decay time (over the PARAMETER's
: default) and counts instances in a GLOBAL: NEURON runs it where it makes the instance,
: so the model it hands over holds tau = 3; its DESTRUCTOR counts down.
NEURON {
    POINT_PROCESS CtorSyn
    RANGE tau, e, i
    GLOBAL made
    NONSPECIFIC_CURRENT i
}

PARAMETER {
    tau = 0.5 (ms)
    e = 0 (mV)
}

ASSIGNED {
    v (mV)
    i (nA)
    made
}

STATE { g (uS) }

CONSTRUCTOR {
    tau = 3
    made = made + 1
}

DESTRUCTOR {
    made = made - 1
}

INITIAL { g = 0 }

BREAKPOINT {
    SOLVE state METHOD cnexp
    i = g*(v - e)
}

DERIVATIVE state { g' = -g/tau }

NET_RECEIVE(weight (uS)) { g = g + weight }
