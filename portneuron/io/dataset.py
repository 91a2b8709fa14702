"""Reading NEURON's offline dataset (`ParallelContext.nrncore_write`, format 1.8) into a Model.

The files: `files.dat` (group ids), `bbcore_mech.dat` (mechanism types), `globals.dat`,
then per cell group `<g>_1.dat` (spike sources, NetCon sources) and `<g>_2.dat` (nodes,
mechanism data, thresholds, NetCon targets, weights and delays, VecPlay). The layout is
NEURON's (src/coreneuron/io/nrn_setup.cpp and phase2.cpp document it). Groups are merged
into one Model; mechanisms are resolved by name through a MechanismLibrary.

Everything is checked as it is read, so that a damaged file is one `DatasetError` naming the
file, the array and its first bad element rather than a traceback or a wrong result: every
index against what it indexes, gids for uniqueness, pdata against what portneuron derives by
itself, and floats where NEURON writes no NaN (or no infinity, or nothing negative). A value
outside what NEURON documents is refused too: a negative NetCon delay, which NEURON and
CoreNEURON silently take for 0. The checks themselves are in `checks.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portneuron import scheduler
from portneuron.ir import Mechanism
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
    Transfers,
    VecPlay,
    cells_contiguous,
)
from portneuron.parallel import Ranks

from .checks import (
    ION_FIELDS,
    check_against_mechanisms,
    check_gids,
    check_mechanisms,
    check_netcons,
    check_nodes,
    check_presyns,
    pdata_slots,
)
from .datfile import DatasetError, DatFile, Record

UNSUPPORTED = {
    "extracellular": "the extracellular mechanism is not supported",
    "fastpas": "fastpas is not supported",
}


@dataclass
class MechType:
    name: str
    type_id: int
    point_type: int
    artificial: bool
    is_ion: bool
    param_size: int
    dparam_size: int
    charge: float = 0.0


class Block:
    """A mechanism type's values in a group: `rows` instances of a value per layout slot,
    held as one array per slot (the file holds them instance by instance)."""

    def __init__(self, columns: list[np.ndarray], rows: int) -> None:
        self.columns, self.rows = columns, rows

    def __len__(self) -> int:
        return self.rows


@dataclass
class Group:
    """One `<g>_1.dat` + `<g>_2.dat` as read and checked within themselves, before merging;
    `records` says where each array lies, for the checks that need the other groups or the
    mechanisms' sources."""

    gid: int
    ncell: int
    parent: np.ndarray
    a: np.ndarray
    b: np.ndarray
    area: np.ndarray
    v: np.ndarray
    diam: np.ndarray
    mechs: list[tuple[MechType, np.ndarray, Block, np.ndarray, np.ndarray]]
    output_gid: np.ndarray
    output_vindex: np.ndarray
    threshold: np.ndarray
    netcon_srcgid: np.ndarray
    netcon_type: np.ndarray
    netcon_index: np.ndarray
    weights: np.ndarray
    delays: np.ndarray
    vecplay: list[tuple[int, int, np.ndarray, np.ndarray]] = field(default_factory=list)
    records: dict[str, Record] = field(default_factory=dict)
    nvdata: int = 0
    #: Per mechanism type with POINTERs: what each pointer word points into (-1 a node's
    #: v, -2 i_membrane_, else a mechanism or ion type), instance by instance.
    pointer_types: dict[int, np.ndarray] = field(default_factory=dict)
    #: Per mechanism type with bbcore_write data: (ints, doubles) as its instances wrote them.
    bbcore: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: Its `<g>_gap.dat`, where the model has gap junctions and the group takes part.
    gaps: Gaps | None = None


@dataclass
class Gaps:
    """One group's `<g>_gap.dat`: the places it gives values from (sources) and the point
    process variables that take them (targets), each as (sid, type, index): type -1 is a
    node's v, the index a node of the group; any other a mechanism or ion type, the index
    counting that type's values instance by instance, as its data block lies."""

    sources: tuple[np.ndarray, np.ndarray, np.ndarray]
    targets: tuple[np.ndarray, np.ndarray, np.ndarray]


