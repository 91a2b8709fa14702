"""SIMD lowering: a kernel's lanes, or a parallel loop's iterations, as vector elements.

Two things run as vectors. A kernel whose lanes cannot see each other's writes
(`independent_lanes`) runs `KERNEL_LANES` lanes at a time, the remainder as one vector
under a mask (`lower_tail`). An
IR `Loop(parallel=True)`, which promises independent iterations, with a constant trip
count of at most `MAX_LANES`, has its body lowered once with one element per iteration.
LLVM splits the vectors into the host's registers (AVX2: 4 doubles, AVX-512: 8).

Every value in the body is of one of three kinds:

- uniform: the same in every iteration (the enclosing lane's values), a scalar;
- affine: an i32 that is `base + iteration`, kept as its scalar base, so that an element
  at an affine index is one vector load or store;
- varying: anything else, a vector. At a varying index, loads and stores go element by
  element (gather and scatter), in iteration order.

A varying condition makes a mask. Where every iteration or none takes a branch that writes
memory (checked at run time) the branch runs unmasked; otherwise its loads and stores are
masked (nothing is read or written for a masked-off element) and its assignments blend,
except for variables assigned and read only inside that branch, whose masked-off
elements are never looked at. The arithmetic is the sequential loop's, operation for
operation, so the results are the same bits.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from contextlib import contextmanager
from typing import Protocol

from llvmlite import ir
from portneuron.ir import (
    F32,
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
    Select,
    Serial,
    Stmt,
    Store,
    Unary,
    Var,
    While,
    dtype_of,
)
from portneuron.ir.walk import expressions, rebuilt, statements, subexpressions, written

from . import vmath
from .llvm_types import BOOL_T, I32_T, TYPES, alignment, gather, stored


class Lowering(Protocol):
    """What the vector lowering uses of the scalar one (render._Lowering), named here so
    that this module does not import that one, which imports this."""

    b: ir.IRBuilder
    kernel: Kernel
    module: ir.Module
    fn: ir.Function
    math: str

    def expr(self, e: Expr) -> ir.Value: ...

    def address(self, array: str, index: ir.Value, dtype: DType) -> ir.Value: ...

    def array_dtype(self, name: str) -> DType: ...

    def counted_loop(self, counter, more, body, step: int, name: str) -> None: ...

    def call(self, fn: str, values: list[ir.Value]) -> ir.Value: ...

    def cast(self, to: DType, frm: DType, x: ir.Value) -> ir.Value: ...

    def binary(self, op: str, dtype: DType, x: ir.Value, y: ir.Value) -> ir.Value: ...

    def hoists(self, e: Expr) -> bool: ...

    def var(self, name: str, dtype: DType) -> ir.AllocaInstr: ...

    def lane_body(self, lane: ir.Value) -> None: ...

    def once(self, e: Expr) -> ir.Value: ...


#: The widest parallel loop lowered as one vector; wider ones run sequentially.
MAX_LANES = 16
#: Kernel lanes per vector.
KERNEL_LANES = 8
#: Kernels of at most this many expressions get a second body for when their index
#: variables are consecutive (`_gathers`); in longer ones arithmetic dominates, and the
#: code would double (which costs JIT time).
MAX_VERSIONED = 200
#: Branches on a varying condition that write memory or gather (a TABLE's lookup, three
#: deep) get an unmasked fast path (for when every lane or none takes them) down to this
#: depth; others compute both sides and blend.
FAST_PATH_DEPTH = 3

UNIFORM, AFFINE, VARYING = "uniform", "affine", "varying"


class NotVectorisable(Exception):
    """The loop body does something the vector lowering does not do; it runs sequentially."""


def _join(a: str | None, b: str) -> str:
    return b if a is None or a == b else VARYING


Scope = tuple[tuple[int, bool], ...]  # the branches (If, then-side) a statement is under


class _Analysis:
    """The kind of every variable the body assigns, and which need no blending. The
    vector index is the loop variable `var`, or with var None the kernel's lane."""

    def __init__(
        self,
        body: tuple[Stmt, ...],
        params: set[str],
        var: str | None,
        affine_loads: frozenset[str] = frozenset(),
    ) -> None:
        self.var = var
        self.body = body
        self.affine_loads = affine_loads
        self.contiguous: _Analysis | None = None  # the analysis with `gathers` affine
        self.gathers: list[tuple[str, str]] = []
        self.consecutive_only = False  # lanes run as vectors only where `gathers` are
        self.kinds: dict[str, str] = {} if var is None else {var: AFFINE}
        self.dtypes: dict[str, DType] = {} if var is None else {var: I32}
        self.assigned: dict[str, set[Scope]] = {} if var is None else {var: {()}}
        self.read: dict[str, set[Scope]] = {}
        self.params = params
        for _ in range(8):
            before = dict(self.kinds)
            self.defined = set() if var is None else {var}
            self.block(body, (), False)
            if self.kinds == before:
                break
        else:
            raise NotVectorisable("variable kinds do not settle")
        if var is not None and self.assigned[var] != {()}:
            raise NotVectorisable(f"the body assigns the loop variable {var}")

    def scoped(self, name: str) -> bool:
        """Assigned under one branch only and read only under it: masked-off elements of
        the variable are never read, so assignments need not blend."""
        (scope, *more) = self.assigned[name]
        return not more and all(r[: len(scope)] == scope for r in self.read.get(name, ()))

    def kind(self, e: Expr, scope: Scope) -> str:
        match e:
            case Const():
                return UNIFORM
            case Lane():
                return UNIFORM if self.var is not None else AFFINE
            case Var(name=name):
                if name not in self.kinds:
                    return UNIFORM
                if name not in self.defined:
                    raise NotVectorisable(f"{name} is read before the body assigns it")
                self.read.setdefault(name, set()).add(scope)
                return self.kinds[name]
            case Load(index=index):
                return UNIFORM if self.kind(index, scope) == UNIFORM else VARYING
            case Unary(operand=operand):
                return UNIFORM if self.kind(operand, scope) == UNIFORM else VARYING
            case Binary(op=op, lhs=lhs, rhs=rhs):
                return _binary_kind(op, self.kind(lhs, scope), self.kind(rhs, scope))
            case Cast(dtype=dtype, operand=operand):
                k = self.kind(operand, scope)
                same = dtype == dtype_of(operand)
                return k if k == UNIFORM or same else VARYING
            case Select(cond=c, then=t, otherwise=o):
                kinds = {self.kind(x, scope) for x in (c, t, o)}
                return UNIFORM if kinds == {UNIFORM} else VARYING
            case Call(args=args):
                kinds = {self.kind(a, scope) for a in args}
                return UNIFORM if kinds <= {UNIFORM} else VARYING
        raise NotVectorisable(f"expression {e!r}")

    def assign(self, name: str, kind: str, dtype: DType, scope: Scope, masked: bool) -> None:
        if name in self.params:
            raise NotVectorisable(f"the body assigns the parameter {name}")
        self.assigned.setdefault(name, set()).add(scope)
        self.dtypes[name] = dtype
        if masked and not self.scoped(name):
            kind = VARYING
        self.kinds[name] = _join(self.kinds.get(name), kind)
        self.defined.add(name)

    def block(self, body: tuple[Stmt, ...], scope: Scope, masked: bool) -> None:
        for s in body:
            match s:
                case Assign(name=name, value=value):
                    kind = self.kind(value, scope)
                    if name in self.affine_loads:
                        kind = AFFINE
                    self.assign(name, kind, dtype_of(value), scope, masked)
                case Store(index=index, value=value):
                    uniform_index = self.kind(index, scope) == UNIFORM
                    if uniform_index and (masked or self.kind(value, scope) != UNIFORM):
                        raise NotVectorisable("iterations store to one element")
                case AddTo(index=index, value=value):
                    self.kind(index, scope), self.kind(value, scope)
                case If(cond=cond, then=then, otherwise=otherwise):
                    varying = masked or self.kind(cond, scope) != UNIFORM
                    self.block(then, (*scope, (id(s), True)), varying)
                    self.block(otherwise, (*scope, (id(s), False)), varying)
                case Loop(var=var, start=start, stop=stop, body=inner):
                    if {self.kind(start, scope), self.kind(stop, scope)} != {UNIFORM}:
                        raise NotVectorisable(f"the bounds of loop {var} vary")
                    self.assign(var, UNIFORM, I32, scope, False)
                    self.block(inner, scope, masked)
                case While():  # each element would leave the loop at its own time
                    raise NotVectorisable("while")
                case Emit():
                    raise NotVectorisable("emit")
                case Launch() | Serial():
                    raise NotVectorisable("a launch or a serial block")
                case _:
                    raise TypeError(f"not an IR statement: {s!r}")


