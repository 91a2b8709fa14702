"""Between IR and sympy: symbolic execution of straight-line IR, and IR from sympy.

cnexp uses this to find the coefficients of its linear equations, then emits IR again.
"""

from __future__ import annotations

import sympy as sp

from portneuron.ir import (
    BOOL,
    F64,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    DType,
    Expr,
    If,
    Select,
    Stmt,
    Unary,
    Var,
)
from portneuron.ir import builder as b
from portneuron.ir.walk import subexpressions


class NotSymbolic(Exception):
    """The IR contains something sympy cannot represent (a loop, a store, an event)."""


_TO_SYMPY_CALL = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "fabs": sp.Abs, "floor": sp.floor,
    "ceil": sp.ceiling, "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "asin": sp.asin,
    "acos": sp.acos, "atan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "log10": lambda x: sp.log(x, 10), "atan2": sp.atan2,
    "expm1": lambda x: sp.exp(x) - 1,
}  # fmt: skip

_TO_SYMPY_BINARY = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y, "pow": sp.Pow, "min": sp.Min, "max": sp.Max,
    "lt": sp.Lt, "le": sp.Le, "gt": sp.Gt, "ge": sp.Ge, "eq": sp.Eq, "ne": sp.Ne,
    "and": sp.And, "or": sp.Or,
}  # fmt: skip


def symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def to_sympy(e: Expr, env: dict[str, sp.Basic]) -> sp.Basic:
    """`e` as a sympy expression; variables not in `env` become symbols of their name."""
    match e:
        case Const(value=value, dtype=dtype):
            if dtype == BOOL:
                return sp.true if value else sp.false
            return (
                sp.Integer(int(value))
                if float(value).is_integer() and abs(value) < 2**53
                else sp.Float(value)
            )
        case Var(name=name):
            return env[name] if name in env else symbol(name)
        case Unary(op="neg", operand=operand):
            return -to_sympy(operand, env)
        case Unary(op="not", operand=operand):
            return sp.Not(to_sympy(operand, env))
        case Binary(op=op, lhs=lhs, rhs=rhs):
            return _TO_SYMPY_BINARY[op](to_sympy(lhs, env), to_sympy(rhs, env))
        case Call(fn=fn, args=args) if fn in _TO_SYMPY_CALL:
            return _TO_SYMPY_CALL[fn](*(to_sympy(a, env) for a in args))
        case Select(cond=cond, then=then, otherwise=otherwise):
            return sp.Piecewise(
                (to_sympy(then, env), to_sympy(cond, env)), (to_sympy(otherwise, env), True)
            )
        case Cast(dtype=DType.F64, operand=operand):
            return to_sympy(operand, env)
    raise NotSymbolic(f"cannot represent {e!r} symbolically")


def execute(
    body: list[Stmt] | tuple[Stmt, ...], env: dict[str, sp.Basic], opaque_unless: str = ""
) -> dict[str, sp.Basic]:
    """Symbolically run assignments and ifs; returns the environment afterwards. With
    `opaque_unless` (a state), a value that does not depend on that state (a FUNCTION's
    result, a TABLE's lookup, a LOCAL) is the symbol of the variable it is assigned to, as
    nocmodl's cnexp sees every name but the state: the caller emits the statements, so the
    variable holds it, computed as written (sympy would rearrange its arithmetic)."""
    env = dict(env)
    for s in body:
        match s:
            case Assign(name=name, value=value):
                if opaque_unless and not _depends(value, env, opaque_unless):
                    env[name] = symbol(name)
                else:
                    env[name] = to_sympy(value, env)
            case If(cond=cond, then=then, otherwise=otherwise):
                c = to_sympy(cond, env)
                a = execute(then, env, opaque_unless)
                z = execute(otherwise, env, opaque_unless)
                for name in set(a) | set(z):
                    if name not in env and not (name in a and name in z):
                        continue  # assigned on one path only: a local of that branch
                    ta, tz = a.get(name, env.get(name)), z.get(name, env.get(name))
                    own = symbol(name)
                    if opaque_unless and own in (ta, tz):  # opaque on one path: on both
                        if symbol(opaque_unless) in (ta.free_symbols | tz.free_symbols):
                            raise NotSymbolic(f"{name} depends on {opaque_unless}")
                        env[name] = own
                        continue
                    env[name] = ta if ta == tz else sp.Piecewise((ta, c), (tz, True))
            case _:
                raise NotSymbolic(f"cannot run {type(s).__name__} symbolically")
    return env


