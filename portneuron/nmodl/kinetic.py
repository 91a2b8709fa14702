"""KINETIC blocks solved by `sparse`, as nocmodl writes them and NEURON solves them.

nocmodl turns the block into a function that fills a sparse matrix and right-hand side for
one backward-Euler step (the residual of `x - x_old = dt * f(x)`, rows scaled by COMPARTMENT
volumes), and scopmath's `sparse` solves it by Newton's method. This module emits the same
floating-point operations in the same order:

- States are numbered as nocmodl numbers them: the species that take the equations of the
  CONSERVE statements first (the last CONSERVE first; of each, its last scalar species not
  yet taken), then the other states of the reactions in nocmodl's symbol-table order: by the
  first character of the name, then the latest name first to appear in the file first. An
  array takes one row per element.
- Each call of the function sets every matrix element to 0, then for each state row
  `b = -(1/dt) * (x - x_old)`, `a[x][x] = 1/dt`, both multiplied by the state's COMPARTMENT
  volume (scalar states, then arrays), and then runs the block's statements. A reaction
  `~ A + B <-> C (kf, kb)` sets `f_flux = kf * B * A` and `b_flux = kb * C` (species in
  reverse order, each as many times as its stoichiometry; the rate is pasted in as text, so
  `(a + b, c)` gives `a + b * B * A`), subtracts `n * (f_flux - b_flux)` from the rows of
  the left side and adds it to the right side's, and for each species (left, then right,
  each side reversed) adds `_term` (the rate times the other species) to the matrix column
  of that species, `+` on its own side and `-` on the other, in every row of the reaction.
  `~ x << (flux)` only adds the flux to x's row. A CONSERVE statement, where it stands, sets
  its row: `b = total - sum(n * volume * x)`, `a[row][x] = n * volume`. Rows of CONSERVE
  species get no reaction terms.
- `sparse` saves the states, then iterates: fill, solve (`sparse.py`), `x += dx`. A scheme
  whose matrix holds no species factor (nocmodl's `_linmat`) takes one iteration; any other
  iterates until the sum of |dx| is at most 1e-6, setting states that go negative to 0 after
  each update (at most 22 iterations: NEURON stops the run after that). The function runs
  once more at the solution, for what the block assigns.
- `SOLVE ... STEADYSTATE sparse` (`_ss_sparse`) sets dt = 1e9; a linear scheme then iterates
  as a nonlinear one does; a nonlinear one takes single iterations (up to 7), setting states
  below -1e-6 to 0 after each, until none was, then iterates to convergence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from portneuron.ir import BOOL, F64, I32, Assign, Const, Expr, Stmt, Var
from portneuron.ir import builder as b

from .declarations import Declarations, base_name, element, text
from .lower import KernelLowering, index_of, to_bool, to_f64
from .parse import nmodl_module
from .sparse import Ordering, elimination_order, emit_solve

#: scopmath's limits: Newton stops when the sum of |dx| is at most CONVERGE; NEURON gives
#: up after iteration MAXSTEPS + 1 (counting from 0).
CONVERGE = 1e-6
MAXSTEPS = 20
#: _ss_sparse: the step, the number of single iterations, the threshold of a negative state.
STEADY_DT = 1e9
STEADY_TRIES = 7
STEADY_NEGATIVE = -1e-6

#: C operators that bind less tightly than `*`: a rate ending in one of them takes the
#: factors nocmodl appends (`* B * A`) into its last operand.
_LOOSER = {"+", "-", "<", "<=", ">", ">=", "==", "!=", "&&", "||"}
_BINARY = {
    "+": b.add, "-": b.sub, "<": b.lt, "<=": b.le, ">": b.gt, ">=": b.ge, "==": b.eq,
    "!=": b.ne, "&&": b.and_, "||": b.or_,
}  # fmt: skip


def species(lowering: KernelLowering, expr) -> list[tuple[str, int]]:
    """[(name, stoichiometry)] of one side of a reaction, in source order; an array
    element by its constant index (`ca[3]`)."""
    kind = expr.get_node_type_name()
    if kind in ("WrappedExpression", "ParenExpression"):
        return species(lowering, expr.expression)
    if kind == "BinaryExpression" and expr.op.eval() == "+":
        return species(lowering, expr.lhs) + species(lowering, expr.rhs)
    if kind == "ReactVarName":
        name = expr.get_node_name()
        index = index_of(expr.name)
        if index is not None:
            name = lowering.element_name(name, index)  # ca[i] -> ca[3]
        if name not in lowering.d.states:
            lowering.read(name)  # a declared name, or one clear line
        return [(name, int(float(expr.value.eval())) if expr.value is not None else 1)]
    raise lowering.error(f"cannot read reaction term {text(expr)!r}", None)


def _names(expr) -> list[str]:
    """The (base) names of one side of a reaction or CONSERVE, in source order."""
    module = nmodl_module()
    found = module.visitor.AstLookupVisitor().lookup(expr, module.ast.AstNodeType.REACT_VAR_NAME)
    if expr.get_node_type_name() == "ReactVarName":
        found = [expr]
    return [n.get_node_name() for n in found]


def _first_appearance(d: Declarations) -> dict[str, int]:
    """Where each name first appears in the file, as nocmodl's lexer meets it (comments,
    strings and TITLE lines skipped)."""
    source = "\n".join(d.source_map.lines)
    source = re.sub(r'"[^"\n]*"', " ", source)
    source = re.sub(r"(?m)^\s*TITLE\b.*$", " ", source)
    first: dict[str, int] = {}
    for match in re.finditer(r"(?<![\w.])[A-Za-z_]\w*", source):
        first.setdefault(match[0], match.start())
    return first


def symbol_table_order(d: Declarations, names) -> list[str]:
    """`names` in the order nocmodl's symbol table lists them (its SYMITER): by the first
    character's code, then the name met last in the file first."""
    first = _first_appearance(d)
    declared = list(d.variables)

    def key(name: str) -> tuple[int, int]:
        # a name only an INCLUDEd file holds: as if met before this file's text
        return ord(name[0]), -first.get(name, declared.index(name) - len(declared))

    return sorted(names, key=key)