def load_dataset(
    directory: str | Path,
    library: MechanismLibrary | None = None,
    ranks: Ranks | None = None,
    groups: list[int] | None = None,
) -> Model:
    """Read the dataset in `directory` into one Model; with several `ranks`, this rank's
    part: the groups the scheduler places here (by the size of their data files), or
    `groups` where the rank's are given (those NEURON's own rank wrote, in direct mode),
    NetCons from cells of other groups keeping their sources' gids (their spikes come from
    the other ranks, portneuron.parallel)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such folder; -d needs the folder nrncore_write wrote")
    library = library or MechanismLibrary()
    groups_ids = read_files_dat(directory / "files.dat")
    if not groups_ids:
        raise DatasetError(
            f"{directory / 'files.dat'}: the dataset has no cell groups, so nothing to simulate; "
            f"give the cells gids (pc.set_gid2node) before nrncore_write"
        )
    types = read_mech_types(directory / "bbcore_mech.dat")
    globals_ = read_globals(directory / "globals.dat")
    remote = ranks is not None and ranks.size > 1
    if remote and groups is not None:
        groups_ids = groups
    elif remote:
        rank = placement(directory, groups_ids, ranks.size, ranks.speeds)
        here = scheduler.mine(
            rank, ranks.rank, ranks.size, f"{directory}: {len(groups_ids)} cell groups"
        )
        groups_ids = [g for g, mine in zip(groups_ids, here) if mine]
    groups = [read_group(directory, g, types) for g in groups_ids]
    if has_gaps(directory / "files.dat"):
        for g in groups:
            g.gaps = read_gaps(directory, g, types)
    model = merge(groups, types, globals_, library, str(directory), remote)
    del groups
    # the groups' arrays, merged into the model's: a gc pass (50 ms beside NEURON's
    # objects) where they were large enough to matter
    give_back(collect=model.nodes.count >= COLLECT_NODES)
    return model


#: Nodes from which load_dataset collects the groups' garbage before it goes on.
COLLECT_NODES = 1 << 16


def placement(
    directory: Path, groups_ids: list[int], nranks: int, speeds: tuple[float, ...] | None = None
) -> np.ndarray:
    """Each group's rank: longest first by the size of its files (group_costs), over each
    rank's speed where `speeds` are given."""
    return scheduler.place(group_costs(directory, groups_ids), nranks, speeds)


def group_costs(directory: Path, groups_ids: list[int]) -> list[int]:
    """Each group's cost for placement: the size of its data files."""
    try:
        return [
            sum((directory / f"{g}_{k}.dat").stat().st_size for k in (1, 2)) for g in groups_ids
        ]
    except OSError as exc:
        raise DatasetError(f"{exc.filename}: {exc.strerror}; the dataset is incomplete") from None


def read_files_dat(path: Path) -> list[int]:
    with DatFile(path) as f:
        f.version()
        n = f.integer("the number of cell groups")
        if n == -1:  # the model has gap junctions (has_gaps); the count follows
            n = f.integer("the number of cell groups")
        if n < 0:
            raise f.error(f"negative number of cell groups ({n}); the file is damaged")
        ids: dict[int, None] = {}  # in order
        for _ in range(n):
            g = f.integer("a cell group id")
            if g in ids:
                raise f.error(f"cell group {g} is listed twice; the file is damaged")
            if g != -1:
                ids[g] = None
        return list(ids)


def has_gaps(path: Path) -> bool:
    """Whether files.dat says the model has gap junctions (a line -1 before the count)."""
    with DatFile(path) as f:
        f.version()
        return f.integer("the number of cell groups") == -1


def read_gaps(directory: Path, group: Group, types: dict[int, MechType]) -> Gaps | None:
    """A group's `<g>_gap.dat` (NEURON's nrnbbcore_gap_write), None where it has none (a
    group without gap junctions). Types are checked here, indices once merged."""
    path = directory / f"{group.gid}_gap.dat"
    if not path.exists():
        return None
    with DatFile(path) as f:
        f.version()
        size = f.integer("sizeof_sid_t")
        if size not in (4, 8):
            raise f.error(f"sids of {size} bytes; NEURON writes 4 (or 8, NRNLONGSGID)")
        ntar, nsrc = f.count("ntar"), f.count("nsrc")
        parts = []
        for n, side in ((nsrc, "source"), (ntar, "target")):
            if n == 0:
                parts.append((np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)))
                continue
            sid = f.array(f"i{size}", n, f"{side} sids").astype(np.int64)
            kind = f.array("i4", n, f"{side} types")
            index = f.array("i4", n, f"{side} indices")
            parts.append((sid, kind, index))
        f.end()
    (_, src_type, src_index), (_, tar_type, tar_index) = parts
    counts = {mt.type_id: len(data) for mt, _, data, _, _ in group.mechs}
    for what, kind, index, voltage in (
        ("source", src_type, src_index, True),
        ("target", tar_type, tar_index, False),
    ):
        for k in range(len(kind)):
            t, ix = int(kind[k]), int(index[k])
            if t == -1 and voltage:
                if not 0 <= ix < len(group.v):
                    raise DatasetError(
                        f"{path}: {what} {k} is the v of node {ix}, but the group has "
                        f"{len(group.v)} nodes; the file is damaged"
                    )
                continue
            if t not in counts or (not voltage and not types[t].point_type):
                why = "a point process here" if not voltage else "a mechanism with instances here"
                raise DatasetError(
                    f"{path}: {what} {k} is of type {t}, which is not {why}; the file is damaged"
                )
            values = counts[t] * types[t].param_size
            if not 0 <= ix < values:
                raise DatasetError(
                    f"{path}: {what} {k} is value {ix} of {types[t].name}, which has {values} "
                    f"values here; the file is damaged"
                )
    return Gaps(parts[0], parts[1])  # a sid given twice: _transfers, over every group


def read_mech_types(path: Path) -> dict[int, MechType]:
    with DatFile(path) as f:
        f.version()
        count = f.integer("the number of mechanism types")
        types: dict[int, MechType] = {}
        for _ in range(2, count):
            text = f.line("a mechanism line")
            words = text.split()
            try:
                name = words[0]
                type_id, pnt, art, ion, psize, dsize = (int(w) for w in words[1:7])
            except (IndexError, ValueError):
                raise f.error(f"expected a mechanism line, found {text[:60]!r}") from None
            if psize < 0 or dsize < 0 or type_id in types:
                raise f.error(f"impossible mechanism line {text[:60]!r}; the file is damaged")
            mt = MechType(name, type_id, pnt, bool(art), bool(ion), psize, dsize)
            if mt.is_ion:
                try:
                    mt.charge = float(f.line("the ion's charge").split()[0])
                except (IndexError, ValueError):
                    raise f.error(f"expected the charge of ion {name}") from None
            types[type_id] = mt
        return types


