"""Integration methods for SOLVE: cnexp, euler, derivimplicit, and KINETIC/sparse (kinetic.py).

- `cnexp`: each equation `x' = f` must be linear in `x`: f = a*x + c. The update is the exact
  exponential one NEURON emits, `x = x + (1 - exp(dt*a))*(-c/a - x)` (or `x + dt*c` when
  a = 0), equations taken in source order.
- `euler`: the explicit step `x = x + dt*f`, every f taken at the step's start values.
- `derivimplicit` is newton.py's: nocmodl's residual function and NEURON's Newton solver
  (difference-quotient Jacobian, Crout LU), operation for operation.
- KINETIC blocks (`sparse`) are kinetic.py's: nocmodl's matrix and NEURON's sparse solver,
  operation for operation.
- LINEAR blocks: nocmodl's coefficients and NEURON's `simeq`.
"""

from __future__ import annotations

import sympy as sp

from portneuron.ir import F64, I32, Const, Expr, Var
from portneuron.ir import builder as b

from .kinetic import emit_sparse_steady_state, emit_sparse_step
from .lower import KernelLowering, index_of, to_f64
from .newton import emit_derivimplicit_step, equation_target
from .symbolic import NotSymbolic, execute, symbol, to_ir, to_sympy


class NotCnexp(Exception):
    """A DERIVATIVE block cnexp cannot solve (an equation not linear in its state): nocmodl
    then solves it by derivimplicit ("Could not translate using cnexp method; using
    derivimplicit"), and so does portneuron, lowering the mechanism again."""

    def __init__(self, block: str) -> None:
        super().__init__(block)
        self.block = block


def install_cnexp(lowering: KernelLowering, block: str) -> None:
    """Make derivative equations in the lowered block update their state by cnexp."""

    def equation(node) -> None:
        state, rhs = equation_target(lowering, node)
        with lowering.kb.capture() as pre:
            value = to_f64(lowering.expr(rhs))
        x = symbol(state)
        try:
            f = to_sympy(value, execute(pre, {}, opaque_unless=state))
        except NotSymbolic:
            raise NotCnexp(block) from None
        a = sp.diff(f, x)
        if a.has(x):
            raise NotCnexp(block)
        c = f.subs(x, 0)
        lowering.kb.emit_all(pre)
        dt, xv = lowering.read("dt"), Var(state, F64)
        lowering.touch(state)
        if a == 0:
            new = b.add(xv, b.mul(dt, to_ir(c)))
        else:
            a_ir = to_ir(a)
            new = b.add(
                xv,
                b.mul(
                    b.sub(1.0, b.call("exp", b.mul(dt, a_ir))),
                    b.sub(b.div(b.neg(to_ir(c)), a_ir), xv),
                ),
            )
        lowering.assign(state, new)

    lowering.on_statement["DiffEqExpression"] = equation


def emit_euler_step(lowering: KernelLowering, block) -> None:
    """One explicit Euler step, as NEURON's `euler`: the DERIVATIVE block runs with every
    `x' = f` giving Dx = f at the step's start values, then every state moves by dt*Dx."""
    derivatives: dict[str, Var] = {}

    def equation(node) -> None:
        state, rhs = equation_target(lowering, node)
        derivatives[state] = lowering.kb.assign(f"pn.D{state}", to_f64(lowering.expr(rhs)))

    with lowering.hook("DiffEqExpression", equation):
        lowering.block(block.statement_block)
    dt = lowering.read("dt")
    for state, derivative in derivatives.items():
        lowering.assign(state, b.add(lowering.read(state), b.mul(dt, derivative)))


def emit_implicit_step(lowering: KernelLowering, block, kinetic: bool) -> bool:
    """Lower a DERIVATIVE (derivimplicit) or KINETIC (sparse) block as one implicit step;
    whether the system is linear (solved in one Newton iteration: a KINETIC scheme that
    nocmodl finds linear; NEURON iterates every derivimplicit system)."""
    if kinetic:
        return emit_sparse_step(lowering, block)
    emit_derivimplicit_step(lowering, block)
    return False


def emit_steady_state(lowering: KernelLowering, block, kinetic: bool) -> None:
    """`SOLVE block STEADYSTATE sparse` (KINETIC) or `derivimplicit` (DERIVATIVE), with dt
    bound by the caller: NEURON's `_ss_sparse` (see kinetic.py), or one derivimplicit step."""
    if kinetic:
        emit_sparse_steady_state(lowering, block)
    else:
        emit_implicit_step(lowering, block, kinetic=False)


# ---------------------------------------------------------------- LINEAR


def _signed_terms(expr, sign: int) -> list[tuple[object, int]]:
    """The additive terms of one side of a LINEAR equation with their signs, as nocmodl
    splits them: at + and -, a leading minus being the sign of its term."""
    kind = expr.get_node_type_name()
    if kind == "WrappedExpression":
        return _signed_terms(expr.expression, sign)
    if kind == "BinaryExpression" and expr.op.eval() in ("+", "-"):
        rhs_sign = sign if expr.op.eval() == "+" else -sign
        return _signed_terms(expr.lhs, sign) + _signed_terms(expr.rhs, rhs_sign)
    if kind == "UnaryExpression" and expr.op.eval() == "-":
        return _signed_terms(expr.expression, -sign)
    return [(expr, sign)]


