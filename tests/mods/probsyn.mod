COMMENT
A stochastic synapse in the style of the Blue Brain Project's (written afresh for the tests):
Nrrp release sites, each recovering and releasing by a draw from the instance's Random123
stream, which hoc gives it with setRNG(id1, id2, id3) and which a BBCOREPOINTER carries to
CoreNEURON (bbcore_write: the ids, the sequence and the index in the block). Its VERBATIM is
the published idiom: declarations, the stream reset in INITIAL, urand(), hoc-only setRNG,
clearRNG and bbsavestate, delayed-connection weight Vectors (setup_delay_vecs) read in
NET_RECEIVE, and early returns from NET_RECEIVE.
ENDCOMMENT

NEURON {
    THREADSAFE
    POINT_PROCESS ProbSyn
    RANGE tau, e, i, g, gmax, Use, Dep, Nrrp, occupied, unoccupied, tsyn, released, verbose
    RANGE next_delay, conductance
    NONSPECIFIC_CURRENT i
    BBCOREPOINTER rng
    BBCOREPOINTER delay_times, delay_weights
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
}

PARAMETER {
    tau = 3 (ms)
    e = 0 (mV)
    gmax = 0.001 (uS)
    Use = 0.4
    Dep = 20 (ms)
    Nrrp = 3
    verbose = 0
    conductance = 1
}

VERBATIM
#include <stdlib.h>
#include <math.h>
#ifndef NRN_VERSION_GTEQ_8_2_0
#include "nrnran123.h"
#ifndef CORENEURON_BUILD
extern int ifarg(int iarg);
extern void* vector_arg(int iarg);
extern double* vector_vec(void* vv);
extern int vector_capacity(void* vv);
#endif
double nrn_random_pick(void* r);
void* nrn_random_arg(int argpos);
#define RANDCAST
#else
#define RANDCAST (Rand*)
#endif
ENDVERBATIM

ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    rng
    usingR123
    occupied
    unoccupied
    tsyn (ms)
    released
    delay_times
    delay_weights
    next_delay (ms)
}

STATE { A }

INITIAL {
    A = 0
    occupied = Nrrp
    unoccupied = 0
    tsyn = 0
    released = 0
    VERBATIM
    if (usingR123) {
        nrnran123_setseq((nrnran123_State*)_p_rng, 0, 0);
    }
    ENDVERBATIM
    next_delay = -1
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gmax * A
    i = g * (v - e)
}

DERIVATIVE states {
    A' = -A / tau
}

NET_RECEIVE (weight, nc_type) {
    LOCAL result, ves, occu, psurv
    INITIAL {
        if (nc_type == 0) {
    VERBATIM
            IvocVect* times = *((IvocVect**)(&_p_delay_times));
            if (times && vector_capacity(times) >= 1) {
                double* at = vector_vec(times);
                int k;
                next_delay = 0;
                for (k = 0; k < vector_capacity(times); ++k) {
                    double next_delay_t = at[k];
    ENDVERBATIM
                    net_send(next_delay_t, 1)
    VERBATIM
                }
            }
    ENDVERBATIM
        }
    }
    if (flag == 1) {
    VERBATIM
        IvocVect* weights = *((IvocVect**)(&_p_delay_weights));
        if (weights && vector_capacity(weights) >= next_delay) {
            double* w = vector_vec(weights);
            double next_delay_weight = w[(int)next_delay];
    ENDVERBATIM
            weight = conductance * next_delay_weight
            next_delay = next_delay + 1
    VERBATIM
        }
        return;
    ENDVERBATIM
    }
    if (weight <= 0 || t < 0) {
    VERBATIM
        return;
    ENDVERBATIM
    }
    FROM k = 0 TO (unoccupied - 1) {
        psurv = exp(-(t - tsyn) / Dep)
        result = urand()
        if (result > psurv) {
            occupied = occupied + 1
            if (verbose > 0) {
                printf("site recovered at %g\n", t)
            }
        }
    }
    ves = 0
    occu = occupied
    FROM k = 0 TO (occu - 1) {
        result = urand()
        if (result < Use) {
            occupied = occupied - 1
            ves = ves + 1
        }
    }
    unoccupied = Nrrp - occupied
    tsyn = t
    if (ves > 0) {
        A = A + ves / Nrrp * weight
        released = released + ves
        net_event(t)
    }
}

PROCEDURE setRNG() {
VERBATIM
#ifndef CORENEURON_BUILD
    /* Random123 ids (doubles), or else a hoc Random object */
    usingR123 = 0;
    if (ifarg(1) && hoc_is_double_arg(1)) {
        nrnran123_State** pv = (nrnran123_State**)(&_p_rng);
        uint32_t a2 = 0;
        uint32_t a3 = 0;
        if (*pv) {
            nrnran123_deletestream(*pv);
            *pv = (nrnran123_State*)0;
        }
        if (ifarg(2)) {
            a2 = (uint32_t)*getarg(2);
        }
        if (ifarg(3)) {
            a3 = (uint32_t)*getarg(3);
        }
        *pv = nrnran123_newstream3((uint32_t)*getarg(1), a2, a3);
        usingR123 = 1;
    } else if (ifarg(1)) {
        void** pv = (void**)(&_p_rng);
        *pv = nrn_random_arg(1);
    } else {
        void** pv = (void**)(&_p_rng);
        *pv = (void*)0;
    }
#endif
ENDVERBATIM
}

