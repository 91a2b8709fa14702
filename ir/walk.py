"""Walking a kernel's statements and expressions: what the analyses of every backend share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from .nodes import (
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


def nested(s: Stmt) -> tuple[tuple[Stmt, ...], ...]:
    """The blocks of statements directly inside `s` (none for a simple statement)."""
    match s:
        case If(then=then, otherwise=otherwise):
            return (then, otherwise)
        case Loop(body=inner) | While(body=inner) | Serial(body=inner):
            return (inner,)
        case Assign() | Store() | AddTo() | Emit() | Launch():
            return ()  # a launched kernel's statements are its own, not the caller's
    raise TypeError(f"not an IR statement: {s!r}")


def statements(body: tuple[Stmt, ...]) -> Iterator[Stmt]:
    """Every statement, each before the statements nested in it."""
    for s in body:
        yield s
        for inner in nested(s):
            yield from statements(inner)


def subexpressions(e: Expr) -> Iterator[Expr]:
    """`e` and every expression inside it, parents first."""
    yield e
    match e:
        case Load(index=x) | Unary(operand=x) | Cast(operand=x):
            yield from subexpressions(x)
        case Binary(lhs=x, rhs=y):
            yield from subexpressions(x)
            yield from subexpressions(y)
        case Select(cond=c, then=t, otherwise=o):
            for x in (c, t, o):
                yield from subexpressions(x)
        case Call(args=args):
            for x in args:
                yield from subexpressions(x)
        case Const() | Var() | Lane():
            pass
        case _:
            raise TypeError(f"not an IR expression: {e!r}")


def rebuilt(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """`e` with each of its direct subexpressions x replaced by f(x)."""
    match e:
        case Load(index=x):
            return dataclasses.replace(e, index=f(x))
        case Unary(operand=x) | Cast(operand=x):
            return dataclasses.replace(e, operand=f(x))
        case Binary(lhs=x, rhs=y):
            return dataclasses.replace(e, lhs=f(x), rhs=f(y))
        case Select(cond=c, then=t, otherwise=o):
            return dataclasses.replace(e, cond=f(c), then=f(t), otherwise=f(o))
        case Call(args=args):
            return dataclasses.replace(e, args=tuple(f(x) for x in args))
        case Const() | Var() | Lane():
            return e
    raise TypeError(f"not an IR expression: {e!r}")


def own_expressions(s: Stmt) -> tuple[Expr, ...]:
    """The expressions a statement evaluates itself (not those of statements inside it)."""
    match s:
        case Assign(value=value):
            return (value,)
        case Store(index=index, value=value) | AddTo(index=index, value=value):
            return (index, value)
        case If(cond=cond):
            return (cond,)
        case Loop(start=start, stop=stop):
            return (start, stop)
        case While(cond=cond):
            return (cond,)
        case Serial():
            return ()
        case Launch(lo=lo, hi=hi, bind=bind):
            return (lo, hi, *(e for _, v in bind for e in bound_expressions(v)))
        case Emit(values=values):
            return values
    raise TypeError(f"not an IR statement: {s!r}")


def bound_expressions(value) -> tuple[Expr, ...]:
    """The caller's expressions in one value a Launch binds."""
    match value:
        case View(offset=offset):
            return (offset,)
        case Records(fields=fields, count=count):
            return tuple(v.offset for v in (*fields, count))
    return (value,)


def expressions(body: tuple[Stmt, ...]) -> Iterator[Expr]:
    """Every expression the statements evaluate, subexpressions included."""
    for s in statements(body):
        for e in own_expressions(s):
            yield from subexpressions(e)


def written(body: tuple[Stmt, ...]) -> set[str]:
    """The arrays the statements store to or add to, a launched kernel's (as the caller's
    arrays it views) included."""
    out = set()
    for s in statements(body):
        if isinstance(s, (Store, AddTo)):
            out.add(s.array)
        elif isinstance(s, Launch):
            views = {name: v.array for name, v in s.bind if isinstance(v, View)}
            out |= {views[name] for name in written(s.kernel.body)}
            for _, v in s.bind:
                if isinstance(v, Records):
                    out |= {f.array for f in v.fields} | {v.count.array}
    return out


def emits_per_lane(kernel: Kernel) -> dict[str, int | None]:
    """The Emit statements of each stream, which bound the records one lane writes (each
    runs at most once a lane); None for a stream emitted to inside a loop (unbounded)."""
    counts: dict[str, int | None] = {s.name: 0 for s in kernel.streams}

    def block(body: tuple[Stmt, ...], in_loop: bool) -> None:
        for s in body:
            match s:
                case Emit(stream=stream):
                    n = counts[stream]
                    counts[stream] = None if in_loop or n is None else n + 1
                case Loop(body=inner) | While(body=inner):
                    block(inner, True)
                case Launch(kernel=callee, bind=bind):  # a lane's records per callee lane
                    to_arrays = {name for name, v in bind if isinstance(v, Records)}
                    for stream in callee.streams:
                        if stream.name not in to_arrays:
                            counts[stream.name] = None
                case _:
                    for inner in nested(s):  # raises for an unknown statement
                        block(inner, in_loop)

    block(kernel.body, False)
    return counts