def read_globals(path: Path) -> dict[str, float]:
    with DatFile(path) as f:
        f.version()
        values: dict[str, float] = {}
        while True:
            text = f.line("a global value or the '0 0' terminator")
            words = text.split()
            if words == ["0", "0"]:
                break
            if len(words) == 1 and words[0].endswith("]") and "[" in words[0]:
                name, _, n = words[0][:-1].partition("[")
                if not n.isdigit():
                    raise f.error(f"expected 'name[N]', found {text[:60]!r}")
                for _ in range(int(n)):
                    f.line(f"a value of {name}")
                continue
            try:
                values[words[0]] = float(words[1])
            except (IndexError, ValueError):
                raise f.error(f"expected 'name value', found {text[:60]!r}") from None
        for name in ("secondorder", "Random123_globalindex"):
            text = f.line(name)
            words = text.split()
            if len(words) != 2 or words[0] != name or not words[1].lstrip("-").isdigit():
                raise f.error(f"expected '{name} N', found {text[:60]!r}")
            values[name] = float(words[1])
        return values


def read_group(directory: Path, gid: int, types: dict[int, MechType]) -> Group:
    """One cell group; every index is checked against what it indexes within the group."""
    with DatFile(directory / f"{gid}_1.dat") as f1:
        f1.version()
        npresyn = f1.count("npresyn")
        nnetcon = f1.count("nnetcon")
        output_gid = f1.array("i4", npresyn, "output gids")
        srcgid = f1.array("i4", nnetcon, "NetCon source gids")
        f1.end()

    with DatFile(directory / f"{gid}_2.dat", f1.checkpoint) as f:
        f.version()
        ncell = f.count("n_real_cell")
        f.integer("ngid")
        nreal = f.count("n_real_gid")
        if nreal > npresyn:
            raise f.error(
                f"{nreal} real cells' spike sources, but {f1.path} has {npresyn} in all; "
                f"the file is damaged"
            )
        nnode = f.count("nnode")
        if ncell > nnode or (ncell == 0 and nnode > 0):
            raise f.error(
                f"{ncell} cells (n_real_cell) cannot own {nnode} nodes; the file is damaged"
            )
        ndiam = f.integer("ndiam")
        nmech = f.count("nmech")
        mech_list: list[tuple[MechType, int]] = []
        for _ in range(nmech):
            type_id = f.integer("a mechanism type")
            count = f.count("a mechanism's instance count")
            if type_id not in types:
                raise f.error(
                    f"mechanism type {type_id} is not in bbcore_mech.dat; the dataset is damaged"
                )
            if any(mt.type_id == type_id for mt, _ in mech_list):
                raise f.error(f"{types[type_id].name} is listed twice; the file is damaged")
            mech_list.append((types[type_id], count))
        f.integer("nidata")
        nvdata = f.count("nvdata")
        nweight = f.count("nweight")
        parent = f.array("i4", nnode, "parent indices")
        a = f.array("f8", nnode, "a")
        b = f.array("f8", nnode, "b")
        area = f.array("f8", nnode, "area")
        v = f.array("f8", nnode, "v")
        diam = f.array("f8", nnode, "diam") if ndiam > 0 else np.zeros(nnode)
        mechs = []
        pointer_types: dict[int, np.ndarray] = {}
        for mt, n in mech_list:
            nodeindices = (
                np.zeros(0, np.int32)
                if mt.artificial
                else f.array("i4", n, f"{mt.name} node indices")
            )
            data = Block(f.columns(n, mt.param_size, f"{mt.name} data"), n)
            pdata = np.zeros((n, 0), np.int32)
            random = np.zeros(0, np.uint32)
            if mt.dparam_size > 0:
                pdata = f.array("i4", n * mt.dparam_size, f"{mt.name} pdata").reshape(n, -1)
                npointer = f.count("npointer")
                if npointer > 0:
                    pointer_types[mt.type_id] = f.array("i4", npointer, f"{mt.name} pointer types")
                nrandom = f.count("nmodlrandom")
                if nrandom > 0:
                    random = f.array("u4", nrandom, f"{mt.name} random streams")
            mechs.append((mt, nodeindices, data, pdata, random))
        vindex = f.array("i4", npresyn, "output_vindex")
        threshold = f.array("f8", nreal, "thresholds")
        nc_type = f.array("i4", nnetcon, "NetCon target types")
        nc_index = f.array("i4", nnetcon, "NetCon target instances")
        weights = f.array("f8", nweight, "NetCon weights")
        delays = f.array("f8", nnetcon, "NetCon delays")
        bbcore = {}
        for _ in range(f.count("bbcorepointer count")):
            btype = f.integer("a bbcorepointer type")
            if btype not in types:
                raise f.error(
                    f"bbcorepointer data of type {btype}, which is not in bbcore_mech.dat"
                )
            icnt = f.count("a bbcorepointer int count")
            dcnt = f.count("a bbcorepointer double count")
            name = types[btype].name
            ints = (
                f.array("i4", icnt, f"{name} bbcorepointer ints") if icnt else np.zeros(0, np.int32)
            )
            doubles = f.array("f8", dcnt, f"{name} bbcorepointer doubles") if dcnt else np.zeros(0)
            bbcore[btype] = (ints, doubles)
        counts = {mt.type_id: n for mt, n in mech_list}
        vecplay = []
        for k in range(f.count("the VecPlay count")):
            vtype, mtype, ix, size = f.integers("a VecPlay field", 4)
            if vtype != 4:
                raise f.error(f"VecPlay type {vtype} is not supported (only continuous play, 4)")
            if mtype not in counts or types[mtype].is_ion:
                raise f.error(f"VecPlay {k} plays into type {mtype}, which has no instances here")
            values = types[mtype].param_size * counts[mtype]
            if not 0 <= ix < values:
                raise f.error(
                    f"VecPlay {k} plays value {ix} of {types[mtype].name}, which has {values} "
                    f"values here; the file is damaged"
                )
            y = f.array("f8", size, f"VecPlay {k} values")
            t = f.array("f8", size, f"VecPlay {k} times")
            vecplay.append((mtype, ix, y, t))
        f.end()
        records = {**f1.records, **f.records}
    group = Group(
        gid, ncell, parent, a, b, area, v, diam, mechs, output_gid, vindex, threshold,
        srcgid, nc_type, nc_index, weights, delays, vecplay, records, nvdata, pointer_types,
        bbcore,
    )  # fmt: skip
    check_nodes(group, ndiam > 0)
    check_mechanisms(group)
    check_presyns(group, counts, types)
    check_netcons(group, counts, types)
    return group


