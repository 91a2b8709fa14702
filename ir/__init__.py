"""portneuron's typed IR: node types, builder, verifier, printer, reference interpreter."""

from .interpret import run_kernel
from .nodes import (
    BOOL,
    F32,
    F64,
    I32,
    AddTo,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    Diffusion,
    DType,
    Emit,
    Expr,
    If,
    Ion,
    Kernel,
    Lane,
    Launch,
    Load,
    Loop,
    Mechanism,
    Param,
    Records,
    Select,
    Serial,
    Stmt,
    Store,
    Stream,
    Table,
    Unary,
    Var,
    Variable,
    View,
    While,
)
from .printer import format_expr, format_kernel, format_mechanism
from .types import dtype_of
from .verify import VerifyError, verify_kernel, verify_mechanism

__all__ = [
    "BOOL", "F32", "F64", "I32", "AddTo", "Assign", "Binary", "Call", "Cast", "Const", "Diffusion", "DType",
    "Emit", "Expr", "If", "Ion", "Kernel", "Lane", "Load", "Loop", "Mechanism", "Param",
    "Select", "Stmt", "Store", "Stream", "Table", "Unary", "Var", "Variable", "VerifyError", "View", "While", "Launch", "Records", "Serial",
    "dtype_of", "format_expr", "format_kernel", "format_mechanism", "run_kernel",
    "verify_kernel", "verify_mechanism",
]  # fmt: skip
