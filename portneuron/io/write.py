"""Writing a Model as a NEURON dataset (nrncore_write format 1.8), one cell group.

The files are what NEURON 9 writes for the same model, so `portneuron run -d` (and
CoreNEURON, for NEURON's built-in mechanisms) can run them: nodes with the roots first,
mechanism data instance by instance in NEURON's field order (hidden fields filled as after
finitialize), pdata in NEURON's semantics, spike sources, NetCons and VecPlay. Files go to a
temporary folder that replaces `directory` only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from portneuron.model import Model
from portneuron.nmodl.tabulated import element

VERSION = "1.8"

#: NEURON 9.0.2's built-in types: name -> (type, point type, artificial, ion, psize, dsize)
STOCK = {
    "morphology": (2, 0, 0, 0, 1, 0), "capacitance": (3, 0, 0, 0, 2, 0),
    "pas": (4, 0, 0, 0, 5, 0), "extracellular": (5, 0, 0, 0, 10, 0),
    "fastpas": (6, 0, 0, 0, 2, 0), "IClamp": (7, 1, 0, 0, 6, 2),
    "AlphaSynapse": (8, 2, 0, 0, 8, 2), "ExpSyn": (9, 3, 0, 0, 8, 2),
    "Exp2Syn": (10, 4, 0, 0, 13, 2), "SEClamp": (11, 5, 0, 0, 14, 2),
    "VClamp": (12, 6, 0, 0, 24, 2), "OClamp": (13, 7, 0, 0, 9, 2),
    "APCount": (14, 8, 0, 0, 7, 2), "na_ion": (15, 0, 0, 1, 5, 1),
    "k_ion": (16, 0, 0, 1, 5, 1), "hh": (17, 0, 0, 0, 25, 6),
    "NetStim": (18, 9, 1, 0, 9, 4), "IntFire1": (19, 10, 1, 0, 7, 3),
    "IntFire2": (20, 11, 1, 0, 8, 3), "IntFire4": (21, 12, 1, 0, 32, 3),
    "PointProcessMark": (22, 13, 0, 0, 1, 2), "PatternStim": (23, 14, 1, 0, 3, 4),
}  # fmt: skip
ION_FIELDS = ("e{}", "{}i", "{}o", "i{}", "di{}dv")


class _Out:
    """One group file: text lines and `chkpnt`-prefixed binary arrays."""

    def __init__(self, path: Path, checkpoint: int = 0) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.checkpoint = checkpoint
        self.line(VERSION)

    def line(self, text: str) -> None:
        self.f.write(f"{text}\n".encode())

    def array(self, values, dtype: str) -> None:
        self.line(f"chkpnt {self.checkpoint}")
        self.checkpoint += 1
        self.f.write(
            np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        )

    def close(self) -> None:
        self.f.close()


def save_dataset(model: Model, directory: str | Path) -> None:
    """Write `model` as a dataset in `directory` (created or replaced as a whole)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        _write(model, tmp)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _types(model: Model) -> dict[str, tuple]:
    """Type table: NEURON's stock numbers, then the model's other mechanisms and ions."""
    types = dict(STOCK)
    extra = [f"{ion.name}_ion" for ion in model.ions if f"{ion.name}_ion" not in types]
    extra += [m.name for m in model.mechanisms if m.name not in types]
    for name in extra:
        if name.endswith("_ion"):
            types[name] = (len(types) + 2, 0, 0, 1, 5, 1)
        else:
            mset = model.mechanism_set(name)
            mech = mset.mechanism
            pnt = 0 if mech.kind == "density" else len(types) + 1
            art = int(mech.kind == "artificial_cell")
            types[name] = (len(types) + 2, pnt, art, 0, len(mech.layout), len(_dparams(mset)))
    return types


