: No SUFFIX: nocmodl names the mechanism after the file (nosfx), a density mechanism.
NEURON {
    NONSPECIFIC_CURRENT i
    RANGE g, e
}

PARAMETER {
    g = 0.0005 (S/cm2)
    e = -60 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
}

BREAKPOINT {
    i = g*(v - e)
}
