"""The "ringtest" benchmark of the CoreNEURON papers, built and run in NEURON itself.

This is the reference side of the ringtest comparisons: it rebuilds github.com/nrnhines/ringtest
(ringtest.py, ring.py, cell.hoc, commonutils.py) with built-in mechanisms only, runs it in
NEURON, and writes its CoreNEURON dataset with `ParallelContext.nrncore_write`.

The model, as in the original:

- `nring` rings of `ncell` cells, gid = ring * ncell + i; cell i drives cell (i + 1) % ncell
  of its ring: soma(1) voltage, threshold 10 mV, onto the excitatory ExpSyn, weight 0.01 uS,
  delay 1 ms.
- One NetStim per ring (number 1, start 0, no gid) drives the ring's first cell through the
  same synapse, weight 0.01 uS, delay 1 ms: the first event arrives at t = 1 ms.
- A cell is an hh soma (L = diam = 12.6157 um) and a random binary tree of passive dendrites
  (pas g 0.001 S/cm2, e -65 mV; dend[0] 200 x 1 um from soma(1), the rest 10 x 1 um from
  their parent's (1) end); Ra 100, cm 1. dend[0] holds two ExpSyns: the driven one at 0.8
  (tau 2 ms, e 0 mV) and one at 0.1 (tau 5 ms, e -80 mV) that never receives an event.
- Shapes belong to cell types, not cells: the cells are dealt ntype = ceil(ncells / 8) types
  by a Random123(0, 1) shuffle, and type k draws its number of dendrites, their nseg and their
  tree from Random123(k, 2).
- celsius 6.3, v_init -65 mV, dt 0.025 ms, pc.set_maxstep(10).
- hh with its rate tables (usetable_hh = 1), NEURON's default, so the comparison exercises
  TABLE; `hh_tables=False` gives the hh of CoreNEURON builds, which has none.

With the defaults (16 rings of 8 cells, 10 to 20 dendrites, 1 segment each) a 100 ms run gives
592 spikes. Without hh's tables the raster is the original's reference_data/spk1.100ms.std.ref
to its printed digits; with them (the default here) it is still 592 spikes, but 6 of the 16
rings run up to 0.075 ms late from their third cycle on.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

from neuron import h

pc = h.ParallelContext()

V_INIT = -65.0  # mV
CELSIUS = 6.3  # degC
THRESHOLD = 10.0  # mV, spike detection at soma(1)
WEIGHT = 0.01  # uS, every NetCon of the model
DELAY = 1.0  # ms, every NetCon of the model
MAXSTEP = 10.0  # ms, the argument of pc.set_maxstep
NCELL_PER_TYPE = 8  # ringtest's -npt: cells that share one random shape


class RingCell:
    """One ringtest cell (cell.hoc's B_BallStick): hh soma, passive dendritic tree, 2 ExpSyns.

    `parents[i]` is the dendrite that dend[i] hangs from (parents[0] is unused: dend[0] hangs
    from the soma) and `nsegs[i]` is dend[i].nseg.
    """

    def __init__(self, gid: int, parents: list[int], nsegs: list[int]) -> None:
        self.gid = gid
        self.soma = h.Section(name="soma", cell=self)
        self.dend = [h.Section(name=f"dend[{i}]", cell=self) for i in range(len(parents))]
        self.dend[0].connect(self.soma(1))
        for child, parent in enumerate(parents[1:], start=1):
            self.dend[child].connect(self.dend[parent](1))
        for sec, nseg in zip(self.dend, nsegs):
            sec.nseg = nseg

        # cell.hoc gives soma and dend[0] 3-d points before setting L and diam; diam3d is
        # single precision, so the soma diameter (and area) differ from a plain 12.6157 in the
        # 8th digit. Keep the points so the model is the original's to the last bit.
        for sec, x0, x1 in ((self.soma, 0, 15), (self.dend[0], 15, 105)):
            sec.pt3dclear()
            sec.pt3dadd(x0, 0, 0, 1)
            sec.pt3dadd(x1, 0, 0, 1)
        self.soma.diam = 12.6157
        self.soma.L = 12.6157
        self.dend[0].L, self.dend[0].diam = 200, 1
        for sec in self.dend[1:]:
            sec.L, sec.diam = 10, 1

        for sec in self.all:
            sec.Ra = 100
            sec.cm = 1
        self.soma.insert("hh")
        for seg in self.soma:
            seg.hh.gnabar, seg.hh.gkbar, seg.hh.gl, seg.hh.el = 0.12, 0.036, 0.0003, -54.3
        for sec in self.dend:
            sec.insert("pas")
            for seg in sec:
                seg.pas.g, seg.pas.e = 0.001, -65

        self.syn = h.ExpSyn(self.dend[0](0.8))  # synlist[0]: every event of the model
        self.syn.tau = 2
        self.syn_inh = h.ExpSyn(self.dend[0](0.1))  # synlist[1]: never receives an event
        self.syn_inh.tau, self.syn_inh.e = 5, -80

    @property
    def all(self) -> list:
        """The cell's sections: soma, then dend[0], dend[1], ..."""
        return [self.soma, *self.dend]

    def spike_detector(self) -> h.NetCon:
        """A NetCon watching soma(1).v at the spike threshold, to hand to pc.cell."""
        nc = h.NetCon(self.soma(1)._ref_v, None, sec=self.soma)
        nc.threshold = THRESHOLD
        return nc

    def __str__(self) -> str:
        return f"RingCell[{self.gid}]"

    __repr__ = __str__


@dataclass(eq=False)
class Ring:
    """A built ringtest network; holds every NEURON object so that it stays alive.

    `netcons` are the cell-to-cell connections, ring by ring; `stims[r]` and `stim_netcons[r]`
    are ring r's NetStim and its NetCon to cell r * ncell (under MPI, of the rings whose first
    cell is on this rank). `clear_neuron` empties the lists.
    """

    nring: int
    ncell: int
    cells: list[RingCell] = field(default_factory=list)
    netcons: list = field(default_factory=list)
    stims: list = field(default_factory=list)
    stim_netcons: list = field(default_factory=list)

    @property
    def ncells(self) -> int:
        return self.nring * self.ncell

    @property
    def alive(self) -> bool:
        """False once `clear_neuron` has run: the objects are gone from NEURON."""
        return bool(self.cells)

    def release(self) -> None:
        """Drops this ring's references to its NEURON objects."""
        for objects in (self.stim_netcons, self.stims, self.netcons, self.cells):
            objects.clear()


_rings: weakref.WeakSet[Ring] = weakref.WeakSet()


def _as_range(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def cell_types(ncells: int, ncell_per_type: int = NCELL_PER_TYPE) -> list[int]:
    """The type (shape) of each gid: ringtest.py's `types`, a Random123(0, 1) shuffle."""
    ntype = (ncells - 1) // ncell_per_type + 1
    types = [i % ntype for i in range(ncells)]
    ran = h.Random()
    ran.Random123(0, 1)
    for i in range(ncells):  # commonutils.shuffle
        j = int(ran.discunif(i, ncells - 1))
        types[i], types[j] = types[j], types[i]
    return types


def cell_shape(
    celltype: int, nbranch: tuple[int, int], ncompart: tuple[int, int]
) -> tuple[list[int], list[int]]:
    """(parents, nsegs) of a cell type's dendrites: commonutils.celltypeinfo.

    From Random123(celltype, 2): the number of dendrites, uniform in [nbranch], then the nseg of
    each, uniform in [ncompart], then the tree. A list of open slots starts with dend[0]; each
    new dendrite takes a uniformly drawn slot as its parent and opens a slot of its own; a
    parent that gets its second child gives its slot to the new dendrite instead, so no
    dendrite has more than two children.
    """
    r = h.Random()
    r.Random123(celltype, 2)
    nb = int(r.discunif(*nbranch))
    r.discunif(*ncompart)  # sets the distribution; this first pick is thrown away
    nsegs = [int(r.repick()) for _ in range(nb)]
    parents = [0] * nb
    slots = [[0, 0]]  # [dendrite, children so far]
    for i in range(1, nb):
        slot = slots[int(r.discunif(0, len(slots) - 1))]
        parents[i] = slot[0]
        slot[1] += 1
        if slot[1] > 1:
            slot[:] = [i, 0]
        else:
            slots.append([i, 0])
    return parents, nsegs


def build_ringtest(
    nring: int = 16,
    ncell: int = 8,
    nbranch: int | tuple[int, int] = (10, 20),
    ncompart: int | tuple[int, int] = 1,
    ncell_per_type: int = NCELL_PER_TYPE,
    hh_tables: bool = True,
    stim_gids: bool = False,
) -> Ring:
    """Builds ringtest in NEURON, in this process, after clearing any model built before.

    `nbranch` and `ncompart` are the inclusive ranges [lo, hi] of dendrites per cell and of
    segments per dendrite (an int n means [n, n]). Cell gids are 0 .. nring * ncell - 1; under
    MPI gid g lives on rank g % nhost (`Ring.cells` holds None for the others' cells), and
    a ring's NetStim on its first cell's rank. The NetStims have no gid. `hh_tables` sets the
    global usetable_hh, which is also written to the dataset's globals.dat. `stim_gids` gives the NetStims gids (10**6 + ring)
    and connects them by gid, which NEURON needs when their cells run in another thread.
    """
    clear_neuron()
    nbranch, ncompart = _as_range(nbranch), _as_range(ncompart)
    h.Random().Random123_globalindex(0)  # ringtest's -gran default
    h.celsius = CELSIUS
    h.usetable_hh = int(hh_tables)
    h.CVode().cache_efficient(1)

    ring = Ring(nring, ncell)
    types = cell_types(ring.ncells, ncell_per_type)
    here = {gid: gid % int(pc.nhost()) == int(pc.id()) for gid in range(ring.ncells)}
    for r in range(nring):
        first = r * ncell
        for gid in range(first, first + ncell):
            if not here[gid]:
                ring.cells.append(None)
                continue
            cell = RingCell(gid, *cell_shape(types[gid], nbranch, ncompart))
            pc.set_gid2node(gid, pc.id())
            # as in ring.py the detector NetCon is not kept: its PreSyn lives on in pc, and a
            # kept one would be written to the dataset as a NetCon without a target
            pc.cell(gid, cell.spike_detector())
            ring.cells.append(cell)
        for i in range(ncell):
            target = ring.cells[first + (i + 1) % ncell]
            if target is None:
                continue
            nc = pc.gid_connect(first + i, target.syn)
            nc.weight[0], nc.delay = WEIGHT, DELAY
            ring.netcons.append(nc)
        if not here[first]:
            continue  # the ring's NetStim lives with the cell it drives
        stim = h.NetStim()
        stim.number, stim.start = 1, 0
        # unused (noise 0) but written to the dataset: the stream a fresh process would give,
        # not one numbered after the NetStims of models built before
        stim.ranvar.set_ids(1, 0, r + 1)
        if stim_gids:
            pc.set_gid2node(10**6 + r, pc.id())
            pc.cell(10**6 + r, h.NetCon(stim, None))
            nc = pc.gid_connect(10**6 + r, ring.cells[first].syn)
        else:
            nc = h.NetCon(stim, ring.cells[first].syn)
        nc.weight[0], nc.delay = WEIGHT, DELAY
        ring.stims.append(stim)
        ring.stim_netcons.append(nc)
    _rings.add(ring)
    return ring


def _initialize(dt: float) -> None:
    h.dt = dt
    pc.set_maxstep(MAXSTEP)
    h.finitialize(V_INIT)


def run_neuron(ring: Ring, tstop: float = 100.0, dt: float = 0.025) -> list[tuple[float, int]]:
    """Runs `ring` in NEURON from t = 0 (fixed step) and returns its spikes, sorted (time, gid)."""
    if not ring.alive:
        raise RuntimeError("this Ring was cleared from NEURON; build it again")
    tvec, idvec = h.Vector(), h.Vector()
    pc.spike_record(-1, tvec, idvec)
    _initialize(dt)
    pc.psolve(tstop)
    return sorted(zip(tvec.to_python(), (int(gid) for gid in idvec)))


def write_dataset(ring: Ring, directory: str | Path, dt: float = 0.025) -> list[Path]:
    """Initializes `ring` and writes its CoreNEURON dataset; returns the directory's files, sorted.

    For one process and one thread NEURON 9 writes 0_1.dat (spike sources and NetCon sources:
    nring * ncell + nring of each), 0_2.dat (nodes, mechanisms and their data, NetCon weights
    and delays), bbcore_mech.dat (the mechanism table), globals.dat (global variables, with
    celsius, dt and usetable_hh) and files.dat (the list of groups).
    """
    if not ring.alive:
        raise RuntimeError("this Ring was cleared from NEURON; build it again")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _initialize(dt)
    pc.nrncore_write(str(directory))
    return sorted(directory.iterdir())


def clear_neuron() -> None:
    """Removes every cell, synapse, stimulus and gid from NEURON, to build another model.

    Rings built before are emptied (`Ring.alive` becomes False); sections that something
    else still references are deleted too.
    """
    for ring in list(_rings):
        ring.release()
    pc.gid_clear()
    h("forall delete_section()")
