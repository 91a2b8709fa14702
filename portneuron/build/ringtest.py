"""The ringtest benchmark (nrnhines/ringtest), built natively: no NEURON needed.

`nring` rings of `ncell` cells; cell i of a ring drives cell i + 1 (threshold 10 mV at
soma(1), ExpSyn tau 2 ms e 0 mV at dend[0](0.8), weight 0.01 uS, delay 1 ms); one NetStim per
ring (number 1, start 0) drives the ring's first cell with the same weight and delay. A cell
is an hh soma (L = diam = 12.6157 um) and a random binary tree of passive dendrites (pas
g 0.001 S/cm2, e -65 mV; dend[0] 200 x 1 um, the others 10 x 1 um), Ra 100 ohm cm, cm 1
uF/cm2; dend[0] also holds an ExpSyn (tau 5 ms, e -80 mV) that never receives an event.
Shapes come from Random123 streams exactly as the original draws them with NEURON's
`Random.Random123` and `discunif`, so the cells, and the spikes, are the original's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from portneuron import cost, scheduler
from portneuron.ir.random123 import random123
from portneuron.library import MechanismLibrary
from portneuron.memory import give_back
from portneuron.model import Model
from portneuron.parallel import Ranks
from portneuron.sim.epoch import BLOCK_WIDTH

from .cell import Cell, CompiledCell
from .network import Network

NCELL_PER_TYPE = 8
THRESHOLD, WEIGHT, DELAY = 10.0, 0.01, 1.0  # mV, uS, ms


def uniform_draws(id1: int, id2: int, count: int) -> np.ndarray:
    """The first `count` values of NEURON's `Random().Random123(id1, id2)` in (0, 1)."""
    pos = np.arange(count, dtype=np.float64)
    return random123(np.full(count, id1), np.full(count, id2), np.zeros(count), pos)


def _discunif(lo: int, hi: int, u: float) -> int:
    return lo + int(np.floor(float(hi - lo + 1) * u))


def cell_types(ncells: int, ncell_per_type: int = NCELL_PER_TYPE) -> list[int]:
    """The shape (type) of each gid: a Random123(0, 1) shuffle of i % ntype."""
    ntype = (ncells - 1) // ncell_per_type + 1
    types = [i % ntype for i in range(ncells)]
    u = uniform_draws(0, 1, ncells)
    for i in range(ncells):
        j = _discunif(i, ncells - 1, u[i])
        types[i], types[j] = types[j], types[i]
    return types


def cell_shape(
    celltype: int, nbranch: tuple[int, int], ncompart: tuple[int, int]
) -> tuple[list[int], list[int]]:
    """(parents, nsegs) of a type's dendrites, drawn from Random123(celltype, 2): the number of
    dendrites, a discarded draw, each dendrite's nseg, then the tree (open slots; a parent
    that gets a second child hands its slot on)."""
    u = uniform_draws(celltype, 2, 2 + 2 * max(nbranch))
    nb = _discunif(*nbranch, u[0])
    nsegs = [_discunif(*ncompart, u[2 + i]) for i in range(nb)]
    parents = [0] * nb
    slots = [[0, 0]]
    for i in range(1, nb):
        slot = slots[_discunif(0, len(slots) - 1, u[1 + nb + i])]
        parents[i] = slot[0]
        slot[1] += 1
        if slot[1] > 1:
            slot[:] = [i, 0]
        else:
            slots.append([i, 0])
    return parents, nsegs


def cell_costs(
    nring: int,
    ncell: int,
    nbranch: tuple[int, int],
    ncompart: tuple[int, int],
    library: MechanismLibrary | None = None,
) -> np.ndarray:
    """Each gid's cost for placement: what one step of it computes, counted from the IR
    (portneuron.cost: its nodes' share of the engine's kernels, its hh, pas and ExpSyn)."""
    library = library or MechanismLibrary()
    types = cell_types(nring * ncell)
    ops = {
        t: cost.cell_ops(ring_cell(*cell_shape(t, nbranch, ncompart)).compile(), library)
        for t in set(types)
    }
    return np.array([ops[t] for t in types], dtype=np.float64)