def _term_state(lowering: KernelLowering, term, unknowns: set[str]) -> str | None:
    """The one STATE a term of a LINEAR equation is linear in: a factor of its product (not
    a divisor, not inside parentheses or a call, as nocmodl requires), or None."""
    found: list[str] = []

    def walk(node, factor: bool) -> None:
        kind = node.get_node_type_name()
        if kind in ("VarName", "Name"):
            name = node.get_node_name()
            if index_of(node) is not None and lowering.d.length(name):
                raise lowering.error(f"array {name!r} in a LINEAR block is not supported", name)
            if name in unknowns and lowering.lookup_local(name) is None:
                if not factor:
                    raise lowering.error(
                        f"state {name!r} in a LINEAR equation must be a factor of its term "
                        f"(not in parentheses, a call or a divisor), as nocmodl requires",
                        name,
                    )
                found.append(name)
            return
        if kind == "BinaryExpression" and node.op.eval() in ("*", "/"):
            walk(node.lhs, factor)
            walk(node.rhs, factor and node.op.eval() == "*")
            return
        if kind == "UnaryExpression" and node.op.eval() == "-":
            walk(node.expression, factor)
            return
        for child in ("expression", "lhs", "rhs"):
            if getattr(node, child, None) is not None:
                walk(getattr(node, child), False)
        for argument in getattr(node, "arguments", None) or ():
            walk(argument, False)

    walk(term, True)
    if len(found) > 1:
        raise lowering.error(
            f"more than one state ({', '.join(found)}) in one term of a LINEAR equation",
            found[1],
        )
    return found[0] if found else None


def emit_linear_solve(lowering: KernelLowering, block) -> None:
    """SOLVE of a LINEAR block, as nocmodl and NEURON's `simeq` do it.

    Each equation `~ lhs = rhs` is one row of an augmented matrix: a term holding a state
    adds its coefficient (the term with the state replaced by 1.0) to the state's column,
    subtracted on the left side and added on the right; a term without one goes to the
    right-hand side with the opposite sign. Columns are the states in order of first
    appearance. `simeq` then eliminates with partial pivoting (the first row of largest
    |pivot| wins; rows are not moved, only their order), normalises the pivot row right of
    the diagonal, reduces the rows below it, and substitutes back. Pivot choices differ
    between instances, so the row exchanges are selects; the arithmetic is NEURON's, in its
    order."""
    lw, kb = lowering, lowering.kb
    solvefor = [s.get_node_name() for s in (block.solvefor or ())]
    unknowns = set(solvefor or lw.d.states)
    columns: list[str] = []
    rows: list[tuple[dict[int, Expr], Expr]] = []

    def equation(node) -> None:
        coefficients: dict[int, Expr] = {}
        rhs: Expr = Const(0.0, F64)
        terms = _signed_terms(node.lhs, -1) + _signed_terms(node.rhs, 1)
        for term, sign in terms:
            state = _term_state(lw, term, unknowns)
            if state is None:  # a constant term: to the right-hand side, sign flipped
                value = to_f64(lw.expr(term))
                rhs = b.sub(rhs, value) if sign > 0 else b.add(rhs, value)
                continue
            if state not in columns:
                columns.append(state)
            saved = lw.bindings.get(state)
            lw.bindings[state] = Const(1.0, F64)
            value = to_f64(lw.expr(term))
            if saved is None:
                del lw.bindings[state]
            else:
                lw.bindings[state] = saved
            column = columns.index(state)
            base = coefficients.get(column, Const(0.0, F64))
            total = b.add(base, value) if sign > 0 else b.sub(base, value)
            coefficients[column] = kb.assign(lw.fresh("linear.coef"), total)
        rows.append((coefficients, kb.assign(lw.fresh("linear.rhs"), rhs)))

    with lw.hook("LinEquation", equation):
        lw.block(block.statement_block)
    n = len(columns)
    if len(rows) != n:
        raise lw.error(
            f"LINEAR {block.get_node_name()} has {len(rows)} equations for {n} states", None
        )
    zero = Const(0.0, F64)
    m: list[list[Expr]] = [[row.get(j, zero) for j in range(n)] + [rhs] for row, rhs in rows]
    for j in range(n):
        # the pivot: the first of the largest |m[i][j]|, i >= j
        pivot: Expr = m[j][j]
        position: Expr = Const(j, I32)
        for i in range(j + 1, n):
            larger = b.lt(b.call("fabs", pivot), b.call("fabs", m[i][j]))
            pivot = kb.assign(lw.fresh("linear.pivot"), b.select(larger, m[i][j], pivot))
            position = kb.assign(lw.fresh("linear.at"), b.select(larger, Const(i, I32), position))
        if n > j + 1:  # exchange rows j and the pivot's
            chosen = [
                kb.assign(lw.fresh("linear.swap"), b.eq(position, Const(i, I32)))
                for i in range(j + 1, n)
            ]
            top = list(m[j])
            for k in range(j, n + 1):
                value = m[j][k]
                for i, is_pivot in zip(range(j + 1, n), chosen):
                    value = b.select(is_pivot, m[i][k], value)
                top[k] = kb.assign(lw.fresh("linear.m"), value)
            for i, is_pivot in zip(range(j + 1, n), chosen):
                for k in range(j, n + 1):
                    m[i][k] = kb.assign(lw.fresh("linear.m"), b.select(is_pivot, m[j][k], m[i][k]))
            m[j] = top
        for k in range(j + 1, n + 1):
            m[j][k] = kb.assign(lw.fresh("linear.m"), b.div(m[j][k], m[j][j]))
        for i in range(j + 1, n):
            for k in range(j + 1, n + 1):
                m[i][k] = kb.assign(lw.fresh("linear.m"), b.sub(m[i][k], b.mul(m[j][k], m[i][j])))
    solution: list[Expr] = [zero] * n
    for i in reversed(range(n)):
        value = m[i][n]
        for j in range(i + 1, n):
            value = b.sub(value, b.mul(m[i][j], solution[j]))
        solution[i] = kb.assign(lw.fresh("linear.x"), value)
    for state, value in zip(columns, solution):
        lw.assign(state, value)
