"""What one step of a cell computes, counted from the IR: the scheduler's cost of a cell.

A step of a cell is its nodes' share of the engine's own kernels (clearing the matrix, the
axial terms, the Hines solve, the voltage update, capacitance) and its mechanism instances'
per-step kernels (current, state, BEFORE/AFTER blocks, WATCH checks). Each kernel is counted
once per lane: every operation, load and store is 1, a math library call its weight (an
exp costs about as much as twenty adds), a loop with constant bounds its trip count times its
body, a branch its larger side. The counts are the same for every backend; `throughput`
measures how many a backend runs a second, for ranks that drive different backends.
"""

from __future__ import annotations

import time
from functools import cache

from portneuron.ir import Kernel, Mechanism
from portneuron.ir.nodes import AddTo, Call, Const, Expr, If, Loop, Stmt, Store, While
from portneuron.ir.walk import own_expressions, subexpressions

#: Calls, in additions: the transcendental functions of the C library cost tens of them.
CALL_WEIGHT = {"fabs": 1.0, "sqrt": 4.0, "floor": 1.0, "ceil": 1.0}
TRANSCENDENTAL = 20.0
#: Kernels a mechanism runs every step.
STEP_KERNELS = ("current", "state", "before_breakpoint", "after_solve", "before_step", "watch")


def expression_ops(e: Expr) -> float:
    total = 0.0
    for x in subexpressions(e):
        if isinstance(x, Call):
            total += CALL_WEIGHT.get(x.fn, TRANSCENDENTAL)
        elif not isinstance(x, Const) and type(x).__name__ not in ("Var", "Lane"):
            total += 1.0
    return total


def body_ops(body: tuple[Stmt, ...]) -> float:
    """The operations one lane runs through `body`."""
    total = 0.0
    for s in body:
        total += sum(expression_ops(e) for e in own_expressions(s))
        if isinstance(s, (Store, AddTo)):
            total += 1.0
        if isinstance(s, If):
            total += max(body_ops(s.then), body_ops(s.otherwise))
        elif isinstance(s, Loop):
            trips = 1
            if isinstance(s.start, Const) and isinstance(s.stop, Const):
                trips = max(0, -(-(int(s.stop.value) - int(s.start.value)) // s.step))
            total += trips * body_ops(s.body)
        elif isinstance(s, While):  # its trips are known only when it runs: counted once
            total += body_ops(s.body)
    return total


def kernel_ops(kernel: Kernel) -> float:
    return body_ops(kernel.body)


def mechanism_ops(mechanism: Mechanism) -> float:
    """One instance's operations in a step."""
    return sum(kernel_ops(k) for k in mechanism.kernels if k.name in STEP_KERNELS)


@cache
def node_ops() -> float:
    """One node's share of the engine's kernels in a step (a per-cell kernel's loop body is
    one node's share)."""
    from portneuron.sim import cable

    kernels = (cable.clear_matrix(), cable.axial(), cable.hines(), cable.update_voltage(),
               cable.capacitance())  # fmt: skip
    return sum(kernel_ops(k) for k in kernels)


def cell_ops(cell, library) -> float:
    """One step of a built cell (build.cell.CompiledCell): its nodes' share of the engine's
    kernels and its mechanism instances' (from `library`, a MechanismLibrary)."""
    total = cell.count * node_ops()
    for name, (nodes, _) in cell.density.items():
        total += len(nodes) * mechanism_ops(library.get(name))
    for name, _, _ in cell.points:
        total += mechanism_ops(library.get(name))
    return total


#: The model whose run measures a backend's speed: 2 rings of 8 ringtest cells.
_PROBE = (2, 8, (10, 20), (1, 1))


def throughput(backend, threads: int | None = None, seconds: float = 0.1) -> float:
    """Operations a second that `backend` runs here (on `threads`): a small ringtest, its
    operations counted as above, run in whole epochs after its compilation for at least
    `seconds`. The scheduler loads ranks that drive different backends in proportion."""
    from portneuron.build.ringtest import build_ringtest, cell_costs
    from portneuron.sim.simulation import Simulation

    model = build_ringtest(*_PROBE)
    sim = Simulation(model, backend, dt=0.025, threads=threads)
    sim.epoch_program()
    sim.finitialize(-65.0)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or steps == 0:
        before = sim.t
        sim.run(before + 1.0, initialize=False)
        steps += round((sim.t - before) / sim.dt)
    return float(cell_costs(*_PROBE).sum()) * steps / elapsed
