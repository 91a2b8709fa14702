"""The LLVM types of the IR's dtypes, shared by the lowerings."""

from __future__ import annotations

from llvmlite import ir
from portneuron.ir import BOOL, F32, F64, I32, DType

F64_T, I32_T, I64_T, BOOL_T = ir.DoubleType(), ir.IntType(32), ir.IntType(64), ir.IntType(1)
F32_T = ir.FloatType()
PTR = ir.PointerType()
TYPES = {F64: F64_T, I32: I32_T, BOOL: BOOL_T, F32: F32_T}


def stored(b: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    """`value` (a scalar or a vector) as an element of an array of `dtype`: rounded to
    the nearest float for an f32 array (the IR's storage type), else as it is."""
    if dtype != F32:
        return value
    if isinstance(value.type, ir.VectorType):
        return b.fptrunc(value, ir.VectorType(F32_T, value.type.count))
    return b.fptrunc(value, F32_T)


def alignment(dtype: DType) -> int:
    """The byte alignment of an array element (NumPy's: the element's size)."""
    return 8 if dtype == F64 else 4
