"""The type of an IR expression."""

from __future__ import annotations

from typing import Any

import numpy as np

from .nodes import (
    BOOL,
    COMPARISON_OPS,
    F32,
    F64,
    I32,
    LOGICAL_OPS,
    Binary,
    Call,
    Cast,
    Const,
    DType,
    Expr,
    Lane,
    Load,
    Select,
    Unary,
    Var,
)


def dtype_of(expr: Expr) -> DType:
    """The result type of `expr`, assuming it is well typed (the verifier checks that)."""
    match expr:
        case Const(dtype=dtype) | Var(dtype=dtype) | Load(dtype=dtype) | Cast(dtype=dtype):
            return dtype
        case Lane():
            return I32
        case Unary(op="not"):
            return BOOL
        case Unary(operand=operand):
            return dtype_of(operand)
        case Binary(op=op) if op in COMPARISON_OPS or op in LOGICAL_OPS:
            return BOOL
        case Binary(lhs=lhs):
            return dtype_of(lhs)
        case Call():
            return F64
        case Select(then=then):
            return dtype_of(then)
    raise TypeError(f"not an IR expression: {expr!r}")


#: The NumPy type of each IR type.
NUMPY_DTYPES: dict[DType, Any] = {
    F64: np.float64, I32: np.int32, BOOL: np.bool_, F32: np.float32,
}  # fmt: skip