PROCEDURE clearRNG() {
VERBATIM
#ifndef CORENEURON_BUILD
    if (usingR123) {
        nrnran123_State** pv = (nrnran123_State**)(&_p_rng);
        if (*pv) {
            nrnran123_deletestream(*pv);
            *pv = (nrnran123_State*)0;
        }
    } else {
        void** pv = (void**)(&_p_rng);
        *pv = (void*)0;
    }
#endif
ENDVERBATIM
}

FUNCTION urand() {
VERBATIM
    double value = 0.0;
    if (usingR123) {
        value = nrnran123_dblpick((nrnran123_State*)_p_rng);
    } else if (_p_rng) {
#ifndef CORENEURON_BUILD
        value = nrn_random_pick(RANDCAST _p_rng);
#endif
    } else {
        value = 0.0;
    }
    _lurand = value;
ENDVERBATIM
}

PROCEDURE setup_delay_vecs() {
VERBATIM
#ifndef CORENEURON_BUILD
    void** times = (void**)(&_p_delay_times);
    void** weights = (void**)(&_p_delay_weights);
    *times = (void*)NULL;
    *weights = (void*)NULL;
    if (ifarg(1)) {
        *times = vector_arg(1);
    }
    if (ifarg(2)) {
        *weights = vector_arg(2);
    }
#endif
ENDVERBATIM
}

FUNCTION bbsavestate() {
    bbsavestate = 0
VERBATIM
#ifndef CORENEURON_BUILD
    double *xdir, *xval;
    xdir = hoc_pgetarg(1);
    xval = hoc_pgetarg(2);
    if (_p_rng && usingR123) {
        if (*xdir == -1) {
            *xdir = 2.0;
            return 0.0;
        } else if (*xdir == 0) {
            uint32_t seq;
            char which;
            nrnran123_getseq((nrnran123_State*)_p_rng, &seq, &which);
            xval[0] = (double)seq;
            xval[1] = (double)which;
        } else {
            nrnran123_setseq((nrnran123_State*)_p_rng, (uint32_t)xval[0], (char)xval[1]);
        }
    }
#endif
ENDVERBATIM
}

VERBATIM
static void bbcore_write(double* x, int* d, int* x_offset, int* d_offset, _threadargsproto_) {
    IvocVect* times = *((IvocVect**)(&_p_delay_times));
    IvocVect* weights = *((IvocVect**)(&_p_delay_weights));
    if (d) {
        uint32_t* di = ((uint32_t*)d) + *d_offset;
        nrnran123_State** pv = (nrnran123_State**)(&_p_rng);
        nrnran123_getids3(*pv, di, di + 1, di + 2);
        char which;
        nrnran123_getseq(*pv, di + 3, &which);
        di[4] = (int)which;
    }
    *d_offset += 5;
    if (times && weights && vector_capacity(times) >= 1 && vector_capacity(weights) >= 1) {
        if (d) {
            uint32_t* di = ((uint32_t*)d) + *d_offset;
            di[0] = vector_capacity(times);
            di[1] = vector_capacity(weights);
        }
        if (x) {
            double* t_el = vector_vec(times);
            double* w_el = vector_vec(weights);
            double* x_i = x + *x_offset;
            int k;
            int j = 0;
            for (k = 0; k < vector_capacity(times); ++k) {
                x_i[j++] = t_el[k];
                x_i[j++] = w_el[k];
            }
        }
        *x_offset += vector_capacity(times) + vector_capacity(weights);
    } else {
        if (d) {
            uint32_t* di = ((uint32_t*)d) + *d_offset;
            di[0] = 0;
            di[1] = 0;
        }
    }
    *d_offset += 2;
}

static void bbcore_read(double* x, int* d, int* x_offset, int* d_offset, _threadargsproto_) {
    uint32_t* di = ((uint32_t*)d) + *d_offset;
    if (di[0] != 0 || di[1] != 0 || di[2] != 0) {
        nrnran123_State** pv = (nrnran123_State**)(&_p_rng);
        *pv = nrnran123_newstream3(di[0], di[1], di[2]);
        nrnran123_setseq(*pv, di[3], (char)di[4]);
    }
    int ntimes = di[5];
    int nweights = di[6];
    *d_offset += 7;
    if (ntimes > 0 && nweights > 0) {
        double* x_i = x + *x_offset;
        _p_delay_times = (double*)vector_new1(ntimes);
        _p_delay_weights = (double*)vector_new1(nweights);
        double* t_el = vector_vec((IvocVect*)_p_delay_times);
        double* w_el = vector_vec((IvocVect*)_p_delay_weights);
        int k;
        int j = 0;
        for (k = 0; k < ntimes + nweights; k += 2) {
            t_el[j] = x_i[k];
            w_el[j++] = x_i[k + 1];
        }
        *x_offset += ntimes + nweights;
    }
}
ENDVERBATIM
