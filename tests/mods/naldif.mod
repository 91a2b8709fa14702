: Sodium that accumulates under the membrane and diffuses along the cell: the STATE is the
: ion's own nai.
NEURON {
    SUFFIX naldif
    USEION na READ ina WRITE nai
    RANGE DNa
}

UNITS {
    (mM) = (milli/liter)
    (um) = (micron)
    (mA) = (milliamp)
    FARADAY = (faraday) (coulomb)
    PI = (pi) (1)
}

PARAMETER {
    DNa = 2 (um2/ms)
}

ASSIGNED {
    diam (um)
    ina (mA/cm2)
}

STATE {
    nai (mM)
}

BREAKPOINT {
    SOLVE conc METHOD sparse
}

KINETIC conc {
    COMPARTMENT PI * diam * diam / 4 {nai}
    LONGITUDINAL_DIFFUSION DNa * PI * diam * diam / 4 {nai}
    ~ nai << (-ina * PI * diam * (1e4) / FARADAY)
}
