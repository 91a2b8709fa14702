"""DERIVATIVE blocks solved by `derivimplicit`, as nocmodl writes them and NEURON solves them.

nocmodl makes the block its own residual function: it runs the block's statements (each
`x' = f` sets Dx = f) and then, for the equations in source order, `value = Dx - (x -
x_saved)/dt`. scopmath's `nrn_newton_thread` solves value = 0 for the states, numbered in
nocmodl's symbol-table order (kinetic.symbol_table_order), which need not be the equations'
order. This module emits the same floating-point operations in the same order:

- save the states; then, up to 50 times: while the largest relative change of a state
  (over states with |x| > 1e-8) exceeds 0.05 (the first time: always), build the Jacobian
  by central differences (for each state: increment max(|0.02 x|, 1e-6); x + h, the
  function; x - 2h, the function, column (high - low) / (2h); x + h, the function again),
  negate the function values, and factor it by Crout with partial pivoting (implicit
  equilibration: each row scaled by its entry of largest magnitude); solve for dx; record
  the change and add dx; evaluate the function, negate its values; stop when the change is
  at most 1e-6 and every |value| at most 1e-8.
- The block then runs once more at the solution, for what it assigns.

Row exchanges depend on the values, so they are selects, as in the LINEAR solver; a row's
entries, its scale and its place in the permutation move together.

A NONLINEAR block is solved by the same `newton`: its residual function is the block, each
`~ lhs = rhs` setting the next value to `-(lhs) + rhs` (nocmodl's text), the unknowns the
STATEs its equations name (those of SOLVEFOR, if it has one) in symbol-table order, starting
from their values; no states saved, and the block is not run again after the last iteration
(the iteration's own evaluation leaves what it assigns at the solution).
"""

from __future__ import annotations

from portneuron.ir import BOOL, F64, I32, Const, Expr, Stmt, Var
from portneuron.ir import builder as b

from .declarations import text
from .kinetic import symbol_table_order
from .lower import KernelLowering, to_f64
from .parse import nmodl_module

#: scopmath's errcodes: iteration limit, Jacobian refresh and convergence thresholds, and
#: the smallest difference-quotient increment.
MAXITERS = 50
MAXCHANGE = 0.05
CONVERGE = 1e-6
ZERO = 1e-8
STEP = 1e-6


def equation_target(lowering: KernelLowering, equation) -> tuple[str, object]:
    """The STATE and the right side of a derivative equation `x' = f`."""
    expr = equation.expression
    lhs = expr.lhs
    if lhs.get_node_type_name() == "VarName":
        lhs = lhs.name
    index = None
    if lhs.get_node_type_name() == "IndexedName":  # x'[i], an element of an array STATE
        lhs, index = lhs.name, lhs.length
    if lhs.get_node_type_name() != "PrimeName":
        raise lowering.error(f"left side of {text(expr)!r} is not a derivative", None)
    state = lhs.get_node_name()
    if int(lhs.order.eval()) != 1:
        raise lowering.error(f"higher-order derivative {text(lhs)!r} is not supported", state)
    if index is not None:
        raise lowering.error(
            f"a derivative of array STATE {state!r} is not supported: NEURON's translator "
            f"cannot translate it either; use a KINETIC block",
            state,
        )
    if state not in lowering.d.states:
        raise lowering.error(f"{state!r} has a derivative but is not a STATE", state)
    return state, expr.rhs


