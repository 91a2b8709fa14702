COMMENT
A K gate whose steady state comes from a series summed by a WHILE loop until its terms are
negligible: the number of terms depends on v, so instances loop different numbers of times.
ENDCOMMENT

NEURON {
    SUFFIX whilegate
    USEION k READ ek WRITE ik
    RANGE gbar, nterms
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}

PARAMETER {
    gbar = 0.01 (S/cm2)
}

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    ninf
    ntau (ms)
    nterms
}

STATE { n }

BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar*n*n*n*n*(v - ek)
}

INITIAL {
    rates(v)
    n = ninf
}

DERIVATIVE states {
    rates(v)
    n' = (ninf - n)/ntau
}

PROCEDURE rates(v (mV)) {
    LOCAL x, term, sum, k
    : exp(-(v + 40)/9) by its series in |x|, inverted for a negative x
    x = -(v + 40)/9
    term = 1
    sum = 1
    k = 0
    WHILE (term > 1e-16*sum) {
        k = k + 1
        term = term*fabs(x)/k
        sum = sum + term
    }
    if (x < 0) {
        sum = 1/sum
    }
    nterms = k
    ninf = 1/(1 + sum)
    ntau = 1 + 4/(1 + exp((v + 30)/15))
}
