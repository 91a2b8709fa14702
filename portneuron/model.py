"""The compact in-memory model: one cell group as structure-of-arrays.

Nothing here is a per-node or per-instance Python object: nodes, mechanism instances,
presyns and netcons are columns of NumPy arrays. Nodes are stored cell by cell: the nodes
of cell c are `first[c] <= i < first[c + 1]`, the first of them the cell's root, and every
node's parent comes before it. Within a cell the order is NEURON's, so sums over a node's
children happen in NEURON's order and results stay bit-identical.

Units are NEURON's: v [mV], area [um2], diam [um], a and b [uS / cm2-ish as NEURON stores
them: the axial coupling terms of the cable equation, already divided by area], t and delay
[ms], weights in the units of the target's NET_RECEIVE arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from portneuron.ir import Mechanism, Variable

#: NEURON's capacitance as a mechanism: only cm is kept (i_cap is NEURON's output, unused).
CAPACITANCE = Mechanism(
    "capacitance",
    "density",
    (Variable("cm", "parameter", "uF/cm2", 1.0),),
    layout=("cm", "i_cap"),
)


@dataclass
class Nodes:
    """The compartments of all cells: `parent_index` is -1 for a root."""

    parent_index: np.ndarray  # int32
    a: np.ndarray  # effect of node i's voltage on its parent's row
    b: np.ndarray  # effect of the parent's voltage on node i's row
    area: np.ndarray  # [um2]
    v: np.ndarray  # [mV]
    diam: np.ndarray  # [um]
    first: np.ndarray  # int32, ncell + 1 entries: where each cell's nodes start

    @property
    def count(self) -> int:
        return len(self.v)

    @property
    def ncell(self) -> int:
        return len(self.first) - 1


@dataclass
class PointerTarget:
    """Where one POINTER of every instance of a set points: into the array `space` names
    ("node.v", "mech:<set index>:<variable>", "ion:<ion>:<variable>" or "outside", the
    model's `outside` values) at `index[i]` for instance i (an array variable's elements
    counted instance by instance)."""

    space: str
    index: np.ndarray  # int32


@dataclass
class MechanismSet:
    """All instances of one mechanism in a cell group.

    `data` holds one array per per-instance variable (by NMODL name); `ion_index` maps an
    ion name to each instance's index into that ion's arrays. Artificial cells have no
    nodes: their `node_index` is empty.
    """

    mechanism: Mechanism
    type_id: int  # NEURON's mechanism type number, as the dataset uses it
    node_index: np.ndarray  # int32
    data: dict[str, np.ndarray]
    ion_index: dict[str, np.ndarray] = field(default_factory=dict)
    globals: dict[str, float] = field(default_factory=dict)
    count: int = 0
    pointers: dict[str, PointerTarget] = field(default_factory=dict)  # POINTER name -> target
    #: Event Vectors (Mechanism.vectors) by name: (times, offset, size), instance i's times
    #: being times[offset[i] : offset[i] + size[i]].
    vectors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.mechanism.name

    @property
    def is_artificial(self) -> bool:
        return self.mechanism.kind == "artificial_cell"


@dataclass
class IonSet:
    """One ion species: the arrays that mechanisms read and write through USEION.

    `data` has `e<ion>`, `<ion>i`, `<ion>o`, `i<ion>` and `di<ion>dv`; `style` is NEURON's
    ion style bits per instance (which of concentration and reversal potential are
    initialised and advanced)."""

    name: str
    charge: float
    type_id: int
    node_index: np.ndarray  # int32
    data: dict[str, np.ndarray]
    style: np.ndarray  # int32
    init_inside: float = 1.0  # <ion>i0_<ion>_ion [mM], for styles that initialise concentrations
    init_outside: float = 1.0  # <ion>o0_<ion>_ion [mM]

    @property
    def count(self) -> int:
        return len(self.node_index)


@dataclass
class Presyns:
    """Spike sources: a voltage threshold on a node, or an artificial cell's net_event.

    `node` is -1 for an artificial-cell source; then `source_set` and `source_instance` name
    the mechanism set and instance. `gid` is -1 for a source that is not reported. A source
    on another rank has its gid, `node` and `source_set` -1: it never fires here, and its
    spikes arrive in the exchange (portneuron.parallel)."""

    gid: np.ndarray  # int64
    node: np.ndarray  # int32
    threshold: np.ndarray  # [mV]
    source_set: np.ndarray  # int32, index into Model.mechanisms, -1 for a voltage source
    source_instance: np.ndarray  # int32

    @property
    def count(self) -> int:
        return len(self.gid)


@dataclass
class NetCons:
    """Connections from presyns to NET_RECEIVE targets.

    `source` indexes Presyns (-1: a source outside this group, which never fires here);
    `target_set` indexes Model.mechanisms. Weights are flat: netcon k owns
    `weights[weight_offset[k] : weight_offset[k] + nargs]`, nargs being the number of its
    target's NET_RECEIVE arguments."""

    source: np.ndarray  # int32
    target_set: np.ndarray  # int32
    target_instance: np.ndarray  # int32
    delay: np.ndarray  # [ms]
    weight_offset: np.ndarray  # int32
    weights: np.ndarray

    @property
    def count(self) -> int:
        return len(self.source)


