"""Assembling a mechanism's kernels from its NMODL blocks.

Kernel parameters follow one naming scheme that the engine binds:

| name | space | what |
| --- | --- | --- |
| `mech.x` | instance | per-instance variable `x` (PARAMETER declared RANGE, STATE, ASSIGNED) |
| `global.x` | uniform | GLOBAL variable `x` |
| `node_index` | instance | node of each instance (i32) |
| `node.v`, `node.area`, `node.diam` | node | membrane potential [mV], area [um2], diameter [um] |
| `node.rhs`, `node.d` | node | right-hand side and diagonal of the cable equation |
| `ion.<ion>.<var>`, `ion.<ion>.index` | ion:<ion>, instance | ion variables and each instance's ion index |
| `t`, `dt`, `celsius`, `usetable` | uniform | simulator values |
| `table.<f>.<out>`, `table.<f>.x` | table | TABLE contents and argument grid |
| `event.instance`, `event.t`, `event.flag`, `event.netcon` | event | events to deliver |
| `netcon.<arg>` | netcon | NET_RECEIVE arguments (weights) of each NetCon |

The `current` kernel follows NEURON's nrn_cur: the BREAKPOINT block runs at v + 0.001 and at
v; the conductance is the difference quotient; ion currents and di/dv accumulate into the ion
arrays; the total current is subtracted from `node.rhs` (added, for an ELECTRODE_CURRENT) and
the conductance added to `node.d` (subtracted). Point-process currents [nA] are scaled by
100/area [um2] to mA/cm2.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from portneuron.ir import (
    F64,
    I32,
    AddTo,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    Diffusion,
    Emit,
    Expr,
    If,
    Kernel,
    Lane,
    Load,
    Loop,
    Mechanism,
    Select,
    Stmt,
    Store,
    Unary,
    Var,
    Variable,
    While,
)
from portneuron.ir import Ion as IrIon
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder
from portneuron.ir.walk import expressions, statements, subexpressions, written

from . import kinetic, solvers, tables, verbatim, watch
from .declarations import Declarations, base_name, element, initial_of, text
from .lower import KernelLowering, to_f64
from .newton import emit_nonlinear_solve
from .parse import nmodl_module

#: NEURON's voltage step for the conductance by difference [mV].
DV = 0.001

EVENT_STREAMS = {
    "net_send": (("instance", I32), ("t", F64), ("flag", F64)),
    "net_event": (("instance", I32), ("t", F64)),
    "net_move": (("instance", I32), ("t", F64)),
}


def _loads(body: list[Stmt]) -> list[Load]:
    return [e for e in expressions(tuple(body)) if isinstance(e, Load)]


class SharedUse:
    """How a mechanism's kernels use the values NEURON keeps one of (`names`: written
    GLOBALs and file-scope LOCALs), from their lowered bodies.

    `exposed`: the values some kernel may read before it assigns them (as locals, or an
    array read in place). `writes`: for each value (an array's element by its element
    name, an array written in place by its name), the values assigned to it, each as an
    expression of constants, `celsius`, `dt` and the GLOBALs no kernel writes, or None
    where it depends on anything else (the instance's data, `t`, a shared value read before
    it is assigned) or is assigned under a condition that does. Keeping one value per
    instance gives NEURON's results for every value that is never read first, or whose
    every assignment writes one and the same such expression; the others (`needed`) must
    be shared."""

    def __init__(self, names: set[str], uniform: Callable[[str], bool]) -> None:
        self.names, self.uniform = names, uniform
        self.exposed: set[str] = set()
        self.writes: dict[str, set[Expr | None]] = {}

    @property
    def needed(self) -> set[str]:
        unsafe = {
            base_name(k) for k, values in self.writes.items() if None in values or len(values) > 1
        }
        return self.exposed & unsafe

    def kernel(self, body: list[Stmt]) -> None:
        self._block(body, {}, frozenset(), True)

    def _value(self, e: Expr, env: dict, assigned: frozenset[str]) -> Expr | None:
        """`e` with every local replaced by its value, or None if `e` is not uniform."""
        for x in subexpressions(e):  # reads before an assignment first
            if isinstance(x, Var) and base_name(x.name) in self.names and x.name not in assigned:
                self.exposed.add(base_name(x.name))
            elif isinstance(x, Load) and x.array.partition(".")[0] in ("mech", "shared"):
                if x.array.partition(".")[2] in self.names:
                    self.exposed.add(x.array.partition(".")[2])
        return self._uniform(e, env)

    def _uniform(self, e: Expr, env: dict) -> Expr | None:
        match e:
            case Const():
                return e
            case Var(name=name):
                if name in env:
                    return env[name]
                return e if base_name(name) not in self.names and self.uniform(name) else None
            case Unary(op=op, operand=x):
                x = self._uniform(x, env)
                return None if x is None else Unary(op, x)
            case Cast(dtype=dtype, operand=x):
                x = self._uniform(x, env)
                return None if x is None else Cast(dtype, x)
            case Binary(op=op, lhs=x, rhs=y):
                x, y = self._uniform(x, env), self._uniform(y, env)
                return None if x is None or y is None else Binary(op, x, y)
            case Select(cond=c, then=t, otherwise=o):
                parts = [self._uniform(v, env) for v in (c, t, o)]
                return None if None in parts else Select(*parts)
            case Call(fn=fn, args=args):
                parts = [self._uniform(v, env) for v in args]
                return None if None in parts else Call(fn, tuple(parts))
            case Load() | Lane():
                return None
        raise TypeError(f"not an IR expression: {e!r}")

    def _write(self, key: str, value: Expr | None) -> None:
        if base_name(key) in self.names:
            self.writes.setdefault(key, set()).add(value)

    def _block(self, body, env: dict, assigned: frozenset[str], uniform: bool):
        for s in body:
            match s:
                case Assign(name=name, value=value):
                    v = self._value(value, env, assigned)
                    v = v if uniform else None
                    self._write(name, v)
                    env = {**env, name: v}
                    assigned = assigned | {name}
                case (
                    Store(array=array, index=index, value=value)
                    | AddTo(array=array, index=index, value=value)
                ):
                    self._value(index, env, assigned)
                    self._value(value, env, assigned)
                    kind, _, name = array.partition(".")
                    if kind in ("mech", "shared"):
                        self._write(name, None)
                case If(cond=cond, then=then, otherwise=otherwise):
                    inner = uniform and self._value(cond, env, assigned) is not None
                    env1, a1 = self._block(then, env, assigned, inner)
                    env2, a2 = self._block(otherwise, env, assigned, inner)
                    env = {
                        k: env1.get(k) if env1.get(k) == env2.get(k) else None
                        for k in {**env1, **env2}
                    }
                    assigned = a1 & a2
                case Loop(var=var, start=start, stop=stop, body=inner_body):
                    bounds = [self._value(x, env, assigned) for x in (start, stop)]
                    inner = uniform and None not in bounds
                    changed = {x.name for x in statements(inner_body) if isinstance(x, Assign)}
                    env = {**env, **{k: None for k in changed | {var}}}
                    self._block(inner_body, env, assigned | {var}, inner)
                case While(cond=cond, body=inner_body):
                    changed = {x.name for x in statements(inner_body) if isinstance(x, Assign)}
                    env = {**env, **{k: None for k in changed}}
                    inner = uniform and self._value(cond, env, assigned) is not None
                    self._block(inner_body, env, assigned, inner)
                case Emit(values=values):
                    for x in values:
                        self._value(x, env, assigned)
                case _:
                    raise TypeError(f"not an IR statement: {s!r}")
        return env, assigned


class Assembler:
    """Builds a mechanism's kernels from its declarations.

    Of the values NEURON keeps one of (Declarations.shared_names), those in `shared` are
    kept one per cell group (NEURON's thread) as `shared.<x>`, and a kernel that writes
    them goes through the group's instances one after another (lanes: "group"), as
    NEURON's loop does; each instance keeps its own copy of the others, which gives
    NEURON's results where `use` (SharedUse) finds that it does: `use.needed` are the ones
    that must be shared."""

    def __init__(self, decl: Declarations, shared: set[str] = frozenset()) -> None:
        self.d = decl
        self.shared = shared
        self.use = SharedUse(decl.shared_names, self._uniform_name)
        self.sequential: list[str] = []  # kernels that write shared values
        self.watches = watch.items(decl)  # WATCH items of NET_RECEIVE, in source order
        self.tables = {}
        for name, block in {**self.d.procedures, **self.d.functions}.items():
            if tables.table_statement(block) is not None:
                self.tables[name] = (tables.describe(decl, block), block)

    def _uniform_name(self, name: str) -> bool:
        """Whether a name a kernel reads without assigning it is the same for every
        instance and step: celsius, dt, a GLOBAL (no kernel writes it)."""
        return name in ("celsius", "dt", "usetable") or self.d.is_global(name)

    # ------------------------------------------------------------------ common parts
    def lowering(
        self, kb: KernelBuilder, where: tuple[str, str], use_tables: bool = True
    ) -> KernelLowering:
        lw = KernelLowering(self.d, kb, where)
        lw.shared = self.shared
        # SOLVE in INITIAL, or in a PROCEDURE any block calls (BREAKPOINT's own are solves())
        lw.on_statement["SolveBlock"] = lambda node: self.inline_solve(lw, node)
        if use_tables:
            for table, block in self.tables.values():
                tables.install_lookup(lw, table, block)
        return lw

    def finish(
        self,
        lw: KernelLowering,
        body: list,
        instance: Expr | None = None,
        table_kernel: bool = False,
        skip_store: frozenset[str] = frozenset(),
    ) -> Kernel:
        """Wrap `body` in loads of what it touched and stores of what it wrote; a kernel
        that writes shared values (Assembler) runs a cell group's instances in turn."""
        kb, d = lw.kb, self.d
        self.use.kernel(body)
        shared_here = any(base_name(n) in self.shared for n in lw.touched) or any(
            load.array.startswith("shared.") for load in _loads(body)
        )
        writes_shared = not table_kernel and (
            any(base_name(n) in self.shared for n in lw.written if n in lw.touched)
            or any(a.startswith("shared.") for a in written(tuple(body)))
        )
        sequential = writes_shared and kb.lanes == "instance"
        if writes_shared:
            self._check_sequential(kb, body)
        with kb.capture() as prologue:
            if sequential:
                inst = Var("pn.instance", I32)
            else:
                inst = kb.assign("pn.instance", instance if instance is not None else kb.lane)
            if shared_here:  # NEURON's instance 0 builds a table
                at = Const(0, I32) if table_kernel else inst
                kb.assign("pn.group", kb.array("shared.group", I32, "instance")[at])
            node: Expr | None = None
            if d.kind != "artificial_cell" and not table_kernel:
                node = kb.assign("pn.node", kb.array("node_index", I32, "instance")[inst])
            for name in lw.touched:
                kb.assign(name, self._source(kb, name, inst, node, table_kernel))
        with kb.capture() as epilogue:
            if not table_kernel:
                for name in lw.written:
                    if name in skip_store or name not in lw.touched:
                        continue
                    if d.is_per_instance(name) or self._own_current(name):
                        array, at = self._slot(kb, name, inst)
                        kb.store(array, at, Var(name, F64))
                    elif name in d.pointers:
                        index = kb.array(f"pointer.{name}.index", I32, "instance")[inst]
                        kb.array(f"pointer.{name}", F64, f"pointer:{name}")
                        kb.store(f"pointer.{name}", index, Var(name, F64))
                    elif (ion := d.ion_of(name)) is not None and ion.variable_role(
                        name
                    ) != "current":
                        index = kb.array(f"ion.{ion.name}.index", I32, "instance")[inst]
                        kb.array(f"ion.{ion.name}.{name}", F64, f"ion:{ion.name}")
                        kb.store(f"ion.{ion.name}.{name}", index, Var(name, F64))
        if sequential:
            kb.lanes = "group"
            first = kb.array("shared.first", I32, "group")
            with kb.loop("pn.instance", first[kb.lane], first[b.add(kb.lane, 1)]):
                kb.emit_all(prologue + body + epilogue)
        else:
            kb.emit_all(prologue)
            kb.emit_all(body)
            kb.emit_all(epilogue)
        if writes_shared:
            self.sequential.append(kb.name)
        return kb.build()

    def _check_sequential(self, kb: KernelBuilder, body: list[Stmt]) -> None:
        """A kernel that writes shared values must take the instances one by one."""
        if kb.name == "net_init":
            raise self.d.error(
                "NET_RECEIVE's INITIAL assigns a GLOBAL or file-scope LOCAL that a block reads "
                "before assigning it (NEURON shares one value): not supported; make it a RANGE "
                "variable",
                ("NET_RECEIVE", ""),
                "INITIAL",
            )
        if kb.lanes == "instance" and any(isinstance(s, Emit) for s in statements(tuple(body))):
            raise self.d.error(
                "a block that sends events (net_send) assigns a GLOBAL or file-scope LOCAL "
                "that a block reads before assigning it (NEURON shares one value): not "
                "supported; make it a RANGE variable",
                None,
                "net_send",
            )

    def _source(
        self, kb: KernelBuilder, name: str, inst: Var, node: Var | None, table_kernel: bool
    ) -> Expr:
        d = self.d
        if name in ("v", "area", "diam"):
            assert node is not None
            return kb.array(f"node.{name}", F64, "node")[node]
        if table_kernel:
            # NEURON builds a table with its thread's first instance (nrn_thread_table_check
            # passes instance 0): a RANGE value the table reads is that instance's
            inst = Const(0, I32)
        if name in d.pointers:
            index = kb.array(f"pointer.{name}.index", I32, "instance")[inst]
            return kb.array(f"pointer.{name}", F64, f"pointer:{name}")[index]
        if d.is_per_instance(name) or self._own_current(name):
            array, at = self._slot(kb, name, inst)
            return Load(array, at, F64)
        ion = d.ion_of(name)
        if ion is not None:
            index = kb.array(f"ion.{ion.name}.index", I32, "instance")[inst]
            return kb.array(f"ion.{ion.name}.{name}", F64, f"ion:{ion.name}")[index]
        return kb.scalar(f"global.{name}")

    def _own_current(self, name: str) -> bool:
        """An ion current the mechanism WRITEs (and does not READ): NEURON keeps the
        mechanism's own value of it per instance (a field of its data), which a SOLVEd block
        may set and BREAKPOINT then reads; the ion's array holds the sum of every
        mechanism's."""
        ion = self.d.ion_of(name)
        return (
            ion is not None
            and name in ion.write
            and name not in ion.read  # READ too: the ion's sum, read before each block
            and ion.variable_role(name) == "current"
        )

    def _slot(self, kb: KernelBuilder, name: str, inst: Expr) -> tuple[str, Expr]:
        """Where a per-instance value lives: `mech.x[instance]`, or for element `x[k]` of
        an array of length n, `mech.x[instance * n + k]`."""
        at = element(name)
        base, k = at if at is not None else (name, 0)
        if base in self.shared:  # one value (array) for the cell group
            n = max(self.d.length(base), 1)
            kb.array(f"shared.{base}", F64, "shared")
            group = Var("pn.group", I32)
            return f"shared.{base}", b.add(b.mul(group, Const(n, I32)), Const(k, I32))
        if at is None:
            kb.array(f"mech.{name}", F64, "instance")
            return f"mech.{name}", inst
        kb.array(f"mech.{base}", F64, "instance")
        n = self.d.length(base)
        return f"mech.{base}", b.add(b.mul(inst, Const(n, I32)), Const(k, I32))

    def install_events(self, lw: KernelLowering, allowed: bool) -> None:
        kb = lw.kb

        def net_send(node, args_ast) -> Expr:
            if not allowed:
                raise lw.error(
                    "net_send is only allowed in NET_RECEIVE and INITIAL of point processes",
                    "net_send",
                )
            if len(args_ast) != 2:
                raise lw.error("net_send takes 2 arguments (delay, flag)", "net_send")
            delay, flag = (to_f64(lw.expr(a)) for a in args_ast)
            kb.stream("net_send", EVENT_STREAMS["net_send"])
            kb.emit("net_send", Var("pn.instance", I32), b.add(lw.read("t"), delay), flag)
            return Const(0.0, F64)

        def net_event(node, args_ast) -> Expr:
            if not allowed or "flag" not in lw.bindings:
                raise lw.error("net_event is only allowed in NET_RECEIVE", "net_event")
            if len(args_ast) != 1:
                raise lw.error("net_event takes 1 argument (the time)", "net_event")
            kb.stream("net_event", EVENT_STREAMS["net_event"])
            kb.emit("net_event", Var("pn.instance", I32), to_f64(lw.expr(args_ast[0])))
            return Const(0.0, F64)

        def net_move(node, args_ast) -> Expr:
            # NEURON moves the instance's pending self-event (its latest net_send) to the
            # given time, keeping its flag and weight; only NET_RECEIVE may call it
            if not allowed or "flag" not in lw.bindings:
                raise lw.error("net_move is only allowed in NET_RECEIVE", "net_move")
            if len(args_ast) != 1:
                raise lw.error("net_move takes 1 argument (the new time)", "net_move")
            kb.stream("net_move", EVENT_STREAMS["net_move"])
            kb.emit("net_move", Var("pn.instance", I32), to_f64(lw.expr(args_ast[0])))
            return Const(0.0, F64)

        lw.on_call["net_send"] = net_send
        lw.on_call["net_event"] = net_event
        lw.on_call["net_move"] = net_move

    # ------------------------------------------------------------------ kernels
    def init(self) -> Kernel:
        d = self.d
        kb = KernelBuilder(
            "init", "instance", "INITIAL: states from their <state>0 values, then the INITIAL block"
        )
        lw = self.lowering(kb, ("INITIAL", ""))
        self.install_events(lw, allowed=d.kind != "density")
        kb.scalar("t")
        with kb.capture() as body:
            for state in d.states:
                if d.ion_of(state) is not None:
                    continue  # as nocmodl: a concentration STATE starts from the ion's value
                start = lw.read(f"{state}0") if f"{state}0" in d.variables else Const(0.0, F64)
                lw.assign(state, start)
            if d.initial is not None:
                lw.block(d.initial.statement_block, "INITIAL")
        return self.finish(lw, body)

    def algebraic(self, lw: KernelLowering, name: str) -> None:
        """SOLVE of a LINEAR block (NEURON's simeq) or a NONLINEAR one (its newton)."""
        where = lw.where
        if name in self.d.linears:
            lw.where = ("LINEAR", name)
            solvers.emit_linear_solve(lw, self.d.linears[name])
        else:
            lw.where = ("NONLINEAR", name)
            emit_nonlinear_solve(lw, self.d.nonlinears[name])
        lw.where = where

    def inline_solve(self, lw: KernelLowering, solve) -> None:
        """SOLVE in INITIAL or in a PROCEDURE: of a LINEAR or NONLINEAR block (`algebraic`), or
        `SOLVE x STEADYSTATE sparse` (or derivimplicit), as NEURON's
        _ss_sparse_thread, with dt = 1e9 (the block sees that dt too; the iterations are
        kinetic.py's), and _ss_derivimplicit_thread, one derivimplicit step with
        dt = 1e-9; without STEADYSTATE, one step of dt by sparse (KINETIC), derivimplicit
        (DERIVATIVE; also without a METHOD) or euler, as nocmodl writes them there."""
        name = solve.block_name.get_node_name()
        if name in self.d.linears or name in self.d.nonlinears:
            self.algebraic(lw, name)
            return
        if solve.steadystate is None:
            self.one_step(lw, solve)
            return
        method = solve.steadystate.get_node_name()
        kinetic = name in self.d.kinetics and method == "sparse"
        if not kinetic and not (name in self.d.derivatives and method == "derivimplicit"):
            raise lw.error(
                f"SOLVE {name} STEADYSTATE outside BREAKPOINT needs sparse (KINETIC) or derivimplicit",
                name,
            )
        block = self.d.kinetics[name] if kinetic else self.d.derivatives[name]
        saved, where = dict(lw.bindings), lw.where
        lw.bind_assignable("dt", "pn.steady_dt", Const(1e9 if kinetic else 1e-9, F64))
        lw.where = ("KINETIC" if kinetic else "DERIVATIVE", name)
        solvers.emit_steady_state(lw, block, kinetic=kinetic)
        for hook in ("ReactionStatement", "DiffEqExpression", "Conserve", "Compartment"):
            lw.on_statement.pop(hook, None)
        lw.bindings, lw.where = saved, where

    def one_step(self, lw: KernelLowering, solve) -> None:
        """SOLVE of a KINETIC or DERIVATIVE block outside BREAKPOINT: one step of dt."""
        name = solve.block_name.get_node_name()
        method = solve.method.get_node_name() if solve.method is not None else ""
        where = lw.where
        if name in self.d.kinetics and method == "sparse":
            lw.where = ("KINETIC", name)
            solvers.emit_implicit_step(lw, self.d.kinetics[name], kinetic=True)
        elif name in self.d.derivatives and method in ("", "derivimplicit"):
            lw.where = ("DERIVATIVE", name)
            solvers.emit_implicit_step(lw, self.d.derivatives[name], kinetic=False)
        elif name in self.d.derivatives and method == "euler":
            lw.where = ("DERIVATIVE", name)
            solvers.emit_euler_step(lw, self.d.derivatives[name])
        else:
            raise lw.error(
                f"SOLVE {name} METHOD {method or '(none)'} outside BREAKPOINT is not supported; use "
                f"STEADYSTATE sparse or derivimplicit, or METHOD sparse (KINETIC), "
                f"derivimplicit or euler (DERIVATIVE)",
                name,
            )
        for hook in ("ReactionStatement", "DiffEqExpression", "Conserve", "Compartment"):
            lw.on_statement.pop(hook, None)
        lw.where = where

    def current(self) -> Kernel | None:
        d = self.d
        currents = d.electrode if d.electrode else d.currents
        if not self.has_currents():
            return None
        kb = KernelBuilder(
            "current",
            "instance",
            "BREAKPOINT currents and their conductance into the cable equation",
        )
        lw = self.lowering(kb, ("BREAKPOINT", ""))
        ion_currents = [
            (ion, w) for ion in d.ions for w in ion.write if ion.variable_role(w) == "current"
        ]
        with kb.capture() as body:
            v = lw.touch("v")
            lw.bind_assignable("v", "pn.v_plus", b.add(v, DV))  # an assignment moves the copy
            self.breakpoint_statements(lw)
            g = kb.assign("pn.g_plus", self.total(lw, currents))
            saved = {w: kb.assign(f"pn.{w}_plus", lw.read(w)) for _, w in ion_currents}
            del lw.bindings["v"]  # v itself now, which the assignment to v above left alone
            self.breakpoint_statements(lw)
            rhs = kb.assign("pn.rhs", self.total(lw, currents))
            g = kb.assign("pn.g", b.div(b.sub(g, rhs), DV))
            scale: Expr | None = None
            if d.kind == "point_process":
                scale = kb.assign("pn.mfactor", b.div(100.0, lw.touch("area")))
            for ion, w in ion_currents:
                index = kb.array(f"ion.{ion.name}.index", I32, "instance")[Var("pn.instance", I32)]
                didv = b.div(b.sub(saved[w], lw.read(w)), DV)
                current = lw.read(w)
                if scale is not None:
                    didv, current = b.mul(didv, scale), b.mul(current, scale)
                kb.array(f"ion.{ion.name}.di{ion.name}dv", F64, f"ion:{ion.name}")
                kb.add_to(f"ion.{ion.name}.di{ion.name}dv", index, didv)
                kb.array(f"ion.{ion.name}.{w}", F64, f"ion:{ion.name}")
                kb.add_to(f"ion.{ion.name}.{w}", index, current)
            if scale is not None:
                rhs, g = b.mul(rhs, scale), b.mul(g, scale)
            node = Var("pn.node", I32)
            kb.array("node.rhs", F64, "node")
            kb.array("node.d", F64, "node")
            sign = 1.0 if d.electrode else -1.0
            kb.add_to("node.rhs", node, b.mul(sign, rhs) if sign > 0 else b.neg(rhs))
            kb.add_to("node.d", node, g if sign < 0 else b.neg(g))
        return self.finish(lw, body)

    def total(self, lw: KernelLowering, currents: list[str]) -> Expr:
        total = lw.read(currents[0])
        for c in currents[1:]:
            total = b.add(total, lw.read(c))
        return total

    def breakpoint_statements(self, lw: KernelLowering) -> None:
        lw.scopes.append({})
        for stmt in self.d.breakpoint.statement_block.statements:
            if (
                stmt.get_node_type_name() == "ExpressionStatement"
                and stmt.expression.get_node_type_name() == "SolveBlock"
            ):
                continue
            lw.statement(stmt)
        lw.scopes.pop()

    def solves(self) -> list:
        if self.d.breakpoint is None:
            return []
        return [
            s.expression
            for s in self.d.breakpoint.statement_block.statements
            if s.get_node_type_name() == "ExpressionStatement"
            and s.expression.get_node_type_name() == "SolveBlock"
        ]

    def has_currents(self) -> bool:
        d = self.d
        return (
            d.breakpoint is not None
            and bool(d.electrode or d.currents)
            and d.kind != "artificial_cell"
        )

    def state(self) -> Kernel | None:
        solves = self.solves()
        # Without currents there is no current kernel; BREAKPOINT's other statements run here.
        trailing = self.d.breakpoint is not None and not self.has_currents()
        if not solves and not trailing:
            return None
        d = self.d
        kb = KernelBuilder(
            "state", "instance", "advance the states of SOLVE blocks by dt, at the new v"
        )
        lw = self.lowering(kb, ("BREAKPOINT", ""))
        with kb.capture() as body:
            for solve in solves:
                name = solve.block_name.get_node_name()
                method = solve.method.get_node_name() if solve.method is not None else ""
                if solve.steadystate is not None:
                    raise lw.error("STEADYSTATE is not supported", "STEADYSTATE")
                if name in d.derivatives:
                    block = d.derivatives[name]
                    lw.where = ("DERIVATIVE", name)
                    if method == "cnexp" and name in d.not_cnexp:
                        method = "derivimplicit"
                    if method == "cnexp":
                        solvers.install_cnexp(lw, name)
                        lw.block(block.statement_block)
                    elif method == "derivimplicit":
                        solvers.emit_implicit_step(lw, block, kinetic=False)
                    elif method == "euler":
                        solvers.emit_euler_step(lw, block)
                    else:
                        raise self.d.error(
                            f"METHOD {method or '(none)'} for DERIVATIVE {name} is not supported; use cnexp, derivimplicit or euler",
                            ("BREAKPOINT", ""),
                            method or "SOLVE",
                        )
                elif name in d.kinetics:
                    if method not in ("", "sparse"):
                        raise self.d.error(
                            f"METHOD {method} for KINETIC {name} is not supported; use sparse",
                            ("BREAKPOINT", ""),
                            method,
                        )
                    lw.where = ("KINETIC", name)
                    solvers.emit_implicit_step(lw, d.kinetics[name], kinetic=True)
                elif (name in d.linears or name in d.nonlinears) and method == "":
                    self.algebraic(lw, name)
                elif name in d.procedures and method in ("", "after_cvode"):
                    lw.inline(d.procedures[name], [], returns=False)
                else:
                    raise self.d.error(
                        f"SOLVE {name} METHOD {method}: no such block, or method not supported",
                        ("BREAKPOINT", ""),
                        name,
                    )
                lw.on_statement.pop("DiffEqExpression", None)
            if trailing:
                lw.where = ("BREAKPOINT", "")
                self.breakpoint_statements(lw)
        return self.finish(lw, body)

    def net_receive(self, initial: bool = False) -> Kernel | None:
        """NET_RECEIVE, one event per lane; with `initial`, its INITIAL block instead, one
        NetCon per lane (NEURON runs it for every NetCon at finitialize)."""
        d = self.d
        block = d.net_receive
        if block is None:
            return None
        if d.kind == "density":
            raise d.error(
                "NET_RECEIVE needs a POINT_PROCESS or ARTIFICIAL_CELL", ("NET_RECEIVE", "")
            )
        statements = [s for s in block.statement_block.statements if initial_of(s) is None]
        if initial:
            inits = [initial_of(s) for s in block.statement_block.statements]
            inits = [i for i in inits if i is not None]
            if not inits:
                return None
            statements = list(inits[0].statement_block.statements)
        kb = KernelBuilder(
            "net_init" if initial else "net_receive",
            "event",
            "initialise each NetCon's arguments, one NetCon per lane"
            if initial
            else "deliver one event per lane; lanes must target distinct instances",
        )
        lw = self.lowering(kb, ("NET_RECEIVE", ""))
        self.install_events(lw, allowed=True)
        if not initial:
            watch.install_activation(lw, self.watches)
        args = [p.get_node_name() for p in block.parameters]
        lane = kb.lane
        instance = kb.array("event.instance", I32, "event")[lane]
        with kb.capture() as body:
            netcon = kb.assign("pn.netcon", kb.array("event.netcon", I32, "event")[lane])
            lw.bind_assignable("t", "event.time", kb.array("event.t", F64, "event")[lane])
            lw.bind_assignable(
                "flag", "event.flag_value", kb.array("event.flag", F64, "event")[lane]
            )
            for arg in args:
                lw.bind_assignable(
                    arg, f"arg.{arg}", kb.array(f"netcon.{arg}", F64, "netcon")[netcon]
                )
            if not initial and any(verbatim.returns(text(s)) for s in statements):
                lw.returned = lw.fresh("returned")
                kb.assign(lw.returned, 0.0)
            if initial:
                lw.statements(statements)
            else:
                with lw.hook("ForNetcon", lambda s: self.for_netcons(lw, s, args, netcon)):
                    lw.statements(statements)
            for arg in args:
                if arg in lw.written:
                    kb.store(f"netcon.{arg}", netcon, Var(f"arg.{arg}", F64))
        return self.finish(lw, body, instance=instance)

    def for_netcons(self, lw: KernelLowering, s, args: list[str], netcon: Var) -> None:
        """FOR_NETCONS(a, b, ...) { }: the body once for each NetCon that targets the
        instance, in NetCon order (NEURON's and CoreNEURON's), its names the NetCon's
        NET_RECEIVE arguments by position. In NEURON the loop's names and NET_RECEIVE's own
        arguments point into the same weight rows: the event's arguments are stored to its
        row before the loop and read back after it, so each sees what the other wrote."""
        kb = lw.kb
        names = [p.get_node_name() for p in s.parameters]
        if len(names) != len(args):
            raise lw.error(
                f"FOR_NETCONS names {len(names)} arguments and NET_RECEIVE {len(args)}; "
                f"name as many (NEURON's translator refuses it too)",
                "FOR_NETCONS",
            )
        for arg in args:
            kb.store(f"netcon.{arg}", netcon, Var(f"arg.{arg}", F64))
        instance = Var("pn.instance", I32)
        first = kb.array("fornetcon.first", I32, "instance")[instance]
        end = kb.array("fornetcon.end", I32, "instance")[instance]
        with kb.loop(lw.fresh("fornetcon.k"), first, end) as k:
            row = kb.assign(
                lw.fresh("fornetcon.row"), kb.array("fornetcon.row", I32, "fornetcon")[k]
            )
            scope = {name: lw.fresh(f"fornetcon.{name}") for name in names}
            for name, arg in zip(names, args):
                kb.assign(scope[name], kb.array(f"netcon.{arg}", F64, "netcon")[row])
            lw.scopes.append(scope)
            lw.block(s.statement_block)
            lw.scopes.pop()
            for name, arg in zip(names, args):
                kb.store(f"netcon.{arg}", row, Var(scope[name], F64))
        for arg in args:
            kb.assign(f"arg.{arg}", kb.array(f"netcon.{arg}", F64, "netcon")[netcon])

    def before_after(self, name: str) -> Kernel:
        """The mechanism's BEFORE or AFTER blocks of one kind (`after_solve`, ...), in
        source order, as NEURON's nrn_ba runs them: every instance, at the node's v."""
        keyword, _, when = name.partition("_")
        kb = KernelBuilder(name, "instance", f"{keyword.upper()} {when.upper()} blocks")
        lw = self.lowering(kb, (keyword.upper(), when.upper()))
        with kb.capture() as body:
            for block in self.d.ba_blocks[name]:
                lw.block(block.statement_block)
        return self.finish(lw, body)

    def diffusion(self) -> tuple[list[Diffusion], list[Kernel]]:
        """The LONGITUDINAL_DIFFUSION statements of the KINETIC blocks, as nocmodl registers
        them: one step per statement, state and element, in source order, each with a
        kernel that evaluates, per instance, the volume of the state's first COMPARTMENT
        and the statement's expression (nocmodl's `_difcoef<k>`, volume first)."""
        d = self.d
        module = nmodl_module()
        lookup = module.visitor.AstLookupVisitor()
        kinds = module.ast.AstNodeType
        compartments: dict[str, tuple[str | None, object]] = {}
        statements = []
        for name, block in d.kinetics.items():
            for node in lookup.lookup(block, kinds.COMPARTMENT):
                index = node.index_name.get_node_name() if node.index_name is not None else None
                for s in node.species:
                    compartments.setdefault(s.get_node_name(), (index, node.volume))
            statements += [(name, n) for n in lookup.lookup(block, kinds.LON_DIFFUSE)]
        steps: list[Diffusion] = []
        kernels: list[Kernel] = []
        for block, node in statements:
            where = ("KINETIC", block)
            if d.kind != "density":
                raise d.error(
                    "LONGITUDINAL_DIFFUSION in a POINT_PROCESS or ARTIFICIAL_CELL: NEURON "
                    "diffuses between the instances of a density mechanism only",
                    where,
                    "LONGITUDINAL_DIFFUSION",
                )
            index = node.index_name.get_node_name() if node.index_name is not None else None
            for species in node.species:
                state = species.get_node_name()
                declared = d.variables.get(state)
                if declared is None or declared.kind != "state":
                    raise d.error(
                        f"{state} must be a STATE in a LONGITUDINAL_DIFFUSION statement "
                        f"(nocmodl refuses it too)",
                        where,
                        state,
                    )
                if state not in compartments:
                    raise d.error(
                        f"{state} must be declared in COMPARTMENT (nocmodl refuses it too)",
                        where,
                        state,
                    )
                ion = d.ion_of(state)
                for k in range(max(d.length(state), 1)):
                    name = f"diffusion_{len(steps)}"
                    kb = KernelBuilder(
                        name, "instance", f"LONGITUDINAL_DIFFUSION of {state}: volume, constant"
                    )
                    lw = self.lowering(kb, where)
                    inst = Var("pn.instance", I32)
                    with kb.capture() as body:
                        vindex, vexpr = compartments[state]
                        volume = kinetic.at_index(lw, vindex, k, vexpr)
                        kb.array("diffusion.vol", F64, "instance")
                        kb.store("diffusion.vol", inst, volume)
                        constant = kinetic.at_index(lw, index, k, node.rate)
                        kb.array("diffusion.dc", F64, "instance")
                        kb.store("diffusion.dc", inst, constant)
                    kernels.append(self.finish(lw, body))
                    steps.append(Diffusion(state, k, name, ion.name if ion else ""))
        return steps, kernels

    # ------------------------------------------------------------------ the mechanism
    def variables(self) -> tuple[Variable, ...]:
        d = self.d
        out = []
        for v in d.variables.values():
            if v.name in ("v", "t", "dt", "celsius", "area", "diam") or d.ion_of(v.name):
                continue
            if v.name in d.pointers or v.name in d.bbcore_pointers:
                continue  # not the mechanism's: a place elsewhere (Mechanism.pointers)
            per_instance = d.is_per_instance(v.name) and v.name not in self.shared
            out.append(Variable(v.name, v.kind, v.unit, v.default, per_instance, v.length))
        for ion in d.ions:  # the mechanism's own value of each ion current it writes
            for w in ion.write:
                if self._own_current(w):
                    out.append(Variable(w, "assigned"))
        return tuple(out)

    def mechanism(self) -> Mechanism:
        d = self.d
        kernels = [
            tables.build_kernel(d, t, block, self.finish) for t, block in self.tables.values()
        ]
        kernels.append(self.init())
        for make in (self.current, self.state, self.net_receive):
            kernel = make()
            if kernel is not None:
                kernels.append(kernel)
        net_init = self.net_receive(initial=True)
        if net_init is not None:
            kernels.append(net_init)
        if self.watches:
            kernels.append(watch.check_kernel(self, self.watches))
        kernels += [self.before_after(name) for name in self.d.ba_blocks]
        diffusion, diffusion_kernels = self.diffusion()
        kernels += diffusion_kernels
        return Mechanism(
            name=d.name,
            kind=d.kind,
            variables=self.variables(),
            ions=tuple(IrIon(i.name, tuple(i.read), tuple(i.write), i.valence) for i in d.ions),
            kernels=tuple(kernels),
            tables=tuple(t for t, _ in self.tables.values()),
            net_receive_args=tuple(p.get_node_name() for p in d.net_receive.parameters)
            if d.net_receive
            else (),
            electrode_current=bool(d.electrode),
            source=d.filename,
            layout=data_layout(d),
            pointers=tuple(d.pointers),
            pointer_slots=tuple(d.pointer_slots),
            vectors=tuple(
                sorted({i.source for i in d.idioms.values() if i.kind == "vector-element"})
            ),
            watch_flags=watch.flags(self.watches),
            stream=self._stream(),
            constructor=d.constructor,
            netsend_slot=any(re.search(r"\bnet_send\s*\(", line) for line in d.source_map.lines),
            diffusion=tuple(diffusion),
            shared=tuple(sorted(self.shared)),
            sequential=tuple(self.sequential),
        )

    def _stream(self) -> tuple[str, str, int] | None:
        stream = self.d.stream_bbcore
        if stream is None:
            return None
        draws = [i for i in self.d.idioms.values() if i.kind == "stream-draw"]
        return stream.source, draws[0].flag if draws else "", stream.words


def data_layout(d: Declarations) -> tuple[str, ...]:
    """The order in which NEURON (nocmodl) stores a mechanism's per-instance values.

    RANGE PARAMETERs, RANGE ASSIGNEDs (currents are implicitly RANGE), STATEs, then the rest
    in declaration order (other ASSIGNEDs, each D<state> where its state was declared, ion
    variables), then `v` (unless the mechanism is not thread safe), `_g` with a BREAKPOINT and
    `_tsav` with a NET_RECEIVE. Ion variables (but an ion current the mechanism writes and
    declares RANGE), `v` and simulator names never count as RANGE.
    """
    simulator = {"v", "t", "dt", "celsius", "area", "diam"}
    range_names = d.range_names | set(d.nonspecific) | set(d.electrode)
    order = [
        v
        for v in d.variables.values()
        if v.kind != "random"
        and v.name not in simulator
        and v.name not in d.file_locals
        and v.name not in d.pointers
        and v.name not in d.bbcore_pointers
    ]
    ion_vars = {n for ion in d.ions for n in ion.read + ion.write}

    def stored(v) -> bool:  # in the p array at all: GLOBAL and plain PARAMETERs are not
        if v.name in ion_vars:
            return True
        if v.name in d.global_names:
            return False
        return v.kind != "parameter" or v.name in range_names

    # an ion current the mechanism writes, declared RANGE, is laid out as a RANGE ASSIGNED
    # (nocmodl: `RANGE gbar, ik` puts ik second); other ion variables never are
    written_currents = {f"i{ion.name}" for ion in d.ions if f"i{ion.name}" in ion.write}

    def ranged(v) -> bool:
        ion_var = v.name in ion_vars and v.name not in written_currents
        return v.name in range_names and not ion_var and stored(v)

    def values(name: str, length: int) -> list[str]:  # an array takes one slot per element
        return [f"{name}[{k}]" for k in range(length)] if length else [name]

    layout = [
        n for v in order if v.kind == "parameter" and ranged(v) for n in values(v.name, v.length)
    ]
    layout += [
        n for v in order if v.kind == "assigned" and ranged(v) for n in values(v.name, v.length)
    ]
    layout += [
        n
        for v in order
        if v.kind == "state" and v.name not in ion_vars
        for n in values(v.name, v.length)
    ]
    for v in order:
        if v.kind == "state":
            if v.name in ion_vars:
                layout.append(v.name)
            layout += values(f"D{v.name}", v.length)
        elif stored(v) and not ranged(v) and v.kind != "parameter" or v.name in ion_vars:
            for n in values(v.name, v.length):
                if n not in layout:
                    layout.append(n)
    for ion in d.ions:  # ion variables used without a declaration
        for name in ion.read + ion.write:
            if name not in layout:
                layout.append(name)
    if d.vectorized:
        layout.append("v")
    if d.breakpoint is not None:
        layout.append("_g")
    if d.net_receive is not None:
        layout.append("_tsav")
    return tuple(layout)