def placement(
    nring: int,
    ncell: int,
    nbranch: tuple[int, int],
    ncompart: tuple[int, int],
    nranks: int,
    library: MechanismLibrary | None = None,
    speeds: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Each gid's rank: blocks of 8 cells of one shape (a compiled epoch's block), longest
    first by their cost (over each rank's speed, where `speeds` are given)."""
    costs = cell_costs(nring, ncell, nbranch, ncompart, library)
    types = cell_types(nring * ncell)
    return scheduler.place_blocks(costs, types, BLOCK_WIDTH, nranks, speeds=speeds)


def ring_cell(parents: list[int], nsegs: list[int]) -> Cell:
    """One ringtest cell, with the original's 3-d points and order of geometry settings."""
    cell = Cell("ringcell")
    soma = cell.section("soma", Ra=100, pt3d=[[0, 0, 0, 1], [15, 0, 0, 1]])
    cell.set_diam(soma, 12.6157)
    cell.set_length(soma, 12.6157)
    dend = [
        cell.section("dend[0]", Ra=100, nseg=nsegs[0], parent=soma, x=1.0,
                     pt3d=[[15, 0, 0, 1], [105, 0, 0, 1]])
    ]  # fmt: skip
    cell.set_length(dend[0], 200)
    cell.set_diam(dend[0], 1)
    for i in range(1, len(parents)):
        dend.append(
            cell.section(f"dend[{i}]", L=10, diam=1, Ra=100, nseg=nsegs[i], parent=dend[parents[i]])
        )
    cell.insert(soma, "hh", gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3)
    for sec in dend:
        cell.insert(sec, "pas", g=0.001, e=-65.0)
    cell.point_process(dend[0], 0.8, "ExpSyn", tau=2.0, e=0.0)
    cell.point_process(dend[0], 0.1, "ExpSyn", tau=5.0, e=-80.0)
    cell.spike_detector(soma, 1.0, THRESHOLD)
    return cell


def build_ringtest(
    nring: int = 16,
    ncell: int = 8,
    nbranch: tuple[int, int] = (10, 20),
    ncompart: tuple[int, int] = (1, 1),
    library: MechanismLibrary | None = None,
    hh_tables: bool = True,
    progress: Callable[[int], None] | None = None,
    ranks: Ranks | None = None,
) -> Model:
    """The ringtest as a Model (gids ring * ncell + i; the NetStims have none). `hh_tables`
    is NEURON's usetable_hh: on by default in NEURON; the original benchmark's reference
    raster was made without (CoreNEURON's hh has no TABLE). `progress(n)` hears how many
    cells are placed, every 1024. With several `ranks`, this rank's part: the cells the
    scheduler places here, by blocks of one shape and their cost counted from the IR, each
    ring's NetStim with its first cell."""
    net = Network(
        library, celsius=6.3, dt=0.025, v_init=-65.0, globals={"usetable_hh": float(hh_tables)}
    )
    ncells = nring * ncell
    types = cell_types(ncells)
    templates: dict[int, CompiledCell] = {}  # compiled: the Cells' objects go at once
    for gid in range(ncells):
        t = types[gid]
        if t not in templates:
            templates[t] = ring_cell(*cell_shape(t, nbranch, ncompart)).compile()
        net.add_cell(templates[t], gid)
        if progress is not None and gid % 1024 == 1023:
            progress(gid + 1)
    for r in range(nring):
        first = r * ncell
        for i in range(ncell):
            net.connect(first + (i + 1) % ncell, 0, WEIGHT, DELAY, source_gid=first + i)
        stim = net.artificial_cell("NetStim", number=1, start=0)
        net.connect(first, 0, WEIGHT, DELAY, source_stim=stim)
    local = None
    if ranks is not None and ranks.size > 1:
        rank = placement(nring, ncell, nbranch, ncompart, ranks.size, library, ranks.speeds)
        here = scheduler.mine(rank, ranks.rank, ranks.size, f"the ringtest: {ncells} cells")
        local = {int(g) for g in np.flatnonzero(here)}
    model = net.build(local=local)
    del net, templates
    give_back()  # the templates' arrays (freed as their references go: no cycles to collect)
    return model
