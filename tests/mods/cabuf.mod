COMMENT
Calcium with a mobile buffer, three coupled nonlinear STATEs solved by derivimplicit: the
equations are written in an order (CaBuf, cai, Buf) other than nocmodl's symbol-table order
of the states (Buf, CaBuf, cai), so the difference-quotient Jacobian has its largest entries
off the diagonal and NEURON's Crout factorization exchanges rows. A LOCAL computed in the
block, v-dependent binding; the bound fraction drives a current.
ENDCOMMENT

NEURON {
    SUFFIX cabuf
    USEION ca READ ica WRITE cai
    NONSPECIFIC_CURRENT i
    RANGE gbar, kon, koff, total
}

UNITS {
    (mM) = (milli/liter)
    (um) = (micron)
    FARADAY = (faraday) (coulomb)
}

PARAMETER {
    gbar = 0.0005 (S/cm2)
    e = -80 (mV)
    depth = 0.2 (um)
    taur = 5 (ms)
    cainf = 2e-4 (mM)
    kon = 200 (/mM-ms)
    koff = 0.1 (/ms)
    total = 0.01 (mM)
}

ASSIGNED { v (mV) i (mA/cm2) ica (mA/cm2) }

STATE { cai (mM) Buf (mM) CaBuf (mM) }

INITIAL {
    Buf = total
    CaBuf = 0
}

BREAKPOINT {
    SOLVE state METHOD derivimplicit
    i = gbar * CaBuf / total * (v - e)
}

DERIVATIVE state {
    LOCAL bind
    bind = kon * exp((v + 65) / 40) * cai * Buf - koff * CaBuf
    CaBuf' = bind
    cai' = -ica * 10000 / (2 * FARADAY * depth) - bind + (cainf - cai) / taur
    Buf' = -bind
}
