: One side of a gap junction: the current a conductance g passes from the other side, whose
: voltage ParallelContext.target_var puts into vgap every step.
NEURON {
    POINT_PROCESS HalfGap
    ELECTRODE_CURRENT i
    RANGE g, i, vgap
}
UNITS {
    (mV) = (millivolt)
    (nA) = (nanoamp)
    (uS) = (microsiemens)
}
PARAMETER { g = 0.001 (uS) }
ASSIGNED {
    v (mV)
    vgap (mV)
    i (nA)
}
BREAKPOINT { i = g * (vgap - v) }
