COMMENT
A leak blocked by magnesium through a TABLE that reads a RANGE value (DEPEND mg): NEURON
builds the table with the first instance's mg, so a block that differs per instance is
the first one's (here every instance has the same mg, set from hoc).
ENDCOMMENT

NEURON {
    SUFFIX tabmg
    NONSPECIFIC_CURRENT i
    RANGE g, mg
}

PARAMETER { g = 0.0002 (S/cm2) e = 0 (mV) mg = 1 (mM) }

ASSIGNED { v (mV) i (mA/cm2) }

BREAKPOINT { i = g * block(v) * (v - e) }

FUNCTION block(v (mV)) {
    TABLE DEPEND mg FROM -120 TO 60 WITH 360
    block = 1 / (1 + exp(-0.062 * v) * mg / 3.57)
}
