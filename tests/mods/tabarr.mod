: Gates whose rates come from a TABLE of a PROCEDURE with array outputs, filled in a FROM
: loop (as NEURON's fh.mod): nocmodl tabulates each element (_t_inf[k]) and interpolates
: each alike.
NEURON {
    SUFFIX tabarr
    USEION k READ ek WRITE ik
    RANGE gbar
}

PARAMETER { gbar = 0.01 (S/cm2) }

STATE { m h }

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    inf[2]
    tau[2] (ms)
}

INITIAL {
    rates(v)
    m = inf[0]
    h = inf[1]
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar*m*m*h*(v - ek)
}

DERIVATIVE states {
    rates(v)
    m' = (inf[0] - m)/tau[0]
    h' = (inf[1] - h)/tau[1]
}

PROCEDURE rates(v (mV)) {
    TABLE inf, tau DEPEND celsius FROM -100 TO 100 WITH 200
    FROM i = 0 TO 1 {
        inf[i] = 1/(1 + exp(-(v + 40 + 20*i)/(8 + 4*i)))
        tau[i] = (1 + 3*i)*3^((celsius - 6.3)/10)/(exp((v + 50)/30) + exp(-(v + 50)/30))
    }
}
