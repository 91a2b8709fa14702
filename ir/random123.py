"""NEURON's nrnran123 streams (Philox4x32-10), as the reference draws them."""

from __future__ import annotations

import numpy as np

_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))
_MASK32 = np.uint64(0xFFFFFFFF)


#: nrnran123's scale, a multiplication (not a division) by 1/(2**32 + 1).
SHIFT32 = 1.0 / 4294967297.0


def random123(id1, id2, id3, position, index=0.0):
    """Philox4x32-10 as NEURON's nrnran123 draws it: (word + 1) * (1 / (2**32 + 1)), in (0, 1);
    `index` is NEURON's Random123 global index (the key's first word)."""
    position = np.asarray(position, dtype=np.float64)
    as_u32 = [np.asarray(x, dtype=np.float64).astype(np.uint64) & _MASK32 for x in (id1, id2, id3)]
    seq = (position // 4).astype(np.uint64) & _MASK32
    k0 = np.broadcast_to(np.asarray(index, dtype=np.float64).astype(np.uint64) & _MASK32, seq.shape)
    k1 = np.zeros_like(seq)
    c = [seq, as_u32[2], as_u32[0], as_u32[1]]
    for _ in range(10):
        p0, p1 = _PHILOX_M[0] * c[0], _PHILOX_M[1] * c[2]
        c = [
            (p1 >> np.uint64(32)) ^ c[1] ^ k0,
            p1 & _MASK32,
            (p0 >> np.uint64(32)) ^ c[3] ^ k1,
            p0 & _MASK32,
        ]
        k0, k1 = (k0 + _PHILOX_W[0]) & _MASK32, (k1 + _PHILOX_W[1]) & _MASK32
    which = (position % 4).astype(np.int64)
    word = np.choose(which, c)
    return (word.astype(np.float64) + 1.0) * SHIFT32
