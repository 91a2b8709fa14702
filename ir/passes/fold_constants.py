"""Constant folding.

Before: any verified kernel. After: the same kernel, where every operator and intrinsic whose
operands are all constants is replaced by its value (computed with the reference semantics,
so results are bit-identical), `x*1`, `1*x`, `x/1`, `x+0`, `x-0` are reduced to `x`, and an
`If` or `Select` with a constant condition is replaced by the branch it takes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..libm import BINARY, INTRINSICS
from ..nodes import (
    BOOL,
    F64,
    AddTo,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    Emit,
    Expr,
    If,
    Kernel,
    Lane,
    Launch,
    Load,
    Loop,
    Records,
    Select,
    Serial,
    Stmt,
    Store,
    Unary,
    Var,
    View,
    While,
)
from ..types import NUMPY_DTYPES, dtype_of


def _const(value: object, like: Expr) -> Const:
    dtype = dtype_of(like)
    python = {F64: float, BOOL: bool}.get(dtype, int)
    return Const(python(value), dtype)


def _is(e: Expr, value: float) -> bool:
    return isinstance(e, Const) and e.dtype == F64 and e.value == value


def fold_expr(e: Expr) -> Expr:
    match e:
        case Load(index=index):
            return dataclasses.replace(e, index=fold_expr(index))
        case Unary(op=op, operand=operand):
            operand = fold_expr(operand)
            if isinstance(operand, Const):
                value = np.negative(operand.value) if op == "neg" else not operand.value
                return _const(value, Unary(op, operand))
            return Unary(op, operand)
        case Binary(op=op, lhs=lhs, rhs=rhs):
            lhs, rhs = fold_expr(lhs), fold_expr(rhs)
            folded = Binary(op, lhs, rhs)
            if isinstance(lhs, Const) and isinstance(rhs, Const):
                with np.errstate(all="ignore"):
                    t = NUMPY_DTYPES[dtype_of(lhs)]
                    return _const(BINARY[op](t(lhs.value), t(rhs.value)), folded)
            if (op == "mul" and _is(rhs, 1.0)) or (op == "div" and _is(rhs, 1.0)):
                return lhs
            if op == "mul" and _is(lhs, 1.0):
                return rhs
            if op in ("add", "sub") and _is(rhs, 0.0):
                return lhs
            return folded
        case Call(fn=fn, args=args):
            args = tuple(fold_expr(a) for a in args)
            if all(isinstance(a, Const) for a in args):
                with np.errstate(all="ignore"):
                    return Const(float(INTRINSICS[fn](*(np.float64(a.value) for a in args))), F64)
            return Call(fn, args)
        case Select(cond=cond, then=then, otherwise=otherwise):
            cond = fold_expr(cond)
            if isinstance(cond, Const):
                return fold_expr(then if cond.value else otherwise)
            return Select(cond, fold_expr(then), fold_expr(otherwise))
        case Cast(dtype=dtype, operand=operand):
            operand = fold_expr(operand)
            if isinstance(operand, Const) and (dtype == F64 or np.isfinite(operand.value)):
                value = np.trunc(operand.value) if dtype != F64 else operand.value
                return _const(value, Cast(dtype, operand))
            return Cast(dtype, operand)
        case Const() | Var() | Lane():
            return e
    raise TypeError(f"fold_constants: not an IR expression: {e!r}")


def fold_block(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    out: list[Stmt] = []
    for s in body:
        match s:
            case Assign(value=value):
                out.append(dataclasses.replace(s, value=fold_expr(value)))
            case Store(index=index, value=value) | AddTo(index=index, value=value):
                out.append(dataclasses.replace(s, index=fold_expr(index), value=fold_expr(value)))
            case If(cond=cond, then=then, otherwise=otherwise):
                cond = fold_expr(cond)
                if isinstance(cond, Const):
                    out.extend(fold_block(then if cond.value else otherwise))
                else:
                    out.append(If(cond, fold_block(then), fold_block(otherwise)))
            case Loop(start=start, stop=stop, body=inner):
                out.append(
                    dataclasses.replace(
                        s, start=fold_expr(start), stop=fold_expr(stop), body=fold_block(inner)
                    )
                )
            case While(cond=cond, body=inner):
                out.append(While(fold_expr(cond), fold_block(inner)))
            case Serial(body=inner):
                out.append(Serial(fold_block(inner)))
            case Launch(kernel=callee, lo=lo, hi=hi, bind=bind):
                bind = tuple((n, _fold_bound(v)) for n, v in bind)
                out.append(Launch(fold_constants(callee), fold_expr(lo), fold_expr(hi), bind))
            case Emit(values=values):
                out.append(dataclasses.replace(s, values=tuple(fold_expr(v) for v in values)))
            case _:  # dropping it would change what the kernel does
                raise TypeError(f"fold_constants: not an IR statement: {s!r}")
    return tuple(out)


def _fold_bound(value):
    match value:
        case View(array=array, offset=offset):
            return View(array, fold_expr(offset))
        case Records(fields=fields, count=count):
            return Records(tuple(_fold_bound(f) for f in fields), _fold_bound(count))
    return fold_expr(value)


def fold_constants(kernel: Kernel) -> Kernel:
    """Return `kernel` with constant subexpressions evaluated."""
    return dataclasses.replace(kernel, body=fold_block(kernel.body))
