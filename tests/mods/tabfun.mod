COMMENT
A K current whose gate runs by cnexp on FUNCTIONs that are TABLEs: the equation's steady
state and time constant are table lookups, which nocmodl's cnexp update uses as they are
(its -c/a is -(minf(v)/tau(v)) / (-1/tau(v)), operation for operation).
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX tabfun
    USEION k READ ek WRITE ik
    RANGE gbar, ik
}

PARAMETER { gbar = 0.0005 (S/cm2) }

ASSIGNED { v (mV) ek (mV) ik (mA/cm2) }

STATE { n }

INITIAL { n = ninf(v) }

BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar * n^2 * (v - ek)
}

DERIVATIVE states {
    n' = (ninf(v) - n) / ntau(v)
}

FUNCTION ninf(v (mV)) {
    TABLE FROM -120 TO 60 WITH 1801
    ninf = (1 / (1 + exp(-(v + 35) / 9)))^0.5
}

FUNCTION ntau(v (mV)) (ms) {
    TABLE FROM -120 TO 60 WITH 1801
    ntau = 0.8 + 6 / (exp((v + 40) / 15) + exp(-(v + 40) / 20))
}
