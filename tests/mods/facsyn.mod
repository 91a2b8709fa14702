COMMENT
A facilitating synapse: each NetCon keeps its own facilitation state in its weight vector,
set up by an INITIAL block inside NET_RECEIVE; the conductance steps by state_discontinuity.
ENDCOMMENT

NEURON {
    POINT_PROCESS FacSyn
    RANGE tau, e, i, fac, taufac
    NONSPECIFIC_CURRENT i
}

PARAMETER {
    tau = 3 (ms)
    e = 0 (mV)
    fac = 0.6
    taufac = 15 (ms)
}

ASSIGNED {
    v (mV)
    i (nA)
}

STATE { g (uS) }

INITIAL { g = 0 }

BREAKPOINT {
    SOLVE state METHOD cnexp
    i = g*(v - e)
}

DERIVATIVE state { g' = -g/tau }

NET_RECEIVE(weight (uS), F, tlast (ms)) {
    INITIAL {
        F = 1
        tlast = t
    }
    F = 1 + (F - 1)*exp(-(t - tlast)/taufac)
    state_discontinuity(g, g + weight*F)
    F = F + fac
    tlast = t
}
