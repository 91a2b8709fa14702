"""Random123's Philox4x32-10 in LLVM IR, drawn as NEURON's nrnran123 does (see
portneuron.ir.random123, the reference)."""

from __future__ import annotations

from llvmlite import ir
from portneuron.ir.random123 import SHIFT32

I64 = ir.IntType(64)
F64 = ir.DoubleType()
MASK = ir.Constant(I64, 0xFFFFFFFF)
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)


def random123(lw, values: list[ir.Value]) -> ir.Value:
    """(word + 1) * 1/(2**32 + 1) for ids (id1, id2, id3) at stream position `position`, with
    NEURON's Random123 global index `index`."""
    b = lw.b
    id1, id2, id3, position, index = (b.fptoui(v, I64) for v in values)
    id1, id2, id3 = (b.and_(v, MASK) for v in (id1, id2, id3))
    seq = b.and_(b.lshr(position, ir.Constant(I64, 2)), MASK)
    which = b.and_(position, ir.Constant(I64, 3))
    c = [seq, id3, id1, id2]
    k0, k1 = b.and_(index, MASK), ir.Constant(I64, 0)
    shift = ir.Constant(I64, 32)
    for _ in range(10):
        p0 = b.mul(ir.Constant(I64, MULTIPLIERS[0]), c[0])
        p1 = b.mul(ir.Constant(I64, MULTIPLIERS[1]), c[2])
        c = [
            b.xor(b.xor(b.lshr(p1, shift), c[1]), k0),
            b.and_(p1, MASK),
            b.xor(b.xor(b.lshr(p0, shift), c[3]), k1),
            b.and_(p0, MASK),
        ]
        k0 = b.and_(b.add(k0, ir.Constant(I64, WEYL[0])), MASK)
        k1 = b.and_(b.add(k1, ir.Constant(I64, WEYL[1])), MASK)
    word = c[3]
    for k in (2, 1, 0):
        word = b.select(b.icmp_unsigned("==", which, ir.Constant(I64, k)), c[k], word)
    u = b.fadd(b.uitofp(word, F64), ir.Constant(F64, 1.0))
    return b.fmul(u, ir.Constant(F64, SHIFT32))
