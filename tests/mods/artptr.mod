COMMENT
An artificial cell that reads a value elsewhere through a POINTER at each event, sums it,
and spikes that many ms later (direct mode finds where an artificial cell is: nowhere).
ENDCOMMENT

NEURON {
    ARTIFICIAL_CELL ArtPtr
    POINTER src
    RANGE total
}

ASSIGNED { src total }

INITIAL { total = 0 }

NET_RECEIVE (w) {
    if (flag == 0) {
        total = total + src * w
        net_send(src, 1)
    } else {
        net_event(t)
    }
}