class _Newton:
    """scopmath's `newton` around a residual function: `function` (statements) sets the
    `value` variables from the `unknowns`, which the iteration moves in place."""

    lw: KernelLowering
    p: str
    n: int
    unknowns: list[str]
    value: list[str]
    function: list[Stmt]

    # -- the matrix, rows by position after exchanges
    def a(self, i: int, j: int) -> str:
        return f"{self.p}.a{i}.{j}"

    def iterate(self) -> None:
        lw, kb, p = self.lw, self.lw.kb, self.p
        for state in self.unknowns:
            lw.touch(state)
        # defined before the loop for the verifier; the first iteration always sets them
        for v in self.value:
            kb.assign(v, 0.0)
        for i in range(self.n):
            kb.assign(f"{p}.perm{i}", Const(i, I32))
            kb.assign(f"{p}.rowmax{i}", 0.0)
            for j in range(self.n):
                kb.assign(self.a(i, j), 0.0)
        change, done = f"{p}.change", f"{p}.done"
        kb.assign(change, 1.0)
        kb.assign(done, Const(False, BOOL))
        with kb.loop(lw.fresh(f"{p}.iteration"), 0, MAXITERS):
            with kb.if_(b.not_(Var(done, BOOL))):
                with kb.if_(b.gt(Var(change, F64), MAXCHANGE)):
                    self.jacobian()
                    for v in self.value:
                        kb.assign(v, b.neg(Var(v, F64)))
                    self.crout()
                dx = self.solve()
                kb.assign(change, 0.0)
                for j, state in enumerate(self.unknowns):
                    x = Var(state, F64)
                    ratio = b.call("fabs", b.div(dx[j], x))
                    larger = b.and_(b.gt(b.call("fabs", x), ZERO), b.gt(ratio, Var(change, F64)))
                    kb.assign(change, b.select(larger, ratio, Var(change, F64)))
                    kb.assign(state, b.add(x, dx[j]))
                kb.emit_all(self.function)
                deviation = kb.assign(f"{p}.deviation", 0.0)
                for v in self.value:
                    kb.assign(v, b.neg(Var(v, F64)))
                    size = b.call("fabs", Var(v, F64))
                    deviation = kb.assign(
                        f"{p}.deviation", b.select(b.gt(size, deviation), size, deviation)
                    )
                converged = b.and_(b.le(Var(change, F64), CONVERGE), b.le(deviation, ZERO))
                kb.assign(done, converged)
        for state in self.unknowns:
            lw.written.setdefault(state, None)

    def jacobian(self) -> None:
        """Central differences, column by column, the states perturbed in place."""
        kb, p = self.lw.kb, self.p
        for j, state in enumerate(self.unknowns):
            x = Var(state, F64)
            scaled = b.call("fabs", b.mul(0.02, x))
            h = kb.assign(f"{p}.h", b.select(b.gt(scaled, STEP), scaled, STEP))  # fmax
            kb.assign(state, b.add(x, h))
            kb.emit_all(self.function)
            high = [kb.assign(f"{p}.high{i}", Var(v, F64)) for i, v in enumerate(self.value)]
            kb.assign(state, b.sub(x, b.mul(2.0, h)))
            kb.emit_all(self.function)
            for i, v in enumerate(self.value):
                quotient = b.div(b.sub(high[i], Var(v, F64)), b.mul(2.0, h))
                kb.assign(self.a(i, j), quotient)
            kb.assign(state, b.add(x, h))
            kb.emit_all(self.function)

    def crout(self) -> None:
        """nrn_crout_thread on rows held by position: a row exchange moves its entries, its
        scale (`rowmax`) and its number (`perm`) to the pivot's place."""
        kb, p, n = self.lw.kb, self.p, self.n
        rowmax = [f"{p}.rowmax{i}" for i in range(n)]
        perm = [f"{p}.perm{i}" for i in range(n)]
        for i in range(n):
            kb.assign(perm[i], Const(i, I32))
            largest: Expr = Var(self.a(i, 0), F64)
            for j in range(1, n):
                entry = Var(self.a(i, j), F64)
                bigger = b.gt(b.call("fabs", entry), b.call("fabs", largest))
                largest = kb.assign(f"{p}.largest", b.select(bigger, entry, largest))
            kb.assign(rowmax[i], largest)
        for r in range(n):
            for i in range(r, n):
                total: Expr = Const(0.0, F64)
                for k in range(r):
                    term = b.mul(Var(self.a(i, k), F64), Var(self.a(k, r), F64))
                    total = kb.assign(f"{p}.sum", b.add(total, term))
                kb.assign(self.a(i, r), b.sub(Var(self.a(i, r), F64), total))
            pivot = f"{p}.pivot"
            best = kb.assign(f"{p}.equil", self.equilibrated(r, r, rowmax))
            kb.assign(pivot, Const(r, I32))
            for i in range(r + 1, n):
                candidate = self.equilibrated(i, r, rowmax)
                better = kb.assign(f"{p}.better", b.gt(candidate, best))
                kb.assign(pivot, b.select(better, Const(i, I32), Var(pivot, I32)))
                best = kb.assign(f"{p}.equil", b.select(better, candidate, best))
            if r + 1 < n:
                self.exchange(r, Var(pivot, I32), rowmax, perm)
            for j in range(r + 1, n):
                total = Const(0.0, F64)
                for k in range(r):
                    term = b.mul(Var(self.a(r, k), F64), Var(self.a(k, j), F64))
                    total = kb.assign(f"{p}.sum", b.add(total, term))
                difference = b.sub(Var(self.a(r, j), F64), total)
                kb.assign(self.a(r, j), b.div(difference, Var(self.a(r, r), F64)))

    def equilibrated(self, i: int, r: int, rowmax: list[str]) -> Expr:
        return b.call("fabs", b.div(Var(self.a(i, r), F64), Var(rowmax[i], F64)))

    def exchange(self, r: int, pivot: Var, rowmax: list[str], perm: list[str]) -> None:
        """Swap the row at position r with the one at position `pivot` (r or below)."""
        kb, p, n = self.lw.kb, self.p, self.n
        below = range(r + 1, n)
        chosen = [kb.assign(f"{p}.chosen{i}", b.eq(pivot, Const(i, I32))) for i in below]
        columns = [([self.a(i, c) for i in range(n)], F64) for c in range(n)]
        for names, dtype in [*columns, (rowmax, F64), (perm, I32)]:
            top: Expr = Var(names[r], dtype)
            for i, is_pivot in zip(below, chosen):
                top = b.select(is_pivot, Var(names[i], dtype), top)
            kept = kb.assign(f"{p}.kept.{dtype.value}", Var(names[r], dtype))
            kb.assign(names[r], top)
            for i, is_pivot in zip(below, chosen):
                kb.assign(names[i], b.select(is_pivot, kept, Var(names[i], dtype)))

    def solve(self) -> list[Var]:
        """nrn_scopmath_solve_thread: forward substitution with the right-hand side taken
        through the permutation, then back substitution (unit upper triangle)."""
        kb, p, n = self.lw.kb, self.p, self.n
        dx = [f"{p}.dx{i}" for i in range(n)]
        for i in range(n):
            permuted: Expr = Var(self.value[0], F64)
            for k in range(1, n):
                is_k = b.eq(Var(f"{p}.perm{i}", I32), Const(k, I32))
                permuted = b.select(is_k, Var(self.value[k], F64), permuted)
            total: Expr = Const(0.0, F64)
            for j in range(i):
                term = b.mul(Var(self.a(i, j), F64), Var(dx[j], F64))
                total = kb.assign(f"{p}.sum", b.add(total, term))
            kb.assign(dx[i], b.div(b.sub(permuted, total), Var(self.a(i, i), F64)))
        for i in reversed(range(n)):
            total = Const(0.0, F64)
            for j in range(i + 1, n):
                term = b.mul(Var(self.a(i, j), F64), Var(dx[j], F64))
                total = kb.assign(f"{p}.sum", b.add(total, term))
            kb.assign(dx[i], b.sub(Var(dx[i], F64), total))
        return [Var(name, F64) for name in dx]


