"""IR kernel -> CUDA C, one `extern "C" __global__` function per kernel.

The function is `NAME(long long lo, long long hi, ...)`, running lanes lo .. hi-1: one
thread per lane, `lane = lo + blockIdx.x * blockDim.x + threadIdx.x`, or one thread per
lane and parallel-loop iteration for the kernels mapping.py splits (the interleaved
Hines solve: one thread per cell). After lo and hi come the kernel's parameters in order:
a scalar by value (`double`, `int`, `bool`), an array as a `__restrict__` pointer, `const`
where the kernel never writes it. Then, for each stream as in the llvm backend's slots,
one pointer per field and the record count (`unsigned long long*`), with one more field
before the count: `order` (`long long*`), each record's place in lane order.

The semantics are the interpreter's, statement for statement, in double precision:

- an `If` is a branch, a `Loop` a `for` whose bound is evaluated once, before it; an
  assignment to a local whose value nothing uses is left out (it computes nothing, and
  nvcc warns about the variable);
- `AddTo` is `atomicAdd` (sm_60 and later for doubles) unless every write to the array is
  at the lane's own element, where no two lanes meet and a plain `+=` is exact; where
  lanes do meet, they add in the order they arrive, not in lane order, so such sums may
  differ from the interpreter's in the last bits;
- `Emit` takes a slot with `atomicAdd` on the stream's count, so records arrive in any
  order; `order` = lane * (emits of the stream) + (which emit statement it is), and the
  host sorts by it, which gives the interpreter's order (lane by lane, statement order
  within a lane: an emit never runs in a loop);
- math is CUDA's double-precision device functions (exp, log, pow, ...: within 1-2 ulp,
  not bit-equal to the C library's), except min/max, which follow NumPy (a NaN on either
  side wins); comparisons are C's, which are NumPy's (NaN != x, NaN compares false);
- casts to int truncate toward zero; bools cast to 0 or 1;
- `&&`, `||` and `?:` evaluate only the side they need; IR expressions have no side
  effects, so all that is skipped is work whose result is discarded;
- compile with `--fmad=false`: nvcc would otherwise fuse a*b + c into one rounding, where
  the interpreter, and NEURON, round twice.

A kernel that launches others (an epoch driver, portneuron/sim/driver.py) runs one CUDA
block a lane (`_Driver`); each kernel it launches is a `static __device__ void NAME(long
long lo, long long hi, unsigned thread, unsigned threads, ...)` (the same parameters after
those), called by every thread of the block: thread `thread` of `threads` runs lanes
lo + thread, lo + thread + threads, ...; a split kernel's lanes run one after another, each
on threads 0 .. w-1, which must lie in one warp (w divides 32). Its streams go to the
caller's arrays (Records): a pointer per field, from the caller's count on, and the count
(`int*`), which the records take their slots from. An array passed without `__restrict__`
(`plain`) is one another parameter also views, or one it only reads that other code writes
while the driver runs: nvcc reads a `const __restrict__` array through the read-only
(non-coherent) cache, which may keep values from before such a write.

What CUDA C spells its own way (qualifiers, thread indices, barriers, atomics, 64-bit
types, how a kernel gets its arrays) comes from a `Dialect`; OpenCL C is another
(backends/opencl/render.py), which the same renderer writes for the opencl backend.

Integer overflow wraps in NumPy and is undefined in C; kernels index arrays of fewer than
2**31 elements and never overflow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Set

from portneuron.ir import (
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
    verify_kernel,
    walk,
)
from portneuron.ir.walk import own_expressions, subexpressions

from .helpers import HELPERS
from .mapping import (
    ThreadMapping,
    UnsupportedKernel,
    emits_per_lane,
    lane_private_arrays,
    outer_parallel_loops,
    thread_mapping,
    written_arrays,
)
from .names import Names, sanitize

#: (an f32 array's element: C rounds the double stored to it to the nearest float)
C_TYPES = {F64: "double", I32: "int", BOOL: "bool", F32: "float"}
_INFIX = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">",
    "ge": ">=", "eq": "==", "ne": "!=", "and": "&&", "or": "||",
}  # fmt: skip
INDENT = "    "

# Precedence classes of a rendered expression, tightest first. C would need parentheses
# only for a looser class inside a tighter one; the source also puts them around a prefix
# operator or a negative constant inside an infix one, as the IR printer does.
ATOM, CAST, PREFIX, INFIX, TERNARY = range(5)


class Dialect:
    """How CUDA C spells what the renderer writes. Another dialect of C for GPUs (OpenCL C:
    backends/opencl/render.py) is a subclass that spells it its own way."""

    name = "cuda"
    #: Lines that open the source file.
    prelude: tuple[str, ...] = ()
    #: A function the host launches, one a driver calls, a helper's qualifiers.
    entry = 'extern "C" __global__ void'
    function = "static __device__ void"
    inline = "static __device__ __forceinline__"
    i64, u64, ull, restrict = "long long", "unsigned long long", "ull", "__restrict__"
    #: A split lane's threads, where their count divides this, wait for each other alone
    #: (`__syncwarp`); else a split lane is a block of its own (mapping.py).
    warp = 32
    #: This thread in the grid; in its block; its block; the threads of a block.
    global_id = "(long long)blockIdx.x * blockDim.x + threadIdx.x"
    local_id, group_id, group_size = "threadIdx.x", "blockIdx.x", "blockDim.x"
    block_barrier = "__syncthreads();"
    #: Leading parameters of a function the host launches.
    entry_params: tuple[str, ...] = ()
    #: The helper that adds a double atomically, if the dialect has no such built-in.
    atomic_helper: str | None = None
    helpers = HELPERS

    def element(self, dtype: DType) -> str:
        """The C type of an array's elements and of a scalar parameter."""
        return C_TYPES[dtype]

    def pointer(self, c_type: str, const: bool = False, restrict: bool = False) -> str:
        """A pointer type to `c_type`, spelled to precede a parameter's name."""
        return f"{'const ' if const else ''}{c_type}* {self.restrict + ' ' if restrict else ''}"

    def entry_array(self, names: Names, c_name: str, pointer: str) -> tuple[str, str | None]:
        """An array parameter `c_name` of type `pointer` in a function the host launches:
        its declaration, and the line that derives it at the top of the body, if any."""
        return pointer + c_name, None

    def address(self, pointer: str, word: str) -> str:
        """A table's word (a device address) as a `pointer`."""
        return f"({pointer.strip()}){word}"

    def as_double(self, word: str) -> str:
        return f"__longlong_as_double((long long){word})"

    def atomic_add(self, at: str, x: str) -> str:
        return f"atomicAdd(&{at}, {x});"

    def take_slot(self, count: str, wide: bool) -> str:
        """The old value of the record count `count` (int*, or 64-bit where `wide`) after
        adding 1 to it atomically."""
        return f"atomicAdd({count}, {'1ull' if wide else '1'})"

    def bounds(self, threads: int) -> str:
        """What declares a driver's threads per block, before its name."""
        return f"__launch_bounds__({threads}) "

    def helper(self, name: str) -> str:
        return self.helpers[name].format(inline=self.inline, u64=self.u64, ull=self.ull)


