: Calcium in radial shells that also diffuses along the cell: an array STATE with an indexed
: COMPARTMENT and LONGITUDINAL_DIFFUSION, its outer shell the ion's cai.
NEURON {
    SUFFIX caldif
    USEION ca READ cai, ica WRITE cai
    RANGE cainit, DCa
}

DEFINE NSHELL 3

UNITS {
    (mM) = (milli/liter)
    (um) = (micron)
    (mA) = (milliamp)
    FARADAY = (faraday) (10000 coulomb)
    PI = (pi) (1)
}

PARAMETER {
    DCa = 0.6 (um2/ms)
    cainit = 5e-5 (mM)
    kpump = 0.02 (/ms)
}

ASSIGNED {
    diam (um)
    ica (mA/cm2)
    cai (mM)
    shell[NSHELL] (1)
}

STATE {
    ca[NSHELL] (mM)
}

INITIAL {
    FROM i = 0 TO NSHELL - 1 {
        shell[i] = (i + 1) / (NSHELL * (NSHELL + 1) / 2)
        ca[i] = cainit * (1 + i)
    }
    cai = ca[0]
}

BREAKPOINT {
    SOLVE state METHOD sparse
}

KINETIC state {
    COMPARTMENT i, diam * diam * shell[i] {ca}
    LONGITUDINAL_DIFFUSION i, DCa * diam * diam * shell[i] / (1 + i) {ca}
    ~ ca[0] << (-ica * PI * diam / (2 * FARADAY))
    FROM i = 0 TO NSHELL - 2 {
        ~ ca[i] <-> ca[i + 1] (DCa * diam, DCa * diam)
    }
    ~ ca[0] << (-kpump * diam * diam * shell[0] * (ca[0] - cainit))
    cai = ca[0]
}