def _dparams(mset) -> list[str]:
    """The pdata semantics of a mechanism, in NEURON's order (as far as portneuron needs)."""
    mech = mset.mechanism
    out = []
    if mech.kind != "density":
        out += ["area", "pntproc"]
    for ion in mech.ions:
        for var in (*ion.read, *ion.write):
            out.append(f"ion:{ion.name}:{var}")
            if var == f"i{ion.name}" and var in ion.write:
                out.append(f"ion:{ion.name}:di{ion.name}dv")
    out += ["random"] * len(mech.randoms)
    if mech.kernel("net_receive") is not None and any(
        s.name == "net_send" for k in mech.kernels for s in k.streams
    ):
        out.append("netsend")
    return out


def _write(model: Model, out: Path) -> None:
    types = _types(model)
    nodes = model.nodes
    roots = nodes.first[:-1]
    is_root = np.zeros(nodes.count, bool)
    is_root[roots] = True
    order = np.concatenate([roots, np.flatnonzero(~is_root)])  # dataset -> model
    ds_index = np.empty(nodes.count, np.int64)
    ds_index[order] = np.arange(nodes.count)
    parent = np.where(is_root[order], 0, ds_index[np.maximum(nodes.parent_index[order], 0)])

    gid = (
        int(model.presyns.gid[model.presyns.gid >= 0].min())
        if (model.presyns.gid >= 0).any()
        else 0
    )
    gaps = "-1\n" if model.transfers else ""  # files.dat's sign of gap junctions
    (out / "files.dat").write_text(f"{VERSION}\n{gaps}{1:10d}\n{gid}\n")
    lines = [VERSION, str(max(t[0] for t in types.values()) + 1)]
    for name, (tid, pnt, art, ion, psize, dsize) in sorted(types.items(), key=lambda kv: kv[1][0]):
        lines.append(f"{name} {tid} {pnt} {art} {ion} {psize} {dsize} {psize}" + " 1" * psize)
        if ion:
            ion_set = model.ion(name.removesuffix("_ion"))
            lines.append(f"{int(ion_set.charge) if ion_set else 1}")
    (out / "bbcore_mech.dat").write_text("\n".join(lines) + "\n")
    glob = [VERSION, f"celsius {model.celsius!r}", "t 0", f"dt {model.dt!r}"]
    for ion in model.ions:
        glob += [f"{ion.name}i0_{ion.name}_ion {ion.init_inside!r}",
                 f"{ion.name}o0_{ion.name}_ion {ion.init_outside!r}"]  # fmt: skip
    for m in model.mechanisms:
        for key, value in m.globals.items():
            glob.append(f"{key}_{m.name} {float(value)!r}")
    index = int(model.random123_index)  # NEURON writes its uint32 as a signed int
    glob += ["0 0", f"secondorder {model.secondorder}",
             f"Random123_globalindex {index - 2**32 if index >= 2**31 else index}"]  # fmt: skip
    (out / "globals.dat").write_text("\n".join(glob) + "\n")

    # mechanisms in NEURON's order: density and point processes, ions after pas, artificial last
    blocks = []  # (type id, node indices, data AoS, pdata, random words)
    instance_maps = {}
    ion_order = {ion.name: ion for ion in model.ions}
    ordered = sorted(
        [("mech", i, m) for i, m in enumerate(model.mechanisms)]
        + [("ion", i, ion) for i, ion in enumerate(model.ions)],
        key=lambda e: (
            e[2].is_artificial if e[0] == "mech" else False,
            types[e[2].name if e[0] == "mech" else f"{e[2].name}_ion"][0],
        ),
    )
    ion_instance_map = {}
    for kind, _, obj in ordered:
        if kind == "ion":
            inst = np.argsort(ds_index[obj.node_index], kind="stable")
            ion_instance_map[obj.name] = np.argsort(inst)
    vslot = 0
    for kind, index, obj in ordered:
        if kind == "ion":
            x = obj.name
            inst = np.argsort(ds_index[obj.node_index], kind="stable")
            data = np.column_stack([obj.data[f.format(x)][inst] for f in ION_FIELDS])
            blocks.append((types[f"{x}_ion"][0], ds_index[obj.node_index][inst], data,
                           obj.style[inst].reshape(-1, 1), None, False))  # fmt: skip
            continue
        m = obj
        art = m.is_artificial
        inst = np.arange(m.count) if art else np.argsort(ds_index[m.node_index], kind="stable")
        instance_maps[index] = np.argsort(inst)
        data = _data_block(model, m, inst, ion_order, ion_instance_map)
        dparams = _dparams(m) if m.name != "capacitance" else []
        pdata = np.zeros((m.count, len(dparams)), np.int32)
        slots = [k for k, d in enumerate(dparams) if d in ("pntproc", "netsend", "random")]
        for k, sem in enumerate(dparams):
            if sem == "area":
                pdata[:, k] = -1 if art else ds_index[m.node_index[inst]]
            elif sem.startswith("ion:"):
                _, x, var = sem.split(":")
                field = [f.format(x) for f in ION_FIELDS].index(var)
                pdata[:, k] = ion_instance_map[x][m.ion_index[x][inst]] * 5 + field
        for j, k in enumerate(slots):
            pdata[:, k] = vslot + np.arange(m.count) * len(slots) + j
        vslot += m.count * len(slots)
        random = _random_words(m, inst, dparams) if "random" in dparams else None
        nodes_ds = np.zeros(0, np.int64) if art else ds_index[m.node_index[inst]]
        blocks.append((types[m.name][0], nodes_ds, data, pdata, random, art))

    ps, nc = model.presyns, model.netcons
    voltage = np.flatnonzero(ps.node >= 0)
    artificial = np.flatnonzero(ps.node < 0)

    def code(p: int) -> int:
        mset = model.mechanisms[ps.source_set[p]]
        inst = int(instance_maps[int(ps.source_set[p])][ps.source_instance[p]])
        return -(types[mset.name][0] + 1000 * inst)

    sources = set(int(s) for s in nc.source if s >= 0)
    output_gid = [int(ps.gid[p]) for p in voltage]
    output_gid += [int(ps.gid[p]) if ps.gid[p] >= 0 else (code(p) if p in sources else -1)
                   for p in artificial]  # fmt: skip
    vindex = [int(ds_index[ps.node[p]]) for p in voltage] + [code(p) for p in artificial]
    srcgid = [
        -1 if s < 0 else (int(ps.gid[s]) if ps.gid[s] >= 0 else code(int(s))) for s in nc.source
    ]
    f1 = _Out(out / f"{gid}_1.dat")
    f1.line(f"{ps.count} npresyn")
    f1.line(f"{nc.count} nnetcon")
    f1.array(output_gid, "i4")
    f1.array(srcgid, "i4")
    f1.close()

    f = _Out(out / f"{gid}_2.dat", f1.checkpoint)
    ngid = len(voltage) + int((ps.gid[artificial] >= 0).sum())
    for text in (f"{nodes.ncell} n_real_cell", f"{ngid} ngid", f"{len(voltage)} n_real_gid",
                 f"{nodes.count} nnode", "0 ndiam", f"{len(blocks)} nmech"):  # fmt: skip
        f.line(text)
    for tid, _nodes, data, *_ in blocks:
        f.line(str(tid))
        f.line(str(len(data)))
    f.line("0 nidata")
    f.line(f"{vslot} nvdata")
    f.line(f"{len(nc.weights)} nweight")
    f.array(parent, "i4")
    for values in (nodes.a, nodes.b, nodes.area, nodes.v):
        f.array(values[order], "f8")
    for _tid, nidx, data, pdata, random, art in blocks:
        if not art:
            f.array(nidx, "i4")
        f.array(data.reshape(-1), "f8")
        if pdata.shape[1]:
            f.array(pdata.reshape(-1), "i4")
            f.line("0 npointer")
            if random is None:
                f.line("0 nmodlrandom")
            else:
                f.line(f"{len(random)} nmodlrandom")
                f.array(random, "u4")
    f.array(vindex, "i4")
    f.array(ps.threshold[voltage], "f8")
    f.array([types[model.mechanisms[s].name][0] for s in nc.target_set], "i4")
    f.array(
        [int(instance_maps[int(s)][i]) for s, i in zip(nc.target_set, nc.target_instance)], "i4"
    )
    f.array(nc.weights, "f8")
    f.array(nc.delay, "f8")
    f.line("0 bbcorepointer")
    f.line(f"{len(model.vecplay)} VecPlay instances")
    for play in model.vecplay:
        mset = model.mechanisms[play.target_set]
        inst = int(instance_maps[play.target_set][play.instance])
        ix = inst * len(mset.mechanism.layout) + mset.mechanism.layout.index(play.variable)
        for value in (4, types[mset.name][0], ix, len(play.y)):
            f.line(str(value))
        f.array(play.y, "f8")
        f.array(play.t_points, "f8")
    f.close()
    if model.transfers:

        def place(space: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """NEURON's (type, index) of places: -1 and the node, or a type and its value
            counted instance by instance."""
            kind, _, rest = space.partition(":")
            if space == "node.v":
                return np.full(len(index), -1), ds_index[index]
            name, _, variable = rest.partition(":")
            if kind == "ion":
                field = [f.format(name) for f in ION_FIELDS].index(variable)
                return np.full(len(index), types[f"{name}_ion"][0]), ion_instance_map[name][
                    index
                ] * 5 + field
            mset = model.mechanisms[int(name)]
            layout = mset.mechanism.layout
            inst = instance_maps[int(name)][index]
            return np.full(len(index), types[mset.name][0]), inst * len(layout) + layout.index(
                variable
            )

        sides = []
        for entries in (model.transfers.sources, model.transfers.targets):
            parts = [(sid, *place(where.space, where.index)) for sid, where in entries]
            sides.append([np.concatenate([p[k] for p in parts]) for k in range(3)])
        g = _Out(out / f"{gid}_gap.dat")
        g.line("4 sizeof_sid_t")
        g.line(f"{len(sides[1][0])} ntar")
        g.line(f"{len(sides[0][0])} nsrc")
        for sid, kind, index in sides:
            if len(sid):
                for values in (sid, kind, index):
                    g.array(values, "i4")
        g.close()


def _data_block(model: Model, m, inst: np.ndarray, ions: dict, ion_map: dict) -> np.ndarray:
    """A mechanism's values instance by instance in NEURON's field order."""
    mech = m.mechanism
    states = {v.name for v in mech.variables if v.kind == "state"}
    columns = []
    for name in mech.layout:
        at = element(name)
        if name in m.data:
            col = m.data[name][inst]
        elif at is not None and at[0] in m.data:
            col = m.data[at[0]][inst, at[1]]
        elif name == "v":
            col = np.zeros(m.count) if m.is_artificial else model.nodes.v[m.node_index[inst]]
        elif name == "_tsav":
            col = np.full(m.count, -1e20)
        elif name.startswith("D") and name[1:] in states or name == "_g":
            col = np.zeros(m.count)
        else:
            col = np.zeros(m.count)
            for ion in mech.ions:
                if name in (*ion.read, *ion.write) and name in ions[ion.name].data:
                    col = ions[ion.name].data[name][m.ion_index[ion.name][inst]]
        columns.append(np.asarray(col, dtype=np.float64))
    return np.column_stack(columns) if columns else np.zeros((m.count, 0))


def _random_words(m, inst: np.ndarray, dparams: list[str]) -> np.ndarray:
    """nmodlrandom: [nvar, dparam indices, then per variable per instance id1 id2 id3 seq which]."""
    names = m.mechanism.randoms
    where = [k for k, d in enumerate(dparams) if d == "random"]
    words = [len(names), *where]
    for name in names:
        pos = m.data[f"{name}.position"][inst].astype(np.int64)
        block = np.column_stack([
            m.data[f"{name}.id1"][inst], m.data[f"{name}.id2"][inst], m.data[f"{name}.id3"][inst],
            pos // 4, pos % 4,
        ])  # fmt: skip
        words.extend(block.astype(np.int64).reshape(-1).tolist())
    return np.array(words, dtype=np.uint32)