CUDA = Dialect()


def kernel_source(
    kernel: Kernel, name: str | None = None, block: int | None = None, dialect: Dialect = CUDA
) -> str:
    """CUDA C for `kernel` as function `name` (default: the kernel's name), with the helper
    functions it needs: a complete source file. `block`: the threads of a CUDA block, where
    the kernel launches others (a driver: see `_Driver`)."""
    return module_source([(kernel, name)], block, dialect)


def module_source(
    kernels: Iterable[tuple[Kernel, str | None]],
    block: int | None = None,
    dialect: Dialect = CUDA,
) -> str:
    """One source file holding several kernels (names must differ), helpers once."""
    rendered: list[_Kernel] = []
    for kernel, name in kernels:
        kernel = verify_kernel(kernel)
        if any(isinstance(s, Launch) for s in walk.statements(kernel.body)):
            rendered.append(_Driver(kernel, name, block, dialect))
        else:
            rendered.append(_Kernel(kernel, name, dialect))
    helpers = sorted(set().union(*(r.helpers for r in rendered)))
    parts = [*dialect.prelude, *(dialect.helper(h) for h in helpers), *(r.text for r in rendered)]
    return "\n".join(parts)


def signature(
    kernel: Kernel,
    names: Names,
    plain: Set[str] = frozenset(),
    device: bool = False,
    dialect: Dialect = CUDA,
    derived: list[str] | None = None,
) -> list[str]:
    """The parameter declarations after lo and hi (module docstring); arrays in `plain`
    without `__restrict__`; with `device`, a stream is its fields and an `int` count.
    Lines that derive a parameter at the top of the body go into `derived`."""
    written = written_arrays(kernel)
    out = []

    def array(c_name: str, pointer: str) -> None:
        if device:
            out.append(pointer + c_name)
            return
        declaration, line = dialect.entry_array(names, c_name, pointer)
        out.append(declaration)
        if line is not None and derived is not None:
            derived.append(line)

    for p in kernel.params:
        c_name = names(("param", p.name), p.name)
        if not p.is_array:
            out.append(f"{dialect.element(p.dtype)} {c_name}")
            continue
        const, restrict = p.name not in written, p.name not in plain
        array(c_name, dialect.pointer(dialect.element(p.dtype), const, restrict))
    for s in kernel.streams:
        for field, dtype in s.fields:
            c_name = names(("stream", s.name, field), f"{s.name}_{field}")
            array(c_name, dialect.pointer(dialect.element(dtype), restrict=True))
        if device:
            out.append(dialect.pointer("int") + names(("count", s.name), f"{s.name}_count"))
            continue
        array(
            names(("order", s.name), f"{s.name}_order"), dialect.pointer(dialect.i64, False, True)
        )
        array(names(("count", s.name), f"{s.name}_count"), dialect.pointer(dialect.u64))
    return out


