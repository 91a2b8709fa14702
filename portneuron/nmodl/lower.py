"""Lowering NMODL statements and expressions into the body of one IR kernel.

Mechanism variables become IR locals of the same name: the kernel assembler loads each one
the body touched at the start and stores back the ones it wrote at the end. NMODL LOCALs,
FUNCTION and PROCEDURE arguments get fresh dotted names (`rates1.alpha`), because calls are
inlined: the IR has no calls but math intrinsics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from portneuron import units
from portneuron.ir import BOOL, F64, I32, Binary, Cast, Const, Expr, Load, Unary, Var, dtype_of
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder

from . import verbatim
from .declarations import BUILTIN_CONSTANTS, Declarations, text

#: A FROM loop with constant bounds and at most this many turns whose body indexes arrays
#: (or holds reactions) is unrolled, so that its indices are constants.
UNROLL_LIMIT = 256


class DynamicArray(Exception):
    """An array is indexed by a run-time value: lower the mechanism again with that array
    read and written in place (`Declarations.dynamic_arrays`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def constant_int(e: Expr) -> int | None:
    """The value of an I32 expression of constants, or None."""
    match e:
        case Const(value=value):
            return int(value)
        case Unary(op="neg", operand=operand):
            v = constant_int(operand)
            return None if v is None else -v
        case Binary(op=op, lhs=lhs, rhs=rhs) if op in ("add", "sub", "mul"):
            x, y = constant_int(lhs), constant_int(rhs)
            if x is None or y is None:
                return None
            return x + y if op == "add" else x - y if op == "sub" else x * y
        case Cast(dtype=dtype, operand=Const(value=value)) if dtype == I32:
            return int(value)  # toward zero, as C
    return None


#: NMODL function name -> IR intrinsic.
MATH = {
    "exp": "exp", "log": "log", "log10": "log10", "sqrt": "sqrt", "fabs": "fabs",
    "floor": "floor", "ceil": "ceil", "sin": "sin", "cos": "cos", "tan": "tan",
    "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh",
    "tanh": "tanh", "atan2": "atan2", "fmod": "fmod", "expm1": "expm1",
}  # fmt: skip

_BINARY = {
    "+": b.add, "-": b.sub, "*": b.mul, "/": b.div, "^": b.pow_,
    "<": b.lt, "<=": b.le, ">": b.gt, ">=": b.ge, "==": b.eq, "!=": b.ne,
    "&&": b.and_, "||": b.or_,
}  # fmt: skip

# scopmath's random numbers: one generator for the whole process (src/oc/scoprand.cpp)
_SCOP_RANDOM = {"scop_random", "set_seed", "normrand", "exprand", "poisrand"}

_NOT_HERE = {
    "DiffEqExpression": "a derivative equation (x' = ...) outside a DERIVATIVE block",
    "ReactionStatement": "a reaction (~) outside a KINETIC block",
    "Conserve": "CONSERVE outside a KINETIC block",
    "Compartment": "COMPARTMENT outside a KINETIC block",
    "Verbatim": "VERBATIM C code",
    "LagStatement": "LAG statements",
    "ForNetcon": "FOR_NETCONS outside NET_RECEIVE",
    "WatchStatement": "WATCH outside NET_RECEIVE (NEURON allows it only in NET_RECEIVE)",
    "LonDiffuse": "LONGITUDINAL_DIFFUSION outside a KINETIC block",
}


def _keyword(source: str) -> str | None:
    """The word a refusal points at: a statement's first, up to any parenthesis."""
    words = source.split("'")[0].split()
    return words[0].split("(")[0] if words else None


def to_f64(e: Expr) -> Expr:
    """NMODL values are doubles; a comparison used as a number is 1.0 or 0.0."""
    return b.select(e, 1.0, 0.0) if dtype_of(e) == BOOL else b.cast(F64, e)


def to_bool(e: Expr) -> Expr:
    """A number used as a condition is true when it is not zero, as in C."""
    return e if dtype_of(e) == BOOL else b.ne(e, 0.0)


class KernelLowering:
    """Lowers NMODL into one kernel's body; `touched`/`written` drive its loads and stores.

    `where` is the (keyword, name) of the block being lowered, for error messages.
    """

    def __init__(self, decl: Declarations, kb: KernelBuilder, where: tuple[str, str]) -> None:
        self.d = decl
        self.kb = kb
        self.where = where
        self.scopes: list[dict[str, str]] = [{}]
        #: NMODL names bound to fixed IR values (v in the current kernel, t in net_receive).
        self.bindings: dict[str, Expr] = {}
        self.touched: dict[str, None] = {}  # mechanism, ion and node variables, in order
        self.written: dict[str, None] = {}
        self.inlining: list[str] = []  # IR prefixes of the calls being inlined
        self.active_calls: list[str] = []  # their NMODL names, to refuse recursion
        #: IR locals behind `bindings` that NMODL code may assign (NET_RECEIVE arguments).
        self.assignable: set[str] = set()
        self.counts: dict[str, int] = {}
        #: Hooks set by the kernel being built: table lookups, derivative equations, events.
        self.on_call: dict[str, Callable[[object, list[Expr]], Expr | None]] = {}
        self.on_statement: dict[str, Callable[[object], None]] = {}
        #: FROM loop counters as C ints, by the IR local holding the NMODL loop variable.
        self.loop_ints: dict[str, Expr] = {}
        #: POINTERs this kernel adds to (`P = P + x`): added in place, lane by lane.
        self.accumulated: set[str] = set()
        #: The IR local set by an early `return;` (VERBATIM) in NET_RECEIVE, once it has one,
        #: and how many returns have been lowered.
        self.returned: str | None = None
        self.returns = 0
        #: Values every instance shares (Declarations.shared_names, where the mechanism
        #: keeps them shared): `shared.<x>[pn.group * length + k]`.
        self.shared: set[str] = set()

    # ------------------------------------------------------------------ errors and names
    def error(self, message: str, word: str | None = None):
        return self.d.error(message, self.where, word)

    def fresh(self, stem: str) -> str:
        self.counts[stem] = self.counts.get(stem, 0) + 1
        return f"{stem}{self.counts[stem]}"

    def lookup_local(self, name: str) -> str | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def is_mechanism_var(self, name: str) -> bool:
        d = self.d
        return (
            d.is_per_instance(name)
            or d.is_global(name)
            or d.ion_of(name) is not None
            or name in d.pointers
        )

    def touch(self, name: str) -> Var:
        self.touched.setdefault(name, None)
        return Var(name, F64)

    def read(self, name: str) -> Expr:
        local = self.lookup_local(name)
        if local is not None:
            return Var(local, F64)
        if name in self.bindings:
            return self.bindings[name]
        if self.d.length(name):
            raise self.error(f"array {name!r} used without an index", name)
        if name in self.accumulated:
            raise self.error(
                f"POINTER {name!r} is read after this block added to it, which is not supported",
                name,
            )
        if self.is_mechanism_var(name) or name in ("v", "area", "diam"):
            if name in ("v", "area", "diam") and self.d.kind == "artificial_cell":
                raise self.error(f"an ARTIFICIAL_CELL has no {name}", name)
            return self.touch(name)
        if name in ("t", "dt", "celsius"):
            return self.kb.scalar(name)
        if name in self.d.constants:
            return Const(self.d.constants[name], F64)
        if name in BUILTIN_CONSTANTS:
            return Const(BUILTIN_CONSTANTS[name], F64)
        if name in self.d.randoms:
            raise self.error(
                f"RANDOM variable {name!r} can only be passed to random_* functions", name
            )
        if name in self.d.functions:
            raise self.error(f"FUNCTION {name!r} used without parentheses", name)
        if name in self.d.externals:
            raise self.error(
                f"EXTERNAL {name!r} (another mechanism's GLOBAL, or hoc's) is used where the "
                f"simulation runs, which is not supported; only hoc-called FUNCTIONs may read it",
                name,
            )
        raise self.error(
            f"undeclared variable {name!r}; declare it in PARAMETER, ASSIGNED or LOCAL", name
        )

    def assign(self, name: str, value: Expr) -> None:
        value = to_f64(value)
        local = self.lookup_local(name)
        if local is not None:
            self.kb.assign(local, value)
            return
        if name in self.bindings:
            bound = self.bindings[name]
            if isinstance(bound, Var) and bound.name in self.assignable:
                self.kb.assign(bound.name, value)
                self.written.setdefault(name, None)
                return
            raise self.error(f"{name!r} cannot be assigned here", name)
        if self.is_mechanism_var(name):
            ion = self.d.ion_of(name)
            if ion is not None and name not in ion.write:
                raise self.error(
                    f"ion variable {name!r} is assigned but not in WRITE of USEION {ion.name}", name
                )
            self.touch(name)
            self.written.setdefault(name, None)
            self.kb.assign(name, value)
            return
        if name == "v" and self.kb.name in ("net_receive", "net_init"):
            raise self.error(
                "assigning to 'v' in NET_RECEIVE is not supported (NEURON writes it to the node)",
                name,
            )
        if name == "v" and self.d.kind != "artificial_cell":
            # nocmodl gives a mechanism its own copy of v, set from the node before each of
            # its kernels (and each current evaluation): an assignment (`v = v + 0.0001` in
            # a rates PROCEDURE) changes that copy for the rest of the call, never the node.
            self.touch("v")
            self.kb.assign("v", value)
            return
        if name in ("t", "dt", "celsius", "area", "diam") or name in self.d.externals:
            raise self.error(
                f"assigning to {name!r} is not allowed: it is the simulator's (NEURON's "
                f"translator refuses it too)",
                name,
            )
        raise self.error(
            f"assignment to undeclared variable {name!r}; declare it in ASSIGNED or LOCAL", name
        )

    def bind_assignable(self, name: str, ir_name: str, value: Expr) -> None:
        """Bind NMODL `name` to a new IR local `ir_name`, initialised to `value`."""
        self.kb.assign(ir_name, value)
        self.bindings[name] = Var(ir_name, F64)
        self.assignable.add(ir_name)

    # ------------------------------------------------------------------ statements
    def block(self, statement_block, body_of: str = "") -> None:
        """A statement block; `body_of` ("PROCEDURE", "INITIAL") where it is a whole body,
        whose last statement may be the VERBATIM `return` idiom (nothing to do)."""
        self.scopes.append({})
        statements = list(statement_block.statements)
        if body_of and statements and statements[-1].get_node_type_name() == "Verbatim":
            if verbatim.trailing_return(statements[-1].statement.eval(), body_of):
                statements.pop()
        self.statements(statements)
        self.scopes.pop()

    def statements(self, statements: list) -> None:
        """Statements in order. A VERBATIM `return;` (NET_RECEIVE's early return, where
        `returned` is set up) ends the block: what follows it, here and in the blocks
        around, runs only if no return was taken. A VERBATIM guarded by an empty Vector
        (the `empty-vector` idiom) skips everything up to the block that closes it."""
        k = 0
        while k < len(statements):
            stmt, returns = statements[k], self.returns
            if stmt.get_node_type_name() == "Verbatim":
                k = self.verbatim(statements, k)
            else:
                self.statement(stmt)
                k += 1
            if self.returns > returns and k < len(statements):
                with self.kb.if_(b.eq(Var(self.returned, F64), Const(0.0, F64))):
                    self.statements(statements[k:])
                return

    def verbatim(self, statements: list, k: int) -> int:
        """The VERBATIM statements[k] and any it spans; the index after them."""
        code = statements[k].statement.eval()
        stream = self.d.stream_bbcore
        depth = verbatim.vector_guard(code, stream.vectors if stream is not None else ())
        if depth:
            for j in range(k + 1, len(statements)):
                if statements[j].get_node_type_name() == "Verbatim":
                    rest = verbatim.closes(statements[j].statement.eval(), depth)
                    if rest is not None:
                        if rest:
                            self.early_return()
                        return j + 1
            raise self.error(
                f"VERBATIM C code is not supported (a block starting "
                f"{verbatim.first_line(code)!r} whose braces no later block closes)",
                "VERBATIM",
            )
        if verbatim.squash(code) == "return;":
            self.early_return()
            return k + 1
        reset = verbatim.stream_reset(code)
        if reset is not None and f"{reset.source}.position" in self.d.variables:
            position = f"{reset.source}.position"
            restart: Expr = Const(0.0, F64)
            if reset.flag:  # only where the stream is Random123's
                keep = b.eq(to_f64(self.read(reset.flag)), Const(0.0, F64))
                restart = b.select(keep, Var(position, F64), restart)
            self.touch(position)
            self.assign(position, restart)
            return k + 1
        self.statement(statements[k])
        return k + 1

    @contextmanager
    def hook(self, kind: str, handler: Callable[[object], None]) -> Iterator[None]:
        """Statements (or expression statements) of `kind` lowered by `handler` meanwhile."""
        saved = self.on_statement.get(kind)
        self.on_statement[kind] = handler
        try:
            yield
        finally:
            if saved is None:
                self.on_statement.pop(kind, None)
            else:
                self.on_statement[kind] = saved

    def early_return(self) -> None:
        if self.returned is None:
            raise self.error("a VERBATIM `return;` is supported in NET_RECEIVE only", "VERBATIM")
        self.returns += 1
        self.kb.assign(self.returned, 1.0)

    def statement(self, s) -> None:
        kind = s.get_node_type_name()
        if kind in self.on_statement:
            self.on_statement[kind](s)
        elif kind == "ExpressionStatement":
            self.expression_statement(s.expression)
        elif kind == "LocalListStatement":
            for var in s.variables:
                name = var.get_node_name()
                if (
                    var.get_node_type_name() != "LocalVar"
                    or getattr(var, "length", None) is not None
                ):
                    raise self.error(f"LOCAL array {name!r} is not supported", name)
                ir_name = self.fresh(f"{self.prefix()}{name}")
                self.scopes[-1][name] = ir_name
                self.kb.assign(ir_name, 0.0)
        elif kind == "IfStatement":
            self.if_statement(s)
        elif kind == "StatementBlock":
            self.block(s)
        elif kind == "FromStatement":
            self.from_statement(s)
        elif kind == "WhileStatement":
            self.while_statement(s)
        elif kind == "Verbatim":
            code = s.statement.eval()
            if not verbatim.squash(code) or verbatim.prints_only(code):
                return  # the `no-op` idiom (comments only), or the `printf` idiom
            reads = verbatim.ion_reads(code)
            if reads is not None and all(self._reads_ion(x) for x in reads):
                for x in reads:  # the `ion-read` idiom: the ion's value, read here
                    ion = self.d.ion_of(x)
                    index = self.kb.array(f"ion.{ion.name}.index", I32, "instance")[
                        Var("pn.instance", I32)
                    ]
                    value = self.kb.array(f"ion.{ion.name}.{x}", F64, f"ion:{ion.name}")[index]
                    self.assign_ion_read(x, value)
                return
            raise self.error(
                f"VERBATIM C code is not supported (a block starting "
                f"{verbatim.first_line(code)!r}; portneuron knows the idioms listed in its "
                f"README); rewrite it in NMODL",
                "VERBATIM",
            )
        elif kind in ("LineComment", "BlockComment", "UnitState", "TableStatement"):
            pass  # TABLE is handled where the procedure is called
        elif kind in ("MutexLock", "MutexUnlock"):
            pass  # one instance's statements never race: each has its own copy of a GLOBAL
        elif kind == "ProtectStatement":
            self.protect(s.expression)
        elif kind in _NOT_HERE:
            raise self.error(f"{_NOT_HERE[kind]}: not supported here", _keyword(text(s)))
        else:
            words = text(s).split()
            raise self.error(
                f"unsupported statement {words[0] if words else kind!r}",
                words[0] if words else None,
            )

    def protect(self, e) -> None:
        """PROTECT makes one assignment atomic across NEURON's threads: the assignment, on a
        value of the instance's own, a POINTER's place (added to in instance order) or a
        GLOBAL every instance updates in turn (a counter: shared, Assembler.finish)."""
        self.expression_statement(e)

    def prefix(self) -> str:
        # Dotted, so never equal to an NMODL name.
        return f"{self.inlining[-1]}." if self.inlining else "local."

    def expression_statement(self, e) -> None:
        kind = e.get_node_type_name()
        if kind == "WrappedExpression":
            self.expression_statement(e.expression)
        elif kind == "BinaryExpression" and e.op.eval() == "=":
            target = e.lhs
            if target.get_node_type_name() == "WrappedExpression":
                target = target.expression
            if target.get_node_type_name() not in ("VarName", "Name"):
                raise self.error(f"cannot assign to {text(target)!r}", text(target))
            index = index_of(target)
            if index is not None:
                self.assign_element(target.get_node_name(), index, self.expr(e.rhs))
                return
            if self.accumulate(target.get_node_name(), e.rhs):
                return
            if self.lookup_local(target.get_node_name()) is None and self.d.length(
                target.get_node_name()
            ):
                raise self.error(
                    f"array {target.get_node_name()!r} assigned without an index",
                    target.get_node_name(),
                )
            self.assign(target.get_node_name(), self.expr(e.rhs))
        elif kind == "FunctionCall":
            self.call(e, statement=True)
        elif kind in self.on_statement:
            self.on_statement[kind](e)
        elif kind in _NOT_HERE:
            raise self.error(f"{_NOT_HERE[kind]}: not supported here", _keyword(text(e)))
        else:
            raise self.error(f"expression {text(e)!r} has no effect as a statement", None)

    def _reads_ion(self, name: str) -> bool:
        """Whether `name = _ion_name;` reads the ion's value: a READ variable, and no
        current (the ion sums those)."""
        ion = self.d.ion_of(name)
        if ion is None or name not in ion.read:
            return False
        return name not in ion.write or ion.variable_role(name) != "current"

    def assign_ion_read(self, name: str, value: Expr) -> None:
        """Set the kernel's copy of an ion variable to the ion's value there (a written
        concentration's copy is stored back as ever, at the end)."""
        self.touch(name)
        self.kb.assign(name, value)

    def accumulate(self, name: str, rhs) -> bool:
        """`P = P + x` (or `- x`) for a POINTER P that is not also read here: added in place,
        lane by lane in instance order (several instances may point at one place, a
        dipole's sum, and NEURON adds their terms one instance after another)."""
        if name not in self.d.pointers or self.lookup_local(name) is not None:
            return False
        while rhs.get_node_type_name() == "WrappedExpression":
            rhs = rhs.expression
        if rhs.get_node_type_name() != "BinaryExpression" or rhs.op.eval() not in ("+", "-"):
            return False
        first = rhs.lhs
        if first.get_node_type_name() not in ("VarName", "Name") or first.get_node_name() != name:
            return False
        if name in self.touched:
            return False  # read in this kernel: an ordinary load, assignment and store
        value = to_f64(self.expr(rhs.rhs))
        if rhs.op.eval() == "-":
            value = b.neg(value)
        index = self.kb.array(f"pointer.{name}.index", I32, "instance")[Var("pn.instance", I32)]
        self.kb.array(f"pointer.{name}", F64, f"pointer:{name}")
        self.kb.add_to(f"pointer.{name}", index, value)
        self.accumulated.add(name)
        return True

    def if_statement(self, s) -> None:
        branches = [(s.condition, s.statement_block)]
        branches += [(e.condition, e.statement_block) for e in s.elseifs]
        otherwise = s.elses.statement_block if s.elses is not None else None
        self._if_chain(branches, otherwise)

    def _if_chain(self, branches, otherwise) -> None:
        (cond, body), rest = branches[0], branches[1:]
        with self.kb.if_(to_bool(self.expr(cond))):
            self.block(body)
        if rest or otherwise is not None:
            with self.kb.else_():
                if rest:
                    self._if_chain(rest, otherwise)
                else:
                    self.block(otherwise)

    def while_statement(self, s) -> None:
        """WHILE (cond) { }: C's while, as nocmodl writes it; the condition is tested
        before each iteration. A condition that never turns false loops for ever, as in
        NEURON."""
        with self.kb.while_(to_bool(self.expr(s.condition))):
            self.block(s.statement_block)

    def from_statement(self, s) -> None:
        """FROM i = a TO b { }: i runs from a to b inclusive as a C int, the bounds computed
        as nocmodl emits them (each variable cast to int). With constant bounds, a body
        that indexes arrays is unrolled, so that its indices are constants."""
        name = s.get_node_name()
        if s.increment is not None:
            raise self.error("FROM ... BY is not supported", "BY")
        lo = self.int_expr(getattr(s, "from"))
        hi = b.add(self.int_expr(s.to), Const(1, I32))
        first, stop = constant_int(lo), constant_int(hi)
        body_text = text(s.statement_block)
        if (
            first is not None
            and stop is not None
            and stop - first <= UNROLL_LIMIT
            and any(mark in body_text for mark in ("[", "~", "COMPARTMENT"))
        ):
            for k in range(first, stop):
                self.loop_body(s, name, Const(float(k), F64), Const(k, I32))
            return
        counter = self.fresh(f"{self.prefix()}{name}.i")
        with self.kb.loop(counter, lo, hi) as k:
            self.loop_body(s, name, b.cast(F64, k), k)

    def loop_body(self, s, name: str, value: Expr, as_int: Expr) -> None:
        local = self.fresh(f"{self.prefix()}{name}")
        self.scopes.append({name: local})
        self.kb.assign(local, value)
        self.loop_ints[local] = as_int
        self.block(s.statement_block)
        self.scopes.pop()

    # ------------------------------------------------------------------ arrays
    def int_expr(self, e) -> Expr:
        """An array index or FROM bound as nocmodl writes it in C: int arithmetic, with
        every variable cast to int (toward zero)."""
        kind = e.get_node_type_name()
        if kind in ("WrappedExpression", "ParenExpression"):
            return self.int_expr(e.expression)
        if kind == "Integer":
            return Const(int(e.eval()), I32)
        if kind == "BinaryExpression" and e.op.eval() in ("+", "-", "*"):
            op = {"+": b.add, "-": b.sub, "*": b.mul}[e.op.eval()]
            return op(self.int_expr(e.lhs), self.int_expr(e.rhs))
        if kind == "UnaryExpression" and e.op.eval() == "-":
            return b.neg(self.int_expr(e.expression))
        if kind in ("VarName", "Name") and index_of(e) is None:
            local = self.lookup_local(e.get_node_name())
            if local is not None and local in self.loop_ints:
                return self.loop_ints[local]
        return b.cast(I32, to_f64(self.expr(e)))

    def array_index(self, name: str, index_node) -> int | Expr:
        """The index of `name[index]`: an int where it is a constant, else (for an array
        in `dynamic_arrays`) an I32 expression clamped into the array."""
        length = self.d.length(name)
        if not length:
            raise self.error(f"{name!r} is not an array", name)
        index = self.int_expr(index_node)
        k = constant_int(index)
        if k is not None:
            if not 0 <= k < length:
                raise self.error(f"index {k} is outside array {name}[{length}]", name)
            return k
        if name not in self.d.dynamic_arrays:
            raise DynamicArray(name)
        # NEURON does not check; an index outside the array reads the nearest element here
        index = b.select(b.lt(index, Const(0, I32)), Const(0, I32), index)
        top = Const(length - 1, I32)
        return b.select(b.gt(index, top), top, index)

    def element_name(self, name: str, index_node) -> str:
        """`name[k]` for a constant index; an array indexed at run time is refused here."""
        k = self.array_index(name, index_node)
        if not isinstance(k, int):
            raise self.error(
                f"{name} is indexed by a run-time value here, which is not supported", name
            )
        return f"{name}[{k}]"

    def _in_place(self, name: str, k: int | Expr) -> tuple[str, Expr]:
        """The kernel array (declared) and index of element k of a dynamic array `name`:
        the instance's, or the one every instance shares."""
        length = self.d.length(name)
        index = k if not isinstance(k, int) else Const(k, I32)
        if name in self.shared:
            self.kb.array(f"shared.{name}", F64, "shared")
            owner = Var("pn.group", I32)
            return f"shared.{name}", b.add(b.mul(owner, Const(length, I32)), index)
        self.kb.array(f"mech.{name}", F64, "instance")
        instance = Var("pn.instance", I32)
        return f"mech.{name}", b.add(b.mul(instance, Const(length, I32)), index)

    def read_element(self, name: str, index_node) -> Expr:
        if self.lookup_local(name) is not None:
            raise self.error(f"LOCAL {name!r} is not an array", name)
        k = self.array_index(name, index_node)
        if name in self.d.dynamic_arrays:
            array, at = self._in_place(name, k)
            return Load(array, at, F64)
        return self.read(f"{name}[{k}]")

    def assign_element(self, name: str, index_node, value: Expr) -> None:
        if self.lookup_local(name) is not None:
            raise self.error(f"LOCAL {name!r} is not an array", name)
        k = self.array_index(name, index_node)
        if name in self.d.dynamic_arrays:
            array, at = self._in_place(name, k)
            self.kb.store(array, at, to_f64(value))
            return
        self.assign(f"{name}[{k}]", value)

    # ------------------------------------------------------------------ expressions
    def expr(self, e) -> Expr:
        kind = e.get_node_type_name()
        if kind in ("WrappedExpression", "ParenExpression"):
            return self.expr(e.expression)
        if kind == "BinaryExpression":
            op = e.op.eval()
            if op not in _BINARY:
                raise self.error(f"operator {op!r} cannot be used inside an expression", op)
            lhs, rhs = self.expr(e.lhs), self.expr(e.rhs)
            if op in ("&&", "||"):
                return _BINARY[op](to_bool(lhs), to_bool(rhs))
            return _BINARY[op](to_f64(lhs), to_f64(rhs))
        if kind == "UnaryExpression":
            op = e.op.eval()
            operand = self.expr(e.expression)
            return b.not_(to_bool(operand)) if op == "!" else b.neg(to_f64(operand))
        if kind in ("Integer", "Double", "Float"):
            return Const(float(e.eval()), F64)
        if kind == "DoubleUnit":
            return self.expr(e.value)
        if kind in ("VarName", "Name"):
            index = index_of(e)
            if index is not None:
                return self.read_element(e.get_node_name(), index)
            return self.read(e.get_node_name())
        if kind == "FunctionCall":
            result = self.call(e, statement=False)
            assert result is not None
            return result
        if kind == "PrimeName":
            raise self.error(f"derivative {text(e)!r} used as a value", e.get_node_name())
        if kind == "IndexedName":
            return self.read_element(e.get_node_name(), e.length)
        raise self.error(f"unsupported expression {text(e)!r}", None)

    # ------------------------------------------------------------------ calls
    def call(self, e, statement: bool) -> Expr | None:
        name = e.get_node_name()
        args_ast = list(e.arguments)
        if name in self.on_call:
            result = self.on_call[name](e, args_ast)
            if result is not None or statement:
                return result
        if name in self.d.randoms or name.startswith("random_"):
            return self.random_call(name, args_ast)
        if name == "state_discontinuity":
            # with the fixed step, NEURON just assigns (CVODE would also re-initialise)
            if len(args_ast) != 2 or args_ast[0].get_node_type_name() not in ("VarName", "Name"):
                raise self.error("state_discontinuity takes (state, value)", name)
            self.assign(args_ast[0].get_node_name(), self.expr(args_ast[1]))
            return Const(0.0, F64)
        if name == "printf":
            # Kernels do not print (NEURON prints from every instance at every call): the
            # text is dropped, its numeric arguments still run, for a FUNCTION's effects.
            for arg in args_ast[1:]:
                if arg.get_node_type_name() != "String":
                    self.expr(arg)
            return Const(0.0, F64)
        args = [to_f64(self.expr(a)) for a in args_ast]
        if name in MATH:
            self.check_arity(name, args, 2 if name in ("atan2", "fmod") else 1)
            return b.call(MATH[name], *args)
        if name == "pow":
            self.check_arity(name, args, 2)
            return b.pow_(*args)
        if name == "nrn_ghk":
            self.check_arity(name, args, 4)
            return self.ghk(*args)
        if name in ("fmin", "fmax"):
            self.check_arity(name, args, 2)
            return (b.min_ if name == "fmin" else b.max_)(*args)
        if name == "at_time":
            return Const(0.0, F64)  # only meaningful for variable time steps
        if name in self.d.idioms:
            idiom = self.d.idioms[name]
            if idiom.kind == "hoc-only":
                raise self.error(
                    f"{name} runs only when hoc calls it (its VERBATIM takes hoc's arguments or "
                    f"makes a stream) and cannot be called here",
                    name,
                )
            if idiom.kind == "stream-draw" and not args:
                return self.draw(idiom.source, idiom.draw)
            if idiom.kind != "vector-element" or args:
                raise self.error(
                    f"{name} is hoc's (its VERBATIM gives an instance its Vector) and cannot "
                    f"be called here",
                    name,
                )
            self.vector_element(idiom.source)
            return Const(0.0, F64)
        if name in self.d.functions:
            return self.inline(self.d.functions[name], args, returns=True)
        if name in self.d.procedures:
            self.inline(self.d.procedures[name], args, returns=False)
            return Const(0.0, F64)
        if name in ("net_send", "net_event", "net_move"):
            raise self.error(
                f"{name} can only be called in NET_RECEIVE or INITIAL of a point process", name
            )
        if name in self.d.function_tables:
            raise self.error(
                f"FUNCTION_TABLE {name} is called where the simulation runs: its values are "
                f"given from hoc (table_{name}), which NEURON does not hand over and "
                f"portneuron cannot read; only FUNCTIONs and PROCEDUREs that hoc calls may "
                f"use it. Tabulate it in NMODL (a FUNCTION, or TABLE) instead",
                name,
            )
        if name in _SCOP_RANDOM:
            raise self.error(
                f"{name} draws from NEURON's one process-wide generator (scopmath's "
                f"scop_random), whose values depend on the order in which every instance of "
                f"every mechanism draws: not supported; draw from a RANDOM variable "
                f"(random_uniform, random_normal, random_negexp), each instance's own stream",
                name,
            )
        raise self.error(f"call to unknown or unsupported function {name!r}", name)

    def vector_element(self, source: str) -> None:
        """VecStim's element() (the `vector-element` idiom): with i = (int)index >= 0, the
        instance's i-th event time into etime and index one on, or index -1 past the end
        (an instance without a Vector has none)."""
        kb = self.kb
        instance = Var("pn.instance", I32)
        i = kb.assign(self.fresh("vector.i"), b.cast(I32, to_f64(self.read("index"))))
        size = kb.array(f"vector.{source}.size", I32, "instance")[instance]
        offset = kb.array(f"vector.{source}.offset", I32, "instance")[instance]
        with kb.if_(b.ge(i, Const(0, I32))):
            inside = kb.assign(self.fresh("vector.inside"), b.lt(i, size))
            at = b.select(inside, b.add(offset, i), Const(0, I32))  # a valid index always
            value = kb.array(f"vector.{source}.data", F64, f"vector:{source}")[at]
            with kb.if_(inside):
                self.assign("etime", value)
                self.assign("index", b.add(to_f64(self.read("index")), 1.0))
            with kb.else_():
                self.assign("index", Const(-1.0, F64))

    def ghk(self, v: Expr, ci: Expr, co: Expr, z: Expr) -> Expr:
        """NEURON's nrn_ghk (eion.cpp), operation for operation: the GHK current density
        [mA/cm2 per cm/s of permeability] at v, with ktf = 1000 R (celsius + 273.15) / F
        and efun(x) = 1 - x/2 below |x| 1e-4, else x / (exp(x) - 1)."""
        celsius = self.read("celsius")
        ktf = b.div(
            b.mul(Const(1000.0 * units.GAS_CONSTANT, F64), b.add(celsius, Const(273.15, F64))),
            Const(units.FARADAY, F64),
        )
        temp = b.div(b.mul(z, v), ktf)

        def efun(x: Expr) -> Expr:
            small = b.lt(b.call("fabs", x), Const(1e-4, F64))
            series = b.sub(Const(1.0, F64), b.div(x, Const(2.0, F64)))
            return b.select(small, series, b.div(x, b.sub(b.call("exp", x), Const(1.0, F64))))

        eco = b.mul(co, efun(temp))
        eci = b.mul(ci, efun(b.neg(temp)))
        scale = b.mul(b.mul(Const(0.001, F64), z), Const(units.FARADAY, F64))
        return b.mul(scale, b.sub(eci, eco))

    def check_arity(self, name: str, args: list, count: int) -> None:
        if len(args) != count:
            raise self.error(f"{name} takes {count} argument(s), got {len(args)}", name)

    def random_call(self, name: str, args_ast: list) -> Expr:
        """random_uniform/negexp(r[, ...]), random_setseq(r, n), random_setids(r, a, b, c)."""
        if (
            not args_ast
            or args_ast[0].get_node_type_name() not in ("VarName", "Name")
            or (args_ast[0].get_node_name() not in self.d.randoms)
        ):
            raise self.error(f"{name} needs a RANDOM variable as its first argument", name)
        stream = args_ast[0].get_node_name()
        args = [to_f64(self.expr(a)) for a in args_ast[1:]]
        position = f"{stream}.position"
        if name == "random_setseq":
            self.check_arity(name, args, 1)
            self.assign(position, b.call("floor", args[0]))  # seq*4 + which, as NEURON
            return Const(0.0, F64)
        if name == "random_setids":
            self.check_arity(name, args, 3)
            for part, value in zip(("id1", "id2", "id3"), args):
                self.assign(f"{stream}.{part}", value)
            self.assign(position, 0.0)
            return Const(0.0, F64)
        if name == "random_normal":
            if args and len(args) != 2:
                raise self.error("random_normal takes no arguments or two (mean, std)", name)
            z = self.normal(stream)
            return b.add(args[0], b.mul(z, args[1])) if args else z
        if name not in ("random_uniform", "random_negexp"):
            raise self.error(
                f"{name} is not supported; use random_uniform, random_negexp or random_normal",
                name,
            )
        if name == "random_negexp":
            self.check_arity(name, args, 0)
            return self.draw(stream, "negexp")
        if args and len(args) != 2:
            raise self.error("random_uniform takes no bounds or two (low, high)", name)
        u = self.draw(stream, "uniform")
        return b.add(args[0], b.mul(b.sub(args[1], args[0]), u)) if args else u

    def normal(self, stream: str) -> Expr:
        """nrnran123_normal: Marsaglia's polar method, two draws a try (u = 2 * draw - 1),
        rejected while w = u1*u1 + u2*u2 > 1, then u1 * sqrt(-2 log(w) / w). Tries are
        bounded at NORMAL_TRIES (all rejected: (1 - pi/4)**64 ~ 1e-43), leaving NaN, which
        the simulation reports as a blow-up, not a number."""
        kb = self.kb
        done = kb.assign(self.fresh("normal.done"), Const(0.0, F64))
        z = kb.assign(self.fresh("normal.z"), Const(float("nan"), F64))
        with kb.loop(self.fresh("normal.try"), Const(0, I32), Const(NORMAL_TRIES, I32)):
            with kb.if_(b.eq(done, Const(0.0, F64))):
                u1 = kb.assign(
                    self.fresh("normal.u1"), b.sub(b.mul(2.0, self.draw(stream, "uniform")), 1.0)
                )
                u2 = kb.assign(
                    self.fresh("normal.u2"), b.sub(b.mul(2.0, self.draw(stream, "uniform")), 1.0)
                )
                w = kb.assign(self.fresh("normal.w"), b.add(b.mul(u1, u1), b.mul(u2, u2)))
                with kb.if_(b.le(w, Const(1.0, F64))):
                    root = b.call("sqrt", b.div(b.mul(-2.0, b.call("log", w)), w))
                    kb.assign(z.name, b.mul(u1, root))
                    kb.assign(done.name, Const(1.0, F64))
        return Var(z.name, F64)

    def draw(self, stream: str, kind: str) -> Expr:
        """The next number of an instance's Random123 stream, as nrnran123 draws it: uniform
        in (0, 1) (`nrnran123_dblpick`) or -log of that (`nrnran123_negexp`)."""
        position = f"{stream}.position"
        ids = [self.touch(f"{stream}.{part}") for part in ("id1", "id2", "id3")]
        index = self.kb.scalar("random123_index")  # NEURON's Random123 global index
        u = self.kb.assign(
            self.fresh("random.u"), b.call("random123", *ids, self.touch(position), index)
        )
        self.assign(position, b.add(Var(position, F64), 1.0))
        return b.neg(b.call("log", u)) if kind == "negexp" else u

    def inline(self, block, args: list[Expr], returns: bool) -> Expr:
        """Inline a FUNCTION or PROCEDURE call; returns the function's value (0 for procedures)."""
        name = block.get_node_name()
        params = [p.get_node_name() for p in block.parameters]
        if name in self.active_calls:
            raise self.error(f"recursive call of {name!r} is not supported", name)
        if len(params) != len(args):
            raise self.error(f"{name} takes {len(params)} argument(s), got {len(args)}", name)
        keyword = "FUNCTION" if returns else "PROCEDURE"
        outer = (self.scopes, self.where, dict(self.bindings))
        call_name = self.fresh(name)
        self.inlining.append(call_name)
        self.active_calls.append(name)
        self.where = (keyword, name)
        scope = {p: f"{call_name}.{p}" for p in params}
        for p, value in zip(params, args):
            self.kb.assign(scope[p], value)
        result = f"{call_name}.result"
        if returns:
            scope[name] = result
            self.kb.assign(result, 0.0)
        self.scopes = [scope]
        for mechanism_name in [k for k in self.bindings if k in scope]:
            del self.bindings[mechanism_name]  # an argument shadows v, t, ...
        try:
            self.block(block.statement_block, "" if returns else "PROCEDURE")
        finally:
            self.inlining.pop()
            self.active_calls.pop()
            self.scopes, self.where, self.bindings = outer
        return Var(result, F64) if returns else Const(0.0, F64)


#: random_normal's bound on the polar method's tries (each accepted with probability pi/4).
NORMAL_TRIES = 64


def index_of(node):
    """The index expression of an array element (`x[i]`, as a VarName over an IndexedName),
    or None."""
    kind = node.get_node_type_name()
    if kind == "IndexedName":
        return node.length
    if kind == "VarName":
        if getattr(node, "index", None) is not None:
            return node.index
        inner = getattr(node, "name", None)
        if inner is not None and inner.get_node_type_name() == "IndexedName":
            return inner.length
    return None
