COMMENT
A spike detector in the Izhikevich style, built on WATCH (as NEURON 9 runs it with the fixed
step): INITIAL sends itself flag 1, which WATCHes v rise above vpeak twice (flags 2 and 6:
both fire at one check, and flag 2's WATCH drops flag 6's event) and u rise above umax (5).
Flag 2 WATCHes v fall below vlow (4, a '<' condition) and u again, with u as it was before
this event adds d (so u's crossing fires at the next step), sends a spike (net_event) and
switches on a reset conductance for treset ms; flag 4 WATCHes the rise again, where u may
already be above umax (it fires only after falling below). u adds a small current, so
every event shows in v.
ENDCOMMENT

NEURON {
    POINT_PROCESS IzhW
    RANGE a, b, d, ku, vpeak, vlow, greset, ereset, treset, umax
    RANGE u, i, gr, nspike, nlow, nu, nsix
    NONSPECIFIC_CURRENT i
}

PARAMETER {
    a = 0.1 (/ms)
    b = 0.2
    d = 2
    ku = 0.005 (nA)
    vpeak = -20 (mV)
    vlow = -55 (mV)
    greset = 0.002 (uS)
    ereset = -70 (mV)
    treset = 0.6 (ms)
    umax = -11.5
}

ASSIGNED {
    v (mV)
    i (nA)
    gr (uS)
    nspike
    nlow
    nu
    nsix
}

STATE { u }

INITIAL {
    u = b*v
    gr = 0
    nspike = 0
    nlow = 0
    nu = 0
    nsix = 0
    net_send(0, 1)
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gr*(v - ereset) + ku*(u - b*v)
}

DERIVATIVE states { u' = a*(b*v - u) }

NET_RECEIVE (w) {
    if (flag == 1) {
        WATCH (v > vpeak) 2, (v > vpeak) 6, (u > umax) 5
    } else if (flag == 2) {
        WATCH (v < vlow) 4, (u > umax) 5
        net_event(t)
        nspike = nspike + 1
        u = u + d
        gr = greset
        net_send(treset, 3)
    } else if (flag == 3) {
        gr = 0
    } else if (flag == 4) {
        nlow = nlow + 1
        WATCH (v > vpeak) 2, (u > umax) 5
    } else if (flag == 5) {
        nu = nu + 1
        u = u + d
    } else if (flag == 6) {
        nsix = nsix + 1
        u = u + d
    }
}