class _Kernel:
    """Renders one kernel; `text` is its source, `helpers` the helper functions it calls."""

    def __init__(
        self,
        kernel: Kernel,
        name: str | None,
        dialect: Dialect = CUDA,
        device: bool = False,
        plain=frozenset(),
    ) -> None:
        self.kernel, self.device, self.dialect = kernel, device, dialect
        self.name = sanitize(name or kernel.name)
        self.mapping: ThreadMapping = thread_mapping(kernel, dialect.warp)
        self.split = (
            {id(loop) for loop in outer_parallel_loops(kernel.body)}
            if self.mapping.threads_per_lane > 1
            else set()
        )
        self.private = lane_private_arrays(kernel)
        self.emits = emits_per_lane(kernel)
        self.emitted = dict.fromkeys(self.emits, 0)
        self.helpers: set[str] = set()
        self.names = Names()
        self.derived: list[str] = []  # lines deriving parameters (Dialect.entry_array)
        self.params = signature(kernel, self.names, plain, device, dialect, self.derived)
        self.scalars = {p.name for p in kernel.params if not p.is_array}
        self.read = live_variables(kernel.body)
        self.locals: dict[str, str] = {}  # C name -> C type, in order of appearance
        self.lines: list[str] = []
        self.depth = 1
        self.uses_lane = False
        self.block(kernel.body, ())
        self.text = self.assemble()

    # ------------------------------------------------------------------ layout
    def assemble(self) -> str:
        k, m = self.kernel, self.mapping
        head = [f"// {k.name}: {k.doc}" if k.doc else f"// {k.name}", f"// lanes: {k.lanes}"]
        if self.device:
            head.append(
                "// lanes lo .. hi-1, "
                + (
                    f"each on threads 0 .. {m.threads_per_lane - 1}, one after another"
                    if m.threads_per_lane > 1
                    else "thread `thread` of `threads` taking every threads-th"
                )
            )
        elif m.threads_per_lane > 1:
            head.append(
                f"// {m.threads_per_lane} threads per lane, one per iteration of its parallel "
                f"loops; launch with blockDim.x "
                + ("a multiple of " if m.barrier == "__syncwarp" else "= ")
                + str(m.threads_per_lane)
            )
        elif m.reason:
            head.append(f"// one thread per lane; the parallel loops run in it: {m.reason}")
        else:
            head.append("// one thread per lane")
        if self.device:
            return self.assemble_device(head)
        d = self.dialect
        params = [*d.entry_params, f"{d.i64} lo", f"{d.i64} hi", *self.params]
        params = ",\n".join(INDENT + p for p in params)
        out = [*head, f"{d.entry} {self.name}(\n{params})", "{"]
        out += [INDENT + line for line in self.derived + self.preamble()]
        out += [f"{INDENT}{c_type} {name};" for name, c_type in self.locals.items()]
        out += self.lines
        out.append("}")
        return "\n".join(out) + "\n"

    def assemble_device(self, head: list[str]) -> str:
        """The kernel as a device function (the module docstring)."""
        w, d = self.mapping.threads_per_lane, self.dialect
        params = [f"{d.i64} lo", f"{d.i64} hi", "unsigned thread", "unsigned threads"]
        params = ",\n".join(INDENT + p for p in [*params, *self.params])
        out = [*head, f"{d.function} {self.name}(\n{params})", "{"]
        out += [f"{INDENT}{c_type} {name};" for name, c_type in self.locals.items()]
        if w == 1:
            out.append(
                f"{INDENT}for ({d.i64} index = lo + thread; index < hi; index += threads) {{"
            )
        elif self.mapping.barrier != "__syncwarp":  # every thread of the block at each barrier
            out += [
                f"{INDENT}const int iteration = (int)thread;  // from {w} on: no iteration",
                f"{INDENT}for ({d.i64} index = lo; index < hi; index++) {{",
            ]
        else:
            bits = "0xffffffffu" if w == 32 else f"{hex((1 << w) - 1)}u"
            out += [
                f"{INDENT}if (thread >= {w}) {{",
                f"{INDENT * 2}return;",
                f"{INDENT}}}",
                f"{INDENT}const int iteration = (int)thread;",
                f"{INDENT}const unsigned group = {bits};  // the lane's threads: the warp's first",
                f"{INDENT}for ({d.i64} index = lo; index < hi; index++) {{",
            ]
        if self.uses_lane:
            out.append(f"{INDENT * 2}const int lane = (int)index;")
        out += [INDENT + line for line in self.lines]
        out += [f"{INDENT}}}", "}"]
        return "\n".join(out) + "\n"

    def preamble(self) -> list[str]:
        w, d = self.mapping.threads_per_lane, self.dialect
        lane = ["const int lane = (int)index;"] if self.uses_lane else []
        if w == 1:
            return [
                f"const {d.i64} index = lo + {d.global_id};",
                "if (index >= hi) {",
                f"{INDENT}return;",
                "}",
                *lane,
            ]
        lines = [
            f"const {d.i64} thread = {d.global_id};",
            f"const {d.i64} index = lo + thread / {w};",
            "if (index >= hi) {",
            f"{INDENT}return;  // the lane's threads return together",
            "}",
            *lane,
            f"const int iteration = (int)(thread % {w});",
        ]
        if self.mapping.barrier == "__syncwarp":
            bits = (
                "0xffffffffu" if w == 32 else f"{hex((1 << w) - 1)}u << ({d.local_id} & {32 - w}u)"
            )
            lines.append(f"const unsigned group = {bits};  // this lane's threads in the warp")
        return lines

    def emit_line(self, text: str) -> None:
        self.lines.append(INDENT * self.depth + text)

    def local(self, name: str, dtype: DType, key: object = None) -> str:
        """The C name of local `name` (or of `key`, a variable of the source's own),
        declared at the top of the function."""
        c_name = self.names(("local", name) if key is None else key, name)
        self.locals.setdefault(c_name, C_TYPES[dtype])
        return c_name

    def barrier(self) -> str:
        if self.mapping.barrier == "__syncwarp":
            return "__syncwarp(group);"
        return self.dialect.block_barrier

    # ------------------------------------------------------------------ statements
    def block(self, body: tuple[Stmt, ...], loops: tuple[str, ...]) -> None:
        for s in body:
            self.stmt(s, loops)

    def nested(self, body: tuple[Stmt, ...], loops: tuple[str, ...]) -> None:
        self.depth += 1
        self.block(body, loops)
        self.depth -= 1

    def stmt(self, s: Stmt, loops: tuple[str, ...]) -> None:
        match s:
            case Assign(name=name, value=value):
                if name in self.read:
                    self.emit_line(f"{self.local(name, dtype_of(value))} = {self.top(value)};")
            case Store(array=array, index=index, value=value):
                self.emit_line(f"{self.element(array, index)} = {self.top(value)};")
            case AddTo(array=array, index=index, value=value):
                at, x = self.element(array, index), self.top(value)
                if array in self.private:  # no other lane writes this element
                    self.emit_line(f"{at} += {x};")
                else:
                    self.emit_line(self.dialect.atomic_add(at, x))
                    if self.dialect.atomic_helper:
                        self.helpers.add(self.dialect.atomic_helper)
            case If():
                self.if_(s, loops, "if")
            case Loop(parallel=True) if id(s) in self.split:
                self.split_loop(s, loops)
            case Loop():
                self.loop(s, loops)
            case While(cond=cond, body=body):
                self.emit_line(f"while ({self.top(cond)}) {{")
                self.nested(body, loops)
                self.emit_line("}")
            case Emit():
                self.emit(s)
            case _:
                raise UnsupportedKernel(f"kernel {self.kernel.name!r}: statement {s!r}")

    def if_(self, s: If, loops: tuple[str, ...], keyword: str) -> None:
        self.emit_line(f"{keyword} ({self.top(s.cond)}) {{")
        self.nested(s.then, loops)
        match s.otherwise:
            case ():
                self.emit_line("}")
            case (If() as chained,):
                self.if_(chained, loops, "} else if")
            case _:
                self.emit_line("} else {")
                self.nested(s.otherwise, loops)
                self.emit_line("}")

    def loop(self, s: Loop, loops: tuple[str, ...]) -> None:
        if s.var in loops:
            raise UnsupportedKernel(
                f"kernel {self.kernel.name!r}: loop {s.var!r} is nested in a loop of the same "
                "variable, which the cuda backend does not support"
            )
        k = self.local(s.var, I32)
        stop = self.top(s.stop)
        if not self.invariant(s.stop, s):  # the interpreter evaluates it once
            bound = self.local(f"{s.var}.stop", I32, key=("stop", id(s)))
            self.emit_line(f"{bound} = {stop};")
            stop = bound
        test, step = ("<", "++") if s.step > 0 else (">", "--")
        self.emit_line(f"for ({k} = {self.top(s.start)}; {k} {test} {stop}; {k}{step}) {{")
        self.nested(s.body, (*loops, s.var))
        self.emit_line("}")

    def split_loop(self, s: Loop, loops: tuple[str, ...]) -> None:
        start, stop = self.top(s.start), self.top(s.stop)
        k = self.local(s.var, I32)
        if self.mapping.barrier_before:
            self.emit_line(f"{self.barrier()}  // every thread has read what the loop writes")
        self.emit_line(
            f"// parallel for {s.var} in range({start}, {stop}): this thread's iteration"
        )
        guard = self.device and self.mapping.barrier != "__syncwarp"  # the block's threads
        if guard:
            self.emit_line(f"if (iteration < {self.mapping.threads_per_lane}) {{")
            self.depth += 1
        self.emit_line(f"{k} = {'' if start == '0' else start + ' + '}iteration;")
        self.block(s.body, (*loops, s.var))
        if guard:
            self.depth -= 1
            self.emit_line("}")
        self.emit_line(f"{self.barrier()}  // the loop's writes are seen by the lane's threads")

    def emit(self, s: Emit) -> None:
        stream = next(x for x in self.kernel.streams if x.name == s.stream)
        ordinal, total = self.emitted[s.stream], self.emits[s.stream]
        self.emitted[s.stream] += 1
        self.emit_line("{")
        self.depth += 1
        count = self.names.given[("count", s.stream)]
        slot = self.dialect.take_slot(count, wide=not self.device)
        if self.device:  # the caller's record arrays, from the count on
            self.emit_line(f"const int slot = {slot};")
        else:
            self.emit_line(f"const {self.dialect.u64} slot = {slot};")
        for (field, _), value in zip(stream.fields, s.values):
            self.emit_line(
                f"{self.names.given[('stream', s.stream, field)]}[slot] = {self.top(value)};"
            )
        if self.device:
            self.depth -= 1
            self.emit_line("}")
            return
        order = "lane" if total == 1 else f"({self.dialect.i64})lane * {total} + {ordinal}"
        self.uses_lane = True
        self.emit_line(f"{self.names.given[('order', s.stream)]}[slot] = {order};")
        self.depth -= 1
        self.emit_line("}")

    def invariant(self, e: Expr, loop: Loop) -> bool:
        """Whether `e` has the same value at every test of `loop`: no loads, and no
        variable the loop assigns (its own included)."""
        assigned = {loop.var}

        def collect(stmts: tuple[Stmt, ...]) -> None:
            for s in stmts:
                match s:
                    case Assign(name=name) | Loop(var=name):
                        assigned.add(name)
                for inner in walk.nested(s):
                    collect(inner)

        collect(loop.body)
        for x in subexpressions(e):
            if isinstance(x, Load) or (isinstance(x, Var) and x.name in assigned):
                return False
        return True

    # ------------------------------------------------------------------ expressions
    def top(self, e: Expr) -> str:
        return self.expr(e)[0]

    def operand(self, e: Expr, loosest: int) -> str:
        """`e` parenthesised unless its class binds at least as tightly as `loosest`."""
        text, kind = self.expr(e)
        return text if kind <= loosest else f"({text})"

    def element(self, array: str, index: Expr) -> str:
        return f"{self.names.given[('param', array)]}[{self.top(index)}]"

    def expr(self, e: Expr) -> tuple[str, int]:
        match e:
            case Const(value=value, dtype=dtype):
                return constant(value, dtype)
            case Var(name=name):
                if name in self.scalars:
                    return self.names.given[("param", name)], ATOM
                return self.names.given[("local", name)], ATOM
            case Lane():
                self.uses_lane = True
                return "lane", ATOM
            case Load(array=array, index=index):
                return self.element(array, index), ATOM
            case Unary(op=op, operand=x):
                return ("-" if op == "neg" else "!") + self.operand(x, ATOM), PREFIX
            case Binary(op=op, lhs=lhs, rhs=rhs):
                return self.binary(op, dtype_of(lhs), lhs, rhs)
            case Call(fn=fn, args=args):
                if fn == "random123":
                    self.helpers.add("pn_random123")
                    fn = "pn_random123"
                return f"{fn}({', '.join(self.top(a) for a in args)})", ATOM
            case Select(cond=c, then=t, otherwise=o):
                parts = [self.operand(x, PREFIX) for x in (c, t, o)]
                return f"{parts[0]} ? {parts[1]} : {parts[2]}", TERNARY
            case Cast(dtype=dtype, operand=x):
                if dtype == dtype_of(x):
                    return self.expr(x)
                return f"({C_TYPES[dtype]}){self.operand(x, ATOM)}", CAST
        raise UnsupportedKernel(f"kernel {self.kernel.name!r}: expression {e!r}")

    def binary(self, op: str, dtype: DType, lhs: Expr, rhs: Expr) -> tuple[str, int]:
        if op in _INFIX:
            a, b = self.operand(lhs, CAST), self.operand(rhs, CAST)
            return f"{a} {_INFIX[op]} {b}", INFIX
        a, b = self.top(lhs), self.top(rhs)
        if op == "pow":
            return f"pow({a}, {b})", ATOM
        if dtype == F64:  # min, max
            self.helpers.add(f"pn_f{op}")
            return f"pn_f{op}({a}, {b})", ATOM
        return f"{op}({a}, {b})", ATOM  # CUDA's int min and max