def _binary_kind(op: str, a: str, b: str) -> str:
    if a == b == UNIFORM:
        return UNIFORM
    if op == "add" and {a, b} == {AFFINE, UNIFORM}:
        return AFFINE
    if op == "sub" and (a, b) == (AFFINE, UNIFORM):
        return AFFINE
    return VARYING


def lanes(loop: Loop) -> int | None:
    """The iteration count of a loop with constant bounds, if it fits one vector."""
    if not (isinstance(loop.start, Const) and isinstance(loop.stop, Const)):
        return None
    n = int(loop.stop.value) - int(loop.start.value)
    return n if 1 <= n <= MAX_LANES else None


def lower_parallel(lowering: Lowering, loop: Loop) -> bool:
    """Lower `loop` as vectors; False (and nothing emitted) where it must run sequentially."""
    n = lanes(loop)
    if n is None:
        return False
    params = {p.name for p in lowering.kernel.params}
    try:
        analysis = _Analysis(loop.body, params, loop.var)
    except NotVectorisable:
        return False
    vector = _Vector(lowering, analysis, n)
    lowering.b.store(lowering.expr(loop.start), vector.slots[loop.var])
    vector.block(loop.body)
    return True


def lane_analysis(kernel: Kernel) -> _Analysis | None:
    """How the kernel's lanes run as vectors, or None where they cannot. Lanes that touch
    one element of an array they read and write only through an index variable (cad's
    `ion.ca.cai[pn.at.ion.ca.index]`: one ion element a density mechanism's instance, but
    repeats are allowed) run as vectors only where that index is consecutive across the
    vector, and otherwise one by one (`consecutive_only`)."""
    body = _named_indices(kernel.body)
    consecutive_only = not independent_lanes(body)
    if consecutive_only and not independent_lanes(body, consecutive=True):
        return None
    params = {p.name for p in kernel.params}
    try:
        analysis = _Analysis(body, params, None)
    except NotVectorisable:
        return None
    analysis.consecutive_only = consecutive_only
    gathers = _gathers(body, analysis)
    if gathers and (consecutive_only or sum(1 for _ in expressions(body)) <= MAX_VERSIONED):
        try:
            names = frozenset(name for name, _ in gathers)
            analysis.contiguous = _Analysis(body, params, None, names)
            analysis.gathers = gathers
        except NotVectorisable:
            pass
    if consecutive_only and analysis.contiguous is None:
        return None
    return analysis