def merge(
    groups: list[Group],
    types: dict[int, MechType],
    globals_: dict[str, float],
    library: MechanismLibrary,
    source: str,
    remote: bool = False,
) -> Model:
    """One Model from the groups: nodes cell by cell, instances of a type together. The
    groups' node values and data blocks move into the model's arrays (a group keeps its
    indices and counts, not its values), so the values are held once, not twice. With
    `remote` (a rank's groups of a run on several), a NetCon whose source gid is in none of
    the groups gets a source of that gid that never fires here."""
    order: list[int] = []
    for g in groups:
        prev = -1
        for mt, *_ in g.mechs:
            if mt.type_id not in order:
                order.insert(order.index(prev) + 1 if prev in order else len(order), mt.type_id)
            prev = mt.type_id
    order.sort(key=lambda t: types[t].artificial)  # artificial cells after the rest, stably

    mechanisms = {}
    for type_id in order:
        mt = types[type_id]
        where = f"{source}/bbcore_mech.dat"
        if mt.name in UNSUPPORTED:
            raise DatasetError(f"{where}: {UNSUPPORTED[mt.name]} (the model uses {mt.name})")
        if mt.is_ion:
            continue
        mech = CAPACITANCE if mt.name == "capacitance" else library.get(mt.name, source)
        if len(mech.layout) != mt.param_size:
            raise DatasetError(
                f"{where}: {mt.name} stores {mt.param_size} values per instance, but "
                f"{mech.source or mt.name} gives {len(mech.layout)}; use the .mod file NEURON used"
            )
        mechanisms[type_id] = mech
    check_gids(groups, every_group=not remote)
    for g in groups:
        check_against_mechanisms(g, mechanisms, types)

    # nodes: each group's cell by cell (cells_contiguous), the groups one after another,
    # written straight into the model's arrays; a group's own go once they are placed
    total = sum(len(g.v) for g in groups)
    parent = np.empty(total, np.int32)
    columns = {name: np.empty(total) for name in ("a", "b", "area", "v", "diam")}
    source_node, source_group = np.empty(total, np.int32), np.empty(total, np.int32)
    first_parts, node_offset, perm_inv = [np.zeros(1, np.int32)], [], []
    base = 0
    for g in groups:
        n = len(g.v)
        here = slice(base, base + n)
        perm, first = cells_contiguous(g.parent, g.ncell)
        inverse = np.empty(n, np.int32)
        inverse[perm] = np.arange(n, dtype=np.int32)
        root = perm < g.ncell  # the file's parent of a root is not an index
        np.add(inverse[np.where(root, 0, g.parent[perm])], base, out=parent[here])
        parent[here][root] = -1
        for name, out in columns.items():
            np.take(getattr(g, name), perm, out=out[here])
            setattr(g, name, _MOVED)
        g.parent = _MOVED
        source_node[here], source_group[here] = perm, g.gid
        first_parts.append(first[1:] + base)
        node_offset.append(base)
        perm_inv.append(inverse)
        base += n
    nodes = Nodes(parent, **columns, first=_joined(first_parts).astype(np.int32))

    def node_map(gi: int, idx: np.ndarray) -> np.ndarray:
        out = perm_inv[gi][idx]
        out += node_offset[gi]
        return out

    # ions
    ions: dict[int, IonSet] = {}
    ion_offsets: dict[tuple[int, int], int] = {}
    for type_id in order:
        mt = types[type_id]
        if not mt.is_ion:
            continue
        x = mt.name.removesuffix("_ion")
        parts = [(gi, m) for gi, g in enumerate(groups) for m in g.mechs if m[0].type_id == type_id]
        nodes_idx, data, style = [], [], []
        count = 0
        for gi, (_, ni, d, pd, _) in parts:
            ion_offsets[(gi, type_id)] = count
            count += len(ni)
            nodes_idx.append(node_map(gi, ni))
            data.append(d)
            style.append(pd[:, 0] if pd.shape[1] else np.zeros(len(ni), np.int32))
        block = _joined_columns(data, mt.param_size)
        ions[type_id] = IonSet(
            x, mt.charge, type_id, _joined(nodes_idx),
            {f.format(x): block[k] for k, f in enumerate(ION_FIELDS)},
            _joined(style).astype(np.int32),
            float(globals_.get(f"{x}i0_{mt.name}", 1.0)),
            float(globals_.get(f"{x}o0_{mt.name}", 1.0)),
        )  # fmt: skip
        del block
        _release_data(groups, type_id)
    ion_at_node = {}
    for ion in ions.values():
        at = np.full(nodes.count, -1, np.int32)
        at[ion.node_index] = np.arange(ion.count, dtype=np.int32)
        ion_at_node[ion.name] = at

    # mechanism sets
    sets: list[MechanismSet] = []
    set_of: dict[int, int] = {}
    instance_offset: dict[tuple[int, int], int] = {}
    for type_id, mech in mechanisms.items():
        mt = types[type_id]
        parts = [(gi, m) for gi, g in enumerate(groups) for m in g.mechs if m[0].type_id == type_id]
        count = 0
        node_idx, blocks, randoms = [], [], []
        for gi, (_, ni, d, _, rnd) in parts:
            instance_offset[(gi, type_id)] = count
            count += len(d)
            node_idx.append(node_map(gi, ni))
            blocks.append(d)
            randoms.append(rnd)
        block = _joined_columns(blocks, mt.param_size)
        data = _instance_data(mech, block)
        _random_streams(mech, randoms, [len(b) for b in blocks], data)
        del block, blocks
        _release_data(groups, type_id)
        node_index = _joined(node_idx) if node_idx else np.zeros(0, np.int32)
        ion_index = {}
        for ion in mech.ions:
            if ion.name not in ion_at_node:
                raise DatasetError(
                    f"{source}: {mech.name} uses ion {ion.name}, which the dataset lacks"
                )
            idx = ion_at_node[ion.name][node_index]
            if (idx < 0).any():
                raise DatasetError(
                    f"{source}: {mech.name} sits on a node without ion {ion.name}; the dataset is damaged"
                )
            ion_index[ion.name] = idx
        # GLOBALs, and those the mechanism writes (kept per instance, from this value)
        mglobals = {
            v.name: globals_[f"{v.name}_{mech.name}"]
            for v in mech.variables
            if v.name not in data and not v.length and f"{v.name}_{mech.name}" in globals_
        }
        if f"usetable_{mech.name}" in globals_:
            mglobals["usetable"] = globals_[f"usetable_{mech.name}"]
        set_of[type_id] = len(sets)
        sets.append(MechanismSet(mech, type_id, node_index, data, ion_index, mglobals, count))

    places = _Places(types, sets, set_of, instance_offset, ions, ion_offsets, node_map)
    for mset in sets:
        if mset.mechanism.pointers:
            mset.pointers = _pointers(mset, groups, places, source)
    transfers = _transfers(groups, places, source, remote)
    for mset in sets:
        if mset.mechanism.stream is not None:
            _bbcore_stream(mset, groups, source)
        else:
            mset.vectors = _event_vectors(mset, groups, source)
    presyns, code_to_presyn = _presyns(groups, node_map, set_of, instance_offset)
    if remote:
        presyns = _remote_presyns(groups, presyns)
    netcons = _netcons(groups, presyns, code_to_presyn, set_of, instance_offset, sets)
    vecplay = []
    for gi, g in enumerate(groups):
        for mtype, ix, y, t in g.vecplay:
            mset = sets[set_of[mtype]]
            inst, fld = divmod(ix, types[mtype].param_size)
            vecplay.append(
                VecPlay(
                    set_of[mtype],
                    mset.mechanism.layout[fld],
                    inst + instance_offset[(gi, mtype)],
                    t,
                    y,
                )
            )
    return Model(
        nodes=nodes,
        mechanisms=sets,
        ions=list(ions.values()),
        presyns=presyns,
        netcons=netcons,
        vecplay=vecplay,
        celsius=globals_.get("celsius", 6.3),
        # NEURON writes the uint32 as a signed int (4294967295 as -1)
        random123_index=float(int(globals_.get("Random123_globalindex", 0.0)) % 2**32),
        secondorder=int(globals_.get("secondorder", 0)),
        dt=globals_.get("dt", 0.025),
        source_node=source_node,
        source_group=source_group,
        source=source,
        transfers=transfers,
    )


