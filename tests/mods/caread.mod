: Calcium accumulation whose INITIAL sets cai, then takes the ion's value back in VERBATIM
: (`cai = _ion_cai;`, the ion-read idiom on a written concentration) and prints it (the
: printf idiom), with C helpers at the top level that only a hoc-called FUNCTION reaches
: (the c-library idiom).
NEURON {
    SUFFIX caread
    USEION ca READ ica, cai WRITE cai
    RANGE tau
}

UNITS {
    (mM) = (milli/liter)
    (mA) = (milliamp)
    FARADAY = (faraday) (coulombs)
}

PARAMETER {
    tau = 20 (ms)
    depth = 0.2 (um)
    cainf = 1e-4 (mM)
}

ASSIGNED { ica (mA/cm2) }

STATE { cai (mM) }

VERBATIM
#include <math.h>
static double twice(double x) {
    return 2.0 * x;
}
ENDVERBATIM

INITIAL {
    cai = 3*cainf
VERBATIM
    cai = _ion_cai;
ENDVERBATIM
VERBATIM
    fprintf(stderr, "caread: cai %g\n", cai);
ENDVERBATIM
}

BREAKPOINT { SOLVE states METHOD cnexp }

DERIVATIVE states {
    cai' = -ica*(1e4)/(2*FARADAY*depth) + (cainf - cai)/tau
}

FUNCTION doubled(x) {
VERBATIM
    _ldoubled = twice(_lx);
ENDVERBATIM
}