def at_index(lowering: KernelLowering, index: str | None, k: int, expression) -> Expr:
    """`expression` of a COMPARTMENT or LONGITUDINAL_DIFFUSION statement for element `k`:
    its index name (nocmodl's `_i`), if it has one, stands for k."""
    if index is None:
        return to_f64(lowering.expr(expression))
    local = lowering.fresh(f"{lowering.prefix()}{index}")
    lowering.scopes.append({index: local})
    lowering.kb.assign(local, Const(float(k), F64))
    lowering.loop_ints[local] = Const(k, I32)
    try:
        return to_f64(lowering.expr(expression))
    finally:
        lowering.scopes.pop()


@dataclass
class _Numbering:
    """nocmodl's numbering of a KINETIC block's states."""

    states: list[str]  # by row: scalars and array elements (NEURON's _slist)
    bases: list[str]  # state symbols in nocmodl's order (symorder)
    ncons: int  # rows of CONSERVE species, first
    conserve_rows: list[int]  # row of each CONSERVE statement, in source order
    #: COMPARTMENT of a state symbol: (index name or None, volume expression)
    volume: dict[str, tuple[str | None, object]] = field(default_factory=dict)

    def row(self, name: str) -> int:
        return self.states.index(name)


def _number(lowering: KernelLowering, block) -> _Numbering:
    d = lowering.d
    module = nmodl_module()
    lookup = module.visitor.AstLookupVisitor()
    kinds = module.ast.AstNodeType
    reactions = lookup.lookup(block, kinds.REACTION_STATEMENT)
    conserves = lookup.lookup(block, kinds.CONSERVE)

    def is_state(name: str) -> bool:
        return name in d.variables and d.variables[name].kind == "state"

    used: set[str] = set()
    for r in reactions:
        sides = [r.reaction1] + ([r.reaction2] if r.reaction2 is not None else [])
        used.update(n for side in sides for n in _names(side) if is_state(n))
    for c in conserves:
        used.update(n for n in _names(c.react) if is_state(n))
    if not used:
        raise lowering.error("the KINETIC block has no reactions of STATEs", None)
    taken: list[str] = []
    for c in reversed(conserves):
        free = [
            n for n in reversed(_names(c.react)) if n in used and n not in taken and not d.length(n)
        ]
        if not free:
            raise lowering.error(
                f"CONSERVE {text(c.react)}: no scalar STATE left to take its equation "
                f"(nocmodl: failed to diagonalize the kinetic matrix)",
                "CONSERVE",
            )
        taken.append(free[0])
    bases = taken + symbol_table_order(d, used - set(taken))
    states = [e for n in bases for e in ([f"{n}[{k}]" for k in range(d.length(n))] or [n])]
    numbering = _Numbering(states, bases, len(taken), list(reversed(range(len(taken)))))
    for node in lookup.lookup(block, kinds.COMPARTMENT):
        index = node.index_name.get_node_name() if node.index_name is not None else None
        for s in node.species:
            name = s.get_node_name()
            if index is not None and not d.length(name):
                raise lowering.error(
                    f"indexed COMPARTMENT names {name!r}, which is not an array", name
                )
            numbering.volume[name] = (index, node.volume)
    return numbering


