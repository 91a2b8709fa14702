COMMENT
The axial current into each segment from the node its POINTER reads (the parent's v), times
a length, added into a point process's sum through a second POINTER (the idea of hnn-core's
dipole mechanisms, written afresh): AFTER INITIAL and AFTER SOLVE, from the new v. (The
blocks hold the statements: NEURON 9 crashes where a BEFORE/AFTER block of a mechanism that
is not thread safe calls a PROCEDURE that uses a POINTER.) PROTECT and MUTEXLOCK change
nothing here: on an instance's own value and on a POINTER's place, as NEURON runs them.
ENDCOMMENT

NEURON {
    SUFFIX axcur
    RANGE ri, len, ia
    POINTER vparent, total
}

PARAMETER { ri = 10 (Mohm) len = 1 (um) }

ASSIGNED { v (mV) vparent (mV) total ia (nA) }

AFTER INITIAL {
    MUTEXLOCK
    ia = (vparent - v) / ri
    total = total + ia * len
    MUTEXUNLOCK
}

AFTER SOLVE {
    PROTECT ia = (vparent - v) / ri
    PROTECT total = total + ia * len
}
