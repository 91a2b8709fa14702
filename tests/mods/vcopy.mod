COMMENT
A potassium channel whose rates PROCEDURE assigns v, as many published channels do (usually to
step off a singular point: `if (v == -27) { v = v + 0.0001 }`). Here the assignment clamps the
rates' v at -60 mV, so that it takes effect for much of the run. In NEURON v is the mechanism's
own copy, set from the node before each kernel and each current evaluation: the clamp changes
the rest of that call (the gate and the current below), never the node's voltage. Its Q10
factor is a LOCAL declared outside any block (a C static in NEURON, shared by the instances,
which all compute the same value) from a FUNCTION in an INCLUDEd file, and INITIAL prints,
which portneuron's kernels do not.
ENDCOMMENT

NEURON {
    SUFFIX vcopy
    USEION k READ ek WRITE ik
    RANGE gbar, minf
}

PARAMETER { gbar = 0.002 (S/cm2) }

ASSIGNED { v (mV) ek (mV) ik (mA/cm2) minf mtau (ms) celsius (degC) }

LOCAL tadj

INCLUDE "q10.inc"

STATE { m }

INITIAL {
    tadj = q10(celsius, 3)
    printf("vcopy: tadj %g at %g degC\n", tadj, celsius)
    rates()
    m = minf
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    rates()
    ik = gbar * m * (v - ek)
}

DERIVATIVE states {
    rates()
    m' = (minf - m) / mtau
}

PROCEDURE rates() {
    if (v < -60) { v = -60 }
    minf = 1 / (1 + exp(-(v + 35) / 8))
    mtau = (1 + 4 / (1 + exp((v + 40) / 10))) / tadj
}
