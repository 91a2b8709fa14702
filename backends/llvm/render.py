"""IR kernel -> LLVM IR (llvmlite), one function per kernel.

The function is `void @<kernel>(i64 lo, i64 hi, ptr slots)`, running lanes lo .. hi-1 (a
whole kernel is lo = 0; a compiled epoch runs one cell block's range). `slots` is an array
of 8-byte slots, one per kernel parameter in order (an array's address; a scalar's value: f64 bits,
or an integer), then for each stream one address per field and one address of an i64
record count. The semantics are the interpreter's ("as if the lanes ran one after
another"): an `If` is a branch, a `Loop` a loop, `AddTo` a load, add and store in lane
order. Where the lanes cannot see each other's writes they run as SIMD vectors, and a
parallel loop's iterations likewise (simd.py), with the same arithmetic; streams are
written lane-major. A lane's scratch (an array of space "lane:<regions>") is a buffer of
the call's own (malloc), each lane's region from its start: the lanes of a call run one
after another.

Math follows NumPy (the reference): min/max propagate NaN, `!=` is true for NaN, casts to
i32 truncate toward zero; transcendental functions are the C library's, except exp with
math="vector" (vmath.py).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from llvmlite import ir
from portneuron.ir import (
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
    Records,
    Select,
    Serial,
    Stmt,
    Store,
    Unary,
    Var,
    View,
    While,
    dtype_of,
)
from portneuron.ir.walk import rebuilt, statements, subexpressions, written

from ..base import profiling
from . import simd, vmath
from .llvm_types import BOOL_T, F64_T, I32_T, I64_T, PTR, TYPES, stored
from .philox import random123
from .vmath import like, type_like

#: IR operator -> llvmlite builder method, where one instruction does it.
_ARITHMETIC = {
    F64: {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"},
    I32: {"add": "add", "sub": "sub", "mul": "mul"},
}
_FCMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}
_ICMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_LIBM = {
    "exp", "expm1", "log", "log10", "sqrt", "fabs", "floor", "ceil", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "tanh", "atan2", "fmod", "pow",
}  # fmt: skip
#: The C library's functions that are not exactly rounded, called under names of their own
#: (`portneuron.pow` is the C library's pow): LLVM knows `pow`, `exp`, ... and rewrites calls
#: to them (pow(x, 2.0) into x*x, pow(2.0, x) into exp2(x)), which NEURON's mechanisms,
#: calling them through hoc_pow and the like, never do, and the bits then differ.
OPAQUE_LIBM = _LIBM - {"sqrt", "fabs", "floor", "ceil", "fmod"}


def libm_symbol(name: str) -> str:
    """The name generated code calls the C library's `name` by."""
    return f"portneuron.{name}" if name in OPAQUE_LIBM else name


class LowerError(Exception):
    """A kernel this backend cannot compile (an internal limit, not a user error)."""