def _named_indices(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """`body` with each index read at the lane's own element of an array it does not
    write (a mechanism's `ion.ca.index[pn.instance]`) read once, into a variable assigned
    at the top level before its first use, as `pn.node` is: an index variable
    (`_gathers`), so that where the lanes' indices are consecutive what it indexes is
    loaded and stored as whole vectors. The same loads and values, so the same bits."""
    stores = written(body)
    if any(not isinstance(s, (Assign, Store, AddTo, If, Loop)) for s in statements(body)):
        return body
    assigned = Counter(s.name for s in statements(body) if isinstance(s, Assign))
    own = {
        s.name
        for s in body
        if isinstance(s, Assign) and isinstance(s.value, Lane) and assigned[s.name] == 1
    }
    taken = set(assigned)
    names: dict[Load, str] = {}
    for e in expressions(body):
        match e:
            case Load(index=Load(array=array, index=Var(name=at), dtype=dtype) as index) if (
                dtype == I32 and at in own and array not in stores and index not in names
            ):
                names[index] = f"pn.at.{array}"
    if not own or not names or taken & set(names.values()):
        return body

    def expr(e: Expr) -> Expr:
        if isinstance(e, Load) and e in names:
            return Var(names[e], I32)
        return rebuilt(e, expr)

    def stmt(s: Stmt) -> Stmt:
        match s:
            case Assign(value=value):
                return dataclasses.replace(s, value=expr(value))
            case Store(index=index, value=value) | AddTo(index=index, value=value):
                return dataclasses.replace(s, index=expr(index), value=expr(value))
            case If(cond=cond, then=then, otherwise=otherwise):
                return If(expr(cond), tuple(map(stmt, then)), tuple(map(stmt, otherwise)))
            case Loop(start=start, stop=stop, body=inner):
                inner = tuple(map(stmt, inner))
                return dataclasses.replace(s, start=expr(start), stop=expr(stop), body=inner)
        raise TypeError(f"not a statement here: {s!r}")

    out: list[Stmt] = []
    left = dict(names)
    for s in body:
        reads = {e for e in expressions((s,)) if isinstance(e, Load)}
        for load in [load for load in left if load in reads]:
            out.append(Assign(left.pop(load), load))
        out.append(stmt(s))
    return tuple(out)


def _gathers(body: tuple[Stmt, ...], analysis: _Analysis) -> list[tuple[str, str]]:
    """(variable, array) of the kernel's index variables: i32s assigned once, at the top,
    from an array the kernel does not write, at the lane's own element, and used as
    indices (a mechanism's `node_index[lane]`). Where a vector's lanes have consecutive
    indices (checked at run time), such a variable is affine, and what it indexes is
    loaded and stored as whole vectors."""
    stores = written(body)
    used = set()
    for s in statements(body):
        match s:
            case Store(index=Var(name=name)) | AddTo(index=Var(name=name)):
                used.add(name)
    for e in expressions(body):
        if isinstance(e, Load) and isinstance(e.index, Var):
            used.add(e.index.name)
    own: set[str] = set()
    out = []
    for s in body:
        if not isinstance(s, Assign) or analysis.assigned.get(s.name) != {()}:
            continue
        match s.value:
            case Lane():
                own.add(s.name)
            case Load(array=array, index=index, dtype=dtype) if (
                dtype == I32
                and array not in stores
                and s.name in used
                and (isinstance(index, Lane) or (isinstance(index, Var) and index.name in own))
            ):
                out.append((s.name, array))
    return out


def lower_lanes(lowering: Lowering, analysis: _Analysis, lane: ir.Value) -> None:
    """The kernel's body for lanes lane .. lane + KERNEL_LANES - 1 (lane: an i32); twice
    where the kernel has index variables (`_gathers`): for when they are consecutive in
    every one of the vector's lanes, and for when they are not."""
    if analysis.contiguous is None:
        _lower_body(lowering, analysis, lane)
        return
    b = lowering.b
    n = KERNEL_LANES
    iota = ir.Constant(ir.VectorType(I32_T, n), list(range(n)))
    consecutive, each = None, {}
    for array in dict.fromkeys(array for _, array in analysis.gathers):
        address = lowering.address(array, lane, I32)
        index = b.load(address, typ=ir.VectorType(I32_T, n), align=alignment(I32))
        first = b.extract_element(index, ir.Constant(I32_T, 0))
        bits = b.bitcast(b.icmp_signed("==", index, b.add(splat(b, first, n), iota)), ir.IntType(n))
        each[array] = b.icmp_unsigned("==", bits, ir.Constant(ir.IntType(n), (1 << n) - 1))
        consecutive = each[array] if consecutive is None else b.and_(consecutive, each[array])
    with b.if_else(consecutive) as (yes, no):
        with yes:
            _lower_body(lowering, analysis.contiguous, lane)
        with no:
            if not analysis.consecutive_only:  # some may be: each is checked where used
                flags = (
                    {var: each[array] for var, array in analysis.gathers} if len(each) > 1 else {}
                )
                _lower_body(lowering, analysis, lane, flags)
            else:  # the vector's lanes one by one, as the lanes after the last vector
                counter = lowering.var("pn.vector.lane", I32)
                b.store(lane, counter)
                last = b.add(lane, ir.Constant(I32_T, n))
                more = lambda now: b.icmp_signed("<", now, last)  # noqa: E731
                lowering.counted_loop(counter, more, lowering.lane_body, 1, "vector.lane")


def lower_tail(lowering: Lowering, analysis: _Analysis, lane: ir.Value, left: ir.Value) -> None:
    """The kernel's body for the `left` (1 .. KERNEL_LANES - 1) lanes from `lane` on, the
    last of a call's: one vector under a mask of them (nothing read or written for the
    elements past them), in place of as many lanes one by one."""
    b, n = lowering.b, KERNEL_LANES
    iota = ir.Constant(ir.VectorType(I32_T, n), list(range(n)))
    vector = _Vector(lowering, analysis, n)
    vector.lane = lane
    with vector.masked(b.icmp_signed("<", iota, splat(b, left, n))):
        vector.block(analysis.body)


def lower_overlapped_tail(
    lowering: Lowering, analysis: _Analysis, start: ir.Value, left: ir.Value
) -> None:
    """The last `left` (1 .. KERNEL_LANES - 1) lanes of a call of at least a vector's
    lanes: the vector of its last KERNEL_LANES lanes, from `start`, computed whole (those
    lanes exist, so every load is one any vector makes, unmasked, and branches take their
    fast paths) with the stores and sums of its last `left` lanes only (`keep`): the others
    are the vector before's, whose results stay. Faster than a masked vector."""
    b, n = lowering.b, KERNEL_LANES
    iota = ir.Constant(ir.VectorType(I32_T, n), list(range(n)))
    vector = _Vector(lowering, analysis, n)
    vector.lane = start
    vector.keep = b.icmp_signed(">=", iota, splat(b, b.sub(ir.Constant(I32_T, n), left), n))
    vector.block(analysis.body)


def splat(b: ir.IRBuilder, x: ir.Value, n: int) -> ir.Value:
    """A vector of n copies of the scalar x."""
    undef = ir.Constant(ir.VectorType(x.type, n), ir.Undefined)
    one = b.insert_element(undef, x, ir.Constant(I32_T, 0))
    return b.shuffle_vector(one, undef, ir.Constant(ir.VectorType(I32_T, n), [0] * n))


def _lower_body(
    lowering: Lowering, analysis: _Analysis, lane: ir.Value, flags: dict | None = None
) -> None:
    vector = _Vector(lowering, analysis, KERNEL_LANES)
    vector.lane, vector.consecutive = lane, flags or {}
    vector.block(analysis.body)


def independent_lanes(body: tuple[Stmt, ...], consecutive: bool = False) -> bool:
    """Whether the lanes can run at once: no lane reads an element another lane writes,
    and elements several lanes write are written in one way only (accumulated with
    AddTo, or stored, which element by element in lane order gives the last lane's value
    as running the lanes one after another does). An array a kernel both reads and writes
    must be touched only at the lane's own element (`lane`, or a variable set to it), or
    with `consecutive` (lanes whose index variables are consecutive) only at the element
    of one index variable (`_gathers`: assigned once at the top from an i32 array the
    kernel does not write, at the lane's own element)."""
    own: set[str] = set()
    indices: set[str] = set()
    stores = written(body)
    accesses: dict[str, set[tuple[str, str | None]]] = {}  # array -> {(how, which element)}

    def at(index: Expr) -> str | None:
        if isinstance(index, Lane) or (isinstance(index, Var) and index.name in own):
            return "lane"
        if isinstance(index, Var) and index.name in indices:
            return index.name
        return None

    def expr(e: Expr) -> None:
        match e:
            case Load(array=array, index=index):
                accesses.setdefault(array, set()).add(("load", at(index)))
                expr(index)
            case Unary(operand=x) | Cast(operand=x):
                expr(x)
            case Binary(lhs=x, rhs=y):
                expr(x), expr(y)
            case Select(cond=c, then=t, otherwise=o):
                expr(c), expr(t), expr(o)
            case Call(args=args):
                for a in args:
                    expr(a)
            case Const() | Var() | Lane():
                pass
            case _:
                raise TypeError(f"not an IR expression: {e!r}")

    assigned: dict[str, int] = {}

    def block(body: tuple[Stmt, ...], top: bool) -> None:
        for s in body:
            match s:
                case Assign(name=name, value=value):
                    expr(value)
                    assigned[name] = assigned.get(name, 0) + 1
                    own.discard(name), indices.discard(name)
                    if top and assigned[name] == 1 and at(value) == "lane":
                        own.add(name)
                    match value:
                        case Load(array=array, index=index, dtype=dtype) if (
                            top
                            and consecutive
                            and assigned[name] == 1
                            and dtype == I32
                            and array not in stores
                            and at(index) == "lane"
                        ):
                            indices.add(name)
                case (
                    Store(array=array, index=index, value=value)
                    | AddTo(array=array, index=index, value=value)
                ):
                    how = "store" if isinstance(s, Store) else "add"
                    accesses.setdefault(array, set()).add((how, at(index)))
                    expr(index), expr(value)
                case If(cond=cond, then=then, otherwise=otherwise):
                    expr(cond)
                    block(then, False), block(otherwise, False)
                case Loop(start=start, stop=stop, body=inner):
                    expr(start), expr(stop)
                    block(inner, False)
                case While(cond=cond, body=inner):
                    expr(cond)
                    block(inner, False)
                case Emit() | Launch() | Serial():
                    raise NotVectorisable("emit, launch or serial")
                case _:
                    raise TypeError(f"not an IR statement: {s!r}")

    try:
        block(body, True)
    except NotVectorisable:
        return False
    for uses in accesses.values():
        hows, elements = {how for how, _ in uses}, {element for _, element in uses}
        if hows == {"load"} or (len(elements) == 1 and None not in elements):
            continue
        if hows in ({"add"}, {"store"}):
            continue
        return False
    return True


class _Vector:
    """Emits the body of one parallel loop; values are (kind, llvm value) pairs."""

    def __init__(self, lowering: Lowering, analysis: _Analysis, n: int) -> None:
        self.lw, self.b, self.analysis, self.n = lowering, lowering.b, analysis, n
        self.lane: ir.Value | None = None  # the first lane's index, where lanes are elements
        self.mask: ir.Value | None = None
        # the lanes whose stores and sums count, where some of a whole vector's do not
        # (lower_overlapped_tail); None: all
        self.keep: ir.Value | None = None
        self.depth = 0
        # index variables (`_gathers`) with whether the vector's lanes are consecutive in
        # each, where some are and others not: each load and store at one takes a branch
        self.consecutive: dict[str, ir.Value] = {}
        self.slots: dict[str, ir.AllocaInstr] = {}
        with self.b.goto_entry_block():
            for name, kind in analysis.kinds.items():
                typ = TYPES[analysis.dtypes[name]]
                self.slots[name] = self.b.alloca(self.vector(typ) if kind == VARYING else typ)
        self.iota = ir.Constant(self.vector(I32_T), list(range(n)))

    # ------------------------------------------------------------------ helpers
    def vector(self, typ: ir.Type) -> ir.VectorType:
        return ir.VectorType(typ, self.n)

    def widen(self, kind: str, x: ir.Value) -> ir.Value:
        """A value as a vector."""
        if kind == VARYING:
            return x
        every = splat(self.b, x, self.n)
        return self.b.add(every, self.iota) if kind == AFFINE else every

    def element(self, kind: str, x: ir.Value, lane: int) -> ir.Value:
        if kind == UNIFORM:
            return x
        return self.b.extract_element(self.widen(kind, x), ir.Constant(I32_T, lane))

    def each_lane(self, mask: ir.Value | None, body) -> None:
        """body(lane) for each lane in order, each under its mask bit."""
        for lane in range(self.n):
            if mask is None:
                body(lane)
                continue
            bit = self.b.extract_element(mask, ir.Constant(I32_T, lane))
            with self.b.if_then(bit):
                body(lane)

    def intrinsic(self, stem: str, dtype: DType, result: ir.Type, args: list[ir.Type]):
        """LLVM's masked memory intrinsic `stem` for vectors of `dtype`, declared once."""
        name = f"llvm.{stem}.v{self.n}{ {F64: 'f64', F32: 'f32'}.get(dtype, 'i32') }.p0"
        fn = self.lw.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.lw.module, ir.FunctionType(result, args), name)
        return fn

    @property
    def writes(self) -> ir.Value | None:
        """The lanes whose stores count: under the mask, and kept (None: every lane)."""
        if self.keep is None or self.mask is None:
            return self.mask if self.keep is None else self.keep
        return self.b.and_(self.mask, self.keep)

    def masked_store(self, value: ir.Value, address: ir.Value, dtype: DType) -> None:
        """Store a vector, only the elements under the mask (`writes`) where there is one."""
        align = ir.Constant(I32_T, alignment(dtype))
        mask = self.writes
        if mask is None:
            self.b.store(value, address, align=alignment(dtype))
            return
        types = [value.type, ir.PointerType(), I32_T, self.vector(BOOL_T)]
        fn = self.intrinsic("masked.store", dtype, ir.VoidType(), types)
        self.b.call(fn, [value, address, align, mask])

    def load(self, array: str, dtype: DType, kind: str, i: ir.Value) -> ir.Value:
        """array[i] for an affine or varying index: a vector load, or element by element,
        under a mask one gather. Under a mask, masked-off elements are not read (their
        index may be out of range, as the sequential code, which skips them, allows); they
        come back as 0."""
        b, lw = self.b, self.lw
        typ, vector = TYPES[dtype], self.vector(TYPES[dtype])
        if kind == AFFINE:
            address = lw.address(array, i, dtype)
            if self.mask is None:
                return b.load(address, typ=vector, align=alignment(dtype))
            types = [ir.PointerType(), I32_T, self.vector(BOOL_T), vector]
            fn = self.intrinsic("masked.load", dtype, vector, types)
            align = ir.Constant(I32_T, alignment(dtype))
            return b.call(fn, [address, align, self.mask, ir.Constant(vector, [0] * self.n)])
        if self.mask is None:
            gathered = ir.Constant(vector, ir.Undefined)
            for lane in range(self.n):
                x = b.load(lw.address(array, self.element(kind, i, lane), dtype), typ=typ)
                gathered = b.insert_element(gathered, x, ir.Constant(I32_T, lane))
            return gathered
        return gather(b, lw.address(array, ir.Constant(I32_T, 0), dtype), i, typ, self.mask)

    @contextmanager
    def masked(self, mask: ir.Value | None):
        saved, self.mask = self.mask, mask
        self.depth += 1
        try:
            yield
        finally:
            self.mask = saved
            self.depth -= 1

    # ------------------------------------------------------------------ statements
    def block(self, body: tuple[Stmt, ...]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: Stmt) -> None:
        b, lw = self.b, self.lw
        match s:
            case Assign(name=name, value=Load(array=array, index=index, dtype=dtype)) if (
                name in self.analysis.affine_loads
            ):  # consecutive: the first lane's element is the base
                _, i = self.expr(index)
                b.store(b.load(lw.address(array, i, dtype), typ=TYPES[dtype]), self.slots[name])
            case Assign(name=name, value=value):
                kind, x = self.expr(value)
                slot, target = self.slots[name], self.analysis.kinds[name]
                if target == VARYING:
                    x = self.widen(kind, x)
                    if self.mask is not None and not self.analysis.scoped(name):
                        x = b.select(self.mask, x, b.load(slot, typ=x.type))
                b.store(x, slot)
            case Store(array=array, index=index, value=value):
                self.store(array, index, value, add=False)
            case AddTo(array=array, index=index, value=value):
                self.store(array, index, value, add=True)
            case If(cond=cond, then=then, otherwise=otherwise):
                kind, c = self.expr(cond)
                if kind == UNIFORM:
                    with b.if_else(c) as (on, off):
                        with on:
                            self.block(then)
                        with off:
                            self.block(otherwise)
                else:
                    self.branch(self.widen(kind, c), then, otherwise)
            case Loop(var=var, start=start, stop=stop, body=body, step=step):
                b.store(self.expr(start)[1], self.slots[var])
                last = self.expr(stop)[1]
                lw.counted_loop(
                    self.slots[var],
                    lambda now: b.icmp_signed("<" if step > 0 else ">", now, last),
                    lambda _: self.block(body),
                    step,
                    f"{var}.v",
                )
            case _:
                raise NotVectorisable(f"statement {s!r}")

    def branch(self, c: ir.Value, then: tuple[Stmt, ...], otherwise: tuple[Stmt, ...]) -> None:
        """An If on a varying condition `c` (a vector of bools)."""
        b = self.b
        on = c if self.mask is None else b.and_(self.mask, c)
        off = b.not_(c) if self.mask is None else b.and_(self.mask, b.not_(c))
        fast = (
            self.mask is None
            and self.depth < FAST_PATH_DEPTH
            and (bool(written(then + otherwise)) or self.loads_varying(then + otherwise))
        )
        if not fast:
            with self.masked(on):
                self.block(then)
            with self.masked(off):
                self.block(otherwise)
            return
        fn = self.lw.fn
        every, mixed = fn.append_basic_block("all"), fn.append_basic_block("mixed")
        some, nothing = fn.append_basic_block("some"), fn.append_basic_block("none")
        after = fn.append_basic_block("endif")
        bits = b.bitcast(c, ir.IntType(self.n))
        all_set = ir.Constant(ir.IntType(self.n), (1 << self.n) - 1)
        b.cbranch(b.icmp_unsigned("==", bits, all_set), every, mixed)
        b.position_at_end(mixed)
        b.cbranch(b.icmp_unsigned("==", bits, ir.Constant(ir.IntType(self.n), 0)), nothing, some)
        for block, body, mask in ((every, then, None), (nothing, otherwise, None)):
            b.position_at_end(block)
            with self.masked(mask):
                self.block(body)
            b.branch(after)
        b.position_at_end(some)
        with self.masked(on):
            self.block(then)
        with self.masked(off):
            self.block(otherwise)
        b.branch(after)
        b.position_at_end(after)

    def loads_varying(self, body: tuple[Stmt, ...]) -> bool:
        """Whether `body` loads at an index that is not the same in every lane (under a
        mask: a gather, which an unmasked vector does element by element, faster)."""
        kinds = self.analysis.kinds
        for e in expressions(body):
            if isinstance(e, Load):
                for x in subexpressions(e.index):
                    if isinstance(x, Lane | Load) or (
                        isinstance(x, Var) and kinds.get(x.name, UNIFORM) != UNIFORM
                    ):
                        return True
        return False

    def either(self, name: str, i: ir.Value, access) -> ir.Value | None:
        """access(kind, index) at index variable `name` (a vector `i`): as AFFINE from
        its first element where the vector's lanes are consecutive in it, else VARYING."""
        b = self.b
        with b.if_else(self.consecutive[name]) as (yes, no):
            with yes:
                first = access(AFFINE, b.extract_element(i, ir.Constant(I32_T, 0)))
                first_block = b.block
            with no:
                other = access(VARYING, i)
                other_block = b.block
        if first is None:
            return None
        result = b.phi(first.type)
        result.add_incoming(first, first_block)
        result.add_incoming(other, other_block)
        return result

    def store(self, array: str, index: Expr, value: Expr, add: bool) -> None:
        if isinstance(index, Var) and index.name in self.consecutive:
            _, i = self.expr(index)
            value_kind, x = self.expr(value)
            self.either(
                index.name, i, lambda kind, at: self.put(array, (kind, at), (value_kind, x), add)
            )
            return
        self.put(array, self.expr(index), self.expr(value), add)

    def put(
        self, array: str, index: tuple[str, ir.Value], value: tuple[str, ir.Value], add: bool
    ) -> None:
        b, lw = self.b, self.lw
        dtype = lw.array_dtype(array)
        index_kind, i = index
        value_kind, x = value
        if index_kind == AFFINE:
            address = lw.address(array, i, dtype)
            x = self.widen(value_kind, x)
            if add:  # the elements under the mask only (those past a call's last lane too)
                old = self.load(array, dtype, AFFINE, i)
                x = b.fadd(old, x) if dtype == F64 else b.add(old, x)
            self.masked_store(stored(b, x, dtype), address, dtype)
            return
        if index_kind == UNIFORM and not add:  # every iteration stores the same value
            b.store(stored(b, x, dtype), lw.address(array, i, dtype))
            return
        if add and self.writes is None:
            self.add_in_runs(array, dtype, (index_kind, i), (value_kind, x))
            return

        def one(lane: int) -> None:
            address = lw.address(array, self.element(index_kind, i, lane), dtype)
            v = self.element(value_kind, x, lane)
            if add:
                old = b.load(address, typ=TYPES[dtype])
                v = b.fadd(old, v) if dtype == F64 else b.add(old, v)
            b.store(stored(b, v, dtype), address)

        self.each_lane(self.writes, one)

    def add_in_runs(self, array: str, dtype: DType, index, value) -> None:
        """array[index] += value lane by lane, in lane order, each run of lanes at one
        element (a point process's sums into a section's dipole, every lane of a uniform
        index) summed in a register and stored once: the same additions in the same order,
        the same bits, without a chain of stores and loads through memory."""
        b, lw, typ = self.b, self.lw, TYPES[dtype]
        add = b.fadd if dtype == F64 else b.add
        at = [self.element(*index, lane) for lane in range(self.n)]
        values = [self.element(*value, lane) for lane in range(self.n)]
        with b.goto_entry_block():
            total = b.alloca(typ)
        b.store(add(b.load(lw.address(array, at[0], dtype), typ=typ), values[0]), total)
        for lane in range(1, self.n):
            if index[0] == UNIFORM:
                b.store(add(b.load(total, typ=typ), values[lane]), total)
                continue
            same = b.icmp_signed("==", at[lane], at[lane - 1])
            with b.if_else(same) as (run, new):
                with run:
                    b.store(add(b.load(total, typ=typ), values[lane]), total)
                with new:
                    b.store(b.load(total, typ=typ), lw.address(array, at[lane - 1], dtype))
                    old = b.load(lw.address(array, at[lane], dtype), typ=typ)
                    b.store(add(old, values[lane]), total)
        b.store(b.load(total, typ=typ), lw.address(array, at[-1], dtype))

    # ------------------------------------------------------------------ expressions
    def expr(self, e: Expr) -> tuple[str, ir.Value]:
        b, lw = self.b, self.lw
        if lw.hoists(e):
            return UNIFORM, lw.once(e)
        match e:
            case Var(name=name, dtype=dtype) if name in self.slots:
                kind = self.analysis.kinds[name]
                typ = TYPES[dtype]
                return kind, b.load(
                    self.slots[name], typ=self.vector(typ) if kind == VARYING else typ
                )
            case Lane() if self.lane is not None:
                return AFFINE, self.lane
            case Const() | Var() | Lane():
                return UNIFORM, lw.expr(e)
            case Load(array=array, index=Var(name=name) as index, dtype=dtype) if (
                name in self.consecutive
            ):
                _, i = self.expr(index)

                def load(kind: str, at: ir.Value) -> ir.Value:
                    return self.load(array, dtype, kind, at)

                return VARYING, self.either(name, i, load)
            case Load(array=array, index=index, dtype=dtype):
                kind, i = self.expr(index)
                if kind == UNIFORM:
                    return UNIFORM, b.load(lw.address(array, i, dtype), typ=TYPES[dtype])
                return VARYING, self.load(array, dtype, kind, i)
            case Unary(op=op, operand=operand):
                kind, x = self.expr(operand)
                x = x if kind == UNIFORM else self.widen(kind, x)
                negate = b.fneg if dtype_of(operand) == F64 else b.neg
                result = negate(x) if op == "neg" else b.not_(x)
                return (UNIFORM if kind == UNIFORM else VARYING), result
            case Binary(op=op, lhs=lhs, rhs=rhs):
                (ka, x), (kb, y) = self.expr(lhs), self.expr(rhs)
                kind = _binary_kind(op, ka, kb)
                dtype = dtype_of(lhs)
                if kind == UNIFORM:
                    return UNIFORM, lw.binary(op, dtype, x, y)
                if kind == AFFINE:
                    return AFFINE, b.add(x, y) if op == "add" else b.sub(x, y)
                if op == "pow":
                    return VARYING, self.power((ka, x), (kb, y))
                return VARYING, lw.binary(op, dtype, self.widen(ka, x), self.widen(kb, y))
            case Cast(dtype=dtype, operand=operand):
                kind, x = self.expr(operand)
                frm = dtype_of(operand)
                if kind == UNIFORM or dtype == frm:
                    return kind, lw.cast(dtype, frm, x)
                return VARYING, lw.cast(dtype, frm, self.widen(kind, x))
            case Select(cond=cond, then=then, otherwise=otherwise):
                parts = [self.expr(x) for x in (cond, then, otherwise)]
                if all(k == UNIFORM for k, _ in parts):
                    return UNIFORM, b.select(*(x for _, x in parts))
                return VARYING, b.select(*(self.widen(k, x) for k, x in parts))
            case Call(fn=fn, args=args):
                parts = [self.expr(a) for a in args]
                if all(k == UNIFORM for k, _ in parts):
                    return UNIFORM, lw.call(fn, [x for _, x in parts])
                if fn == "exp" and lw.math != "libm":
                    return VARYING, vmath.exp_of(lw.math)(b, self.widen(*parts[0]))
                return VARYING, self.per_lane(parts, lambda *xs: lw.call(fn, list(xs)))
        raise NotVectorisable(f"expression {e!r}")

    def power(self, base: tuple[str, ir.Value], exponent: tuple[str, ir.Value]) -> ir.Value:
        """base ** exponent, the C library's pow lane by lane; where the exponent is the
        same in every lane and 1, the base itself (pow(x, 1) is x for every x, NaN, the
        infinities and -0 included: C's Annex F and an error under an ulp), no calls."""
        b, lw = self.b, self.lw

        def calls() -> ir.Value:
            return self.per_lane([base, exponent], lambda a, c: lw.binary("pow", F64, a, c))

        if exponent[0] != UNIFORM:
            return calls()
        one = b.fcmp_ordered("==", exponent[1], ir.Constant(exponent[1].type, 1.0))
        with b.if_else(one) as (then, otherwise):
            with then:
                same, same_block = self.widen(*base), b.block
            with otherwise:
                called, called_block = calls(), b.block
        result = b.phi(same.type)
        result.add_incoming(same, same_block)
        result.add_incoming(called, called_block)
        return result

    def per_lane(self, parts: list[tuple[str, ir.Value]], scalar) -> ir.Value:
        """A vector of scalar(*arguments of lane l) for each lane l."""
        result = None
        for lane in range(self.n):
            x = scalar(*(self.element(k, v, lane) for k, v in parts))
            if result is None:
                result = ir.Constant(self.vector(x.type), ir.Undefined)
            result = self.b.insert_element(result, x, ir.Constant(I32_T, lane))
        return result
