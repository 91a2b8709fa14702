"""WATCH statements of a point process's NET_RECEIVE, as NEURON 9 runs them (fixed step).

nocmodl (src/nocmodl/parsact.cpp, `watchstmt`) numbers the WATCH items of a file in source
order and gives each a condition function: `(a > b)` returns `(a) - (b)`, `(a < b)`
returns `-((a) - (b))`; it reads v from the node and everything else from the instance as
it is when called, and sees no NET_RECEIVE argument, flag or LOCAL. The item itself
becomes a call that activates its condition with its flag, where the statement stands.
NEURON (src/nrncvode/netcvode.cpp) then:

- activates (`_nrn_watch_activate`, `WatchCondition::activate`): the first WATCH a
  NET_RECEIVE call runs deactivates all of the instance's conditions and drops their
  pending events; an activated condition goes to the end of the list of active ones, and
  counts as already true ("above") if its value is >= -1e-11 (hoc_epsilon) then;
- checks (`NetCvode::check_thresh`, at the start of every fixed step, after the spike
  thresholds and before any event is delivered): an active condition whose value is > 0
  and which was not above becomes above and sends an event at the step's t exactly; one
  whose value is <= 0 is not above any more. A condition fires on a false -> true change;
- delivers (`WatchCondition::deliver`): NET_RECEIVE at that t, with the condition's flag
  and no weights.

Here the net_receive kernel emits each activation on its `watch` stream (instance, item,
whether the condition is above where the statement runs); the `watch` kernel checks each
instance's active conditions (`watch.active`, `watch.above`: one per item per instance)
and emits those that fire on its `fired` stream; portneuron.sim.watch keeps NEURON's order
and queues the events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portneuron.ir import F64, I32, Const, Expr, Kernel, Var
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder

from .declarations import Declarations, initial_of, number, text
from .lower import KernelLowering, to_f64
from .parse import nmodl_module

if TYPE_CHECKING:
    from .mechanism import Assembler

#: Activations, from the net_receive kernel: the instance, the item, and 1 if its
#: condition is already true (within ACTIVATION_EPSILON).
WATCH_STREAM = (("instance", I32), ("watch", I32), ("above", I32))
#: Conditions that became true, from the watch kernel.
FIRED_STREAM = (("instance", I32), ("watch", I32))
#: NEURON's hoc_epsilon: a condition activated this close to true counts as true.
ACTIVATION_EPSILON = 1e-11


def items(d: Declarations) -> list:
    """The WATCH items of NET_RECEIVE in source order (nocmodl's numbering); refused where
    NEURON cannot run them."""
    module = nmodl_module()
    for keyword, blocks in (("PROCEDURE", d.procedures), ("FUNCTION", d.functions)):
        for name, block in blocks.items():  # called or not, as nocmodl refuses them
            if module.visitor.AstLookupVisitor().lookup(block, module.ast.AstNodeType.WATCH):
                raise d.error(
                    f"WATCH in {keyword} {name}: NEURON's translator allows it only in NET_RECEIVE",
                    (keyword, name),
                    "WATCH",
                )
    if d.net_receive is None or d.kind == "density":
        return []  # a density mechanism's NET_RECEIVE is refused by itself
    found = []
    for stmt in d.net_receive.statement_block.statements:
        watches = module.visitor.AstLookupVisitor().lookup(stmt, module.ast.AstNodeType.WATCH)
        if watches and initial_of(stmt) is not None:
            raise d.error(
                "WATCH in NET_RECEIVE's INITIAL block: NEURON 9's translation of it does not "
                "compile (and its finitialize drops conditions activated there); send "
                "net_send(0, flag) from INITIAL and WATCH when that event arrives",
                ("NET_RECEIVE", ""),
                "WATCH",
            )
        found += watches
    if found and d.kind == "artificial_cell":
        raise d.error(
            "WATCH in an ARTIFICIAL_CELL: NEURON crashes on it (an artificial cell has no "
            "node to watch from); make it a POINT_PROCESS",
            ("NET_RECEIVE", ""),
            "WATCH",
        )
    return found


def flags(watches: list) -> tuple[float, ...]:
    """The flag each item's event carries (a number in the source, as NMODL requires)."""
    return tuple(number(item.value) for item in watches)


def condition(lw: KernelLowering, item) -> Expr:
    """The condition's value as nocmodl's function computes it, from what that function
    sees: the instance's variables, v, t; not NET_RECEIVE's arguments, flag or LOCALs."""
    module = nmodl_module()
    lookup = module.visitor.AstLookupVisitor()
    for name in lookup.lookup(item.expression, module.ast.AstNodeType.VAR_NAME):
        name = name.get_node_name()
        if lw.lookup_local(name) is not None or (name in lw.bindings and name != "t"):
            raise lw.error(
                f"WATCH condition {text(item.expression)} reads {name!r}, which NEURON's "
                f"condition (checked outside any event) cannot see; use a RANGE variable",
                name,
            )
    expression = item.expression
    while expression.get_node_type_name() in ("WrappedExpression", "ParenExpression"):
        expression = expression.expression
    op = expression.op.eval()
    lhs, rhs = (to_f64(lw.expr(side)) for side in (expression.lhs, expression.rhs))
    value = b.sub(lhs, rhs)
    return value if op == ">" else b.neg(value)


def install_activation(lw: KernelLowering, watches: list) -> None:
    """In the net_receive kernel: each WATCH item emits its activation where it stands."""
    kb = lw.kb
    texts = [text(item) for item in watches]
    count = [0]

    def on_watch(node) -> None:
        for item in node.statements:
            k = count[0]
            count[0] += 1
            assert texts[k] == text(item), (texts[k], text(item))
            above = b.cast(I32, b.ge(condition(lw, item), -ACTIVATION_EPSILON))
            kb.stream("watch", WATCH_STREAM)
            kb.emit("watch", Var("pn.instance", I32), Const(k, I32), above)

    lw.on_statement["WatchStatement"] = on_watch


def check_kernel(assembler: Assembler, watches: list) -> Kernel:
    """The `watch` kernel: one lane per instance, every active condition checked as
    NEURON's ConditionEvent::check does it (teps 0), the ones that fire emitted."""
    kb = KernelBuilder(
        "watch", "instance", "check the active WATCH conditions; emit those that became true"
    )
    lw = assembler.lowering(kb, ("NET_RECEIVE", ""))
    width = len(watches)
    kb.stream("fired", FIRED_STREAM)
    active = kb.array("watch.active", F64, "watch")
    above = kb.array("watch.above", F64, "watch")
    instance = Var("pn.instance", I32)
    with kb.capture() as body:
        for k, item in enumerate(watches):
            at = kb.assign(f"pn.watch{k}", b.add(b.mul(instance, Const(width, I32)), Const(k, I32)))
            with kb.if_(b.ne(active[at], 0.0)):
                value = kb.assign(f"pn.value{k}", condition(lw, item))
                with kb.if_(b.gt(value, 0.0)):
                    with kb.if_(b.eq(above[at], 0.0)):
                        kb.store("watch.above", at, 1.0)
                        kb.emit("fired", instance, Const(k, I32))
                with kb.else_():
                    kb.store("watch.above", at, 0.0)
    return assembler.finish(lw, body)
