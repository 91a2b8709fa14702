COMMENT
A kinetic scheme for what nocmodl and NEURON's sparse solver do with KINETIC blocks beyond
plain first-order chains: a rate pasted into nocmodl's C as written (`(a + b, b)`: the
forward flux is `a + b*C1`, not `(a + b)*C1`), a second-order reaction (2 D <-> B2) and a
fixed concentration among the reactants (cai, which makes nocmodl solve the scheme as
nonlinear: Newton iterations, negative states set to 0), `-> (k)` and `<< (flux)`, two
CONSERVEs, one of amounts in a COMPARTMENT, f_flux read in the block, and states whose
names share first letters (nocmodl numbers them by its symbol table: RANGE names C2 before
the STATE block does). INITIAL settles it by STEADYSTATE sparse.
ENDCOMMENT

NEURON {
    SUFFIX kinmix
    USEION ca READ cai
    NONSPECIFIC_CURRENT i
    RANGE gbar, C2, flux
}

PARAMETER {
    gbar = 0.0002 (S/cm2)
    e = -70 (mV)
    a0 = 0.001 (/ms)
    kd = 0.3 (/ms)
    ku = 0.05 (/ms)
    vol = 2.5 (1)
    kdeg = 0.2 (/ms)
    prod = 0.01 (/ms)
}

ASSIGNED { v (mV) i (mA/cm2) cai (mM) a (/ms) b (/ms) flux (/ms) }

STATE { C1 C2 O Ob D B2 I }

INITIAL {
    C1 = 1
    D = 0.5
    SOLVE kin STEADYSTATE sparse
}

BREAKPOINT {
    SOLVE kin METHOD sparse
    i = gbar * (O + 0.5 * I + 0.1 * D) * (v - e)
}

KINETIC kin {
    a = 0.2 * exp((v + 40) / 20)
    if (v > -50) {
        b = 0.05
    } else {
        b = 0.1 * exp(-(v + 50) / 25)
    }
    COMPARTMENT vol {D B2}
    ~ C1 <-> C2 (a0 + b, b)
    ~ C2 <-> O (a, b)
    flux = f_flux - b_flux
    ~ O + cai <-> Ob (1e3 * a, 2 * b)
    ~ 2 D <-> B2 (kd * (1 + O), ku)
    ~ I -> (kdeg)
    ~ I << (prod * (1 + O))
    CONSERVE C1 + C2 + O + Ob = 1
    CONSERVE D + 2 B2 = 0.5 * vol
}
