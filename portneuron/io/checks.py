"""Checks of a dataset's arrays against each other, made as the groups are read and merged.

Every index is checked against its bounds, every word of pdata against what nocmodl puts in
that slot, gids for uniqueness, floats for values NEURON never writes: each defect is one
`DatasetError` naming the file, the array and the first bad element (`Record.error`). What
CoreNEURON itself checks, and where it would crash instead, is said beside each check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portneuron.ir import Mechanism

from .datfile import Record

if TYPE_CHECKING:
    from .dataset import Group, MechType

#: NEURON's ion data fields, in order, for ion `x`.
ION_FIELDS = ("e{}", "{}i", "{}o", "i{}", "di{}dv")


def check_nodes(g: Group, has_diam: bool) -> None:
    """The tree (every node but a root has an earlier node as parent) and finite geometry:
    NEURON computes a, b, area and diam from finite lengths and diameters, and its voltages
    are finite unless the model had blown up before nrncore_write."""
    rec, nnode = g.records, len(g.v)
    index = np.arange(nnode)
    rec["parent indices"].check(
        g.parent,
        (index >= g.ncell) & ((g.parent < 0) | (g.parent >= index)),
        lambda k: f"the parent of node {k} is an earlier node, 0 to {k - 1}",
    )
    for name in ("a", "b", "v"):
        values = getattr(g, name)
        rec[name].check(values, ~np.isfinite(values), "NEURON writes finite values here")
    for name in ("area", "diam") if has_diam else ("area",):
        values = getattr(g, name)
        rec[name].check(
            values, ~(np.isfinite(values) & (values >= 0)), f"an {name} is finite and >= 0"
        )


def check_mechanisms(g: Group) -> None:
    """Node indices within the group, one ion instance per node, valid ion styles (the bits
    of eion.cpp, below 01000), no NaN in mechanism data (NEURON's finitialize leaves none),
    and Random123 streams as phase2.cpp reads them."""
    nnode = len(g.v)
    for mt, nodeindices, data, pdata, random in g.mechs:
        if not mt.artificial:
            rec = g.records[f"{mt.name} node indices"]
            rec.check_range(nodeindices, 0, nnode, f"the group has {nnode} nodes")
            if mt.is_ion:
                first = np.zeros(len(nodeindices), bool)
                first[np.unique(nodeindices, return_index=True)[1]] = True
                rec.check(nodeindices, ~first, f"{mt.name} has one instance per node")
        nans = [
            int(np.argmax(bad)) * mt.param_size + slot
            for slot, bad in enumerate(np.isnan(c) for c in data.columns)
            if bad.any()
        ]
        if nans:  # the first in the file, which holds the values instance by instance
            row, slot = divmod(min(nans), mt.param_size)
            raise g.records[f"{mt.name} data"].error(
                min(nans), data.columns[slot][row], f"NEURON writes no NaN (instance {row})"
            )
        if mt.is_ion and pdata.shape[1]:
            flat = pdata.ravel()
            style = np.arange(len(flat)) % pdata.shape[1] == 0
            g.records[f"{mt.name} pdata"].check(
                flat, style & ((flat < 0) | (flat >= 0o1000)), "an ion style is 0 to 511"
            )
        if len(random):
            _check_random(g.records[f"{mt.name} random streams"], random, len(data), mt)


def _check_random(rec: Record, words: np.ndarray, count: int, mt: MechType) -> None:
    """nmodlrandom: the number of streams, their pdata slots, then id1 id2 id3 seq which for
    every stream of every instance; `which` picks one of Random123's 4 words."""
    nvar = int(words[0])
    if len(words) != 1 + nvar + 5 * nvar * count:
        raise rec.error(
            0, nvar, f"{nvar} streams for {count} instances take {1 + nvar + 5 * nvar * count} "
            f"words, not {len(words)}"
        )  # fmt: skip
    index = np.arange(len(words))
    slot = (index >= 1) & (index <= nvar)
    rec.check(
        words, slot & (words >= mt.dparam_size), f"{mt.name} has {mt.dparam_size} pdata slots"
    )
    which = (index > nvar) & ((index - nvar) % 5 == 0)
    rec.check(words, which & (words > 3), "a stream's position within its 4 words is 0 to 3")


def check_presyns(g: Group, counts: dict[int, int], types: dict[int, MechType]) -> None:
    """Spike sources: the real cells' watch a node and have a gid (phase2.cpp asserts it);
    the others are artificial cells named -(type + 1000 x instance), with a gid, -1 (none)
    or that code as their gid. gids are unique across groups (checked when merging), and
    thresholds are numbers."""
    nreal, nnode = len(g.threshold), len(g.v)
    rec = g.records["output_vindex"]
    vindex = g.output_vindex.astype(np.int64)
    counts = {t: n for t, n in counts.items() if not types[t].is_ion}
    rec.check_range(vindex[:nreal], 0, nnode, f"the group has {nnode} nodes")
    code = -vindex
    instances = np.zeros(1000, np.int64)
    for type_id, n in counts.items():
        if 0 <= type_id < 1000:
            instances[type_id] = n
    artificial = np.arange(len(vindex)) >= nreal
    rec.check(
        vindex,
        artificial & ((code < 2) | (code // 1000 >= instances[code % 1000])),
        f"the spike sources after the {nreal} real cells' are artificial cells, each named "
        f"-(type + 1000 x instance) of an instance in this group",
    )
    rec = g.records["output gids"]
    gid = g.output_gid
    rec.check(gid, ~artificial & (gid < 0), "a real cell's spike source has a gid >= 0")
    rec.check(
        gid,
        (gid < -1) & ~(gid == vindex),
        lambda k: f"an artificial cell's gid is >= 0, -1 (none) or its code, {vindex[k]}",
    )
    rec = g.records["thresholds"]
    rec.check(g.threshold, np.isnan(g.threshold), "a threshold is a number [mV]")


def check_netcons(g: Group, counts: dict[int, int], types: dict[int, MechType]) -> None:
    """NetCon sources (-1: none; an artificial cell's code from output gids; gids >= 0 are
    checked when the groups are merged), targets (type 0: none), finite weights and delays.
    A delay is >= 0 ms, as NEURON documents it; a negative one is taken for 0 by NEURON and
    CoreNEURON alike, its NET_RECEIVE then seeing a time in the past."""
    rec = g.records["NetCon source gids"]
    src = g.netcon_srcgid
    codes = g.output_gid[g.output_gid < -1]
    rec.check(
        src,
        (src < -1) & ~np.isin(src, codes),
        "no artificial cell of this group has that code in output gids",
    )
    targets = [t for t in counts if not types[t].is_ion]
    rec = g.records["NetCon target types"]
    rec.check(
        g.netcon_type,
        (g.netcon_type != 0) & ~np.isin(g.netcon_type, targets),
        f"a target type is 0 (none) or one of this group's: {', '.join(map(str, targets))}",
    )
    table = np.zeros(max(counts, default=0) + 1, np.int64)
    table[list(counts)] = list(counts.values())
    limit = table[np.clip(g.netcon_type, 0, len(table) - 1)]
    index = g.netcon_index
    g.records["NetCon target instances"].check(
        index,
        (g.netcon_type > 0) & ((index < 0) | (index >= limit)),
        lambda k: f"{types[int(g.netcon_type[k])].name} has {limit[k]} instances",
    )
    w = g.weights
    g.records["NetCon weights"].check(w, np.isnan(w), "a weight is a number")
    d = g.delays
    g.records["NetCon delays"].check(
        d, ~(np.isfinite(d) & (d >= 0)), "a delay is a finite number of ms, >= 0"
    )
    for k, (_, _, y, t) in enumerate(g.vecplay):
        g.records[f"VecPlay {k} values"].check(y, np.isnan(y), "a played value is a number")
        late = np.zeros(len(t), bool)
        late[1:] = t[1:] < t[:-1]
        g.records[f"VecPlay {k} times"].check(
            t, ~np.isfinite(t) | late, "play times are finite and never decrease"
        )


def check_gids(groups: list[Group], every_group: bool = True) -> None:
    """gids are unique across the groups (CoreNEURON aborts on a second), and, where
    `groups` are `every_group` of the dataset (not a rank's part), a NetCon source gid >= 0
    is one of them: one from nowhere would silently never fire."""
    owner: dict[int, tuple[Record, int]] = {}
    for g in groups:
        rec = g.records["output gids"]
        for k, gid in enumerate(g.output_gid.tolist()):
            if gid in owner:
                other, j = owner[gid]
                raise rec.error(k, gid, f"{other.path} has it too (its output gids[{j}])")
            if gid >= 0:
                owner[gid] = (rec, k)
    if not every_group:
        return
    known = np.array(sorted(owner), np.int64)
    for g in groups:
        src = g.netcon_srcgid
        g.records["NetCon source gids"].check(
            src, (src >= 0) & ~np.isin(src, known), "no cell group has that gid"
        )


def check_against_mechanisms(
    g: Group, mechanisms: dict[int, Mechanism], types: dict[int, MechType]
) -> None:
    """What only the mechanisms' sources tell: NetCon targets have a NET_RECEIVE, artificial
    spike sources a net_event, VecPlay plays a variable portneuron keeps, random streams
    match RANDOM; and pdata agrees with what portneuron derives by itself (ion instances
    from the nodes, a point process's area from its node), with other indices in bounds."""
    for t in np.unique(g.netcon_type[g.netcon_type > 0]).tolist():
        if mechanisms[t].kernel("net_receive") is None:
            k = int(np.argmax(g.netcon_type == t))
            raise g.records["NetCon target types"].error(
                k, t, f"{types[t].name} has no NET_RECEIVE block"
            )
    source_type = -g.output_vindex[len(g.threshold) :] % 1000
    for t in np.unique(source_type).tolist():
        if not _sends_net_event(mechanisms[t]):
            k = len(g.threshold) + int(np.argmax(source_type == t))
            raise g.records["output_vindex"].error(
                k, g.output_vindex[k], f"{types[t].name} sends no net_event"
            )
    for k, (mtype, ix, _, _) in enumerate(g.vecplay):
        name = mechanisms[mtype].layout[ix % types[mtype].param_size]
        if not any(v.name == name and v.per_instance for v in mechanisms[mtype].variables):
            raise g.records[f"VecPlay {k} values"].error(
                0, name, f"portneuron keeps no such variable of {types[mtype].name}"
            )
    ions = {mt.name.removesuffix("_ion"): (mt, ni, pd) for mt, ni, _, pd, _ in g.mechs if mt.is_ion}
    vdata: list[tuple[Record, np.ndarray, np.ndarray]] = []
    for mt, nodeindices, _, pdata, random in g.mechs:
        if mt.type_id in mechanisms:
            mech = mechanisms[mt.type_id]
            if len(random):
                _check_random_slots(g.records[f"{mt.name} random streams"], random, mech)
            _check_pdata(g, mt, mech, nodeindices, pdata, ions, vdata)
    _check_vdata_shared(vdata)


def _check_vdata_shared(words: list[tuple[Record, np.ndarray, np.ndarray]]) -> None:
    """No two pdata words index one vdata entry (a Point_process, a queue item, a random
    stream): CoreNEURON would put two pointers in one place. `words` holds, per array, the
    flat positions and values of its vdata words."""
    if not words:
        return
    values = np.concatenate([v for _, _, v in words])
    array = np.concatenate([np.full(len(v), n) for n, (_, _, v) in enumerate(words)])
    position = np.concatenate([at for _, at, _ in words])
    unique, first = np.unique(values, return_index=True)
    again = np.ones(len(values), bool)
    again[first] = False
    if again.any():
        k = int(np.argmax(again))
        j = int(first[np.searchsorted(unique, values[k])])
        raise words[array[k]][0].error(
            int(position[k]),
            values[k],
            f"{words[array[j]][0].what}[{position[j]}] indexes that vdata entry too",
        )


def _check_random_slots(rec: Record, words: np.ndarray, mech: Mechanism) -> None:
    """One stream per RANDOM variable, each naming a pdata slot that holds a stream."""
    names = mech.randoms
    if int(words[0]) != len(names):
        raise rec.error(0, int(words[0]), f"{mech.name} has {len(names)} RANDOM variables")
    slots = pdata_slots(mech)
    if slots is None:
        return
    expect = np.array([j for j, slot in enumerate(slots) if slot == "random"], np.int64)
    found = words[1 : 1 + len(names)].astype(np.int64)
    if len(expect) == len(found) and (found != expect).any():
        k = int(np.argmax(found != expect))
        raise rec.error(1 + k, found[k], f"{mech.name} keeps its streams in pdata words {expect}")


def _sends_net_event(mech: Mechanism) -> bool:
    return any(s.name == "net_event" for k in mech.kernels for s in k.streams)


def pdata_slots(mech: Mechanism) -> list[str] | None:
    """What each pdata word of `mech` holds, in nocmodl's order (nocpout.cpp, iondef): "area"
    and "pntproc" for a point process; per USEION the variables read (with the other
    concentration read too where one is used), those written and not read, di<x>dv after a
    written current, and e<x> and the ion style where a concentration is written; then
    POINTERs, "random" streams, "netsend" and "watch" (one more than the WATCH items).
    None for what this does not follow (diam, area)."""
    uses = {p.name for k in mech.kernels for p in k.params}
    if "node.diam" in uses or (mech.kind == "density" and "node.area" in uses):
        return None
    slots = ["area", "pntproc"] if mech.kind != "density" else []
    for ion in mech.ions:
        x = ion.name
        reads, style = list(ion.read), False
        used = {*ion.read, *ion.write}
        if (f"{x}i" in used) != (f"{x}o" in used):
            reads.append(f"{x}o" if f"{x}i" in used else f"{x}i")
        slots += [f"ion:{x}:{var}" for var in reads]
        for var in ion.write:
            if var not in reads:
                slots.append(f"ion:{x}:{var}")
            if var == f"i{x}":
                slots.append(f"ion:{x}:di{x}dv")
            style = style or var in (f"{x}i", f"{x}o")
        if style:
            slots += [f"ion:{x}:e{x}", f"style:{x}"]
    slots += list(mech.pointer_slots)
    slots += ["random"] * len(mech.randoms)
    if mech.netsend_slot or any(s.name == "net_send" for k in mech.kernels for s in k.streams):
        slots.append("netsend")
    if mech.watch_flags:
        slots += ["watch"] * (len(mech.watch_flags) + 1)
    if "fornetcon.row" in uses:
        slots.append("fornetcon")
    return slots


def _check_pdata(g: Group, mt: MechType, mech: Mechanism, nodeindices, pdata, ions, vdata) -> None:
    """Each pdata word against its meaning (phase2.cpp relocates them by it): an ion word is
    the ion's legacy index (instance x fields + field) of the instance on the same node, the
    ion style word that instance's style, a point process's area word its node, a WATCH
    word 0 (cell_group.cpp writes no index for it); the others index nt._vdata (their
    positions and values are added to `vdata`). Where the slots are not known, the words
    are left to the mechanism."""
    slots = pdata_slots(mech)
    if slots is None or len(slots) != pdata.shape[1]:
        return
    for j, slot in enumerate(slots):
        column, expect = pdata[:, j], None
        if slot in ("pntproc", "random", "netsend"):
            vdata.append(
                (g.records[f"{mt.name} pdata"], np.arange(len(column)) * pdata.shape[1] + j, column)
            )
            bad = (column < 0) | (column >= g.nvdata)
            what = f"indexes the group's vdata, which has {g.nvdata} entries (nvdata)"
        else:
            if slot == "area" and not mt.artificial:
                expect, what = nodeindices, "is its area, which NEURON gives as its node,"
            elif slot in ("watch", "fornetcon"):
                keyword = "WATCH" if slot == "watch" else "FOR_NETCONS"
                expect, what = np.zeros_like(column), f"is a {keyword} slot, which NEURON writes as"
            elif slot.startswith(("ion:", "style:")):
                expect, what = _ion_word(g, mt, slot, nodeindices, ions)
            if expect is None:
                continue  # an artificial cell's area (NEURON writes -1), or a field not known
            bad = column != expect
        if bad.any():
            i = int(np.argmax(bad))
            shown = "" if expect is None else f" {expect[i]}"
            raise g.records[f"{mt.name} pdata"].error(
                i * pdata.shape[1] + j, column[i], f"word {j} of instance {i} {what}{shown}"
            )


def _ion_word(g: Group, mt: MechType, slot: str, nodeindices, ions) -> tuple:
    """What the words of an ion slot are: the ion instance's on the mechanism's node (None
    for an ion field portneuron does not know)."""
    _, x, *var = slot.split(":")
    if x not in ions:
        raise g.records[f"{mt.name} node indices"].error(
            0, nodeindices[0], f"{mt.name} uses {x}_ion, which this group lacks"
        )
    ion, ion_nodes, ion_pdata = ions[x]
    at = np.full(len(g.v), -1, np.int64)
    at[ion_nodes] = np.arange(len(ion_nodes))
    inst = at[nodeindices]
    g.records[f"{mt.name} node indices"].check(
        nodeindices, inst < 0, f"{ion.name} has no instance on that node"
    )
    if not var:
        return ion_pdata[inst, 0], f"is the style of {ion.name} on its node,"
    fields = {f.format(x): k for k, f in enumerate(ION_FIELDS)}
    if var[0] not in fields:
        return None, ""
    expect = inst * ion.param_size + fields[var[0]]
    return expect, f"points at {var[0]} of {ion.name} on its node,"
