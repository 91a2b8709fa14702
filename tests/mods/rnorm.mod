COMMENT
Normal deviates from an NMODL RANDOM stream (NEURON 9's random_normal: nrnran123_normal,
Marsaglia's polar method), summed at each event: one standard, one with a mean and a
standard deviation; and a uniform draw, so that the stream's position after the rejections
matters.
ENDCOMMENT

NEURON {
    THREADSAFE
    POINT_PROCESS RNorm
    RANDOM r
    RANGE x, y, z, count
}

ASSIGNED { x y z count }

INITIAL {
    random_setseq(r, 0)  : as NEURON's NetStim: every run from the stream's start
    x = 0
    y = 0
    z = 0
    count = 0
}

NET_RECEIVE (w) {
    x = x + random_normal(r)
    y = y + random_normal(r, 2, 0.5)
    z = z + random_uniform(r)
    count = count + 1
}
