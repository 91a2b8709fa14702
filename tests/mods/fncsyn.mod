COMMENT
An exponential synapse whose every event potentiates the NetCons that delivered within the
last 5 ms (FOR_NETCONS, over each NetCon that targets this instance, in NetCon order), and
then depresses its own: the loop's rows alias NET_RECEIVE's arguments, as in NEURON, where
both point into the NetCon's weights. A self-event (flag 1) sent from INITIAL halves every
NetCon's reach.
ENDCOMMENT

NEURON {
    POINT_PROCESS FncSyn
    RANGE tau, e, i, nloop
    NONSPECIFIC_CURRENT i
}

PARAMETER {
    tau = 2 (ms)
    e = 0 (mV)
}

ASSIGNED {
    v (mV)
    i (nA)
    nloop
}

STATE { g (uS) }

INITIAL {
    g = 0
    nloop = 0
    net_send(12, 1)
}

BREAKPOINT {
    SOLVE state METHOD cnexp
    i = g*(v - e)
}

DERIVATIVE state { g' = -g/tau }

NET_RECEIVE(w (uS), wmax (uS), npre, tpre (ms)) {
    INITIAL {
        wmax = 3*w
        npre = 0
        tpre = -1e9
    }
    if (flag == 0) {
        npre = npre + 1
        tpre = t
        g = g + w
        FOR_NETCONS(wi (uS), wmaxi (uS), ni, ti (ms)) {
            nloop = nloop + 1
            if (t - ti < 5) {
                wi = wi + 0.25*(wmaxi - wi)
            }
        }
        w = 0.9*w
    } else {
        FOR_NETCONS(x, xmax, xn, xt) {
            xmax = 0.5*xmax
        }
    }
}