class _Derivimplicit(_Newton):
    """One DERIVATIVE block lowered as nocmodl's residual function, and Newton around it."""

    def __init__(self, lowering: KernelLowering, block) -> None:
        self.lw = lowering
        self.p = lowering.fresh("newton")
        self.equations: list[str] = []  # states by their equation, in source order
        kb = lowering.kb
        with lowering.hook("DiffEqExpression", self.equation), kb.capture() as self.body:
            lowering.block(block.statement_block)
        if not self.equations:
            raise lowering.error("the block defines no derivatives", None)
        self.unknowns = symbol_table_order(lowering.d, self.equations)
        self.n = len(self.equations)
        self.value = [f"{self.p}.value{i}" for i in range(self.n)]
        with kb.capture() as residual:
            dt = lowering.read("dt")
            for i, state in enumerate(self.equations):
                step = b.div(b.sub(Var(state, F64), Var(self.saved(state), F64)), dt)
                kb.assign(self.value[i], b.sub(Var(self.derivative(state), F64), step))
        self.function = [*self.body, *residual]

    def derivative(self, state: str) -> str:
        return f"{self.p}.D.{state}"

    def saved(self, state: str) -> str:
        return f"{self.p}.saved.{state}"

    def equation(self, node) -> None:
        state, rhs = equation_target(self.lw, node)
        if state in self.equations:
            raise self.lw.error(f"{state}' has two equations (nocmodl refuses them)", state)
        self.equations.append(state)
        self.lw.kb.assign(self.derivative(state), to_f64(self.lw.expr(rhs)))

    def emit(self) -> None:
        lw, kb = self.lw, self.lw.kb
        for state in self.equations:
            kb.assign(self.saved(state), lw.touch(state))
            kb.assign(self.derivative(state), 0.0)
        self.iterate()
        kb.emit_all(self.body)  # at the solution, for what the block assigns