@dataclass
class VecPlay:
    """A variable driven by a played vector (NEURON's Vector.play, continuous): at time t
    the variable takes `y` interpolated linearly in `t_points`."""

    target_set: int  # index into Model.mechanisms
    variable: str
    instance: int
    t_points: np.ndarray
    y: np.ndarray


@dataclass
class Transfers:
    """Values copied from place to place every step: NEURON's gap junctions
    (ParallelContext.source_var / target_var). A source is a place (a node's v, or a
    variable of a mechanism or an ion) with an id of its own, the sid; a target is a
    variable of a point process (a gap junction's vgap) that takes the value of the source
    with its sid: after the voltage update, before the SOLVE blocks (NEURON's nonvint), and
    at finitialize after v is set, before the INITIAL blocks. Each entry is the sids of
    places of one kind and where they are (`PointerTarget`'s spaces)."""

    sources: list[tuple[np.ndarray, PointerTarget]] = field(default_factory=list)
    targets: list[tuple[np.ndarray, PointerTarget]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.targets)

    @staticmethod
    def by_space(places) -> list[tuple[np.ndarray, PointerTarget]]:
        """Entries of `sources` or `targets` from (space, sids, indices) in any order (a
        sid and an index each, or arrays of them): one per space, in first-seen order."""
        found: dict[str, tuple[list, list]] = {}
        for space, sids, indices in places:
            kept = found.setdefault(space, ([], []))
            kept[0].append(np.atleast_1d(sids))
            kept[1].append(np.atleast_1d(indices))
        return [
            (
                np.concatenate(s).astype(np.int64),
                PointerTarget(space, np.concatenate(i).astype(np.int32)),
            )
            for space, (s, i) in found.items()
        ]


@dataclass
class Sections:
    """The sections of the cells and which nodes they hold: what longitudinal diffusion
    needs (NEURON's ldifus.cpp). A section of `nseg` segments and length `length` [um]
    holds `nseg` nodes (its 0-end is its parent's node); `first_node` is the node of its
    first segment; `rallbranch` is NEURON's."""

    node_section: np.ndarray  # int32, per model node; -1 for a node of no section (a root)
    length: np.ndarray  # [um]
    nseg: np.ndarray  # int32
    rallbranch: np.ndarray
    parent: np.ndarray  # int32: the section it is connected to, -1 for a root section
    first_node: np.ndarray  # int32


#: NEURON's section types, as SWC numbers them (1 soma, 2 axon, 3 dend, 4 apic): the
#: sections a CoreNEURON report may target. 0: a section of another name.
SECTION_TYPES = ("soma", "axon", "dend", "apic")


def section_type(name: str) -> int:
    """A section's type by the start of its NEURON name, after any template's: "soma",
    "Cell[2].dend[5]", "apical_trunk", "basal_2" (a dendrite) -> 1, 3, 4, 3; 0 for others."""
    base = name.rpartition(".")[2].replace("basal", "dend", 1)
    return next((k + 1 for k, kind in enumerate(SECTION_TYPES) if base.startswith(kind)), 0)


@dataclass
class SectionTypes:
    """The section type (section_type) of each cell's nodes, where the source names its
    sections (direct mode, the native builder): cell c's are `of_node[of_cell[c]]`, one
    int8 array per template, shared by its cells (0 on a root node, which has none)."""

    of_node: list[np.ndarray]
    of_cell: np.ndarray  # int32, per cell

    def of(self, cell: int) -> np.ndarray:
        return self.of_node[int(self.of_cell[cell])]


