COMMENT
A synapse that keeps the times and weights of its recent events in arrays indexed at run
time (a queue, as LFPy's ExpSynI keeps one): each event appends, and BREAKPOINT sums
alpha-shaped currents over the queue and drops the events that have faded.
ENDCOMMENT

DEFINE QMAX 8

NEURON {
    POINT_PROCESS ArrSyn
    RANGE tau, e, i, n
    NONSPECIFIC_CURRENT i
}

PARAMETER { tau = 2 (ms) e = 0 (mV) }

ASSIGNED { v (mV) i (nA) n onset[QMAX] (ms) weight[QMAX] (uS) }

INITIAL { n = 0 }

BREAKPOINT {
    LOCAL g, x, faded
    g = 0
    faded = 0
    FROM k = 0 TO n - 1 {
        x = (t - onset[k]) / tau
        if (x > 10) {
            faded = faded + 1
        } else {
            g = g + weight[k] * x * exp(1 - x)
        }
    }
    i = g * (v - e)
    drop(faded)
}

PROCEDURE drop(m) {
    FROM k = 0 TO n - m - 1 {
        onset[k] = onset[k + m]
        weight[k] = weight[k + m]
    }
    n = n - m
}

NET_RECEIVE (w (uS)) {
    if (n < QMAX) {
        onset[n] = t
        weight[n] = w
        n = n + 1
    }
}
