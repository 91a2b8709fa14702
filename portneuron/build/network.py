"""Networks of cells, built straight into the compact Model.

Cells are templates stamped out per gid: a template is compiled once to NEURON-ordered node
arrays, and the Model's arrays are those arrays tiled and offset, so building costs a few
array operations per cell type, not Python work per compartment. The Model is arranged as
NEURON would arrange the same cells in one thread (mechanisms in NEURON's order, instances
in node order), so sums happen in NEURON's order and results match it to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from portneuron import cost, scheduler
from portneuron.arrays import distinct, increasing
from portneuron.errors import PortneuronError
from portneuron.library import MechanismLibrary
from portneuron.memory import give_back
from portneuron.model import (
    CAPACITANCE,
    IonSet,
    MechanismSet,
    Model,
    NetCons,
    Nodes,
    PointerTarget,
    Presyns,
    Sections,
    SectionTypes,
    Transfers,
)
from portneuron.parallel import Ranks
from portneuron.sim.epoch import BLOCK_WIDTH

from .cell import Cell, CompiledCell

#: NEURON 9's type numbers for its built-in mechanisms: the order currents are summed in.
STOCK_TYPES = {
    "capacitance": 3, "pas": 4, "extracellular": 5, "fastpas": 6, "IClamp": 7,
    "AlphaSynapse": 8, "ExpSyn": 9, "Exp2Syn": 10, "SEClamp": 11, "VClamp": 12, "OClamp": 13,
    "APCount": 14, "na_ion": 15, "k_ion": 16, "hh": 17, "NetStim": 18, "IntFire1": 19,
    "IntFire2": 20, "IntFire4": 21, "PointProcessMark": 22, "PatternStim": 23,
}  # fmt: skip

#: (e, inside, outside) defaults of NEURON's ions [mV, mM, mM]; others are (0, 1, 1).
ION_DEFAULTS = {
    "na": (50.0, 10.0, 140.0),
    "k": (-77.0, 54.4, 2.5),
    "ca": (12.5 * math.log(2.0 / 5e-5), 5e-5, 2.0),
}
ION_CHARGE = {"na": 1.0, "k": 1.0, "ca": 2.0}


def memb_order(library: MechanismLibrary, name: str) -> tuple:
    """Where NEURON puts a mechanism in its list (memb_order_, the order currents are
    summed and states advanced in): by type number (the built-ins', then the user's files
    in the order nrnivmodl registers them), except that a mechanism that writes an ion
    concentration comes right after the types up to extracellular, the last registered
    first (nrn_writes_conc); artificial cells last."""
    mech = library.get(name)
    stock = STOCK_TYPES.get(name)
    registered = stock if stock is not None else len(STOCK_TYPES) + library.registered(name)
    writes = any(f"{ion.name}{side}" in ion.write for ion in mech.ions for side in "io")
    if stock is not None and stock <= STOCK_TYPES["extracellular"]:
        group, rank = 0, stock
    elif writes:
        group, rank = 1, -registered
    else:
        group, rank = 2, registered
    return mech.kind == "artificial_cell", group, rank


#: How much more uneven (the largest load over the mean, less 1) `Network.placement` lets
#: ranks' loads be, to keep each gap-junction component on one rank. Measured
#: (perf/gap_placement.py, 1000 cells on 2 ranks): a rank whose junctions are all its own
#: runs an epoch a call (the driver copies them), one whose junctions cross ranks a step a
#: call, exchanging every step; kept against split, components of 2 (even loads) 0.667
#: against 1.608 s, of 300 (loads 0.2 uneven) 0.563 against 1.180, one of 800 (0.6 uneven)
#: 0.738 against 1.058 (1 rank: 0.9 to 1.1 s).
JOINED_IMBALANCE = 0.75


@dataclass
class _Stim:
    mechanism: str
    gid: int
    values: dict[str, float]


@dataclass(frozen=True)
class Place:
    """A value of a built network: section(x)'s v (no mechanism), a variable of the density
    mechanism or ion (`"ca_ion"`) there, or of the cell's point process `point` (its index
    from `Cell.point_process`). `Network.setpointer` points POINTERs at places, and names
    the POINTER by a place too (its mechanism, and the POINTER as the variable)."""

    gid: int
    section: object = None
    x: float = 0.5
    mechanism: str = ""
    variable: str = "v"
    point: int | None = None


@dataclass
class _Connection:
    source: tuple[str, int]  # ("gid", gid) or ("stim", index)
    target_gid: int
    target_point: int
    weights: tuple[float, ...]
    delay: float


class Network:
    """Cells with gids, artificial cells and connections; `build()` makes the Model."""

    def __init__(
        self,
        library: MechanismLibrary | None = None,
        celsius: float = 6.3,
        dt: float = 0.025,
        v_init: float = -65.0,
        secondorder: int = 0,
        globals: dict[str, float] | None = None,
    ) -> None:
        self.library = library or MechanismLibrary()
        self.celsius, self.dt, self.v_init, self.secondorder = celsius, dt, v_init, secondorder
        self.globals = dict(globals or {})  # NEURON names: usetable_hh, ...
        self.cells: list[tuple[Cell | CompiledCell, int]] = []
        self.stims: list[_Stim] = []
        self.connections: list[_Connection] = []
        self.pointers: list[tuple[Place, Place]] = []
        #: Point processes of one cell, not its template's: gid -> (mechanism, section, x,
        #: values), in creation order.
        self.added: dict[int, list[tuple[str, object, float, dict]]] = {}
        #: (source, target) of each transfer: `transfer`, `gap_junction`.
        self.transfers: list[tuple[Place, Place]] = []
        self._gids: set[int] = set()

    def add_cell(self, cell: Cell | CompiledCell, gid: int) -> None:
        """Cell `gid`, a copy of template `cell`: a Cell, or its `compile()` where many
        templates are built (a compiled one holds arrays only, so the Cells can go)."""
        if gid in self._gids:
            raise PortneuronError(f"gid {gid} is used twice")
        self._gids.add(gid)
        self.cells.append((cell, gid))

    def artificial_cell(self, mechanism: str = "NetStim", gid: int = -1, **values: float) -> int:
        """An artificial cell (NetStim by default); returns its index for `connect`."""
        if gid >= 0:
            if gid in self._gids:
                raise PortneuronError(f"gid {gid} is used twice")
            self._gids.add(gid)
        self.stims.append(_Stim(mechanism, gid, values))
        return len(self.stims) - 1

    def connect(
        self,
        target_gid: int,
        target_point: int,
        weight: float | tuple[float, ...],
        delay: float,
        source_gid: int | None = None,
        source_stim: int | None = None,
    ) -> None:
        """A NetCon from a cell's spike detector (or an artificial cell) to point process
        `target_point` of cell `target_gid`."""
        if (source_gid is None) == (source_stim is None):
            raise PortneuronError("connect needs exactly one of source_gid and source_stim")
        if delay < 0:
            raise PortneuronError(f"NetCon delay must be >= 0, not {delay}")
        source = ("gid", source_gid) if source_gid is not None else ("stim", source_stim)
        weights = (weight,) if np.isscalar(weight) else tuple(weight)
        self.connections.append(_Connection(source, target_gid, target_point, weights, delay))

    def setpointer(self, pointer: Place, target: Place) -> None:
        """NEURON's `h.setpointer(target, name, mechanism)`: POINTER `pointer.variable` of
        the mechanism at `pointer` reads and writes `target` (a node's v, a mechanism's or
        an ion's variable). Every instance's POINTER must be set before the run."""
        if target.gid not in self._gids or pointer.gid not in self._gids:
            raise PortneuronError(f"setpointer: no cell with gid {pointer.gid} or {target.gid}")
        self.pointers.append((pointer, target))

    def point_process(self, gid: int, section, x: float, mechanism: str, **values: float) -> int:
        """A point process at section(x) of cell `gid` alone, not of its template (half of a
        gap junction, one cell's stimulus); its index among the cell's point processes,
        after the template's ones, for `connect`, `Place(point=...)` and `transfer`."""
        cell = next((c for c, g in self.cells if g == gid), None)
        if cell is None:
            raise PortneuronError(f"point_process: no cell with gid {gid}")
        if not 0.0 <= x <= 1.0:
            raise PortneuronError(f"{mechanism} at {section.name}({x}): x must be in [0, 1]")
        if not _holds(cell, section):
            raise PortneuronError(
                f"point_process: section {getattr(section, 'name', section)!r} is not one "
                f"of gid {gid}'s cell ({getattr(cell, 'name', 'a compiled template')})"
            )
        added = self.added.setdefault(gid, [])
        added.append((mechanism, section, float(x), dict(values)))
        return len(cell.points) + len(added) - 1

    def transfer(self, source: Place, target: Place) -> None:
        """NEURON's `pc.source_var(source)` and `pc.target_var(target)`: the point process
        variable at `target` (`Place(gid, point=k, variable="vgap")`) takes the value at
        `source` (a node's v, a mechanism's or an ion's variable) every step, after the
        voltage update, and at finitialize before INITIAL. Where the two cells are built on
        different ranks, the value crosses between them every step."""
        if target.point is None:
            raise PortneuronError("transfer: the target must be a point process's variable")
        for place in (source, target):
            if place.gid not in self._gids:
                raise PortneuronError(f"transfer: no cell with gid {place.gid}")
        self.transfers.append((source, target))

    def gap_junction(
        self, a: Place, b: Place, mechanism: str, variable: str = "vgap", **values: float
    ) -> tuple[int, int]:
        """A gap junction between places `a` and `b` (section(x) of two cells): a point
        process `mechanism` (a junction's .mod, such as one with `i = g*(vgap - v)`) with
        `values` at each, whose `variable` takes the other side's v, as NEURON's two
        halves joined by source_var / target_var. The two point processes' indices."""
        points = tuple(
            self.point_process(p.gid, p.section, p.x, mechanism, **values) for p in (a, b)
        )
        for (here, point), there in zip(zip((a, b), points), (b, a)):
            self.transfer(
                Place(there.gid, there.section, there.x),
                Place(here.gid, point=point, variable=variable),
            )
        return points

    # ------------------------------------------------------------------ placing
    def placement(
        self,
        nranks: int,
        together: Sequence[Sequence[int]] | None = None,
        speeds: Sequence[float] | None = None,
    ) -> dict[int, int]:
        """Each gid's rank, by the scheduler: blocks of up to 8 cells of one template (a
        compiled epoch's vector lanes), longest first by what one step of the template
        computes (portneuron.cost); an artificial cell with a gid where the first cell it
        drives is (one without a gid is built with every cell it drives). Each group of
        gids in `together` lands on one rank; by default (None) the cells that transfers
        (gap junctions) join (`joined`), where keeping each such component on one rank makes
        the ranks' loads at most `JOINED_IMBALANCE` more uneven than placing them as if
        uncoupled, and otherwise none, their values then crossing between ranks every
        step. `speeds`: each rank's, where they differ."""
        templates = {id(cell): cell for cell, _ in self.cells}
        ops = {key: cost.cell_ops(cell.compile(), self.library) for key, cell in templates.items()}
        index = {key: k for k, key in enumerate(templates)}
        gids = [gid for _, gid in self.cells]
        costs = [ops[id(cell)] for cell, _ in self.cells]
        shapes = [index[id(cell)] for cell, _ in self.cells]
        position = {gid: k for k, gid in enumerate(gids)}
        if together is None:
            rank = self._joined_placement(costs, shapes, position, nranks, speeds)
        else:
            unknown = sorted({g for group in together for g in group} - set(position))
            if unknown:
                raise PortneuronError(f"placement: no cell with gid {unknown[0]} to keep together")
            groups = [[position[g] for g in group] for group in together]
            rank = scheduler.place_blocks(costs, shapes, BLOCK_WIDTH, nranks, groups, speeds)
        where = {gid: int(r) for gid, r in zip(gids, rank)}
        # an artificial cell with a gid goes where the first cell it drives is (rank 0
        # where it drives none): it costs next to nothing, and its events stay local
        first_target: dict[int, int] = {}
        for c in self.connections:
            if c.source[0] == "stim":
                first_target.setdefault(c.source[1], c.target_gid)
        for k, stim in enumerate(self.stims):
            if stim.gid >= 0:
                where[stim.gid] = where.get(first_target.get(k, -1), 0)
        return where

    def joined(self) -> list[list[int]]:
        """The gids that transfers (gap junctions) join into components of two or more
        cells: a component's cells exchange values every step."""
        cells = sorted({g for pair in self.transfers for g in (pair[0].gid, pair[1].gid)})
        index = {g: k for k, g in enumerate(cells)}
        pairs = [np.array([index[a.gid], index[b.gid]]) for a, b in self.transfers]
        root = scheduler.join(len(cells), pairs)
        components: dict[int, list[int]] = {}
        for gid, r in zip(cells, root):
            components.setdefault(int(r), []).append(gid)
        return [c for c in components.values() if len(c) > 1]

    def _joined_placement(self, costs, shapes, position, nranks, speeds) -> np.ndarray:
        """`placement`'s default: the transfers' components kept on one rank each where
        that makes the loads at most JOINED_IMBALANCE more uneven than placing the cells
        as if uncoupled does and leaves no rank without cells, else placed so."""
        free = scheduler.place_blocks(costs, shapes, BLOCK_WIDTH, nranks, (), speeds)
        groups = [[position[g] for g in c] for c in self.joined()]
        if not groups:
            return free
        kept = scheduler.place_blocks(costs, shapes, BLOCK_WIDTH, nranks, groups, speeds)
        rate = np.ones(nranks) if speeds is None else np.asarray(speeds, dtype=np.float64)
        kept_by, free_by = (
            scheduler.imbalance(scheduler.loads(costs, rank, nranks) / rate)
            for rank in (kept, free)
        )
        every_rank = len(np.unique(kept)) == min(nranks, len(kept))  # none left without cells
        return kept if every_rank and kept_by <= free_by + JOINED_IMBALANCE else free

    # ------------------------------------------------------------------ building
    def build(self, local: set[int] | None = None, ranks: Ranks | None = None) -> Model:
        """The Model; with `local`, only those gids' cells (a rank's part of the network),
        NetCons to them, and the artificial cells they need. A NetCon from a cell elsewhere
        gets a source of that gid which never fires here: its spikes come from the other
        ranks (portneuron.parallel). With `ranks` (portneuron.parallel.world() under
        mpiexec), the part `placement` gives this rank."""
        if ranks is not None and ranks.size > 1:
            if local is not None:
                raise PortneuronError("Network.build takes local or ranks, not both")
            where = self.placement(ranks.size, speeds=ranks.speeds)
            gids = np.fromiter(where, dtype=np.int64, count=len(where))
            rank = np.fromiter(where.values(), dtype=np.int64, count=len(where))
            here = scheduler.mine(rank, ranks.rank, ranks.size, f"{len(rank)} cells")
            local = {int(g) for g in gids[here]}
        builder = _Builder(self, local)
        model = builder.model()
        self._offsets = {gid: int(o) for (_, gid), o in zip(builder.cells, builder.base)}
        del builder
        give_back()  # the build's temporaries
        return model

    def node(self, gid: int, section, x: float = 0.5) -> int:
        """The model node of section(x) of cell `gid` (after `build`), for recording."""
        cell = next(c for c, g in self.cells if g == gid)
        return self._offsets[gid] + cell.compile().node_at(section, x)


def _holds(cell: Cell | CompiledCell, section) -> bool:
    """Whether `section` is one of the template's (a compiled one knows its sections by
    index and nseg only)."""
    if isinstance(cell, Cell):
        return any(sec is section for sec in cell.sections)
    nseg = cell.layout.sections.nseg
    index = getattr(section, "index", -1)
    return 0 <= index < len(nseg) and nseg[index] == getattr(section, "nseg", -1)


def _shifted(index: np.ndarray, by: int) -> np.ndarray:
    """Cell-local numbers moved `by` on (-1, none, stays)."""
    return np.where(index >= 0, index + by, -1).astype(np.int32)


class _Builder:
    def __init__(self, net: Network, local: set[int] | None = None) -> None:
        self.net = net
        here = [(cell, gid) for cell, gid in net.cells if local is None or gid in local]
        self.compiled: dict[int, CompiledCell] = {}
        for cell, _ in here:
            if id(cell) not in self.compiled:
                self.compiled[id(cell)] = cell.compile()
        self.cells = [(self.compiled[id(cell)], gid) for cell, gid in here]
        self.connections = [c for c in net.connections if local is None or c.target_gid in local]
        self.stims = self._local_stims(local)

    def _local_stims(self, local: set[int] | None) -> list[int]:
        """The artificial cells built here: every one, or those with a local gid and those
        without a gid whose targets are here (all of them: its spikes cannot leave)."""
        stims = self.net.stims
        if local is None:
            return list(range(len(stims)))
        targets: dict[int, set[bool]] = {}
        for c in self.net.connections:
            if c.source[0] == "stim":
                targets.setdefault(c.source[1], set()).add(c.target_gid in local)
        kept = []
        for k, stim in enumerate(stims):
            if stim.gid >= 0:
                if stim.gid in local:
                    kept.append(k)
            elif targets.get(k) == {True, False}:
                raise PortneuronError(
                    f"artificial cell {k} ({stim.mechanism}) has no gid and drives cells on "
                    f"different ranks; give it a gid (Network.artificial_cell(gid=...))"
                )
            elif True in targets.get(k, ()):
                kept.append(k)
        return kept

    def model(self) -> Model:
        net = self.net
        if not self.cells:
            raise PortneuronError(
                "no cells to build here (an empty `local`, or a rank the placement left "
                "without cells): give each rank cells"
            )
        counts = np.array([c.count for c, _ in self.cells], dtype=np.int64)
        first = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=first[1:])
        base = self.base = first[:-1]
        self.cell_of = {
            g: (c, int(o)) for (c, g), o in zip(self.cells, base)
        }  # gid -> (cell, first node)
        nodes = self._nodes(first)
        library = net.library
        kinds: dict[str, str] = {}
        placed: dict[str, list] = {}  # mech -> [(kind, cell's nodes, offset, values, point key)]
        for (c, gid), offset in zip(self.cells, base):
            for mech, (mnodes, values) in c.density.items():
                placed.setdefault(mech, []).append(("density", mnodes, offset, values, None))
            for k, (mech, node, values) in enumerate(c.points):
                placed.setdefault(mech, []).append(("point", node, offset, values, (gid, k)))
            for k, (mech, section, x, values) in enumerate(net.added.get(gid, ())):
                node, key = c.node_at(section, x), (gid, len(c.points) + k)
                placed.setdefault(mech, []).append(("point", node, offset, values, key))
        for k in self.stims:
            placed.setdefault(net.stims[k].mechanism, [])
        order = sorted(placed, key=lambda m: memb_order(library, m))
        sets, point_instance, stim_instance = [], {}, {}
        cap_nodes, cap_cm = self._capacitance(first)
        sets.append(
            MechanismSet(
                CAPACITANCE, 3, cap_nodes, {"cm": cap_cm}, count=len(cap_nodes),
            )
        )  # fmt: skip
        type_ids = {}
        for mech_name in order:
            mech = library.get(mech_name)
            if mech.constructor:
                raise PortneuronError(
                    f"{mech.source}: {mech_name} has a CONSTRUCTOR, which NEURON runs where it "
                    f"makes an instance and a native build cannot; build the model in NEURON "
                    f"(direct mode)"
                )
            kinds[mech_name] = mech.kind
            type_ids[mech_name] = STOCK_TYPES.get(mech_name, 24 + len(type_ids))
            if mech.kind == "artificial_cell":
                stims = [k for k in self.stims if net.stims[k].mechanism == mech_name]
                data = self._defaults(mech, len(stims))
                for i, k in enumerate(stims):
                    stim_instance[k] = (len(sets), i)
                    self._set_values(mech, data, i, net.stims[k].values)
                sets.append(
                    MechanismSet(
                        mech, type_ids[mech_name], np.zeros(0, np.int32), data, {},
                        self._globals(mech), len(stims),
                    )
                )  # fmt: skip
                continue
            # one block of instances per placement: a cell's density mechanism or one point
            entries = placed[mech_name]
            sizes = [len(where) if kind == "density" else 1 for kind, where, _, _, _ in entries]
            starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            all_nodes = np.empty(int(starts[-1]), np.int32)
            for (_, where, offset, _, _), lo, hi in zip(entries, starts, starts[1:]):
                all_nodes[lo:hi] = where
                all_nodes[lo:hi] += offset
            starts = starts[:-1]
            data = self._defaults(mech, len(all_nodes))
            given: dict[str, list] = {}  # variable -> [(first instance, count, values)]
            for (_, _, _, values, _), pos, n in zip(entries, starts, sizes):
                for name, value in values.items():
                    given.setdefault(name, []).append((pos, n, value))
            for name, parts in given.items():
                self._check_variable(mech, name)
                column = data[name]
                for pos, n, value in parts:  # NaN: unset, the default stays
                    if isinstance(value, float):
                        if value == value:
                            column[pos : pos + n] = value
                    else:
                        value = np.asarray(value, dtype=np.float64)
                        np.copyto(column[pos : pos + n], value, where=~np.isnan(value))
            # NEURON: instances by node; on one node the newest point process comes first
            inverse = order_idx = None
            if not increasing(all_nodes):  # not already so
                order_idx = np.lexsort((-np.arange(len(all_nodes)), all_nodes))
                inverse = np.empty(len(all_nodes), np.int64)
                inverse[order_idx] = np.arange(len(all_nodes))
                for k in data:  # one array at a time
                    data[k] = data[k][order_idx]
                all_nodes = all_nodes[order_idx]
            for (_, _, _, _, key), pos in zip(entries, starts):
                if key is not None:
                    at = pos if inverse is None else inverse[pos]
                    point_instance[key] = (len(sets), int(at))
            sets.append(
                MechanismSet(
                    mech, type_ids[mech_name], all_nodes, data, {},
                    self._globals(mech), len(all_nodes),
                )
            )  # fmt: skip
        ions = self._ions(sets)
        self._set_pointers(sets, ions, point_instance, base)
        transfers = self._transfers(sets, ions, point_instance, base)
        presyns, gid_presyn = self._presyns(base, stim_instance)
        netcons = self._netcons(sets, point_instance, gid_presyn, stim_instance)
        diffusing = any(s.mechanism.diffusion and s.count for s in sets)
        return Model(
            nodes, sets, ions, presyns, netcons, celsius=net.celsius,
            secondorder=net.secondorder, dt=net.dt, source="native model",
            sections=self._sections(base, nodes.count) if diffusing else None,
            section_types=self._section_types(), transfers=transfers,
        )  # fmt: skip

    def _section_types(self) -> SectionTypes:
        """Each cell's nodes' section types: its template's."""
        templates = list({id(cell): cell for cell, _ in self.cells}.values())
        number = {id(cell): k for k, cell in enumerate(templates)}
        return SectionTypes(
            [cell.layout.node_type for cell in templates],
            np.array([number[id(cell)] for cell, _ in self.cells], dtype=np.int32),
        )

    def _capacitance(self, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nodes with a membrane (cm not NaN) and their cm, cell by cell, filled in
        place (each cell's share found once for its template)."""
        own = {}  # id(cell) -> its nodes with a membrane
        for cell, _ in self.cells:
            if id(cell) not in own:
                own[id(cell)] = np.flatnonzero(~np.isnan(cell.cm)).astype(np.int32)
        sizes = [len(own[id(cell)]) for cell, _ in self.cells]
        nodes, cm = np.empty(sum(sizes), np.int32), np.empty(sum(sizes))
        at = 0
        for (cell, _), lo, n in zip(self.cells, first, sizes):
            mine = own[id(cell)]
            nodes[at : at + n] = mine
            nodes[at : at + n] += lo
            cm[at : at + n] = cell.cm[mine]
            at += n
        return nodes, cm

    def _concatenated(self, name: str, first: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Per-node array `name` of every cell, one after another."""
        out = np.empty(int(first[-1]), dtype)
        for (cell, _), lo, hi in zip(self.cells, first, first[1:]):
            out[lo:hi] = getattr(cell, name)
        return out

    def _nodes(self, first: np.ndarray) -> Nodes:
        """The cells' nodes, filled in place (no per-cell copies)."""
        parent = np.empty(int(first[-1]), np.int32)
        for (cell, _), lo, hi in zip(self.cells, first, first[1:]):
            parent[lo:hi] = np.where(cell.parent >= 0, cell.parent + lo, -1)
        a, b, area = (self._concatenated(k, first) for k in ("a", "b", "area"))
        v = np.full(int(first[-1]), float(self.net.v_init))
        return Nodes(
            parent, a, b, area, v, self._concatenated("diam", first), first.astype(np.int32)
        )

    def _sections(self, base, nnode: int) -> Sections:
        """The cells' sections (for LONGITUDINAL_DIFFUSION), numbered cell by cell."""
        tables = [c.layout.sections for c, _ in self.cells]
        start = np.zeros(len(tables), dtype=np.int32)
        np.cumsum([len(t.nseg) for t in tables[:-1]], out=start[1:])
        node_section = np.full(nnode, -1, dtype=np.int32)
        for t, offset, first in zip(tables, base, start):
            node_section[offset : offset + len(t.node_section)] = _shifted(t.node_section, first)
        return Sections(
            node_section,
            np.concatenate([t.length for t in tables]),
            np.concatenate([t.nseg for t in tables]),
            np.concatenate([t.rallbranch for t in tables]),
            np.concatenate([_shifted(t.parent, first) for t, first in zip(tables, start)]),
            np.concatenate([t.first_node + offset for t, offset in zip(tables, base)]).astype(
                np.int32
            ),
        )

    def _defaults(self, mech, n: int) -> dict[str, np.ndarray]:
        return {
            v.name: np.full((n, v.length) if v.length else n, v.default)
            for v in mech.variables
            if v.per_instance
        }

    def _node(self, place: Place, base) -> int:
        cell, offset = self.cell_of[place.gid]
        return offset + cell.node_at(place.section, place.x)

    def _instance(self, place: Place, sets, point_instance, base) -> tuple[int, int]:
        """(set, instance) of the mechanism at a place."""
        if place.point is not None:
            found = point_instance.get((place.gid, place.point))
            if found is None:
                raise PortneuronError(f"setpointer: gid {place.gid} has no point {place.point}")
            return found
        node = self._node(place, base)
        for s, mset in enumerate(sets):
            if mset.name == place.mechanism:
                at = np.flatnonzero(mset.node_index == node)
                if len(at):
                    return s, int(at[0])
        raise PortneuronError(
            f"setpointer: no {place.mechanism} at gid {place.gid} "
            f"{getattr(place.section, 'name', place.section)}({place.x})"
        )

    def _place(self, target: Place, sets, ions, point_instance, base, what="setpointer"):
        """(space, index) of a place, as a `PointerTarget` names it."""
        if not target.mechanism and target.point is None:
            return "node.v", self._node(target, base)
        if target.mechanism.endswith("_ion"):
            name = target.mechanism.removesuffix("_ion")
            ion = next((k for k in ions if k.name == name), None)
            at = np.flatnonzero(ion.node_index == self._node(target, base)) if ion else []
            if not len(at) or target.variable not in ion.data:
                raise PortneuronError(f"{what}: no {name} {target.variable} there")
            return f"ion:{name}:{target.variable}", int(at[0])
        ts, ti = self._instance(target, sets, point_instance, base)
        variable, k = target.variable, None
        if variable.endswith("]"):
            variable, k = variable[:-1].split("[")
        if variable not in sets[ts].data:
            raise PortneuronError(f"{what}: {sets[ts].name} keeps no {variable} per instance")
        length = sets[ts].data[variable].shape[1] if k is not None else 0
        return f"mech:{ts}:{variable}", ti if k is None else ti * length + int(k)

    def _transfers(self, sets, ions, point_instance, base) -> Transfers:
        """Network.transfer's sources and targets here, by kind of place, a sid per
        transfer (a target whose source is built on another rank takes it from there)."""

        def side(k: int):
            for sid, pair in enumerate(self.net.transfers):
                if pair[k].gid in self.cell_of:  # else on another rank: exchanged each step
                    space, index = self._place(
                        pair[k], sets, ions, point_instance, base, "transfer"
                    )
                    yield space, sid, index

        return Transfers(Transfers.by_space(side(0)), Transfers.by_space(side(1)))

    def _set_pointers(self, sets, ions, point_instance, base) -> None:
        """The POINTER targets of every set, from Network.setpointer."""
        found: dict[tuple[int, str], dict[int, tuple[str, int]]] = {}
        for pointer, target in self.net.pointers:
            s, i = self._instance(pointer, sets, point_instance, base)
            if pointer.variable not in sets[s].mechanism.pointers:
                raise PortneuronError(
                    f"setpointer: {sets[s].name} has no POINTER {pointer.variable}"
                )
            space, index = self._place(target, sets, ions, point_instance, base)
            found.setdefault((s, pointer.variable), {})[i] = (space, index)
        for (s, name), by_instance in found.items():
            if len(by_instance) != sets[s].count:
                continue  # some instance is not set: the run says which POINTER
            spaces = {space for space, _ in by_instance.values()}
            if len(spaces) > 1:
                raise PortneuronError(
                    f"setpointer: POINTER {name} of {sets[s].name} points at different kinds "
                    f"of places ({', '.join(sorted(spaces))}); portneuron needs one kind"
                )
            index = np.array([by_instance[i][1] for i in range(sets[s].count)], np.int32)
            sets[s].pointers[name] = PointerTarget(spaces.pop(), index)

    def _check_variable(self, mech, name: str) -> None:
        if not any(v.name == name and v.per_instance for v in mech.variables):
            raise PortneuronError(f"{mech.name} has no per-instance variable {name!r}")

    def _set_values(self, mech, data, i: int, values: dict) -> None:
        for name, value in values.items():
            if name == "ids":  # Random123 stream ids of a RANDOM variable (NetStim: ranvar)
                continue
            self._check_variable(mech, name)
            data[name][i] = value
        for var, ids in values.get("ids", {}).items():
            for part, value in zip(("id1", "id2", "id3"), ids):
                data[f"{var}.{part}"][i] = value

    def _globals(self, mech) -> dict[str, float]:
        out = {}
        for v in mech.variables:
            if not v.per_instance and f"{v.name}_{mech.name}" in self.net.globals:
                out[v.name] = self.net.globals[f"{v.name}_{mech.name}"]
        if f"usetable_{mech.name}" in self.net.globals:
            out["usetable"] = self.net.globals[f"usetable_{mech.name}"]
        return out

    def _ions(self, sets: list[MechanismSet]) -> list[IonSet]:
        """One instance of each ion on every node a user of it sits on; styles as NEURON's
        nrn_promote derives them from what the users read and write."""
        names: list[str] = []
        for s in sets:
            for ion in s.mechanism.ions:
                if ion.name not in names:
                    names.append(ion.name)
        names.sort(key=lambda x: STOCK_TYPES.get(f"{x}_ion", 1000))
        out = []
        for x in names:
            users = [s for s in sets if any(i.name == x for i in s.mechanism.ions)]
            nodes = distinct(np.concatenate([s.node_index for s in users]))
            for s in users:  # each user's ion instance: its node's among `nodes` (sorted)
                s.ion_index[x] = np.searchsorted(nodes, s.node_index).astype(np.int32)
            style = self._ion_style(x, users, len(nodes))
            e, ci, co = ION_DEFAULTS.get(x, (0.0, 1.0, 1.0))
            n = len(nodes)
            data = {
                f"e{x}": np.full(n, e), f"{x}i": np.full(n, ci), f"{x}o": np.full(n, co),
                f"i{x}": np.zeros(n), f"di{x}dv": np.zeros(n),
            }  # fmt: skip
            ci0 = self.net.globals.get(f"{x}i0_{x}_ion", ci)
            co0 = self.net.globals.get(f"{x}o0_{x}_ion", co)
            charge = ION_CHARGE.get(x, 1.0)
            out.append(
                IonSet(x, charge, STOCK_TYPES.get(f"{x}_ion", 0), nodes.astype(np.int32), data,
                       style, ci0, co0)
            )  # fmt: skip
        return out

    @staticmethod
    def _ion_style(x: str, users: list[MechanismSet], n: int) -> np.ndarray:
        """Each ion instance's style, as NEURON's nrn_promote derives it on each node from
        what the mechanisms there read and write (each user's ion_index[x]: its instances'
        ion instances)."""
        conc, rev = np.zeros(n, np.int32), np.zeros(n, np.int32)
        writes = np.zeros(n, np.int32)
        for s in users:
            ion = next(i for i in s.mechanism.ions if i.name == x)
            here = s.ion_index[x]
            used = set(ion.read) | set(ion.write)
            if {f"{x}i", f"{x}o"} & set(ion.write):
                conc[here] = 3
            elif {f"{x}i", f"{x}o"} & used:
                conc[here] = np.maximum(conc[here], 1)
            if f"e{x}" in ion.write:
                rev[here] = 3
            elif f"e{x}" in used:
                rev[here] = np.maximum(rev[here], 1)
            writes[here] |= (0o200 if f"{x}i" in ion.write else 0) | (
                0o400 if f"{x}o" in ion.write else 0
            )
        rev = np.where(conc > 0, np.maximum(rev, 2), rev)
        style = conc | (rev << 3)
        style |= np.where(conc == 3, 0o4, 0) | np.where((conc == 3) & (rev == 2), 0o100, 0)
        style |= np.where((conc > 0) & (rev == 2), 0o40, 0)
        return (style | writes).astype(np.int32)

    def _presyns(self, base, stim_instance):
        gid, node, thresh, sset, sinst = [], [], [], [], []
        gid_presyn = {}
        for (c, g), offset in zip(self.cells, base):
            if c.detector is None:
                continue
            gid_presyn[g] = len(gid)
            gid.append(g)
            node.append(c.detector[0] + offset)
            thresh.append(c.detector[1])
            sset.append(-1)
            sinst.append(-1)
        for k in self.stims:
            stim = self.net.stims[k]
            s, i = stim_instance[k]
            if stim.gid >= 0:
                gid_presyn[stim.gid] = len(gid)
            gid_presyn[("stim", k)] = len(gid)
            gid.append(stim.gid)
            node.append(-1)
            thresh.append(0.0)
            sset.append(s)
            sinst.append(i)
        for c in self.connections:  # sources on other ranks: their gids, never firing here
            g = c.source[1] if c.source[0] == "gid" else self.net.stims[c.source[1]].gid
            key = c.source[1] if c.source[0] == "gid" else ("stim", c.source[1])
            if key in gid_presyn or g not in self.net._gids:
                continue  # here already, or no such source (refused with the NetCon)
            if g not in gid_presyn:
                gid_presyn[g] = len(gid)
                gid.append(g)
                node.append(-1)
                thresh.append(0.0)
                sset.append(-1)
                sinst.append(-1)
            gid_presyn[key] = gid_presyn[g]
        presyns = Presyns(
            np.array(gid, np.int64), np.array(node, np.int32), np.array(thresh),
            np.array(sset, np.int32), np.array(sinst, np.int32),
        )  # fmt: skip
        return presyns, gid_presyn

    def _netcons(self, sets, point_instance, gid_presyn, stim_instance):
        src, tset, tinst, delay, woff, weights = [], [], [], [], [], []
        for c in self.connections:
            key = c.source[1] if c.source[0] == "gid" else ("stim", c.source[1])
            if key not in gid_presyn:
                raise PortneuronError(f"NetCon source {c.source[0]} {c.source[1]} does not exist")
            target = point_instance.get((c.target_gid, c.target_point))
            if target is None:
                raise PortneuronError(
                    f"NetCon target: cell gid {c.target_gid} has no point process {c.target_point}"
                )
            s, i = target
            nargs = len(sets[s].mechanism.net_receive_args)
            if nargs == 0:
                raise PortneuronError(f"{sets[s].name} has no NET_RECEIVE: it cannot be a target")
            w = list(c.weights) + [0.0] * (nargs - len(c.weights))
            src.append(gid_presyn[key])
            tset.append(s)
            tinst.append(i)
            delay.append(c.delay)
            woff.append(len(weights))
            weights.extend(w[:nargs])
        return NetCons(
            np.array(src, np.int32), np.array(tset, np.int32), np.array(tinst, np.int32),
            np.array(delay, dtype=np.float64), np.array(woff, np.int32), np.array(weights),
        )  # fmt: skip