#: What a group keeps of an array merge has moved into the model.
_MOVED = np.zeros(0)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The parts end to end: the one part itself where there is one (no copy)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _joined_columns(blocks: list[Block], width: int) -> list[np.ndarray]:
    """The blocks' columns, each end to end (a single block's own arrays)."""
    if not blocks:
        return [np.zeros(0) for _ in range(width)]
    return [_joined([b.columns[k] for b in blocks]) for k in range(width)]


def _release_data(groups: list[Group], type_id: int) -> None:
    """The groups' data blocks of `type_id`, now in the model's arrays, go: each group keeps
    a block of its rows without columns, as the rest of the merge counts instances by it."""
    for g in groups:
        g.mechs = [
            (mt, ni, Block([], len(d)) if mt.type_id == type_id else d, pd, rnd)
            for mt, ni, d, pd, rnd in g.mechs
        ]


def _random_streams(
    mech: Mechanism, parts: list[np.ndarray], counts: list[int], data: dict
) -> None:
    """RANDOM variables' Random123 ids and positions from the `nmodlrandom` words."""
    names = mech.randoms
    if not names:
        return
    columns = {f"{n}.{p}": [] for n in names for p in ("id1", "id2", "id3", "position")}
    for words, n in zip(parts, counts):
        if len(words) == 0:
            for key in columns:
                columns[key].append(np.zeros(n))
            continue
        nvar = int(words[0])
        streams = words[1 + nvar :].reshape(nvar, n, 5).astype(np.float64)
        for k, name in enumerate(names[:nvar]):
            s = streams[k]
            columns[f"{name}.id1"].append(s[:, 0])
            columns[f"{name}.id2"].append(s[:, 1])
            columns[f"{name}.id3"].append(s[:, 2])
            columns[f"{name}.position"].append(s[:, 3] * 4 + s[:, 4])
    for key, chunks in columns.items():
        data[key] = np.concatenate(chunks) if chunks else np.zeros(0)


