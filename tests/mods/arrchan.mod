COMMENT
A potassium-like channel of three independent gates held in an array, each moved by an
exponential step in a SOLVEd PROCEDURE (NEURON's translator cannot take derivatives of array
STATEs); rates go into a GLOBAL array (written, as old non-THREADSAFE channels do), shifts
into a file-scope LOCAL array in INITIAL; a RANGE PARAMETER array weighs the gates.
ENDCOMMENT

NEURON {
    SUFFIX arrchan
    NONSPECIFIC_CURRENT i
    RANGE gbar, w
    GLOBAL tau
}

DEFINE NG 3

PARAMETER { gbar = 0.0004 (S/cm2) e = -80 (mV) w[NG] }

ASSIGNED { v (mV) i (mA/cm2) minf[NG] tau[NG] (ms) m[NG] }

LOCAL shift[NG]

INITIAL {
    FROM k = 0 TO NG - 1 {
        shift[k] = 5 * k - 2
        w[k] = 1 / (k + 1)
    }
    rates(v)
    FROM k = 0 TO NG - 1 { m[k] = minf[k] }
}

BREAKPOINT {
    LOCAL g
    SOLVE update
    g = 0
    FROM k = 0 TO NG - 1 { g = g + w[k] * m[k] }
    i = gbar * g * (v - e)
}

PROCEDURE update() {
    rates(v)
    FROM k = 0 TO NG - 1 {
        m[k] = m[k] + (1 - exp(-dt / tau[k])) * (minf[k] - m[k])
    }
}

PROCEDURE rates(v (mV)) {
    FROM k = 0 TO NG - 1 {
        minf[k] = 1 / (1 + exp(-(v + 40 + shift[k]) / 8))
        tau[k] = 1 + 2 * k + 3 / (1 + exp((v + 50) / 10))
    }
}
