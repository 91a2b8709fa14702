"""The LLVM types of the IR's dtypes, shared by the lowerings."""

from __future__ import annotations

from llvmlite import ir
from portneuron.ir import BOOL, F64, I32, DType

F64_T, I32_T, I64_T, BOOL_T = ir.DoubleType(), ir.IntType(32), ir.IntType(64), ir.IntType(1)
PTR = ir.PointerType()
TYPES = {F64: F64_T, I32: I32_T, BOOL: BOOL_T}


def alignment(dtype: DType) -> int:
    """The byte alignment of an array element (NumPy's: the element's size)."""
    return 8 if dtype == F64 else 4
