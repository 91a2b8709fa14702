COMMENT
A sodium-like channel whose rate TABLE has its bounds in PARAMETERs (`FROM vmin TO vmax`), as
published channels often do: NEURON reads them when it builds the table.
ENDCOMMENT

NEURON {
    SUFFIX tabrange
    USEION na READ ena WRITE ina
    RANGE gbar
    GLOBAL vmin, vmax
}

PARAMETER {
    gbar = 0.01 (S/cm2)
    vmin = -90 (mV)
    vmax = 60 (mV)
}

ASSIGNED { v (mV) ena (mV) ina (mA/cm2) minf mtau (ms) celsius (degC) }

STATE { m }

INITIAL { rates(v) m = minf }

BREAKPOINT {
    SOLVE states METHOD cnexp
    ina = gbar * m * m * m * (v - ena) * 0.05
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / mtau
}

PROCEDURE rates(v (mV)) {
    TABLE minf, mtau DEPEND celsius FROM vmin TO vmax WITH 150
    minf = 1 / (1 + exp(-(v + 38) / 7))
    mtau = 0.1 + 0.5 / (1 + exp((v + 50) / 12)) * 3 ^ ((22 - celsius) / 10)
}