class _Scheme:
    """Lowers a KINETIC block into the statements of nocmodl's matrix-filling function."""

    def __init__(self, lowering: KernelLowering, block) -> None:
        self.lw = lowering
        self.block = block
        self.n = _number(lowering, block)
        self.prefix = lowering.fresh("sparse")
        self.elements: set[tuple[int, int]] = set()
        self.rhs = [f"{self.prefix}.b{row}" for row in range(len(self.n.states))]
        self.linear = True  # nocmodl's _linmat: no _term holds a species
        self.conserved = 0  # CONSERVE statements lowered so far

    # -- names of the IR locals
    def element(self, row: int, col: int) -> str:
        self.elements.add((row, col))
        return f"{self.prefix}.a{row}.{col}"

    def old(self, state: str) -> str:
        return f"{self.prefix}.old.{state}"

    def update(self, row: int, col: int, value: Expr, add: bool = True) -> None:
        name = self.element(row, col)
        current = Var(name, F64)
        self.lw.kb.assign(name, b.add(current, value) if add else b.sub(current, value))

    def add_rhs(self, row: int, value: Expr, add: bool = True) -> None:
        current = Var(self.rhs[row], F64)
        self.lw.kb.assign(self.rhs[row], b.add(current, value) if add else b.sub(current, value))

    # -- the function
    def function(self) -> list[Stmt]:
        """The statements of one call: every element set to 0, the step's diagonal and
        right-hand side, then the block."""
        lw, kb, n = self.lw, self.lw.kb, self.n
        hooks = {"ReactionStatement": self.reaction, "Conserve": self.conserve}
        hooks["Compartment"] = lambda node: None  # read before the block, as nocmodl does
        hooks["LonDiffuse"] = lambda node: None  # the engine's step after the states'
        saved = {k: lw.on_statement.get(k) for k in hooks}
        fluxes = {k: lw.bindings.get(k) for k in ("f_flux", "b_flux")}
        with kb.capture() as body:
            dt1 = kb.assign(f"{self.prefix}.dt1", b.div(1.0, lw.read("dt")))
            for row in range(n.ncons, len(n.states)):
                state = lw.touch(n.states[row])
                old = Var(self.old(n.states[row]), F64)
                kb.assign(self.rhs[row], b.mul(b.neg(dt1), b.sub(state, old)))
                kb.assign(self.element(row, row), dt1)
            scalars = [s for s in n.bases[n.ncons :] if not lw.d.length(s)]
            arrays = [s for s in n.bases[n.ncons :] if lw.d.length(s)]
            for base in scalars + arrays:
                if base not in n.volume:
                    continue
                for state in [s for s in n.states if base_name(s) == base]:
                    row = n.row(state)
                    volume = kb.assign(f"{self.prefix}.volume", self.volume(state))
                    kb.assign(self.rhs[row], b.mul(Var(self.rhs[row], F64), volume))
                    name = self.element(row, row)
                    kb.assign(name, b.mul(Var(name, F64), volume))
            lw.on_statement.update(hooks)
            try:
                lw.block(self.block.statement_block)
            finally:
                for k, hook in saved.items():
                    if hook is None:
                        lw.on_statement.pop(k, None)
                    else:
                        lw.on_statement[k] = hook
                for k, value in fluxes.items():
                    if value is None:
                        lw.bindings.pop(k, None)
                    else:
                        lw.bindings[k] = value
        if self.conserved != len(self.n.conserve_rows):
            raise lw.error("CONSERVE inside a loop or an IF is not supported", "CONSERVE")
        return body

    def volume(self, state: str) -> Expr:
        """The COMPARTMENT volume of a state (element), evaluated here."""
        at = element(state)
        index, expression = self.n.volume[base_name(state)]
        return at_index(self.lw, index, at[1] if at is not None else 0, expression)

    def value(self, name: str) -> Expr:
        """A species' value: a STATE's local, or a fixed concentration (`~ GenVes <-> Ves`)."""
        if name in self.n.states:
            return self.lw.touch(name)
        return to_f64(self.lw.read(name))

    def rate(self, expression, factors: list[Expr], pasted: bool) -> Expr:
        """`rate * f1 * f2 ...` as C parses nocmodl's text: a pasted rate (not in
        parentheses) that ends in an operator looser than `*` takes the factors into its
        last operand."""
        lw = self.lw
        kind = expression.get_node_type_name()
        if kind == "WrappedExpression":
            return self.rate(expression.expression, factors, pasted)
        if pasted and kind == "BinaryExpression" and expression.op.eval() in _LOOSER and factors:
            op = expression.op.eval()
            lhs = lw.expr(expression.lhs)
            rhs = self.rate(expression.rhs, factors, pasted)
            if op in ("&&", "||"):
                return _BINARY[op](to_bool(lhs), to_bool(rhs))
            return _BINARY[op](to_f64(lhs), to_f64(rhs))
        out = to_f64(lw.expr(expression))
        for f in factors:
            out = b.mul(out, f)
        return out

    def reaction(self, node) -> None:
        lw, kb, n = self.lw, self.lw.kb, self.n
        op = node.op.eval()
        left = list(reversed(species(lw, node.reaction1)))  # nocmodl keeps them reversed
        if op == "<<":
            if len(left) != 1 or left[0][0] not in n.states or left[0][1] != 1:
                raise lw.error("a flux reaction (~ x << (f)) names exactly one STATE", "<<")
            row = n.row(left[0][0])
            if row < n.ncons:
                raise lw.error(f"{left[0][0]} is conserved and has a flux", left[0][0])
            flux = kb.assign(f"{self.prefix}.b_flux", to_f64(lw.expr(node.expression1)))
            lw.bindings["f_flux"], lw.bindings["b_flux"] = Const(0.0, F64), flux
            self.add_rhs(row, flux)
            return
        if op not in ("<->", "->"):
            raise lw.error(f"reaction operator {op!r} is not supported", op)
        right = list(reversed(species(lw, node.reaction2))) if node.reaction2 is not None else []
        # `<->` pastes its rates as written; `-> (k)` keeps k's parentheses
        rates = [node.expression1, node.expression2 if op == "<->" else None]
        sides = [left, right]
        fluxes: list[Expr] = []
        for side, rate in zip(sides, rates):
            factors = [self.value(s) for s, count in side for _ in range(count)]
            value = Const(0.0, F64) if rate is None else self.rate(rate, factors, op == "<->")
            fluxes.append(kb.assign(f"{self.prefix}.{'fb'[len(fluxes)]}_flux", value))
        f_flux, b_flux = fluxes
        lw.bindings["f_flux"], lw.bindings["b_flux"] = f_flux, b_flux
        rows = [[(n.row(s), count) for s, count in side if s in n.states] for side in sides]
        for j, side in enumerate(rows):
            for row, count in side:
                if row < n.ncons:
                    continue  # the equation of a CONSERVE species
                flux = b.sub(f_flux, b_flux)
                self.add_rhs(row, flux if count == 1 else b.mul(float(count), flux), add=j == 1)
        for j, (side, rate) in enumerate(zip(sides, rates)):
            for at, (s, count) in enumerate(side):
                if s not in n.states:
                    continue
                factors = [Const(float(count), F64)] if count != 1 else []
                for other, (s1, count1) in enumerate(side):
                    factors += [self.value(s1)] * (count1 - (other == at))
                if len(factors) > (count != 1):
                    self.linear = False
                value = Const(0.0, F64) if rate is None else self.rate(rate, factors, op == "<->")
                term = kb.assign(f"{self.prefix}.term", value)
                col = n.row(s)
                for j1, side1 in enumerate(rows):
                    for row, count1 in side1:
                        if row < n.ncons:
                            continue
                        scaled = term if count1 == 1 else b.mul(float(count1), term)
                        self.update(row, col, scaled, add=j == j1)

    def conserve(self, node) -> None:
        lw, kb, n = self.lw, self.lw.kb, self.n
        if self.conserved >= len(n.conserve_rows):
            raise lw.error("CONSERVE inside a loop is not supported", "CONSERVE")
        row = n.conserve_rows[self.conserved]
        self.conserved += 1
        kb.assign(self.rhs[row], to_f64(lw.expr(node.expr)))
        for s, count in reversed(species(lw, node.react)):
            if s not in n.states:
                raise lw.error(f"CONSERVE names {s!r}, which is not a STATE", s)
            volume = self.volume(s) if base_name(s) in n.volume else None
            coefficient: Expr = Const(float(count), F64)
            amount: Expr = self.value(s)
            if volume is not None:
                coefficient = b.mul(coefficient, volume)
                amount = b.mul(amount, volume)
            if count != 1:
                amount = b.mul(amount, float(count))
            kb.assign(self.element(row, n.row(s)), coefficient)
            self.add_rhs(row, amount, add=False)