def live_variables(body: tuple[Stmt, ...]) -> set[str]:
    """The variables whose values matter: read by a statement other than an assignment,
    or by the assignment of a variable that matters."""
    uses: list[tuple[str | None, set[str]]] = []  # (assigned variable or None, reads)

    def collect(stmts: tuple[Stmt, ...]) -> None:
        for s in stmts:
            reads = {
                e.name for x in own_expressions(s) for e in subexpressions(x) if isinstance(e, Var)
            }
            uses.append((s.name if isinstance(s, Assign) else None, reads))
            for inner in walk.nested(s):
                collect(inner)

    collect(body)
    live: set[str] = set()
    while True:
        grown = set().union(*(reads for target, reads in uses if target is None or target in live))
        if grown <= live:
            return live
        live |= grown


def constant(value: float | int | bool, dtype: DType) -> tuple[str, int]:
    """A C literal for an IR constant; exact (repr round-trips a double)."""
    if dtype == BOOL:
        return ("true" if value else "false"), ATOM
    if dtype == I32:
        value = int(value)
        if value == -(2**31):
            return "(-2147483647 - 1)", ATOM
        return str(value), (PREFIX if value < 0 else ATOM)
    value = float(value)
    if math.isnan(value):
        return "NAN", ATOM
    if math.isinf(value):
        return ("INFINITY", ATOM) if value > 0 else ("-INFINITY", PREFIX)
    text = repr(value)
    return text, (PREFIX if text.startswith("-") else ATOM)


