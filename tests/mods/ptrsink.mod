COMMENT
Places for POINTERs to point at in tests: four RANGE values that nothing else touches, set
by INITIAL (so that what mechanisms add to them does not pile up over runs), so what a
mechanism reads through its POINTERs is known, and what it writes or adds stays there to be
compared.
ENDCOMMENT

NEURON {
    SUFFIX ptrsink
    RANGE x0, x1, x2, x3
}

ASSIGNED { x0 x1 x2 x3 }

INITIAL {
    x0 = 1.5
    x1 = 2.5
    x2 = 3.5
    x3 = 4.5
}