def _depends(e: Expr, env: dict[str, sp.Basic], state: str) -> bool:
    """Whether IR expression `e` reads `state`, directly or through what env holds."""
    x = symbol(state)
    for sub in subexpressions(e):
        if isinstance(sub, Var) and (
            sub.name == state or (sub.name in env and x in env[sub.name].free_symbols)
        ):
            return True
    return False


def to_ir(e: sp.Basic, names: dict[sp.Symbol, Expr] | None = None) -> Expr:
    """IR for a sympy expression; symbols become F64 variables of their name."""
    names = names or {}
    if isinstance(e, sp.Symbol):
        return names.get(e, Var(e.name, F64))
    if e is sp.true or e is sp.false:
        return Const(bool(e), BOOL)
    if e.is_Number:
        return Const(float(e), F64)
    if isinstance(e, sp.Add):
        terms = [to_ir(t, names) for t in e.args]
        out = terms[0]
        for t in terms[1:]:
            out = b.add(out, t)
        return out
    if isinstance(e, sp.Mul):
        numerator, denominator = [], []
        for factor in e.args:
            base, exponent = factor.as_base_exp()
            if exponent.is_Number and exponent < 0:
                denominator.append(base if exponent == -1 else sp.Pow(base, -exponent))
            else:
                numerator.append(factor)
        sign = 1
        if numerator and numerator[0] == -1:
            sign, numerator = -1, numerator[1:]
        top = _product([to_ir(f, names) for f in numerator])
        if denominator:
            top = b.div(top, _product([to_ir(f, names) for f in denominator]))
        return b.neg(top) if sign < 0 else top
    if isinstance(e, sp.Pow):
        base, exponent = e.args
        if exponent == sp.Rational(1, 2):
            return b.call("sqrt", to_ir(base, names))
        if exponent.is_Integer and 0 < exponent <= 4:
            x = to_ir(base, names)
            return _product([x] * int(exponent))
        if exponent.is_Integer and exponent < 0:
            return b.div(1.0, to_ir(sp.Pow(base, -exponent), names))
        return b.pow_(to_ir(base, names), to_ir(exponent, names))
    if isinstance(e, sp.exp):
        return b.call("exp", to_ir(e.args[0], names))
    if isinstance(e, sp.Piecewise):
        *cases, (last, _) = e.args
        out = to_ir(last, names)
        for value, cond in reversed(cases):
            out = b.select(to_ir(cond, names), to_ir(value, names), out)
        return out
    simple = {
        sp.log: "log", sp.Abs: "fabs", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
        sp.asin: "asin", sp.acos: "acos", sp.atan: "atan", sp.sinh: "sinh",
        sp.cosh: "cosh", sp.tanh: "tanh", sp.floor: "floor", sp.ceiling: "ceil",
    }  # fmt: skip
    for cls, fn in simple.items():
        if isinstance(e, cls) and len(e.args) == 1:
            return b.call(fn, to_ir(e.args[0], names))
    if isinstance(e, sp.atan2):
        return b.call("atan2", *(to_ir(a, names) for a in e.args))
    relational = {sp.StrictLessThan: b.lt, sp.LessThan: b.le, sp.StrictGreaterThan: b.gt,
                  sp.GreaterThan: b.ge, sp.Equality: b.eq, sp.Unequality: b.ne}  # fmt: skip
    for cls, make in relational.items():
        if isinstance(e, cls):
            return make(to_ir(e.lhs, names), to_ir(e.rhs, names))
    for cls, make in ((sp.And, b.and_), (sp.Or, b.or_), (sp.Min, b.min_), (sp.Max, b.max_)):
        if isinstance(e, cls):
            out = to_ir(e.args[0], names)
            for arg in e.args[1:]:
                out = make(out, to_ir(arg, names))
            return out
    if isinstance(e, sp.Not):
        return b.not_(to_ir(e.args[0], names))
    raise NotSymbolic(f"no IR for sympy expression {e}")


def _product(factors: list[Expr]) -> Expr:
    if not factors:
        return Const(1.0, F64)
    out = factors[0]
    for f in factors[1:]:
        out = b.mul(out, f)
    return out
