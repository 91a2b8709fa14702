"""Helpers to build IR: short constructors for expressions and a statement builder.

kb = KernelBuilder("scale", lanes="instance")
x = kb.array("x")
with kb.if_(gt(x[kb.lane], 0.0)):
    kb.store("x", kb.lane, mul(x[kb.lane], 2.0))
kernel = kb.build()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .nodes import (
    BOOL,
    F64,
    I32,
    AddTo,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    DType,
    Emit,
    Expr,
    If,
    Kernel,
    Lane,
    Launch,
    Load,
    Loop,
    Param,
    Records,
    Select,
    Serial,
    Stmt,
    Store,
    Stream,
    Unary,
    Var,
    View,
    While,
)
from .types import dtype_of

Operand = Expr | float | int | bool


def const(value: float | int | bool) -> Const:
    """A constant typed by its Python type."""
    if isinstance(value, bool):
        return Const(value, BOOL)
    if isinstance(value, int):
        return Const(value, I32)
    return Const(float(value), F64)


def as_expr(value: Operand) -> Expr:
    return value if not isinstance(value, (int, float, bool)) else const(value)


def _binary(op: str, lhs: Operand, rhs: Operand) -> Binary:
    lhs, rhs = as_expr(lhs), as_expr(rhs)
    # Promote a bare integer literal to match an F64 operand, the only implicit conversion.
    if dtype_of(lhs) == F64 and isinstance(rhs, Const) and rhs.dtype == I32:
        rhs = Const(float(rhs.value), F64)
    if dtype_of(rhs) == F64 and isinstance(lhs, Const) and lhs.dtype == I32:
        lhs = Const(float(lhs.value), F64)
    return Binary(op, lhs, rhs)


def add(a: Operand, b: Operand) -> Binary:
    return _binary("add", a, b)  # noqa: E704


def sub(a: Operand, b: Operand) -> Binary:
    return _binary("sub", a, b)  # noqa: E704


def mul(a: Operand, b: Operand) -> Binary:
    return _binary("mul", a, b)  # noqa: E704


def div(a: Operand, b: Operand) -> Binary:
    return _binary("div", a, b)  # noqa: E704


def pow_(a: Operand, b: Operand) -> Binary:
    return _binary("pow", a, b)  # noqa: E704


def min_(a: Operand, b: Operand) -> Binary:
    return _binary("min", a, b)  # noqa: E704


def max_(a: Operand, b: Operand) -> Binary:
    return _binary("max", a, b)  # noqa: E704


def lt(a: Operand, b: Operand) -> Binary:
    return _binary("lt", a, b)  # noqa: E704


def le(a: Operand, b: Operand) -> Binary:
    return _binary("le", a, b)  # noqa: E704


def gt(a: Operand, b: Operand) -> Binary:
    return _binary("gt", a, b)  # noqa: E704


def ge(a: Operand, b: Operand) -> Binary:
    return _binary("ge", a, b)  # noqa: E704


def eq(a: Operand, b: Operand) -> Binary:
    return _binary("eq", a, b)  # noqa: E704


def ne(a: Operand, b: Operand) -> Binary:
    return _binary("ne", a, b)  # noqa: E704


def and_(a: Operand, b: Operand) -> Binary:
    return _binary("and", a, b)  # noqa: E704


def or_(a: Operand, b: Operand) -> Binary:
    return _binary("or", a, b)  # noqa: E704


def neg(a: Operand) -> Unary:
    return Unary("neg", as_expr(a))  # noqa: E704


def not_(a: Operand) -> Unary:
    return Unary("not", as_expr(a))  # noqa: E704


def call(fn: str, *args: Operand) -> Call:
    return Call(fn, tuple(as_expr(a) for a in args))


def select(cond: Operand, then: Operand, otherwise: Operand) -> Select:
    return Select(as_expr(cond), as_expr(then), as_expr(otherwise))


def cast(dtype: DType, value: Operand) -> Expr:
    value = as_expr(value)
    return value if dtype_of(value) == dtype else Cast(dtype, value)


class ArrayRef:
    """`ref[index]` builds a `Load` from a kernel's array parameter."""

    def __init__(self, name: str, dtype: DType) -> None:
        self.name, self.dtype = name, dtype

    def __getitem__(self, index: Operand) -> Load:
        return Load(self.name, as_expr(index), self.dtype)