class _Solver:
    """scopmath's `sparse` and `_ss_sparse` around a lowered scheme."""

    def __init__(self, scheme: _Scheme, function: list[Stmt]) -> None:
        self.s = scheme
        self.ordering: Ordering = elimination_order(len(scheme.n.states), scheme.elements)
        names = {rc: f"{scheme.prefix}.a{rc[0]}.{rc[1]}" for rc in self.ordering.elements}
        self.names = names
        # every call starts from a zero matrix, fill-ins included (init_coef_list)
        zero = [Assign(names[rc], Const(0.0, F64)) for rc in sorted(names)]
        self.function = zero + function

    def call(self, linflag: bool) -> None:
        """One call of `sparse`: save the states, iterate, run the function at the end."""
        s, lw = self.s, self.s.lw
        kb = lw.kb
        for state in s.n.states:
            kb.assign(s.old(state), lw.touch(state))
        if linflag:
            self.iteration(clamp=False)
        else:
            done = lw.fresh(f"{s.prefix}.done")
            kb.assign(done, Const(False, BOOL))
            with kb.loop(lw.fresh(f"{s.prefix}.iteration"), 0, MAXSTEPS + 2):
                with kb.if_(b.not_(Var(done, BOOL))):
                    error = self.iteration(clamp=True)
                    kb.assign(done, b.not_(b.gt(error, CONVERGE)))
        kb.emit_all(self.function)
        for state in s.n.states:
            lw.written.setdefault(state, None)

    def iteration(self, clamp: bool) -> Expr:
        """Fill, solve, `x += dx`; with `clamp` (a nonlinear iteration), negative states
        to 0 and the sum of |dx| returned."""
        s, kb = self.s, self.s.lw.kb
        kb.emit_all(self.function)
        emit_solve(kb, self.ordering, self.names, s.rhs, f"{s.prefix}.r")
        error: Expr = Const(0.0, F64)
        if clamp:
            error = kb.assign(f"{s.prefix}.error", 0.0)
        for row, state in enumerate(s.n.states):
            dx = Var(s.rhs[row], F64)
            kb.assign(state, b.add(Var(state, F64), dx))
            if clamp:
                kb.assign(state, b.select(b.lt(Var(state, F64), 0.0), 0.0, Var(state, F64)))
                error = kb.assign(f"{s.prefix}.error", b.add(error, b.call("fabs", dx)))
        return error

    def steady_state(self) -> None:
        """`_ss_sparse` (the caller binds dt to STEADY_DT)."""
        s, lw = self.s, self.s.lw
        kb = lw.kb
        if s.linear:
            self.call(linflag=False)
            return
        settled = lw.fresh(f"{s.prefix}.settled")
        kb.assign(settled, Const(False, BOOL))
        with kb.loop(lw.fresh(f"{s.prefix}.try"), 0, STEADY_TRIES):
            with kb.if_(b.not_(Var(settled, BOOL))):
                self.call(linflag=True)
                fine: Expr = Const(True, BOOL)
                for state in s.n.states:
                    low = kb.assign(f"{s.prefix}.low", b.lt(Var(state, F64), STEADY_NEGATIVE))
                    kb.assign(state, b.select(low, 0.0, Var(state, F64)))
                    fine = kb.assign(f"{s.prefix}.fine", b.and_(fine, b.not_(low)))
                with kb.if_(fine):
                    self.call(linflag=False)
                    kb.assign(settled, Const(True, BOOL))


def _solver(lowering: KernelLowering, block) -> _Solver:
    scheme = _Scheme(lowering, block)
    return _Solver(scheme, scheme.function())


def emit_sparse_step(lowering: KernelLowering, block) -> bool:
    """`SOLVE block METHOD sparse`: one step of dt; whether the scheme is linear (one
    iteration, nocmodl's `_linmat`)."""
    solver = _solver(lowering, block)
    solver.call(linflag=solver.s.linear)
    return solver.s.linear


def emit_sparse_steady_state(lowering: KernelLowering, block) -> None:
    """`SOLVE block STEADYSTATE sparse` (the caller binds dt to STEADY_DT)."""
    _solver(lowering, block).steady_state()
