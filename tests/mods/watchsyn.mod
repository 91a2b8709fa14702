COMMENT
A synapse that WATCHes its own conductance g (a STATE). Each NetCon event WATCHes g rise
above gth, with g as it was before the event adds its weight: the crossing is seen at the
next step's start (flag 2), which adds a boost and WATCHes g fall below glow (flag 3, which
adds glow). A NetCon event arriving before that drops the downward WATCH. No branch but
flag 0 reads the weight: NEURON delivers a WATCH event with none.
ENDCOMMENT

NEURON {
    POINT_PROCESS WatchSyn
    RANGE tau, e, gth, glow, boost, i, nup, ndown, tup
    NONSPECIFIC_CURRENT i
}

PARAMETER {
    tau = 2 (ms)
    e = 0 (mV)
    gth = 0.003 (uS)
    glow = 0.001 (uS)
    boost = 0.002 (uS)
}

ASSIGNED {
    v (mV)
    i (nA)
    nup
    ndown
    tup (ms)
}

STATE { g (uS) }

INITIAL {
    g = 0
    nup = 0
    ndown = 0
    tup = -1
}

BREAKPOINT {
    SOLVE state METHOD cnexp
    i = g*(v - e)
}

DERIVATIVE state { g' = -g/tau }

NET_RECEIVE (w (uS)) {
    if (flag == 0) {
        WATCH (g > gth) 2
        g = g + w
    } else if (flag == 2) {
        nup = nup + 1
        tup = t
        g = g + boost
        WATCH (g < glow) 3
    } else if (flag == 3) {
        ndown = ndown + 1
        g = g + glow
    }
}