class KernelBuilder:
    """Accumulates parameters and statements; `if_`, `else_` and `loop` nest."""

    lane = Lane()

    def __init__(self, name: str, lanes: str, doc: str = "") -> None:
        self.name, self.lanes, self.doc = name, lanes, doc
        self._params: dict[str, Param] = {}
        self._streams: dict[str, Stream] = {}
        self._blocks: list[list[Stmt]] = [[]]
        self._last_if: If | None = None

    # -- parameters
    def param(self, name: str, dtype: DType = F64, space: str = "uniform") -> Param:
        existing = self._params.get(name)
        if existing is not None:
            if existing != Param(name, dtype, space):
                raise ValueError(
                    f"parameter {name!r} declared twice with different types: {existing} and {Param(name, dtype, space)}"
                )
            return existing
        self._params[name] = Param(name, dtype, space)
        return self._params[name]

    def scalar(self, name: str, dtype: DType = F64) -> Var:
        self.param(name, dtype, "uniform")
        return Var(name, dtype)

    def array(self, name: str, dtype: DType = F64, space: str = "instance") -> ArrayRef:
        self.param(name, dtype, space)
        return ArrayRef(name, dtype)

    def stream(self, name: str, fields: tuple[tuple[str, DType], ...]) -> None:
        self._streams.setdefault(name, Stream(name, fields))

    # -- statements
    def emit_stmt(self, stmt: Stmt) -> None:
        self._blocks[-1].append(stmt)
        self._last_if = None

    def assign(self, name: str, value: Operand) -> Var:
        value = as_expr(value)
        self.emit_stmt(Assign(name, value))
        return Var(name, dtype_of(value))

    def store(self, array: str, index: Operand, value: Operand) -> None:
        self.emit_stmt(Store(array, as_expr(index), as_expr(value)))

    def add_to(self, array: str, index: Operand, value: Operand) -> None:
        self.emit_stmt(AddTo(array, as_expr(index), as_expr(value)))

    def emit(self, stream: str, *values: Operand) -> None:
        self.emit_stmt(Emit(stream, tuple(as_expr(v) for v in values)))

    @contextmanager
    def if_(self, cond: Operand) -> Iterator[None]:
        self._blocks.append([])
        yield
        body = tuple(self._blocks.pop())
        self.emit_stmt(If(as_expr(cond), body))
        self._last_if = self._blocks[-1][-1]  # type: ignore[assignment]

    @contextmanager
    def else_(self) -> Iterator[None]:
        last = self._last_if
        if last is None or last.otherwise:
            raise ValueError("else_ must directly follow an if_ without an else")
        self._blocks.append([])
        yield
        body = tuple(self._blocks.pop())
        self._blocks[-1][-1] = If(last.cond, last.then, body)

    @contextmanager
    def loop(
        self, var: str, start: Operand, stop: Operand, step: int = 1, parallel: bool = False
    ) -> Iterator[Var]:
        self._blocks.append([])
        yield Var(var, I32)
        body = tuple(self._blocks.pop())
        self.emit_stmt(Loop(var, as_expr(start), as_expr(stop), body, step, parallel))

    @contextmanager
    def while_(self, cond: Operand) -> Iterator[None]:
        """A loop whose body runs while `cond` holds (tested before each iteration)."""
        with self.capture() as body:
            yield
        self.emit_stmt(While(as_expr(cond), tuple(body)))

    @contextmanager
    def serial(self) -> Iterator[None]:
        """A block the lane runs once (one thread of it, where a lane has several)."""
        with self.capture() as body:
            yield
        self.emit_stmt(Serial(tuple(body)))

    def launch(
        self, kernel: Kernel, lo: Operand, hi: Operand, **bind: Operand | View | Records
    ) -> None:
        """Run `kernel`'s lanes lo .. hi - 1 here, its parameters (and any stream sent to
        Records) bound by name."""
        values = tuple(
            (n, v if isinstance(v, (View, Records)) else as_expr(v)) for n, v in bind.items()
        )
        self.emit_stmt(Launch(kernel, as_expr(lo), as_expr(hi), values))

    @contextmanager
    def capture(self) -> Iterator[list[Stmt]]:
        """Collect the statements built inside the block instead of emitting them."""
        captured: list[Stmt] = []
        self._blocks.append([])
        try:
            yield captured
        finally:
            captured.extend(self._blocks.pop())
            self._last_if = None

    def emit_all(self, stmts: list[Stmt] | tuple[Stmt, ...]) -> None:
        for stmt in stmts:
            self.emit_stmt(stmt)

    def build(self) -> Kernel:
        if len(self._blocks) != 1:
            raise ValueError("unclosed if_/loop block")
        return Kernel(
            self.name,
            self.lanes,
            tuple(self._params.values()),
            tuple(self._blocks[0]),
            tuple(self._streams.values()),
            self.doc,
        )
