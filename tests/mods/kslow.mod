COMMENT
A potassium current set only in a SOLVEd PROCEDURE: BREAKPOINT's current is then the value
the mechanism kept from the last state step (NEURON keeps each mechanism's own ik), not the
ion's sum over mechanisms. (INITIAL sets it: NEURON's finitialize leaves an ASSIGNED as the
last run left it.)
ENDCOMMENT

NEURON {
    SUFFIX kslow
    USEION k READ ek WRITE ik
    RANGE g
}

PARAMETER { g = 0.00003 (S/cm2) }

ASSIGNED { v (mV) ek (mV) ik (mA/cm2) }

INITIAL { update() }

BREAKPOINT { SOLVE update }

PROCEDURE update() { ik = g * (v - ek) }