def emit_derivimplicit_step(lowering: KernelLowering, block) -> None:
    """`SOLVE block METHOD derivimplicit`: one step of dt (the caller's binding of dt)."""
    _Derivimplicit(lowering, block).emit()


class _Nonlinear(_Newton):
    """A NONLINEAR block as nocmodl's residual function (`_dlist[++_counte] = -(lhs) +
    rhs` for each `~ lhs = rhs`), and `newton` around it."""

    def __init__(self, lowering: KernelLowering, block) -> None:
        self.lw = lowering
        self.p = lowering.fresh("nonlinear")
        self.value = []
        self.named: list[str] = []  # STATEs the equations name
        solvefor = [s.get_node_name() for s in (block.solvefor or ())]
        self.candidates = set(solvefor or lowering.d.states)
        with lowering.hook("NonLinEquation", self.equation):
            with lowering.kb.capture() as self.function:
                lowering.block(block.statement_block)
        self.unknowns = symbol_table_order(lowering.d, self.named)
        self.n = len(self.unknowns)
        if not self.value:
            raise lowering.error(f"NONLINEAR {block.get_node_name()} has no equations", None)
        if len(self.value) != self.n:
            raise lowering.error(
                f"NONLINEAR {block.get_node_name()} has {len(self.value)} equations for "
                f"{self.n} states ({', '.join(self.unknowns)}); nocmodl refuses it too",
                None,
            )

    def equation(self, equation) -> None:
        module = nmodl_module()
        names = module.visitor.AstLookupVisitor().lookup(equation, module.ast.AstNodeType.NAME)
        for name in names:
            state = name.get_node_name()
            if state in self.candidates and self.lw.lookup_local(state) is None:
                if self.lw.d.length(state):
                    raise self.lw.error(
                        f"array STATE {state!r} in a NONLINEAR block is not supported", state
                    )
                if state not in self.named:
                    self.named.append(state)
        lhs, rhs = to_f64(self.lw.expr(equation.lhs)), to_f64(self.lw.expr(equation.rhs))
        value = f"{self.p}.value{len(self.value)}"
        self.value.append(value)
        self.lw.kb.assign(value, b.add(b.neg(lhs), rhs))

    def emit(self) -> None:
        for state in self.unknowns:  # the start for the first evaluation
            self.lw.touch(state)
        self.iterate()


def emit_nonlinear_solve(lowering: KernelLowering, block) -> None:
    """`SOLVE block` of a NONLINEAR block: nocmodl's `newton` on its equations."""
    _Nonlinear(lowering, block).emit()
