COMMENT
An event sink that fingerprints the order its events arrive in: each event, external or
self-sent, folds its flag into `h`, so two orders give two values. An external event sends
two self-events (flags 1 and 2, after d1 and d2); a flag 1 sends one more (flag 3, after
d3), up to `limit` events. With delays of zero and of the events' own spacing, self-events
fall due at the times of other events, and the order among equal times shows in `h`. For
the compiled epochs' in-kernel self-event queue.
ENDCOMMENT

NEURON {
    POINT_PROCESS OrderLog
    RANGE d1, d2, d3, limit, h, n
}

PARAMETER {
    d1 = 0.5 (ms)
    d2 = 0 (ms)
    d3 = 0.25 (ms)
    limit = 60
}

ASSIGNED {
    h
    n
}

INITIAL {
    h = 0
    n = 0
}

NET_RECEIVE(w) {
    n = n + 1
    h = fmod(h * 5 + flag + 1, 1000003)
    if (flag == 0) {
        net_send(d1, 1)
        net_send(d2, 2)
    } else if (flag == 1) {
        if (n < limit) {
            net_send(d3, 3)
        }
    }
}