class _Lowering:
    def __init__(self, module: ir.Module, kernel: Kernel, math: str = "libm") -> None:
        self.module, self.kernel, self.math = module, kernel, math
        signature = ir.FunctionType(ir.VoidType(), [I64_T, I64_T, PTR])
        self.fn = ir.Function(module, signature, kernel.name)
        self.fn.args[0].name, self.fn.args[1].name, self.fn.args[2].name = "lo", "hi", "slots"
        entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(entry)
        self.vars: dict[str, ir.AllocaInstr] = {}
        self.params: dict[str, ir.Value] = {}
        self._hoisted: dict[int, tuple] = {}  # calls made once a call: (value, made)
        self._hoisting = False
        self._names: tuple | None = None  # `_scope`
        self.streams: dict[str, tuple[list[ir.Value], ir.Value, tuple]] = {}
        slot = 0
        slots = self.fn.args[2]
        for p in kernel.params:
            address = self.b.gep(slots, [ir.Constant(I64_T, slot)], source_etype=I64_T)
            slot += 1
            if p.is_array:
                self.params[p.name] = self.b.load(address, typ=PTR, name=p.name)
                continue
            if p.dtype == F64:
                value = self.b.load(address, typ=F64_T)
            else:
                value = self.b.trunc(self.b.load(address, typ=I64_T), TYPES[p.dtype])
            # a scalar lives in a variable like any other (a kernel may assign it)
            self.vars[p.name] = self.b.alloca(TYPES[p.dtype], name=p.name)
            self.b.store(value, self.vars[p.name])
        for s in kernel.streams:
            fields = []
            for _ in s.fields:
                address = self.b.gep(slots, [ir.Constant(I64_T, slot)], source_etype=I64_T)
                fields.append(self.b.load(address, typ=PTR))
                slot += 1
            address = self.b.gep(slots, [ir.Constant(I64_T, slot)], source_etype=I64_T)
            count = self.b.load(address, typ=PTR)
            slot += 1
            self.streams[s.name] = (fields, count, s.fields)
        self.entry_builder = ir.IRBuilder(entry)
        self.lane: ir.Value | None = None
        self.callees: dict[int, tuple[Kernel, ir.Function]] = {}  # launched, by id

    # ------------------------------------------------------------------ helpers
    def var(self, name: str, dtype: DType) -> ir.AllocaInstr:
        if name not in self.vars:
            with self.b.goto_entry_block():
                self.vars[name] = self.b.alloca(TYPES[dtype], name=name)
        return self.vars[name]

    def libm(self, name: str, nargs: int) -> ir.Function:
        symbol = libm_symbol(name)
        fn = self.module.globals.get(symbol)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(F64_T, [F64_T] * nargs), symbol)
            fn.attributes.add("nounwind")
            fn.attributes.add("readnone")  # no effect that matters: calls may be shared
        return fn

    # ------------------------------------------------------------------ the kernel
    def lower(self, vectorise: bool = True) -> None:
        b = self.b
        lo, hi = self.fn.args[0], self.fn.args[1]
        scratch = [p for p in self.kernel.params if p.regions is not None]
        self.scratch = {p.name: (p, self.scratch_buffer(p)) for p in scratch}
        counter = self.var("pn.lane", I32)
        b.store(b.trunc(lo, I32_T), counter)
        analysis = simd.lane_analysis(self.kernel) if vectorise and not scratch else None
        if analysis is not None:  # whole vectors of lanes first
            width = ir.Constant(I32_T, simd.KERNEL_LANES)
            self.counted_loop(
                counter,
                lambda lane: b.icmp_signed("<=", b.sext(b.add(lane, width), I64_T), hi),
                lambda lane: simd.lower_lanes(self, analysis, lane),
                simd.KERNEL_LANES,
                "vector",
            )
            lane = b.load(counter, typ=I32_T)  # the rest, fewer than a vector: one masked
            left = b.trunc(b.sub(hi, b.sext(lane, I64_T)), I32_T)
            if not analysis.consecutive_only:  # (else the lane loop below)
                with b.if_then(b.icmp_signed(">", left, ir.Constant(I32_T, 0))):
                    whole = b.icmp_signed(">=", b.sub(hi, lo), ir.Constant(I64_T, width.constant))
                    with b.if_else(whole) as (after_vectors, alone):
                        with after_vectors:
                            start = b.trunc(b.sub(hi, ir.Constant(I64_T, width.constant)), I32_T)
                            simd.lower_overlapped_tail(self, analysis, start, left)
                        with alone:
                            simd.lower_tail(self, analysis, lane, left)
                    b.store(b.trunc(hi, I32_T), counter)
        self.counted_loop(
            counter,
            lambda lane: b.icmp_signed("<", b.sext(lane, I64_T), hi),
            self.lane_body,
            1,
            "lane",
        )
        for _, buffer in self.scratch.values():
            b.call(self.c_function("free", ir.VoidType(), [PTR]), [buffer])
        b.ret_void()

    def lane_body(self, lane: ir.Value) -> None:
        self.lane = lane
        for name, (p, buffer) in self.scratch.items():  # the lane's region, at its start
            start = self.b.load(self.address(p.regions, lane, I32), typ=I32_T)
            offset = self.b.neg(self.b.sext(start, I64_T))
            self.params[name] = self.b.gep(buffer, [offset], source_etype=TYPES[p.dtype])
        self.block(self.kernel.body)

    def scratch_buffer(self, p) -> ir.Value:
        """Storage of this call's own for lane scratch `p` (the caller's array keeps none
        of the values): as long as the largest region of lanes lo .. hi - 1, which run one
        after another here, each in it from its start (freed at the end)."""
        b = self.b
        largest = self.var(f"pn.{p.name}.largest", I32)
        b.store(ir.Constant(I32_T, 0), largest)
        counter = self.var(f"pn.{p.name}.lane", I32)
        b.store(b.trunc(self.fn.args[0], I32_T), counter)

        def size(lane: ir.Value) -> None:
            region = [
                self.address(p.regions, k, I32) for k in (lane, b.add(lane, ir.Constant(I32_T, 1)))
            ]
            lo, hi = (b.load(at, typ=I32_T) for at in region)
            n = b.sub(hi, lo)
            most = b.load(largest, typ=I32_T)
            b.store(b.select(b.icmp_signed(">", n, most), n, most), largest)

        def more(lane: ir.Value) -> ir.Value:
            return b.icmp_signed("<", b.sext(lane, I64_T), self.fn.args[1])

        self.counted_loop(counter, more, size, 1, f"{p.name}.size")
        count = b.sext(b.load(largest, typ=I32_T), I64_T)
        nbytes = b.mul(count, ir.Constant(I64_T, 8 if p.dtype == F64 else 4))
        return b.call(self.c_function("malloc", PTR, [I64_T]), [nbytes])

    def c_function(self, name: str, result: ir.Type, args: list[ir.Type]) -> ir.Function:
        """The C library's function `name`, declared in this module once."""
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(result, args), name)
        return fn

    def counted_loop(self, counter, more, body, step: int, name: str) -> None:
        """while more(k): body(k); k += step, for the i32 k in the variable `counter`."""
        b = self.b
        head = self.fn.append_basic_block(f"{name}.head")
        inner = self.fn.append_basic_block(f"{name}.body")
        done = self.fn.append_basic_block(f"{name}.done")
        b.branch(head)
        b.position_at_end(head)
        b.cbranch(more(b.load(counter, typ=I32_T)), inner, done)
        b.position_at_end(inner)
        body(b.load(counter, typ=I32_T))
        b.store(b.add(b.load(counter, typ=I32_T), ir.Constant(I32_T, step)), counter)
        b.branch(head)
        b.position_at_end(done)

    def block(self, body: tuple[Stmt, ...]) -> None:
        for s in body:
            self.stmt(s)

    def element(self, array: str, index: Expr, dtype: DType) -> ir.Value:
        return self.address(array, self.expr(index), dtype)

    def address(self, array: str, index: ir.Value, dtype: DType) -> ir.Value:
        """The address of array[index] for an i32 index."""
        i = self.b.sext(index, I64_T)
        return self.b.gep(self.params[array], [i], source_etype=TYPES[dtype])

    def array_dtype(self, name: str) -> DType:
        return next(p.dtype for p in self.kernel.params if p.name == name)

    def stmt(self, s: Stmt) -> None:
        b = self.b
        match s:
            case Assign(name=name, value=value):
                b.store(self.expr(value), self.var(name, dtype_of(value)))
            case Store(array=array, index=index, value=value):
                dtype = self.array_dtype(array)
                b.store(stored(b, self.expr(value), dtype), self.element(array, index, dtype))
            case AddTo(array=array, index=index, value=value):
                dtype = self.array_dtype(array)
                at = self.element(array, index, dtype)
                old = b.load(at, typ=TYPES[dtype])
                new = self.expr(value)
                b.store(b.fadd(old, new) if dtype == F64 else b.add(old, new), at)
            case If(cond=cond, then=then, otherwise=otherwise):
                c = self.expr(cond)
                with b.if_else(c) as (on, off):
                    with on:
                        self.block(then)
                    with off:
                        self.block(otherwise)
            case Loop(parallel=True) if simd.lower_parallel(self, s):
                pass
            case Loop(var=var, start=start, stop=stop, body=body, step=step):
                k = self.var(var, I32)
                b.store(self.expr(start), k)
                last = self.expr(stop)
                self.counted_loop(
                    k,
                    lambda now: b.icmp_signed("<" if step > 0 else ">", now, last),
                    lambda _: self.block(body),
                    step,
                    var,
                )
            case While(cond=cond, body=body):
                head = self.fn.append_basic_block("while.head")
                inner = self.fn.append_basic_block("while.body")
                done = self.fn.append_basic_block("while.done")
                b.branch(head)
                b.position_at_end(head)
                b.cbranch(self.expr(cond), inner, done)
                b.position_at_end(inner)
                self.block(body)
                b.branch(head)
                b.position_at_end(done)
            case Serial(body=body):  # one thread a lane here
                self.block(body)
            case Launch():
                self.launch(s)
            case Emit(stream=stream, values=values):
                fields, count, types = self.streams[stream]
                n = b.load(count, typ=I64_T)
                for address, value, (_, dtype) in zip(fields, values, types):
                    at = b.gep(address, [n], source_etype=TYPES[dtype])
                    b.store(self.expr(value), at)
                b.store(b.add(n, ir.Constant(I64_T, 1)), count)
            case _:
                raise LowerError(f"cannot lower statement {s!r}")

    def launch(self, s: Launch) -> None:
        """A direct call of the launched kernel (lowered once into this module, internal,
        so LLVM may inline it) over lanes lo .. hi - 1, its argument slots on the stack:
        a View's address, a scalar's value, a stream's buffers (the caller's, or for
        Records the views' addresses and a count that is copied in and out)."""
        b, callee = self.b, s.kernel
        function = self.launched(callee)
        n = len(callee.params) + sum(len(x.fields) + 1 for x in callee.streams)
        with b.goto_entry_block():
            slots = b.alloca(I64_T, size=n, name=f"{callee.name}.slots")
        bound = dict(s.bind)
        k = 0

        def slot(value: ir.Value) -> None:  # every slot holds 8 bytes, as fill_slots writes
            nonlocal k
            if value.type == F64_T:
                value = b.bitcast(value, I64_T)
            elif value.type != I64_T:
                value = b.ptrtoint(value, I64_T)
            b.store(value, b.gep(slots, [ir.Constant(I64_T, k)], source_etype=I64_T))
            k += 1

        def view(v: View, dtype: DType) -> ir.Value:
            return self.address(v.array, self.expr(v.offset), dtype)

        for p in callee.params:
            value = bound[p.name]
            if p.is_array:
                slot(view(value, p.dtype))
            elif p.dtype == F64:
                slot(self.expr(value))
            else:
                slot(
                    b.sext(self.expr(value), I64_T)
                    if p.dtype == I32
                    else b.zext(self.expr(value), I64_T)
                )
        counts = []
        for stream in callee.streams:
            records = bound.get(stream.name)
            if isinstance(records, Records):
                for v, (_, dtype) in zip(records.fields, stream.fields):
                    slot(view(v, dtype))
                at = view(records.count, I32)
                with b.goto_entry_block():
                    count = b.alloca(I64_T, name=f"{stream.name}.count")
                b.store(b.sext(b.load(at, typ=I32_T), I64_T), count)
                slot(count)
                counts.append((count, at))
            else:  # the caller's own stream
                fields, count, _ = self.streams[stream.name]
                for field in fields:
                    slot(field)
                slot(count)
        lo, hi = b.sext(self.expr(s.lo), I64_T), b.sext(self.expr(s.hi), I64_T)
        b.call(function, [lo, hi, slots])
        for count, at in counts:
            b.store(b.trunc(b.load(count, typ=I64_T), I32_T), at)

    def launched(self, callee: Kernel) -> ir.Function:
        """The function of a launched kernel, lowered into this module once."""
        cache = self.callees
        if id(callee) not in cache:
            name = f"{self.kernel.name}.{callee.name}.{len(cache)}"
            lower_kernel(self.module, dataclasses.replace(callee, name=name), self.math)
            function = self.module.globals[name]
            function.linkage = "internal"
            if profiling():
                function.attributes.add("noinline")
            cache[id(callee)] = (callee, function)
        return cache[id(callee)][1]

    # ------------------------------------------------------------------ hoisting
    def _scope(self) -> tuple[set[str], set[str], dict[str, Expr]]:
        """The kernel's scalars, the arrays it does not write, and the locals its body
        assigns once, first thing, an invariant value (as kca.mod's q10 = global.q10)."""
        if self._names is None:
            kernel = self.kernel
            scalars = {p.name for p in kernel.params if not p.is_array}
            unwritten = {p.name for p in kernel.params if p.is_array} - written(kernel.body)
            defined: dict[str, Expr] = {}
            self._names = scalars, unwritten, defined  # `invariant` reads it as it grows
            assigned = Counter(s.name for s in statements(kernel.body) if isinstance(s, Assign))
            for s in kernel.body:  # in order: a local's value reads the locals before it
                if isinstance(s, Assign) and assigned[s.name] == 1 and self.invariant(s.value):
                    defined[s.name] = s.value
        return self._names

    def invariant(self, e: Expr) -> bool:
        """Whether `e` is the same all through the kernel's call: of its scalar parameters
        (which it cannot assign), constants, elements of arrays it does not write (a
        GLOBAL's, as celsius) and such locals, lowered without branches (no exp of the
        vector math, no random123)."""
        scalars, unwritten, defined = self._scope()
        for x in subexpressions(e):
            match x:
                case Var(name=name) if name not in scalars and name not in defined:
                    return False
                case Load(array=array) if array not in unwritten:
                    return False
                case Lane() | Call(fn="random123"):
                    return False
                case Call(fn="exp") if self.math != "libm":
                    return False
        return True

    def hoists(self, e: Expr) -> bool:
        """Whether `e` is a call of the C library (pow, log, ...) on invariant values, as
        NEURON's tadj = q10^((celsius - temp)/10): made once a call, where the kernel
        first needs it, not for every lane (the same operations: the same bits)."""
        call = isinstance(e, Call) or (isinstance(e, Binary) and e.op == "pow")
        return call and not self._hoisting and self.invariant(e)

    def once(self, e: Expr) -> ir.Value:
        """`e`'s value (`hoists`): computed where the call first reaches it, kept for the
        rest of the call. Not in the entry block: under a branch the call does not take
        (hh2.mod's rates, which a TABLE replaces) it is never computed."""
        b = self.b
        if id(e) not in self._hoisted:
            with b.goto_entry_block():
                slot = b.alloca(TYPES[dtype_of(e)])
                done = b.alloca(BOOL_T)
                b.store(ir.Constant(BOOL_T, 0), done)
            self._hoisted[id(e)] = (slot, done)
        slot, done = self._hoisted[id(e)]
        with b.if_then(b.not_(b.load(done, typ=BOOL_T)), likely=False):
            self._hoisting = True
            try:
                b.store(self.expr(self.expanded(e)), slot)
            finally:
                self._hoisting = False
            b.store(ir.Constant(BOOL_T, 1), done)
        return b.load(slot, typ=slot.allocated_type)

    def expanded(self, e: Expr) -> Expr:
        """`e` with the invariant locals it reads replaced by their values (which the entry
        block, before any lane assigns them, computes again)."""
        defined = self._scope()[2]
        if isinstance(e, Var) and e.name in defined:
            return self.expanded(defined[e.name])
        return rebuilt(e, self.expanded)

    # ------------------------------------------------------------------ expressions
    def expr(self, e: Expr) -> ir.Value:
        b = self.b
        if self.hoists(e):
            return self.once(e)
        match e:
            case Const(value=value, dtype=dtype):
                if dtype == F64:
                    return ir.Constant(F64_T, float(value))
                return ir.Constant(TYPES[dtype], int(value))
            case Var(name=name, dtype=dtype):
                return b.load(self.vars[name], typ=TYPES[dtype])
            case Lane():
                assert self.lane is not None
                return self.lane
            case Load(array=array, index=index, dtype=dtype):
                return b.load(self.element(array, index, dtype), typ=TYPES[dtype])
            case Unary(op="neg", operand=operand):
                x = self.expr(operand)
                return b.fneg(x) if dtype_of(operand) == F64 else b.neg(x)
            case Unary(operand=operand):
                return b.not_(self.expr(operand))
            case Binary(op=op, lhs=lhs, rhs=rhs):
                return self.binary(op, dtype_of(lhs), self.expr(lhs), self.expr(rhs))
            case Call(fn=fn, args=args):
                return self.call(fn, [self.expr(a) for a in args])
            case Select(cond=cond, then=then, otherwise=otherwise):
                return b.select(self.expr(cond), self.expr(then), self.expr(otherwise))
            case Cast(dtype=dtype, operand=operand):
                return self.cast(dtype, dtype_of(operand), self.expr(operand))
        raise LowerError(f"cannot lower expression {e!r}")

    def call(self, fn: str, values: list[ir.Value]) -> ir.Value:
        """A math intrinsic on scalars (exp with math="vector" also on vectors)."""
        if fn == "random123":
            return random123(self, values)
        if fn == "exp" and self.math != "libm":
            return vmath.exp_of(self.math)(self.b, values[0])
        if fn not in _LIBM:
            raise LowerError(f"no lowering for {fn}")
        return self.b.call(self.libm(fn, len(values)), values)

    def cast(self, to: DType, frm: DType, x: ir.Value) -> ir.Value:
        """Cast a scalar or a vector."""
        b = self.b
        if to == frm:
            return x
        i32, f64 = type_like(x, I32_T), type_like(x, F64_T)
        if to == I32:
            return b.fptosi(x, i32) if frm == F64 else b.zext(x, i32)
        if to == F64:
            return b.sitofp(x, f64) if frm == I32 else b.uitofp(x, f64)
        if frm == F64:  # to bool: nonzero, NaN included
            return b.fcmp_unordered("!=", x, like(x, 0.0))
        return b.icmp_signed("!=", x, like(x, 0, I32_T))

    def binary(self, op: str, dtype: DType, x: ir.Value, y: ir.Value) -> ir.Value:
        """`op` on two scalars or two vectors of `dtype` (pow: scalars only)."""
        b = self.b
        if op in _ARITHMETIC.get(dtype, {}):
            return getattr(b, _ARITHMETIC[dtype][op])(x, y)
        if dtype == F64:
            match op:
                case "pow":
                    return b.call(self.libm("pow", 2), [x, y])
                case "min" | "max":  # NumPy: a NaN on either side wins
                    pick = b.fcmp_ordered("<" if op == "min" else ">", x, y)
                    best = b.select(pick, x, y)
                    return b.select(b.fcmp_unordered("uno", x, x), x, best)
                case "ne":
                    return b.fcmp_unordered("!=", x, y)
                case _ if op in _FCMP:
                    return b.fcmp_ordered(_FCMP[op], x, y)
        elif dtype == I32:
            match op:
                case "min" | "max":
                    pick = b.icmp_signed("<" if op == "min" else ">", x, y)
                    return b.select(pick, x, y)
                case _ if op in _ICMP:
                    return b.icmp_signed(_ICMP[op], x, y)
        else:
            match op:
                case "and":
                    return b.and_(x, y)
                case "or":
                    return b.or_(x, y)
                case "eq":
                    return b.icmp_unsigned("==", x, y)
                case "ne":
                    return b.icmp_unsigned("!=", x, y)
        raise LowerError(f"no lowering for {op} on {dtype}")


def lower_kernel(
    module: ir.Module, kernel: Kernel, math: str = "libm", vectorise: bool = True
) -> None:
    """Add `kernel` to `module` as a function of the same name. `math` "libm" calls the C
    library's exp; "vector" uses vmath.exp (arithmetic only, vectorisable). Without
    `vectorise` the lanes run one by one (smaller code, for kernels that run once)."""
    _Lowering(module, kernel, math).lower(vectorise)
