COMMENT
Calcium entry into a shell under the membrane, with a saturable buffer: a nonlinear equation,
solved by derivimplicit (Newton on backward Euler). FARADAY is a UNITS-block constant, valued
from NEURON's units database. There is no INITIAL: the STATE cai starts from the ion's value
(cai0_ca_ion), as NEURON starts a concentration STATE of the mechanism that writes it.
ENDCOMMENT

NEURON {
    SUFFIX cadecay
    USEION ca READ ica WRITE cai
    RANGE depth, taur, kd
}

UNITS {
    (mM) = (milli/liter)
    (um) = (micron)
    FARADAY = (faraday) (coulomb)
}

PARAMETER {
    depth = 0.1 (um)
    taur = 20 (ms)
    cainf = 1e-4 (mM)
    kd = 5e-4 (mM)
}

ASSIGNED { ica (mA/cm2) }

STATE { cai (mM) }


BREAKPOINT { SOLVE state METHOD derivimplicit }

DERIVATIVE state {
    cai' = -ica*10000/(2*FARADAY*depth)/(1 + kd/(kd + cai)) + (cainf - cai)/taur
}
