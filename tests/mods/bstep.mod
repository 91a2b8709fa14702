COMMENT
A slow feedback current through values a BEFORE STEP block samples: NEURON runs BEFORE STEP
where it records (fixed_record_continuous): at finitialize after the currents, and at the
end of every step after AFTER SOLVE, before the step's last events. BREAKPOINT reads what
the last BEFORE STEP saw, so running it anywhere else moves v.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX bstep
    NONSPECIFIC_CURRENT i
    RANGE g, vseen, nstep, i
}

PARAMETER { g = 0.00002 (S/cm2) }

ASSIGNED { v (mV) i (mA/cm2) vseen (mV) nstep }

INITIAL {
    vseen = -70
    nstep = 0
}

BREAKPOINT {
    i = g * (vseen + 60)
}

BEFORE STEP {
    vseen = v
    nstep = nstep + 1
}
