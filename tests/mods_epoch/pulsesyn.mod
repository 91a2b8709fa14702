COMMENT
A pulse synapse: an event opens a conductance w for `dur` ms, by a self-event that closes it
(net_send from NET_RECEIVE on a real cell), which in turn sends a zero-delay self-event
that counts the pulses. A pulse opens more if the event before it was a pulse's end
(`last`), so the order of events of one time shows in the voltages. For the compiled
epochs' in-kernel self-event queue.
ENDCOMMENT

NEURON {
    POINT_PROCESS PulseSyn
    RANGE e, dur, i, g, n, last
    NONSPECIFIC_CURRENT i
}

PARAMETER {
    e = 0 (mV)
    dur = 2 (ms)
}

ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    n
    last
}

INITIAL {
    g = 0
    n = 0
    last = 0
}

BREAKPOINT {
    i = g*(v - e)
}

NET_RECEIVE(w (uS)) {
    if (flag == 0) {
        g = g + w*(1 + last)
        net_send(dur, 1)
    } else if (flag == 1) {
        g = g - w
        net_send(0, 2)
    } else {
        n = n + 1
    }
    last = flag
}
