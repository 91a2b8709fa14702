COMMENT
An artificial cell that fires at the times of a Vector given by hoc (evtvec.play(vec)), in
the shape of NEURON's VecStim: the VERBATIM blocks are the idiom portneuron recognises
(the Vector behind a BBCOREPOINTER, stepped by element(), handed to datasets by
bbcore_write), so the times reach portneuron through NEURON's writer.
ENDCOMMENT

NEURON {
    THREADSAFE
    ARTIFICIAL_CELL EvtVec
    BBCOREPOINTER ptr
}

ASSIGNED { index etime (ms) ptr }

INITIAL {
    index = 0
    element()
    if (index > 0) { net_send(etime - t, 1) }
}

NET_RECEIVE (w) {
    if (flag == 1) {
        net_event(t)
        element()
        if (index > 0) { net_send(etime - t, 1) }
    }
}

DESTRUCTOR {
VERBATIM
#if !NRNBBCORE
    void* vv = (void*)(_p_ptr);
    if (vv) {
        hoc_obj_unref(*vector_pobj(vv));
    }
#endif
ENDVERBATIM
}

PROCEDURE element() {
VERBATIM
    {
        void* vv; int i, size; double* px;
        i = (int)index;
        if (i >= 0) {
            vv = (void*)(_p_ptr);
            if (vv) {
                size = vector_capacity(vv);
                px = vector_vec(vv);
                if (i < size) {
                    etime = px[i];
                    index += 1.;
                } else {
                    index = -1.;
                }
            } else {
                index = -1.;
            }
        }
    }
ENDVERBATIM
}

PROCEDURE play() {
VERBATIM
#if !NRNBBCORE
    {
        void** slot = (void**)(&_p_ptr);
        void* given = NULL;
        if (ifarg(1)) {
            given = vector_arg(1);
            hoc_obj_ref(*vector_pobj(given));
        }
        if (*slot) {
            hoc_obj_unref(*vector_pobj(*slot));
        }
        *slot = given;
    }
#endif
ENDVERBATIM
}

VERBATIM
static void bbcore_write(double* x, int* d, int* xoffset, int* doffset, _threadargsproto_) {
    int n = _p_ptr ? vector_capacity(_p_ptr) : 0;
    if (d) {
        double* times = n ? vector_vec(_p_ptr) : NULL;
        d[*doffset] = n;
        for (int k = 0; k < n; ++k) {
            x[*xoffset + k] = times[k];
        }
    }
    *doffset += 1;
    *xoffset += n;
}

static void bbcore_read(double* x, int* d, int* xoffset, int* doffset, _threadargsproto_) {
    int n = d[*doffset];
    if (!_p_ptr) {
        _p_ptr = vector_new1(n);
    }
    double* times = vector_vec(_p_ptr);
    for (int k = 0; k < n; ++k) {
        times[k] = x[*xoffset + k];
    }
    *xoffset += n;
    *doffset += 1;
}
ENDVERBATIM
