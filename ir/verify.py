"""The verifier: rejects malformed kernels before any backend sees them.

Checks: every name is declared (parameters) or definitely assigned on every path before
use (locals); loads and stores name array parameters with I32 indices and matching value
types; operators get operands of the types they accept; intrinsics exist with their arity;
loop variables are not assigned in their body; emitted records match their stream; a
local assigned in a Serial is used nowhere outside a Serial, and no Serial is inside a
parallel loop (where a backend gives a lane several threads, everything outside Serials
and parallel loops is then the same on each of them: a While around a Launch or a Serial,
a barrier there, tests a lane-uniform condition); a Launch binds every parameter of a
well-formed callee that launches nothing, with arrays viewed from the caller's of the same
type and scalars of the same type, its streams the caller's, and is not inside a parallel
loop.
"""

from __future__ import annotations

from . import walk
from .nodes import (
    ARITHMETIC_OPS,
    BOOL,
    COMPARISON_OPS,
    F32,
    F64,
    I32,
    INTRINSICS,
    LOGICAL_OPS,
    UNARY_OPS,
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
    Mechanism,
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


class VerifyError(ValueError):
    """A kernel is malformed; the message names the kernel and the offending node."""


class _Verifier:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.params = {p.name: p for p in kernel.params}
        self.streams = {s.name: s for s in kernel.streams}
        self.local_types: dict[str, DType] = {}
        self.serial_locals: set[str] = set()  # assigned in a Serial: not to be read after
        self.parallel = 0  # parallel loops around the statement being checked
        if len(self.params) != len(kernel.params):
            self.fail("parameter names are not unique")
        for param in kernel.params:
            regions = self.params.get(param.regions) if param.regions is not None else None
            if param.regions is not None and (
                regions is None or not regions.is_array or regions.dtype != I32
            ):
                self.fail(f"{param.name}'s regions {param.regions!r} are not an i32 array")
            if param.dtype == F32 and not param.is_array:
                self.fail(f"scalar {param.name!r} is f32, a storage type of arrays only")

    def fail(self, message: str) -> None:
        raise VerifyError(f"kernel {self.kernel.name!r}: {message}")

    # -- expressions
    def expr(self, e: Expr, defined: frozenset[str]) -> DType:
        match e:
            case Const(value=value, dtype=dtype):
                ok = {F64: (float, int), I32: (int,), BOOL: (bool,)}.get(dtype, ())
                if not isinstance(value, ok) or (dtype != BOOL and isinstance(value, bool)):
                    self.fail(f"constant {value!r} is not a valid {dtype.value}")
                return dtype
            case Var(name=name, dtype=dtype):
                param = self.params.get(name)
                if param is not None and not param.is_array:
                    actual = param.dtype
                elif name in defined:
                    actual = self.local_types[name]
                elif param is not None:
                    self.fail(f"array parameter {name!r} used as a scalar")
                elif name in self.serial_locals:
                    self.fail(f"local {name!r} is assigned in a Serial and read after it")
                else:
                    self.fail(f"variable {name!r} is used before it is assigned")
                if actual != dtype:
                    self.fail(f"variable {name!r} is {actual.value}, referenced as {dtype.value}")
                return dtype
            case Lane():
                return I32
            case Load(array=array, index=index, dtype=dtype):
                if dtype == F32:
                    self.fail(f"load from {array!r}, which is f32: stored to only")
                self.array_param(array, dtype)
                self.index(index, defined, f"load from {array!r}")
                return dtype
            case Unary(op=op, operand=operand):
                t = self.expr(operand, defined)
                if op not in UNARY_OPS:
                    self.fail(f"unknown unary operator {op!r}")
                if (op == "not") != (t == BOOL):
                    self.fail(f"operator {op!r} does not accept {t.value}")
                return t
            case Binary(op=op, lhs=lhs, rhs=rhs):
                a, b = self.expr(lhs, defined), self.expr(rhs, defined)
                if a != b:
                    self.fail(f"operator {op!r} applied to {a.value} and {b.value}")
                if op in LOGICAL_OPS:
                    if a != BOOL:
                        self.fail(f"operator {op!r} needs bool operands, got {a.value}")
                    return BOOL
                if a == BOOL:
                    self.fail(f"operator {op!r} does not accept bool operands")
                if op in COMPARISON_OPS:
                    return BOOL
                if op not in ARITHMETIC_OPS:
                    self.fail(f"unknown binary operator {op!r}")
                if op in ("div", "pow") and a != F64:
                    self.fail(f"operator {op!r} needs f64 operands, got {a.value}")
                return a
            case Call(fn=fn, args=args):
                arity = INTRINSICS.get(fn)
                if arity is None:
                    self.fail(f"unknown intrinsic {fn!r}")
                if len(args) != arity:
                    self.fail(f"intrinsic {fn!r} takes {arity} arguments, got {len(args)}")
                for arg in args:
                    if self.expr(arg, defined) != F64:
                        self.fail(f"intrinsic {fn!r} needs f64 arguments")
                return F64
            case Select(cond=cond, then=then, otherwise=otherwise):
                if self.expr(cond, defined) != BOOL:
                    self.fail("select condition is not bool")
                a, b = self.expr(then, defined), self.expr(otherwise, defined)
                if a != b:
                    self.fail(f"select branches are {a.value} and {b.value}")
                return a
            case Cast(dtype=dtype, operand=operand):
                t = self.expr(operand, defined)
                if dtype == BOOL:
                    self.fail("cast to bool is not allowed; compare instead")
                if dtype == F32:
                    self.fail("cast to f32: only a store to an f32 array rounds to it")
                return dtype
        self.fail(f"not an expression: {e!r}")
        raise AssertionError  # unreachable

    def array_param(self, name: str, dtype: DType) -> None:
        param = self.params.get(name)
        if param is None or not param.is_array:
            self.fail(f"{name!r} is not an array parameter")
        if param.dtype != dtype:
            self.fail(f"array {name!r} is {param.dtype.value}, accessed as {dtype.value}")

    def index(self, index: Expr, defined: frozenset[str], where: str) -> None:
        if self.expr(index, defined) != I32:
            self.fail(f"{where}: index is not i32")

    # -- statements; each returns the set of locals definitely assigned afterwards
    def block(
        self, body: tuple[Stmt, ...], defined: frozenset[str], loops: frozenset[str]
    ) -> frozenset[str]:
        for stmt in body:
            defined = self.stmt(stmt, defined, loops)
        return defined

    def stmt(self, s: Stmt, defined: frozenset[str], loops: frozenset[str]) -> frozenset[str]:
        match s:
            case Assign(name=name, value=value):
                t = self.expr(value, defined)
                if name in self.params:
                    self.fail(f"assignment to parameter {name!r}; store to an array instead")
                if name in loops:
                    self.fail(f"loop variable {name!r} is assigned in its loop")
                previous = self.local_types.setdefault(name, t)
                if previous != t:
                    self.fail(f"local {name!r} is {previous.value}, assigned {t.value}")
                return defined | {name}
            case (
                Store(array=array, index=index, value=value)
                | AddTo(array=array, index=index, value=value)
            ):
                t = self.expr(value, defined)
                param = self.params.get(array)
                if param is not None and param.dtype == F32 and t == F64:
                    if isinstance(s, AddTo):
                        self.fail(f"add to {array!r}, which is f32: stored to only")
                    t = F32  # rounded to the nearest as it is stored
                self.array_param(array, t)
                self.index(index, defined, f"store to {array!r}")
                return defined
            case If(cond=cond, then=then, otherwise=otherwise):
                if self.expr(cond, defined) != BOOL:
                    self.fail("if condition is not bool")
                return self.block(then, defined, loops) & self.block(otherwise, defined, loops)
            case Loop(var=var, start=start, stop=stop, body=body, step=step, parallel=par):
                if step not in (1, -1):
                    self.fail(f"loop step must be 1 or -1, got {step}")
                if par and step != 1:
                    self.fail(f"parallel loop {var!r} must count up")
                for bound in (start, stop):
                    if self.expr(bound, defined) != I32:
                        self.fail(f"bounds of loop {var!r} are not i32")
                if var in self.params:
                    self.fail(f"loop variable {var!r} shadows a parameter")
                previous = self.local_types.setdefault(var, I32)
                if previous != I32:
                    self.fail(f"loop variable {var!r} was a {previous.value} local")
                self.parallel += par
                self.block(body, defined | {var}, loops | {var})
                self.parallel -= par
                return defined  # the body may run zero times
            case Serial(body=body):
                if self.parallel:
                    self.fail("a Serial inside a parallel loop")
                self.block(body, defined, loops)
                assigned = {x.name for x in walk.statements(body) if isinstance(x, Assign)}
                self.serial_locals |= assigned
                return defined - assigned
            case Launch(kernel=callee, lo=lo, hi=hi, bind=bind):
                self.launch(callee, lo, hi, bind, defined)
                return defined
            case While(cond=cond, body=body):
                if self.expr(cond, defined) != BOOL:
                    self.fail("while condition is not bool")
                self.block(body, defined, loops)
                return defined  # the body may run zero times
            case Emit(stream=name, values=values):
                stream = self.streams.get(name)
                if stream is None:
                    self.fail(f"emit to undeclared stream {name!r}")
                if len(values) != len(stream.fields):
                    self.fail(f"stream {name!r} has {len(stream.fields)} fields, got {len(values)}")
                for (field_name, field_type), value in zip(stream.fields, values):
                    if self.expr(value, defined) != field_type:
                        self.fail(f"stream {name!r} field {field_name!r} is not {field_type.value}")
                return defined
        self.fail(f"not a statement: {s!r}")
        raise AssertionError  # unreachable

    def launch(self, callee: Kernel, lo: Expr, hi: Expr, bind, defined: frozenset[str]) -> None:
        where = f"launch of {callee.name!r}"
        if self.parallel:
            self.fail(f"{where} inside a parallel loop")
        try:
            verify_kernel(callee)
        except VerifyError as e:
            self.fail(f"{where}: {e}")
        if any(isinstance(s, Launch) for s in walk.statements(callee.body)):
            self.fail(f"{where}: the launched kernel launches another (depth is 1)")
        for bound, what in ((lo, "lo"), (hi, "hi")):
            if self.expr(bound, defined) != I32:
                self.fail(f"{where}: {what} is not i32")
        names = [name for name, value in bind if not isinstance(value, Records)]
        params = {p.name: p for p in callee.params}
        streams = {s.name: s for s in callee.streams}
        records = {name: value for name, value in bind if isinstance(value, Records)}
        for name, value in records.items():
            stream = streams.get(name)
            if stream is None:
                self.fail(f"{where}: Records for {name!r}, which is not a stream of it")
            if len(value.fields) != len(stream.fields):
                self.fail(f"{where}: stream {name!r} has {len(stream.fields)} fields")
            for view, (_, dtype) in zip(value.fields, stream.fields):
                self.array_param(view.array, dtype)
                self.index(view.offset, defined, f"{where}: records of {name!r}")
            self.array_param(value.count.array, I32)
            self.index(value.count.offset, defined, f"{where}: count of {name!r}")
        if len(set(names)) != len(names) or set(names) != set(params):
            missing, extra = sorted(set(params) - set(names)), sorted(set(names) - set(params))
            self.fail(
                f"{where}: bind each parameter once (missing {missing}, unknown {extra}, "
                f"repeated {sorted({n for n in names if names.count(n) > 1})})"
            )
        for name, value in bind:
            if isinstance(value, Records):
                continue
            p = params[name]
            if p.is_array:
                if not isinstance(value, View):
                    self.fail(f"{where}: array {name!r} needs a View of a caller array")
                self.array_param(value.array, p.dtype)
                self.index(value.offset, defined, f"{where}: view of {value.array!r}")
            elif isinstance(value, View) or self.expr(value, defined) != p.dtype:
                self.fail(f"{where}: scalar {name!r} needs a {p.dtype.value} expression")
        for stream in callee.streams:
            if stream.name not in records and self.streams.get(stream.name) != stream:
                self.fail(f"{where}: its stream {stream.name!r} is not the caller's")


def verify_kernel(kernel: Kernel) -> Kernel:
    """Return `kernel` unchanged if it is well formed; raise `VerifyError` otherwise."""
    verifier = _Verifier(kernel)
    verifier.block(kernel.body, frozenset(), frozenset())
    inside, outside = _serial_locals(kernel.body)
    if inside & outside:
        verifier.fail(
            f"local {sorted(inside & outside)[0]!r} is assigned in a Serial and used outside it"
        )
    return kernel


def _serial_locals(body: tuple[Stmt, ...]) -> tuple[set[str], set[str]]:
    """The locals assigned inside Serials, and the names used (read or assigned) outside."""
    inside, outside = set(), set()
    for s in body:
        if isinstance(s, Serial):
            inside |= {x.name for x in walk.statements(s.body) if isinstance(x, Assign)}
            continue
        used = {e.name for x in walk.own_expressions(s) for e in walk.subexpressions(x)
                if isinstance(e, Var)}  # fmt: skip
        outside |= used | ({s.name} if isinstance(s, Assign) else set())
        for inner in walk.nested(s):
            i, o = _serial_locals(inner)
            inside |= i
            outside |= o
    return inside, outside


def verify_mechanism(mechanism: Mechanism) -> Mechanism:
    """Verify every kernel of `mechanism` and that kernel names are unique."""
    names = [k.name for k in mechanism.kernels]
    if len(set(names)) != len(names):
        raise VerifyError(f"mechanism {mechanism.name!r}: kernel names are not unique: {names}")
    for kernel in mechanism.kernels:
        verify_kernel(kernel)
    for step in mechanism.diffusion:
        if step.kernel not in names:
            raise VerifyError(
                f"mechanism {mechanism.name!r}: diffusion of {step.state} needs kernel "
                f"{step.kernel!r}, which it lacks"
            )
    return mechanism
