"""Longitudinal diffusion: NEURON's ldifus.cpp, the step after every mechanism's states.

A mechanism's LONGITUDINAL_DIFFUSION statement moves one state element between the
instances of neighbouring segments. Each step, after the states, NEURON takes one implicit
(backward Euler) step of that exchange alone, state by state (portneuron.ir.Diffusion):

- the mechanism's `diffusion_<k>` kernel gives each instance its COMPARTMENT volume `vol`
  and its diffusion constant times cross-section `dc`;
- each instance is coupled to a parent instance: the one on its node's parent, or, where
  that node has no instance (a zero-area node), on the parent's parent; failing that, on
  the first segment of the parent section. `af = 2 rall / dxp / (dxc + dxp)` and
  `bf = 2 / dxc / (dxc + dxp)`, dx being each section's length over its nseg, `rall` the
  section's rallbranch at its first segment (1 elsewhere);
- with `dc` the mean of the two instances', `a = -af dc / vol[parent]`,
  `b = -bf dc / vol`; the diagonal is `1/dt - b`, less each child's `a`; the right-hand
  side `state / dt`; the tree is solved as NEURON's nrn_tree_solve solves it.

Instances go in node order (NEURON's), so every sum is formed in NEURON's order; a cell's
instances are one lane of the `diffusion` kernel.
"""

from __future__ import annotations

import numpy as np

from portneuron.errors import PortneuronError
from portneuron.ir import F64, I32, Kernel
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder
from portneuron.model import MechanismSet, Model


def neighbours(model: Model, mset: MechanismSet) -> dict[str, np.ndarray]:
    """The instances of `mset` in node order and their coupling: `diffusion.instance`,
    `diffusion.parent` (a place in that order, -1 for none), `diffusion.af`,
    `diffusion.bf`, and `diffusion.first` (where each cell's instances start)."""
    sections = model.sections
    if sections is None:
        raise PortneuronError(
            f"{model.source or 'the model'}: {mset.name} has LONGITUDINAL_DIFFUSION, which needs "
            f"the sections' lengths and connections, and a CoreNEURON dataset does not carry "
            f"them; run the model in direct mode (portneuron.direct.run)"
        )
    node = np.asarray(mset.node_index, dtype=np.int64)
    order = np.argsort(node, kind="stable")
    at = node[order]
    place = np.full(model.nodes.count + 1, -1, dtype=np.int64)  # [-1]: no node, no place
    place[at] = np.arange(len(at))
    parent = model.nodes.parent_index.astype(np.int64)
    section = sections.node_section.astype(np.int64)[at]
    up = parent[at]
    grand = np.where(up >= 0, parent[np.maximum(up, 0)], -1)
    above = sections.parent.astype(np.int64)[section]
    section_first = np.where(above >= 0, sections.first_node[np.maximum(above, 0)], -1)
    coupled = place[up]
    coupled = np.where(coupled >= 0, coupled, place[grand])
    coupled = np.where(coupled >= 0, coupled, place[section_first])
    dx = sections.length / sections.nseg.astype(np.float64)
    dxc = dx[section]
    dxp = dx[section[np.maximum(coupled, 0)]]
    rall = np.where(sections.first_node[section] == at, sections.rallbranch[section], 1.0)
    af = 2 * rall / dxp / (dxc + dxp)
    bf = 2 / dxc / (dxc + dxp)
    linked = coupled >= 0
    return {
        "diffusion.instance": order.astype(np.int32),
        "diffusion.parent": coupled.astype(np.int32),
        "diffusion.af": np.where(linked, af, 0.0),
        "diffusion.bf": np.where(linked, bf, 0.0),
        "diffusion.first": np.searchsorted(at, model.nodes.first).astype(np.int32),
    }


def solve() -> Kernel:
    """One implicit diffusion step of one state element along each cell (one lane a cell),
    NEURON's stagger and nrn_tree_solve, operation for operation."""
    kb = KernelBuilder("diffusion", "cell", "longitudinal diffusion of one state, one step")
    first = kb.array("diffusion.first", I32, "cell")
    lo, hi = kb.assign("lo", first[kb.lane]), kb.assign("hi", first[b.add(kb.lane, 1)])
    instance = kb.array("diffusion.instance", I32, "diffusion")
    parent = kb.array("diffusion.parent", I32, "diffusion")
    slot = kb.array("diffusion.slot", I32, "diffusion")
    af, bf = (kb.array(f"diffusion.{n}", F64, "diffusion") for n in ("af", "bf"))
    dc, vol = (kb.array(f"diffusion.{n}", F64, "instance") for n in ("dc", "vol"))
    state = kb.array("diffusion.state", F64, "state")
    a, bb, d, rhs = (kb.array(f"diffusion.{n}", F64, "diffusion") for n in ("a", "b", "d", "rhs"))
    dt = kb.scalar("dt")
    with kb.loop("j", lo, hi) as j:  # the flux coefficients
        i, p = kb.assign("i", instance[j]), kb.assign("p", parent[j])
        kb.store("diffusion.d", j, 0.0)
        with kb.if_(b.gt(p, -1)):
            ip = kb.assign("ip", instance[p])
            mean = kb.assign("mean", b.div(b.add(dc[i], dc[ip]), 2.0))
            kb.store("diffusion.a", j, b.div(b.mul(b.neg(af[j]), mean), vol[ip]))
            kb.store("diffusion.b", j, b.div(b.mul(b.neg(bf[j]), mean), vol[i]))
    with kb.loop("j2", lo, hi) as j:  # the matrix
        p = kb.assign("p", parent[j])
        kb.store("diffusion.d", j, b.add(d[j], b.div(1.0, dt)))
        kb.store("diffusion.rhs", j, b.div(state[slot[j]], dt))
        with kb.if_(b.gt(p, -1)):
            kb.store("diffusion.d", j, b.sub(d[j], bb[j]))
            kb.store("diffusion.d", p, b.sub(d[p], a[j]))
    with kb.loop("j3", b.sub(hi, 1), lo, step=-1) as j:  # triangularise
        p = kb.assign("p", parent[j])
        with kb.if_(b.gt(p, -1)):
            f = kb.assign("f", b.div(a[j], d[j]))
            kb.store("diffusion.d", p, b.sub(d[p], b.mul(f, bb[j])))
            kb.store("diffusion.rhs", p, b.sub(rhs[p], b.mul(f, rhs[j])))
    with kb.loop("j4", lo, hi) as j:  # back-substitute, and the new state
        p = kb.assign("p", parent[j])
        with kb.if_(b.gt(p, -1)):
            kb.store("diffusion.rhs", j, b.sub(rhs[j], b.mul(bb[j], rhs[p])))
        kb.store("diffusion.rhs", j, b.div(rhs[j], d[j]))
        kb.store("diffusion.state", slot[j], rhs[j])
    return kb.build()