def _presyns(groups, node_map, set_of, instance_offset):
    gid, node, thresh, sset, sinst = [], [], [], [], []
    code_to_presyn: dict[tuple[int, int], int] = {}
    for gi, g in enumerate(groups):
        nreal = len(g.threshold)
        for i, (out, vi) in enumerate(zip(g.output_gid, g.output_vindex)):
            p = len(gid)
            gid.append(int(out) if out >= 0 else -1)
            if i < nreal:
                node.append(int(node_map(gi, np.array([vi]))[0]))
                thresh.append(float(g.threshold[i]))
                sset.append(-1)
                sinst.append(-1)
            else:
                code = -int(vi)
                type_id, inst = code % 1000, code // 1000
                node.append(-1)
                thresh.append(0.0)
                sset.append(set_of[type_id])
                sinst.append(inst + instance_offset[(gi, type_id)])
                code_to_presyn[(gi, code)] = p
    presyns = Presyns(
        np.array(gid, np.int64), np.array(node, np.int32), np.array(thresh),
        np.array(sset, np.int32), np.array(sinst, np.int32),
    )  # fmt: skip
    return presyns, code_to_presyn


def _remote_presyns(groups, presyns: Presyns) -> Presyns:
    """`presyns` and, after them, one for each NetCon source gid no group here holds."""
    here = {int(g) for g in presyns.gid if g >= 0}
    wanted = sorted({int(s) for g in groups for s in g.netcon_srcgid if s >= 0} - here)
    n = len(wanted)
    return Presyns(
        np.concatenate([presyns.gid, np.array(wanted, np.int64)]),
        np.concatenate([presyns.node, np.full(n, -1, np.int32)]),
        np.concatenate([presyns.threshold, np.zeros(n)]),
        np.concatenate([presyns.source_set, np.full(n, -1, np.int32)]),
        np.concatenate([presyns.source_instance, np.full(n, -1, np.int32)]),
    )


def _netcons(groups, presyns, code_to_presyn, set_of, instance_offset, sets):
    by_gid = {int(g): p for p, g in enumerate(presyns.gid) if g >= 0}
    src, tset, tinst, delay, woff, weights = [], [], [], [], [], []
    for gi, g in enumerate(groups):
        wpos = 0
        for k in range(len(g.netcon_srcgid)):
            ttype, tindex = int(g.netcon_type[k]), int(g.netcon_index[k])
            nargs = len(sets[set_of[ttype]].mechanism.net_receive_args) if ttype in set_of else 1
            w = g.weights[wpos : wpos + nargs]
            wpos += nargs
            if ttype == 0:
                continue  # a NetCon without a target (pc.cell's spike detector): nothing to do
            s = int(g.netcon_srcgid[k])
            if s >= 0:
                p = by_gid.get(s, -1)
            elif s == -1:
                p = -1
            else:
                p = code_to_presyn.get((gi, -s), -1)
            src.append(p)
            tset.append(set_of[ttype])
            tinst.append(tindex + instance_offset[(gi, ttype)])
            delay.append(float(g.delays[k]))
            woff.append(len(weights))
            weights.extend(w.tolist())
        if wpos != len(g.weights):
            raise DatasetError(
                f"{g.records['NetCon weights']}: {len(g.weights)} NetCon weights, but the NetCons' "
                f"targets take {wpos}; the .mod files differ from NEURON's or the file is damaged"
            )
    return NetCons(
        np.array(src, np.int32), np.array(tset, np.int32), np.array(tinst, np.int32),
        np.array(delay), np.array(woff, np.int32), np.array(weights),
    )  # fmt: skip


