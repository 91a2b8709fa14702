COMMENT
Where axcur's contributions add up: BEFORE BREAKPOINT (and BEFORE INITIAL) clears the sum,
then every axcur instance adds its term, in instance order; its own POINTER reads v
elsewhere.
ENDCOMMENT

NEURON {
    POINT_PROCESS AxSum
    RANGE sum, vfar
    POINTER vremote
}

ASSIGNED { sum vremote (mV) vfar (mV) }

BEFORE INITIAL { sum = 0 }

BEFORE BREAKPOINT { sum = 0 }

AFTER SOLVE { vfar = vremote }