class _Driver(_Kernel):
    """A kernel that launches others (an epoch driver): one CUDA block a lane, all of its
    threads running the lane's code alike, which is lane-uniform (verify.py: locals a
    Serial assigns are used only in Serials, and no Serial or Launch is in a parallel loop).
    What writes memory is a Launch or inside a Serial:

    - a Launch is a call of the callee's device function (module docstring), the block's
      threads taking its lanes in turn, then `__syncthreads()`; inside a Serial, thread 0
      runs every lane (`0u, 1u`);
    - a Serial is `if (thread == 0) { ... }` then `__syncthreads()`;
    - where the threads have read, since the last barrier, an array that the driver writes
      (through a launch or in a Serial), a barrier also comes before the next Launch or
      Serial, so that no thread writes it while another still reads.

    The parameters come in one table of 8-byte words (`table[k]` the kernel's parameter k: a
    device pointer, a double's bits, an integer), as a driver has hundreds. Each callee is
    one device function however often it is launched; its array parameters go without
    `__restrict__` where the launch binds them to memory another parameter of the launch
    also views, and, if it only reads them, where anything in the driver writes them (nvcc
    reads a `const __restrict__` array through the non-coherent cache, which may keep
    values from before an earlier launch's write)."""

    def __init__(
        self, kernel: Kernel, name: str | None, block: int | None, dialect: Dialect = CUDA
    ) -> None:
        self.block_threads = block
        self.serial = 0  # Serials around the statement being rendered
        self.dirty = False  # read an array the driver writes since the last barrier
        self.driver_writes = walk.written(kernel.body)
        self.callees: dict[Kernel, str] = {}  # callee: its device function
        plain: dict[Kernel, set[str]] = {}
        for s in walk.statements(kernel.body):
            if isinstance(s, Launch):
                if s.kernel not in self.callees:
                    n = len(self.callees)
                    self.callees[s.kernel] = sanitize(f"pn_call{n}_{s.kernel.name}")
                plain.setdefault(s.kernel, set()).update(self.unrestricted(s))
        self.rendered = [
            _Kernel(callee, c_name, dialect, device=True, plain=frozenset(plain[callee]))
            for callee, c_name in self.callees.items()
        ]
        self.widths = {r.kernel: r.mapping.threads_per_lane for r in self.rendered}
        super().__init__(kernel, name, dialect)
        self.helpers |= set().union(*(r.helpers for r in self.rendered))
        if kernel.streams:
            raise UnsupportedKernel(f"kernel {kernel.name!r}: a driver with streams of its own")

    def unrestricted(self, s: Launch) -> set[str]:
        """The callee's arrays this launch needs passed without `__restrict__`."""
        views = {name: v.array for name, v in s.bind if isinstance(v, View)}
        written = written_arrays(s.kernel)
        out = set()
        for name, array in views.items():
            shared = sum(a == array for a in views.values()) > 1
            if shared or (name not in written and array in self.driver_writes):
                out.add(name)
        return out

    # ------------------------------------------------------------------ layout
    def assemble(self) -> str:
        k = self.kernel
        head = [f"// {k.name}: {k.doc}" if k.doc else f"// {k.name}", f"// lanes: {k.lanes}",
                "// one CUDA block a lane; parameter k in table[k]"]  # fmt: skip
        d = self.dialect
        bounds = d.bounds(self.block_threads) if self.block_threads else ""
        table, derive = d.entry_array(self.names, "table", d.pointer(d.u64, True, True))
        params = ",\n".join(
            INDENT + p for p in (*d.entry_params, table, f"{d.i64} lo", f"{d.i64} hi")
        )
        out = [*head, f"{d.entry} {bounds}{self.name}(\n{params})", "{"]
        out += [INDENT + derive] if derive else []
        out += [
            f"{INDENT}const {d.i64} index = lo + ({d.i64}){d.group_id};",
            f"{INDENT}if (index >= hi) {{",
            f"{INDENT * 2}return;  // the block's threads return together",
            f"{INDENT}}}",
            f"{INDENT}const unsigned thread = {d.local_id};",
            f"{INDENT}const unsigned threads = {d.group_size};",
            f"{INDENT}(void)thread;",
            f"{INDENT}(void)threads;",
        ]
        if self.uses_lane:
            out.append(f"{INDENT}const int lane = (int)index;")
        out += [INDENT + line for line in self.unpack()]
        out += [f"{INDENT}{c_type} {name};" for name, c_type in self.locals.items()]
        out += self.lines
        out.append("}")
        return "\n".join([r.text for r in self.rendered] + ["\n".join(out) + "\n"])

    def unpack(self) -> list[str]:
        """The parameters the body uses, from the table."""
        used = set(re.findall(r"\b\w+\b", "\n".join(self.lines)))
        out, d = [], self.dialect
        for k, p in enumerate(self.kernel.params):
            c_name = self.names.given[("param", p.name)]
            if c_name not in used:
                continue
            word = f"table[{k}]"
            if p.is_array:
                pointer = d.pointer(d.element(p.dtype), p.name not in self.driver_writes)
                out.append(f"{pointer}const {c_name} = {d.address(pointer, word)};")
            elif p.dtype == F64:
                out.append(f"const double {c_name} = {d.as_double(word)};")
            elif p.dtype == BOOL:
                out.append(f"const bool {c_name} = {word} != 0{d.ull};")
            else:
                out.append(f"const int {c_name} = (int)({d.i64}){word};")
        return out

    def barrier_if_read(self) -> None:
        if self.dirty:
            self.emit_line(
                f"{self.dialect.block_barrier}  // every thread has read what comes next writes"
            )
        self.dirty = False

    # ------------------------------------------------------------------ statements
    def stmt(self, s: Stmt, loops: tuple[str, ...]) -> None:
        match s:
            case Serial(body=body) if self.serial:
                self.block(body, loops)
            case Serial(body=body):
                self.barrier_if_read()
                self.emit_line("if (thread == 0) {  // Serial")
                self.serial += 1
                self.nested(body, loops)
                self.serial -= 1
                self.emit_line("}")
                self.emit_line(self.dialect.block_barrier)
                self.dirty = False
            case Launch():
                self.launch(s)
            case Store() | AddTo() | Emit() if not self.serial:
                raise UnsupportedKernel(
                    f"kernel {self.kernel.name!r}: {type(s).__name__} outside a Serial or a "
                    "Launch, which every thread of the block would run"
                )
            case While() | Loop() if not self.serial and self.reads_written(s):
                self.dirty = True  # the body's reads come before its next pass's writes
                super().stmt(s, loops)
                self.dirty = True
            case _:
                super().stmt(s, loops)

    def reads_written(self, s: Stmt) -> bool:
        """Whether `s` reads, outside Serials, an array that the driver writes."""
        for x in walk.own_expressions(s):
            for e in walk.subexpressions(x):
                if isinstance(e, Load) and e.array in self.driver_writes:
                    return True
        return any(
            self.reads_written(inner)
            for body in walk.nested(s)
            for inner in body
            if not isinstance(inner, Serial)
        )

    def launch(self, s: Launch) -> None:
        if not self.serial and self.reads_written(s):
            raise UnsupportedKernel(
                f"kernel {self.kernel.name!r}: a launch of {s.kernel.name!r} whose range or "
                "arguments read an array the driver writes"
            )
        w = self.widths[s.kernel]
        if w > 1 and (self.serial or (self.block_threads or w) < w):
            raise UnsupportedKernel(
                f"kernel {self.kernel.name!r}: a launch of {s.kernel.name!r}, which takes {w} "
                "threads a lane, " + ("in a Serial" if self.serial else "by fewer threads")
            )
        bind = dict(s.bind)
        args = [self.top(s.lo), self.top(s.hi)]
        args += ["0u", "1u"] if self.serial else ["thread", "threads"]
        for p in s.kernel.params:
            value = bind[p.name]
            args.append(self.view(value) if isinstance(value, View) else self.top(value))
        for stream in s.kernel.streams:
            records = bind.get(stream.name)
            if not isinstance(records, Records):
                raise UnsupportedKernel(
                    f"kernel {self.kernel.name!r}: stream {stream.name!r} of a launch of "
                    f"{s.kernel.name!r} is not sent to Records"
                )
            args += [self.view(v) for v in (*records.fields, records.count)]
        call = f"{self.callees[s.kernel]}({', '.join(args)});"
        if self.serial:
            self.emit_line(call)
            return
        self.barrier_if_read()
        self.emit_line(call)
        self.emit_line(self.dialect.block_barrier)

    def view(self, v: View) -> str:
        pointer = self.names.given[("param", v.array)]
        if isinstance(v.offset, Const) and v.offset.value == 0:
            return pointer
        return f"{pointer} + {self.operand(v.offset, CAST)}"

    def expr(self, e: Expr) -> tuple[str, int]:
        if isinstance(e, Load) and not self.serial and e.array in self.driver_writes:
            self.dirty = True
        return super().expr(e)