def _instance_data(mech, columns: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-instance variables from a mechanism's data, one column per layout slot (a
    variable's own column, not a copy); an array's elements as one (instances, length)
    array."""
    data = {}
    for v in mech.variables:
        if not v.per_instance:
            continue
        if v.length:
            slots = [f"{v.name}[{k}]" for k in range(v.length)]
            if all(slot in mech.layout for slot in slots):
                data[v.name] = np.stack([columns[mech.layout.index(slot)] for slot in slots], 1)
        elif v.name in mech.layout:
            data[v.name] = columns[mech.layout.index(v.name)]
    return data


class _Places:
    """Where a value NEURON names by a type and an index lies in the merged model: type -1
    a node's v (the index a node of the group), a mechanism or ion type one of its values
    (the index counting that type's values instance by instance, as its data block lies in
    the group). What POINTERs and gap junctions point at."""

    def __init__(self, types, sets, set_of, instance_offset, ions, ion_offsets, node_map):
        self.types, self.sets, self.set_of = types, sets, set_of
        self.instance_offset, self.ions, self.ion_offsets = instance_offset, ions, ion_offsets
        self.node_map = node_map

    def resolve(self, kind: int, words, gi: int, what: str) -> tuple[str, np.ndarray]:
        """("node.v", "ion:<ion>:<variable>" or "mech:<set>:<variable>", the indices)."""
        types, ions = self.types, self.ions
        if kind == -1:
            return "node.v", self.node_map(gi, words)
        if kind in ions:
            ion = ions[kind]
            instance, field_ = np.divmod(words, types[kind].param_size)
            names = {ION_FIELDS[f].format(ion.name) for f in np.unique(field_)}
            if len(names) != 1:
                raise DatasetError(f"{what}: points at several variables of {ion.name}_ion")
            return f"ion:{ion.name}:{names.pop()}", instance + self.ion_offsets[(gi, kind)]
        if kind in self.set_of:
            target = self.sets[self.set_of[kind]]
            instance, field_ = np.divmod(words, types[kind].param_size)
            names = {target.mechanism.layout[f] for f in np.unique(field_)}
            bases = {n.split("[")[0] for n in names}
            if len(bases) != 1 or next(iter(bases)) not in target.data:
                raise DatasetError(
                    f"{what}: points at {', '.join(sorted(names))} of {target.name}, which "
                    f"portneuron does not keep per instance"
                )
            base = bases.pop()
            length = next(v.length for v in target.mechanism.variables if v.name == base)
            instance = instance + self.instance_offset[(gi, kind)]
            if not length:
                return f"mech:{self.set_of[kind]}:{base}", instance
            element = np.array([int(target.mechanism.layout[f].split("[")[1][:-1]) for f in field_])
            return f"mech:{self.set_of[kind]}:{base}", instance * length + element
        what_kind = "i_membrane_" if kind == -2 else f"type {kind}"
        raise DatasetError(f"{what}: points at {what_kind}, which portneuron does not support")


def _pointers(mset: MechanismSet, groups, places: _Places, source: str) -> dict[str, PointerTarget]:
    """Where each POINTER of a set points: NEURON writes a pointer as a pdata word (an
    index) and a type (`_Places`)."""
    mech = mset.mechanism
    slots = pdata_slots(mech)
    where = f"{source}: {mech.name}"
    if slots is None:
        raise DatasetError(f"{where}: cannot find its POINTERs among its pdata words")

    out = {}
    for k, name in enumerate(mech.pointers):
        column = slots.index(f"pointer:{name}")
        spaces, indices = set(), []
        for gi, g in enumerate(groups):
            for mt, _, data, pdata, _ in g.mechs:
                if mt.type_id != mset.type_id or not len(data):
                    continue
                kinds = g.pointer_types.get(mt.type_id)
                if kinds is None or len(kinds) != len(data) * len(mech.pointers):
                    raise DatasetError(f"{where}: the dataset gives no target of POINTER {name}")
                kinds = kinds.reshape(len(data), -1)[:, k]
                words = pdata[:, column]
                index = np.empty(len(data), np.int64)
                for kind in np.unique(kinds):
                    at = kinds == kind
                    space, index[at] = places.resolve(
                        int(kind), words[at], gi, f"{where} POINTER {name}"
                    )
                    spaces.add(space)
                indices.append(index)
        if len(spaces) > 1:
            raise DatasetError(
                f"{where}: POINTER {name} points at different kinds of places "
                f"({', '.join(sorted(spaces))}); portneuron needs one kind per POINTER"
            )
        if spaces:
            out[name] = PointerTarget(spaces.pop(), np.concatenate(indices).astype(np.int32))
    return out


def _transfers(groups, places: _Places, source: str, remote: bool) -> Transfers:
    """The groups' gap junctions: sources and targets by kind of place, each target's
    source somewhere in the model (with `remote`, a rank's part of a run on several, or on
    another rank: the simulation exchanges those every step)."""

    def side(name: str):
        """(space, sids, indices) of one side's places, group by group, type by type."""
        for gi, g in enumerate(groups):
            if g.gaps is None:
                continue
            sid, kind, index = g.gaps.sources if name == "source" else g.gaps.targets
            for t in np.unique(kind):
                at = kind == t
                what = f"{source}/{g.gid}_gap.dat: a gap junction's {name}"
                space, where = places.resolve(int(t), index[at], gi, what)
                if name == "target" and not space.startswith("mech:"):
                    raise DatasetError(f"{what} is not a point process's variable")
                yield space, sid[at], where

    out = Transfers(Transfers.by_space(side("source")), Transfers.by_space(side("target")))
    given = np.concatenate([sid for sid, _ in out.sources] or [np.zeros(0, np.int64)])
    unique, seen = np.unique(given, return_counts=True)
    if (seen > 1).any():
        raise DatasetError(
            f"{source}: gap junction source sid {unique[seen > 1][0]} is given twice"
        )
    for sid, _ in out.targets:
        missing = sid[~np.isin(sid, given)]
        if len(missing) and not remote:  # on several ranks, another rank's (Simulation)
            raise DatasetError(
                f"{source}: a gap junction's target takes sid {missing[0]}, which no source "
                f"gives; the dataset is incomplete"
            )
    return out


def _bbcore_data(mset: MechanismSet, groups):
    """Per cell group holding instances of the set: (their count, the ints and the doubles
    their bbcore_write wrote), none where the group has no bbcorepointer data for them."""
    for g in groups:
        count = sum(len(data) for mt, _, data, _, _ in g.mechs if mt.type_id == mset.type_id)
        if count:
            ints, doubles = g.bbcore.get(mset.type_id, (np.zeros(0, np.int32), np.zeros(0)))
            yield count, ints, doubles


def _bbcore_stream(mset: MechanismSet, groups, source: str) -> None:
    """A BBCOREPOINTER's Random123 stream (Mechanism.stream), where bbcore_write put it:
    per instance `words` ints, the first five the stream's id1, id2, id3, sequence and
    index in the block (where it has a stream); the rest (Vectors' sizes: BBP's
    delayed-connection weights) must be 0, with no doubles, for portneuron to run it."""
    mech = mset.mechanism
    name, flag, words = mech.stream
    where = f"{source}: {mech.name}"
    blocks = []
    for count, ints, doubles in _bbcore_data(mset, groups):
        if len(ints) != count * words:
            raise DatasetError(
                f"{where}: its bbcorepointer data are {len(ints)} ints for {count} instances, "
                f"not the {words} per instance its bbcore_write writes; the dataset is damaged"
            )
        block = ints.view(np.uint32).reshape(count, words)
        extra = block[:, 5 if name else 0 :]
        if len(doubles) or extra.any():
            k = int(np.flatnonzero(extra.any(axis=1))[0]) if extra.any() else 0
            raise DatasetError(
                f"{where} {sum(len(b) for b in blocks) + k}: its BBCOREPOINTER carries Vectors "
                f"(delayed-connection weights, setup_delay_vecs), which portneuron does not run"
            )
        blocks.append(block)
    if not name:
        return  # Vectors only, all empty
    block = np.concatenate(blocks) if blocks else np.zeros((0, words), np.uint32)
    for k, part in enumerate(("id1", "id2", "id3")):
        mset.data[f"{name}.{part}"] = block[:, k].astype(np.float64)
    mset.data[f"{name}.position"] = block[:, 3].astype(np.float64) * 4 + block[:, 4]
    if flag and flag in mset.data and (mset.data[flag] != 1.0).any():
        k = int(np.flatnonzero(mset.data[flag] != 1.0)[0])
        raise DatasetError(
            f"{where} {k}: its stream is not Random123's ({flag} is not 1: setRNG was given a "
            f"hoc Random, or nothing), which portneuron does not follow; give it Random123 "
            f"ids with setRNG(id1, id2, id3)"
        )


def _event_vectors(mset: MechanismSet, groups, source: str) -> dict:
    """VecStim's event times, where its BBCOREPOINTER's bbcore_write put them: per instance
    one int (the count) and that many doubles (the times), instance after instance. A
    Vector reached another way (an ASSIGNED holding its address) is not in the dataset."""
    mech = mset.mechanism
    where = f"{source}: {mech.name}"
    written = [g.bbcore[mset.type_id] for g in groups if mset.type_id in g.bbcore]
    if not mech.vectors:
        if written:
            raise DatasetError(
                f"{where} has BBCOREPOINTER data, which portneuron reads only for a VecStim's "
                f"event Vector"
            )
        return {}
    (name,) = mech.vectors
    if f"bbcorepointer:{name}" not in mech.pointer_slots:
        return {}  # direct mode finds these Vectors in NEURON
    sizes, times = [], []
    for count, ints, doubles in _bbcore_data(mset, groups):
        if len(ints) != count or ints.min() < 0 or int(ints.sum()) != len(doubles):
            raise DatasetError(
                f"{where}: its bbcorepointer data are not one count per instance and that "
                f"many times ({len(ints)} counts for {count} instances, {len(doubles)} "
                f"times); the dataset is damaged"
            )
        sizes.append(ints)
        times.append(doubles)
    size = np.concatenate(sizes).astype(np.int32) if sizes else np.zeros(0, np.int32)
    data = np.concatenate(times) if times else np.zeros(0)
    offset = (np.cumsum(size) - size).astype(np.int32)
    return {name: (data, offset, size)}