@dataclass
class Model:
    """One cell group, ready to simulate."""

    nodes: Nodes
    mechanisms: list[MechanismSet]  # in NEURON's order: the order currents are summed in
    ions: list[IonSet]
    presyns: Presyns
    netcons: NetCons
    vecplay: list[VecPlay] = field(default_factory=list)
    celsius: float = 6.3
    secondorder: int = 0
    dt: float = 0.025  # [ms], the step the model was written with
    #: model node index -> index in the source (the dataset's or NEURON's thread order)
    source_node: np.ndarray | None = None
    #: model node index -> the cell group it came from
    source_group: np.ndarray | None = None
    source: str = ""
    #: Values outside the cells that POINTERs reach, one per place: in direct mode, the
    #: elements of NEURON Vectors that a model sums into (hnn-core's dipoles).
    outside: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: NEURON's Random123 global index (`Random123_globalindex`): every stream's key.
    random123_index: float = 0.0
    #: The sections, where the source gives them (direct mode, the native builder; a
    #: dataset does not): only LONGITUDINAL_DIFFUSION needs them.
    sections: Sections | None = None
    #: Each node's section type, where the source names its sections: reports of a type.
    section_types: SectionTypes | None = None
    #: Gap junctions and the other values NEURON transfers every step.
    transfers: Transfers = field(default_factory=Transfers)

    @property
    def ncell(self) -> int:
        return self.nodes.ncell

    @property
    def compartments(self) -> int:
        """Nodes with membrane (NEURON's segments): the count ns/compartment-step divides by.
        Zero-area nodes (cell roots, section ends) are not compartments."""
        cap = self.mechanism_set("capacitance")
        return cap.count if cap is not None else self.nodes.count

    def mechanism_set(self, name: str) -> MechanismSet | None:
        for m in self.mechanisms:
            if m.name == name:
                return m
        return None

    def ion(self, name: str) -> IonSet | None:
        for ion in self.ions:
            if ion.name == name:
                return ion
        return None

    def node_of(self, group: int, index: int) -> int:
        """The model node of node `index` of cell group `group` in the source."""
        assert self.source_node is not None and self.source_group is not None
        hits = np.flatnonzero((self.source_node == index) & (self.source_group == group))
        if not len(hits):
            raise KeyError(f"no node {index} in cell group {group}")
        return int(hits[0])

    def memory(self) -> dict[str, int]:
        """Bytes of the model's arrays by part: its nodes, each mechanism set (by name), its
        ions, its spike sources and its NetCons (the model's own; a run adds its layout
        and queues)."""
        nodes = self.nodes
        parts = {
            "nodes": [nodes.parent_index, nodes.a, nodes.b, nodes.area, nodes.v, nodes.diam,
                      nodes.first],
        }  # fmt: skip
        for m in self.mechanisms:
            parts[m.name] = [m.node_index, *m.data.values(), *m.ion_index.values()]
        parts["ions"] = [a for ion in self.ions for a in (ion.node_index, ion.style,
                                                          *ion.data.values())]  # fmt: skip
        for name, part in (("spike sources", self.presyns), ("netcons", self.netcons)):
            parts[name] = [v for v in vars(part).values() if isinstance(v, np.ndarray)]
        return {name: sum(a.nbytes for a in arrays) for name, arrays in parts.items()}

    def min_delay(self) -> float:
        """The smallest NetCon delay: how far ahead every spike's effect is known [ms]."""
        active = self.netcons.delay[self.netcons.source >= 0]
        return float(active.min()) if len(active) else float("inf")


def cells_contiguous(parent_index: np.ndarray, ncell: int) -> tuple[np.ndarray, np.ndarray]:
    """A node order that puts each cell's nodes together, keeping NEURON's relative order.

    `parent_index` is NEURON's: the first `ncell` nodes are the roots and every parent comes
    before its child. Returns (order, first): `order[k]` is the source index of model node
    k, and cell c owns model nodes `first[c]:first[c+1]`.
    """
    cell = np.array(parent_index, dtype=np.int32)
    cell[:ncell] = np.arange(ncell)  # a root is its own cell
    while True:  # each node's root, by jumping to the parent's parent: log2(depth) passes
        up = cell[cell]
        if np.array_equal(up, cell):
            break
        cell = up
    order = np.argsort(cell, kind="stable")  # roots stay first in their cell
    counts = np.bincount(cell, minlength=ncell)
    first = np.zeros(ncell + 1, dtype=np.int32)
    np.cumsum(counts, out=first[1:])
    return order, first
