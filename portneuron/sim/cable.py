"""The engine's own per-step work as IR kernels: the cable equation and spike detection.

Every backend compiles these like mechanism kernels, so the whole step is IR. The
arithmetic is NEURON's, operation for operation (treeset.cpp, solve.cpp, capac.cpp,
fadvance.cpp): the same sums in the same order give the same bits.

Node arrays are `node.*`; `cell.first` (ncell + 1 entries) says where each cell's nodes
start. Cell kernels run one lane per cell and walk its nodes in order, so accumulations into
a parent happen child by child as in NEURON, on any backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

from portneuron.ir import F64, I32, AddTo, If, Kernel, Loop, Param, Var
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder

#: NEURON's offset of a threshold spike after the step that detected it [ms].
THRESHOLD_TEPS = 1e-10

SPIKE_STREAM = (("presyn", I32), ("t", F64))


def clear_matrix(fast_imem: bool = False) -> Kernel:
    """Zero the matrix (and, with `fast_imem`, the membrane current's two sums)."""
    kb = KernelBuilder("clear_matrix", "node", "zero the right-hand side and diagonal")
    for name in ("node.rhs", "node.d") + (FAST_IMEM if fast_imem else ()):
        kb.array(name, F64, "node")
        kb.store(name, kb.lane, 0.0)
    return kb.build()


# ---------------------------------------------------------------- membrane current
#
# NEURON's i_membrane_ (cvode.use_fast_imem(1); CoreNEURON's i_membrane reports), each
# node's membrane current in nA: its ionic and capacitive currents, electrodes excluded,
# as the step's linearised equations give them at the new v. NEURON's arithmetic
# (treeset.cpp nrn_rhs and nrn_lhs, fadvance.cpp nrn_calc_fast_imem):
#
#   clear:       sav_rhs = sav_d = 0
#   currents:    an ELECTRODE_CURRENT mechanism adds its rhs and -g to sav_rhs and sav_d
#                as well as to rhs and d (`electrode_sums`)
#   before the axial terms (`membrane_sums`):
#                sav_rhs = sav_rhs - rhs        (minus the ionic currents)
#                sav_d = d - sav_d              (capacitance and ionic conductances)
#   after the update (`update_voltage(fast_imem=True)`), rhs being the solved dv:
#                sav_rhs = (sav_d * rhs + sav_rhs) * area * 0.01
#
# and at finitialize, after the axial terms (`membrane_current_init`):
#                sav_rhs = (rhs + sav_rhs) * area * 0.01
# sav_rhs then holds i_membrane_ until the next step clears it.

#: The node arrays of the membrane current's sums: sav_rhs ends as i_membrane_ [nA].
FAST_IMEM = ("node.sav_rhs", "node.sav_d")


def electrode_sums(kernel: Kernel) -> Kernel:
    """An ELECTRODE_CURRENT mechanism's current kernel that also adds what it adds to rhs
    and d into sav_rhs and sav_d (NEURON's nrn_cur and nrn_jacob where fast_imem is on)."""

    def twin(stmts):
        out = []
        for stmt in stmts:
            if isinstance(stmt, If):
                stmt = If(stmt.cond, twin(stmt.then), twin(stmt.otherwise))
            elif isinstance(stmt, Loop):
                stmt = replace(stmt, body=twin(stmt.body))
            out.append(stmt)
            if isinstance(stmt, AddTo) and stmt.array in ("node.rhs", "node.d"):
                into = FAST_IMEM[stmt.array == "node.d"]
                out.append(AddTo(into, stmt.index, stmt.value))
        return tuple(out)

    params = kernel.params + tuple(Param(name, F64, "node") for name in FAST_IMEM)
    return replace(kernel, params=params, body=twin(kernel.body))


def membrane_sums() -> Kernel:
    """The ionic currents' share of the matrix, before the axial terms join it."""
    kb = KernelBuilder("membrane_sums", "node", "keep the membrane's share of rhs and d")
    rhs, d, sav_rhs, sav_d = _node_arrays(kb, "rhs", "d", "sav_rhs", "sav_d")
    i = kb.lane
    kb.store("node.sav_rhs", i, b.sub(sav_rhs[i], rhs[i]))
    kb.store("node.sav_d", i, b.sub(d[i], sav_d[i]))
    return kb.build()


def membrane_current_init() -> Kernel:
    """i_membrane_ at finitialize: the axial and electrode currents that reach the node."""
    kb = KernelBuilder("membrane_current_init", "node", "i_membrane_ [nA] at finitialize")
    rhs, sav_rhs, area = _node_arrays(kb, "rhs", "sav_rhs", "area")
    i = kb.lane
    kb.store("node.sav_rhs", i, b.mul(b.mul(b.add(rhs[i], sav_rhs[i]), area[i]), 0.01))
    return kb.build()


def capacitance() -> Kernel:
    """cm/dt on the diagonal (2cm/dt for Crank-Nicolson), after the mechanisms' conductances."""
    kb = KernelBuilder("capacitance", "instance", "capacitive term of the diagonal")
    node = kb.assign("node", kb.array("node_index", I32, "instance")[kb.lane])
    cm = kb.array("mech.cm", F64, "instance")[kb.lane]
    cfac = kb.assign("cfac", b.mul(0.001, kb.scalar("cj")))
    kb.array("node.d", F64, "node")
    kb.add_to("node.d", node, b.mul(cfac, cm))
    return kb.build()


def _node_arrays(kb: KernelBuilder, *names: str):
    return (kb.array(f"node.{n}", F64, "node") for n in names)


def _parent(kb: KernelBuilder, i, name: str = "p") -> Var:
    return kb.assign(name, kb.array("node.parent", I32, "node")[i])


def _axial_terms(kb: KernelBuilder, i, p) -> None:
    """Node i's axial coupling to its parent p, into both nodes' rhs and d."""
    a, bb, v, rhs, d = _node_arrays(kb, "a", "b", "v", "rhs", "d")
    dv = kb.assign("dv", b.sub(v[p], v[i]))
    kb.store("node.rhs", i, b.sub(rhs[i], b.mul(bb[i], dv)))
    kb.store("node.rhs", p, b.add(rhs[p], b.mul(a[i], dv)))
    kb.store("node.d", i, b.sub(d[i], bb[i]))
    kb.store("node.d", p, b.sub(d[p], a[i]))


def _eliminate(kb: KernelBuilder, i, p) -> None:
    """Triangularisation: node i eliminated from its parent p's row."""
    a, bb, rhs, d = _node_arrays(kb, "a", "b", "rhs", "d")
    f = kb.assign("f", b.div(a[i], d[i]))
    kb.store("node.d", p, b.sub(d[p], b.mul(f, bb[i])))
    kb.store("node.rhs", p, b.sub(rhs[p], b.mul(f, rhs[i])))


def _substitute(kb: KernelBuilder, i, p) -> None:
    """Back-substitution: node i's solution from its parent p's."""
    bb, rhs, d = _node_arrays(kb, "b", "rhs", "d")
    r = kb.assign("r", b.sub(rhs[i], b.mul(bb[i], rhs[p])))
    kb.store("node.rhs", i, b.div(r, d[i]))


def _cell_nodes(kb: KernelBuilder):
    """(lo, hi): this lane's cell's nodes."""
    first = kb.array("cell.first", I32, "cell")
    kb.array("node.parent", I32, "node")
    return kb.assign("lo", first[kb.lane]), kb.assign("hi", first[b.add(kb.lane, 1)])


def axial() -> Kernel:
    """The axial currents between each node and its parent, into rhs and d."""
    kb = KernelBuilder("axial", "cell", "axial coupling terms of the cable equation")
    lo, hi = _cell_nodes(kb)
    with kb.loop("i", b.add(lo, 1), hi) as i:
        _axial_terms(kb, i, _parent(kb, i))
    return kb.build()


def hines() -> Kernel:
    """Solve the tree-structured system in place: rhs becomes the voltage change."""
    kb = KernelBuilder("hines", "cell", "triangularise from the leaves, back-substitute")
    lo, hi = _cell_nodes(kb)
    with kb.loop("i", b.sub(hi, 1), lo, step=-1) as i:
        _eliminate(kb, i, _parent(kb, i))
    rhs, d = _node_arrays(kb, "rhs", "d")
    kb.store("node.rhs", lo, b.div(rhs[lo], d[lo]))
    with kb.loop("j", b.add(lo, 1), hi) as j:
        _substitute(kb, j, _parent(kb, j))
    return kb.build()


# ---------------------------------------------------------------- interleaved cells
#
# A block of `width` cells stored interleaved (portneuron.sim.epoch.Interleaved): node k of
# the block's cell j is node base + k*width + j. Row k of the block holds node k of every
# cell; cell j has count[lane*width + j] nodes (0 for an empty slot). A kernel walks the
# rows in a cell's own order and takes the cells of a row at once, as the iterations of a
# parallel loop (SIMD lanes on a compiled backend): each cell's arithmetic is the per-cell
# kernel's, operation for operation.
#
# Where the block's cells have one shape (`block.uniform`), the parent of row k is one row
# for every cell (`row.parent[block.row0 + k]`), so parents are whole rows too, and a
# backend moves them as vectors; otherwise each node's parent comes from node.parent.


def _rows(kb: KernelBuilder, width: int, name: str, first, last, step: int, body) -> None:
    """body(i, p) for node i and its parent p, for every cell that has a node in the row,
    rows k from `first` towards `last` (exclusive) by `step`. `first` and `last` are
    functions of the block's row count."""
    base = kb.assign("base", kb.array("block.base", I32, "block")[kb.lane])
    rows = kb.assign("rows", kb.array("block.rows", I32, "block")[kb.lane])
    count = kb.array("slot.count", I32, "slot")
    uniform = kb.array("block.uniform", I32, "block")[kb.lane]
    row0 = kb.assign("row0", kb.array("block.row0", I32, "block")[kb.lane])
    row_parent = kb.array("row.parent", I32, "row")
    for shared in (True, False):
        with kb.if_(b.ne(uniform, 0)) if shared else kb.else_():
            with kb.loop(name, first(rows), last(rows), step=step) as k:
                row = kb.assign("row", b.add(base, b.mul(k, width)))
                if shared:
                    up = row_parent[b.add(row0, k)]
                    up = kb.assign("prow", b.add(base, b.mul(up, width)))
                with _across_cells(kb, width, k, count) as j:
                    i = kb.assign("i", b.add(row, j))
                    body(i, kb.assign("p", b.add(up, j)) if shared else _parent(kb, i))


@contextmanager
def _across_cells(kb: KernelBuilder, width: int, k, count) -> Iterator[Var]:
    """The body runs for each cell j of the block that has a node in row k. The cells are
    the iterations of a parallel loop."""
    with kb.loop("j", 0, width, parallel=True) as j:
        with kb.if_(b.lt(k, count[b.add(b.mul(kb.lane, width), j)])):
            yield j


def axial_interleaved(width: int) -> Kernel:
    """`axial` for a block of `width` interleaved cells (one lane per block)."""
    kb = KernelBuilder(f"axial_interleaved{width}", "block", "axial terms, cells interleaved")
    _rows(kb, width, "k", lambda rows: 1, lambda rows: rows, 1, partial(_axial_terms, kb))
    return kb.build()


def hines_interleaved(width: int) -> Kernel:
    """`hines` for a block of `width` interleaved cells: a cell's solve is a chain of
    dependent divisions; the cells of a row divide at once."""
    kb = KernelBuilder(f"hines_interleaved{width}", "block", "Hines solve, cells interleaved")
    _rows(kb, width, "k", lambda rows: b.sub(rows, 1), lambda rows: 0, -1, partial(_eliminate, kb))
    base = kb.assign("base", kb.array("block.base", I32, "block")[kb.lane])
    rhs, d = _node_arrays(kb, "rhs", "d")
    with _across_cells(kb, width, 0, kb.array("slot.count", I32, "slot")) as j:
        i = kb.assign("i", b.add(base, j))
        kb.store("node.rhs", i, b.div(rhs[i], d[i]))
    _rows(kb, width, "k2", lambda rows: 1, lambda rows: rows, 1, partial(_substitute, kb))
    return kb.build()


def update_voltage(fast_imem: bool = False) -> Kernel:
    """v += rhs (2 rhs for Crank-Nicolson: `factor` is 1 or 2); with `fast_imem`, then
    each node's i_membrane_ [nA] from its sums and the voltage change (NEURON's
    nrn_calc_fast_imem)."""
    kb = KernelBuilder("update_voltage", "node", "apply the solved voltage change")
    v, rhs = _node_arrays(kb, "v", "rhs")
    i = kb.lane
    kb.store("node.v", i, b.add(v[i], b.mul(kb.scalar("factor"), rhs[i])))
    if fast_imem:
        sav_rhs, sav_d, area = _node_arrays(kb, "sav_rhs", "sav_d", "area")
        current = b.add(b.mul(sav_d[i], rhs[i]), sav_rhs[i])
        kb.store("node.sav_rhs", i, b.mul(b.mul(current, area[i]), 0.01))
    return kb.build()


def ion_reset(ion: str, nernst: bool = False) -> Kernel:
    """NEURON's ion current step: the ion's current and di/dv restart from zero; with
    `nernst`, instances whose `ion.<ion>.eadvance` is nonzero recompute the reversal
    potential from the concentrations."""
    kb = KernelBuilder(f"ion_reset_{ion}", "instance", f"zero i{ion} and di{ion}/dv")
    for name in (f"ion.{ion}.i{ion}", f"ion.{ion}.di{ion}dv"):
        kb.array(name, F64, f"ion:{ion}")
        kb.store(name, kb.lane, 0.0)
    if nernst:
        advance = kb.array(f"ion.{ion}.eadvance", F64, f"ion:{ion}")
        with kb.if_(b.ne(advance[kb.lane], 0.0)):
            store_nernst_potential(kb, ion)
    return kb.build()


def ion_init(ion: str, concentrations: bool = True) -> Kernel:
    """NEURON's ion INITIAL: concentrations from <ion>i0/<ion>o0 where the style says so
    (`concentrations`), then the reversal potential from them where the style says so. The
    second part alone is nrn_wrote_conc, run after an INITIAL that wrote a concentration."""
    kb = KernelBuilder(f"ion_init_{ion}", "instance", "initialise ion concentrations and erev")
    for name in (f"{ion}i", f"{ion}o"):
        kb.array(f"ion.{ion}.{name}", F64, f"ion:{ion}")
    if concentrations:
        cinit = kb.array(f"ion.{ion}.cinit", F64, f"ion:{ion}")
        with kb.if_(b.ne(cinit[kb.lane], 0.0)):
            kb.store(f"ion.{ion}.{ion}i", kb.lane, kb.scalar("conc_inside0"))
            kb.store(f"ion.{ion}.{ion}o", kb.lane, kb.scalar("conc_outside0"))
    einit = kb.array(f"ion.{ion}.einit", F64, f"ion:{ion}")
    with kb.if_(b.ne(einit[kb.lane], 0.0)):
        store_nernst_potential(kb, ion)
    return kb.build()


def store_nernst_potential(kb: KernelBuilder, ion: str) -> None:
    """NEURON's nrn_nernst into e<ion>: ktf/z * log(co/ci), with its guards for empty
    compartments, which a lane takes only where one holds (a select of a constant in
    every lane costs more than the logarithm on some CPUs). `ktf_over_z` [mV] is 1000 R
    (celsius + 273.15) / F / z, 0 for an uncharged ion."""
    ci = kb.array(f"ion.{ion}.{ion}i", F64, f"ion:{ion}")[kb.lane]
    co = kb.array(f"ion.{ion}.{ion}o", F64, f"ion:{ion}")[kb.lane]
    kb.array(f"ion.{ion}.e{ion}", F64, f"ion:{ion}")
    ktf_z = kb.scalar("ktf_over_z")
    value = kb.assign("nernst", b.mul(ktf_z, b.call("log", b.div(co, ci))))
    kb.store(f"ion.{ion}.e{ion}", kb.lane, value)
    with kb.if_(b.or_(b.or_(b.le(co, 0.0), b.le(ci, 0.0)), b.eq(ktf_z, 0.0))):
        guarded = b.select(b.le(co, 0.0), -1e6, value)
        guarded = b.select(b.le(ci, 0.0), 1e6, guarded)
        kb.store(f"ion.{ion}.e{ion}", kb.lane, b.select(b.eq(ktf_z, 0.0), 0.0, guarded))


def second_order_current(ion: str) -> Kernel:
    """Crank-Nicolson's correction of an ion current by its slope times the voltage change."""
    kb = KernelBuilder(f"second_order_{ion}", "instance", f"i{ion} += di{ion}/dv * dv")
    node = kb.array(f"ion.{ion}.node_index", I32, f"ion:{ion}")[kb.lane]
    cur = kb.array(f"ion.{ion}.i{ion}", F64, f"ion:{ion}")
    slope = kb.array(f"ion.{ion}.di{ion}dv", F64, f"ion:{ion}")
    rhs = kb.array("node.rhs", F64, "node")
    kb.store(f"ion.{ion}.i{ion}", kb.lane, b.add(cur[kb.lane], b.mul(slope[kb.lane], rhs[node])))
    return kb.build()


def threshold() -> Kernel:
    """Upward threshold crossings of presyn voltages, checked at the start of a step.

    A presyn fires when v - threshold > 0 and it was below at the previous check; the spike
    is stamped t + 1e-10 ms, as NEURON's ConditionEvent does."""
    kb = KernelBuilder("threshold", "presyn", "detect spikes")
    kb.stream("spike", SPIKE_STREAM)
    node = kb.array("presyn.node", I32, "presyn")[kb.lane]
    thresh = kb.array("presyn.threshold", F64, "presyn")[kb.lane]
    flag = kb.array("presyn.flag", F64, "presyn")
    v = kb.array("node.v", F64, "node")
    with kb.if_(b.gt(b.sub(v[node], thresh), 0.0)):
        with kb.if_(b.eq(flag[kb.lane], 0.0)):
            kb.store("presyn.flag", kb.lane, 1.0)
            kb.emit("spike", kb.lane, b.add(kb.scalar("t"), THRESHOLD_TEPS))
    with kb.else_():
        kb.store("presyn.flag", kb.lane, 0.0)
    return kb.build()
