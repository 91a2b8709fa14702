"""TABLE: tabulating a PROCEDURE's outputs (or a FUNCTION's value) over its argument.

As in NEURON, a table of `TABLE ... FROM lo TO hi WITH n` has n+1 points (lo and hi may name
GLOBALs, read when the table is built); the argument grid
is built by repeated addition of dx = (hi - lo)/n from lo, and a lookup interpolates
linearly: xi = (x - lo)/dx, clamped to the first and last point, NaN passed through. Lookups
are used while the mechanism global `usetable` is nonzero (NEURON's `usetable_<suffix>`,
default 1); otherwise the procedure is evaluated directly.
"""

from __future__ import annotations

from portneuron.ir import F64, I32, Const, Expr, Table, Var
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder

from .declarations import Declarations, number, text
from .lower import KernelLowering, to_f64
from .tabulated import array_name, mfac


def table_statement(block):
    """The TABLE statement of a PROCEDURE or FUNCTION, if it has one."""
    for stmt in block.statement_block.statements:
        if stmt.get_node_type_name() == "TableStatement":
            return stmt
    return None


def describe(decl: Declarations, block) -> Table:
    stmt = table_statement(block)
    name = block.get_node_name()
    where = ("FUNCTION" if block.get_node_type_name() == "FunctionBlock" else "PROCEDURE", name)
    if len(block.parameters) != 1:
        raise decl.error(f"TABLE in {name!r} needs exactly one argument", where, "TABLE")
    outputs: tuple[str, ...] = ()
    for var in stmt.table_vars:  # an array output tabulates each element (nocmodl's _t_x[k])
        out = var.get_node_name()
        length = decl.length(out)
        outputs += tuple(f"{out}[{k}]" for k in range(length)) if length else (out,)
    outputs = outputs or (name,)
    lo, hi = (_bound(decl, node, where) for node in (getattr(stmt, "from"), stmt.to))
    try:
        n = int(number(getattr(stmt, "with")))
    except ValueError:
        raise decl.error("TABLE's WITH must be a number", where, "TABLE") from None
    if n < 1 or (isinstance(lo, float) and isinstance(hi, float) and not hi > lo):
        raise decl.error("TABLE needs FROM < TO and WITH >= 1", where, "TABLE")
    depend = tuple(v.get_node_name() for v in stmt.depend_vars)
    return Table(name, outputs, lo, hi, n + 1, depend)


def _bound(decl: Declarations, node, where: tuple[str, str]) -> float | str:
    """A FROM or TO bound: a number, a constant's value, or the name of a global."""
    try:
        return number(node)
    except ValueError:
        pass
    name = text(node).strip()
    if name in decl.constants:
        return decl.constants[name]
    if decl.is_global(name):
        return name
    raise decl.error(
        f"TABLE bound {name!r} must be a number, a constant or a GLOBAL (PARAMETER) variable",
        where,
        name,
    )


def install_lookup(lowering: KernelLowering, table: Table, block) -> None:
    """Make calls of the tabulated procedure or function look up the table."""
    is_function = block.get_node_type_name() == "FunctionBlock"

    def call(node, args_ast) -> Expr:
        kb = lowering.kb
        if len(args_ast) != 1:
            raise lowering.error(f"{table.name} takes 1 argument", table.name)
        x = kb.assign(lowering.fresh(f"{table.name}.x"), to_f64(lowering.expr(args_ast[0])))
        result = lowering.fresh(f"{table.name}.value") if is_function else None
        use = kb.scalar("usetable")
        with kb.if_(b.ne(use, 0.0)):
            _lookup(lowering, table, x, result)
        with kb.else_():
            value = lowering.inline(block, [x], returns=is_function)
            if result:
                kb.assign(result, value)
        return Var(result, F64) if result else Const(0.0, F64)

    lowering.on_call[table.name] = call


def _lookup(lowering: KernelLowering, table: Table, x: Var, result: str | None) -> None:
    kb = lowering.kb
    last = table.points - 1
    if isinstance(table.lo, float) and isinstance(table.hi, float):
        lo, scale = Const(table.lo, F64), Const(mfac(table, table.lo, table.hi), F64)
    else:  # set where the table is built (portneuron.sim.binding)
        lo, scale = kb.scalar(f"table.{table.name}.lo"), kb.scalar(f"table.{table.name}.mfac")
    arrays = {out: kb.array(array_name(table, out), F64, "table") for out in table.outputs}

    def set_all(value_of) -> None:
        for out in table.outputs:
            value = value_of(arrays[out])
            if result is not None:
                kb.assign(result, value)
            else:
                lowering.assign(out, value)

    xi = kb.assign(lowering.fresh(f"{table.name}.xi"), b.mul(scale, b.sub(x, lo)))
    with kb.if_(b.ne(xi, xi)):  # NaN argument: the outputs are NaN too
        set_all(lambda t: xi)
    with kb.else_():
        with kb.if_(b.le(xi, 0.0)):
            set_all(lambda t: t[0])
        with kb.else_():
            with kb.if_(b.ge(xi, float(last))):
                set_all(lambda t: t[last])
            with kb.else_():
                i = kb.assign(lowering.fresh(f"{table.name}.i"), b.cast(I32, xi))
                theta = kb.assign(lowering.fresh(f"{table.name}.theta"), b.sub(xi, b.cast(F64, i)))
                set_all(lambda t: b.add(t[i], b.mul(theta, b.sub(t[b.add(i, 1)], t[i]))))


def build_kernel(decl: Declarations, table: Table, block, finish) -> object:
    """The kernel that fills a table: one lane per point, the procedure run at its argument.

    `finish(lowering, body)` assembles loads of what the body touched (globals such as
    celsius; per-instance variables start at 0, since a table cannot depend on them).
    """
    kb = KernelBuilder(
        f"table_{table.name}", lanes="table point", doc=f"fill TABLE of {table.name}"
    )
    keyword = "FUNCTION" if block.get_node_type_name() == "FunctionBlock" else "PROCEDURE"
    lowering = KernelLowering(decl, kb, (keyword, table.name))
    x = kb.array(f"table.{table.name}.x", F64, "table")
    with kb.capture() as body:
        value = lowering.inline(block, [x[kb.lane]], returns=keyword == "FUNCTION")
        for out in table.outputs:
            stored = value if keyword == "FUNCTION" else Var(out, F64)
            if keyword != "FUNCTION":
                lowering.touch(out)
            kb.array(array_name(table, out), F64, "table")
            kb.store(array_name(table, out), kb.lane, stored)
    for out in table.outputs:
        if keyword != "FUNCTION" and out not in lowering.written:
            raise decl.error(
                f"TABLE output {out!r} is not assigned by {table.name}", (keyword, table.name), out
            )
    return finish(lowering, body, table_kernel=True)
