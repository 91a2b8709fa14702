"""Direct mode: simulate the model currently built in NEURON, from Python, in one call.

The counterpart of `coreneuron.enable = True`: NEURON builds and initialises the model,
portneuron runs it and hands back spikes and voltage traces. The transfer goes through
NEURON's own writer (`ParallelContext.nrncore_write`) into a temporary folder that is
removed afterwards, so the model portneuron runs is exactly the one CoreNEURON would get.
As with CoreNEURON, every cell needs a gid (`pc.set_gid2node` and `pc.cell`).

    from neuron import h
    import portneuron.direct
    ...build the model...
    result = portneuron.direct.run(50.0, record=[soma(0.5), dend(0.3)], v_init=-65)
    result.spikes, result.t, result.v[soma(0.5)]
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portneuron.errors import PortneuronError
from portneuron.io.dataset import read_files_dat
from portneuron.model import PointerTarget, Sections, SectionTypes, section_type
from portneuron.parallel import Ranks, world
from portneuron.reports import MEMBRANE_CURRENT, TYPE_TARGETS, fast_imem


@dataclass
class DirectResult:
    spikes: list[tuple[float, int]]  # (t [ms], gid), sorted by time then gid
    t: np.ndarray  # [ms], t = 0 and the end of every step
    traces: list[np.ndarray]  # v [mV] of each requested segment, in request order
    segments: list[Any]
    model: Any = None  # the simulated model, as it is at the end of the run
    node_of: Any = None  # segment -> its model node
    probe_keys: list = field(default_factory=list)  # record_values, in request order
    probe_traces: list = field(default_factory=list)  # their traces, at t
    simulate_s: float = 0.0  # the run itself, without NEURON's hand-over and the set-up
    stepwise_reason: str = ""  # why the run went step by step ("": in compiled epochs)

    def v(self, segment) -> np.ndarray:
        """The voltage trace of a recorded segment."""
        for seg, trace in zip(self.segments, self.traces):
            if seg.sec == segment.sec and seg.x == segment.x:
                return trace
        raise KeyError(f"{segment} was not recorded")

    def value(self, segment, mechanism: str, variable: str) -> float:
        """`variable` of `mechanism` (or of an ion, "ca_ion") at `segment`, at the end of the
        run: a STATE, an ASSIGNED, a concentration, an array's element (`"ca[3]"`). A point
        process is found by its segment."""
        array, index = locate(self.model, self.node_of(segment), mechanism, variable, segment)
        return float(array[index])

    def trace(self, segment, mechanism: str | None = "", variable: str = "") -> np.ndarray:
        """The trace of a variable given in `run(..., record_values=...)`, at `t`: by
        (segment, mechanism, variable), or by the NEURON pointer it was given as."""
        want = _probe_key(segment if not variable else (segment, mechanism, variable))
        for key, trace in zip(self.probe_keys, self.probe_traces):
            if key == want:
                return trace
        raise KeyError(f"{mechanism} {variable} at {segment} was not recorded")


def _probe_key(entry) -> tuple:
    """What identifies a record_values entry: (section, x, mechanism, variable), or the
    address of a place outside the model that a POINTER points at."""
    if isinstance(entry, tuple):
        seg, mech, var = entry
        return (seg.sec, seg.x, mech, var)
    raw = _RAW.search(repr(entry))
    if raw is None:
        raise PortneuronError(
            f"record_values: {entry!r} is neither (segment, mechanism, variable) nor a "
            f"NEURON pointer outside the model"
        )
    return ("outside", int(raw[1], 16))


def locate(model, node: int, mechanism: str, variable: str, where: Any = "") -> tuple:
    """(array, index) of `variable` of `mechanism` (or an ion, "ca_ion") at model node
    `node`: where the simulation keeps it, so reading it later reads its value then."""
    if mechanism.endswith("_ion"):
        ion = model.ion(mechanism.removesuffix("_ion"))
        owner, data, length = (ion.node_index, ion.data, {}) if ion is not None else (None,) * 3
    else:
        mset = model.mechanism_set(mechanism)
        owner, data = (mset.node_index, mset.data) if mset is not None else (None, None)
        length = {v.name: v.length for v in mset.mechanism.variables} if mset else {}
    if owner is None:
        raise KeyError(f"the model has no {mechanism}")
    at = np.flatnonzero(owner == node)
    name, k = variable, None
    if variable.endswith("]") and "[" in variable:  # an array element, x[3]
        name, k = variable[:-1].split("[", 1)
    if not len(at) or name not in data:
        raise KeyError(f"no {mechanism} {variable} at {where}")
    if k is None:
        return data[name], int(at[0])
    n = length.get(name, 0)
    if not 0 <= int(k) < n:
        raise KeyError(f"{mechanism} {name} has no element {k}")
    return data[name].reshape(-1), int(at[0]) * n + int(k)


def run(
    tstop: float,
    record: Sequence[Any] = (),
    backend: str | None = None,
    dt: float | None = None,
    mechanisms: Iterable[str | Path] = (),
    v_init: float | None = None,
    record_values: Sequence[Any] = (),
    reports: Sequence[Any] = (),
    outdir: str | Path = ".",
    threads: int | None = None,
) -> DirectResult:
    """Run NEURON's current model in portneuron from t = 0 to `tstop` [ms]: `load` it,
    then `DirectModel.run` it once. `threads`: the compiled epochs' (default: a core each).

    The run starts from NEURON's node voltages, as after `h.finitialize(v_init)`; given
    `v_init`, this calls `h.finitialize(v_init)` first. `record` lists segments
    (`sec(x)`) whose voltage is returned at t = 0 and after every step; `dt` defaults to
    NEURON's `h.dt`; `mechanisms` are folders of the model's non-built-in `.mod` files.
    `record_values` lists (segment, mechanism, variable) to record as well: any STATE,
    ASSIGNED or PARAMETER of a mechanism or point process there (`(soma(0.5), "hh", "m")`,
    `(dend(0.3), "ExpSyn", "g")`), an ion's (`"ca_ion", "cai"`), an array's element
    (`"ca[3]"`), the segment's membrane current (`(soma(0.5), None, "i_membrane_")`,
    NEURON's i_membrane_ [nA], computed as with cvode.use_fast_imem(1), which NEURON's own
    setting also turns on); `result.trace(segment, mechanism, variable)` gives each. An entry may
    also be a NEURON pointer outside the model that POINTERs point at (hnn-core's
    `cell.dpl_ref`, a Vector's element, which portneuron keeps for the run);
    `result.trace(pointer)` gives it. Compiled epochs record them all (a value
    outside the model where one cell's POINTERs reach it).
    `reports` (portneuron.reports.ReportSpec: a variable of chosen cells' compartments
    every dt ms) go to SONATA files in `outdir` as the run goes, whole or not at all, in
    place of `record` and `record_values`.

    POINTERs may point at a node's v, at a mechanism's or an ion's variable, or outside
    the model at a double of NEURON's (a Vector's element): portneuron then keeps one value
    per place, starting from NEURON's, and does not write it back.
    """
    keys = [_probe_key(entry) for entry in record_values]
    model = load(
        backend, dt, mechanisms, v_init,
        fast_imem=any(map(_is_membrane_current, keys)) or fast_imem(list(reports)),
        section_types=any(spec.target in TYPE_TARGETS for spec in reports), threads=threads,
    )  # fmt: skip
    return model.run(tstop, record, record_values, reports, outdir)


def _is_membrane_current(key: tuple) -> bool:
    return key[2:] in {(None, name) for name in MEMBRANE_CURRENT}


def load(
    backend: str | None = None,
    dt: float | None = None,
    mechanisms: Iterable[str | Path] = (),
    v_init: float | None = None,
    fast_imem: bool = False,
    section_types: bool = False,
    threads: int | None = None,
) -> DirectModel:
    """NEURON's current model, handed over and compiled once, to run as many times as
    wanted (`DirectModel.run`), its parameters changed between runs (`DirectModel.set`):
    a fitting loop's thousands of short runs pay for NEURON's hand-over and the JIT once.
    Arguments as `run`'s; `fast_imem`: the runs compute i_membrane_ (also where NEURON's
    cvode.use_fast_imem is on); `section_types`: reports may target axon, dend, apic;
    `threads`: the compiled epochs' (default: a core each)."""
    from neuron import h

    from portneuron.backends import best_backend, load_backend
    from portneuron.io.dataset import load_dataset
    from portneuron.library import MechanismLibrary
    from portneuron.sim.simulation import Simulation

    pc = h.ParallelContext()
    ranks = _ranks(pc)
    library = MechanismLibrary(mechanisms)
    outside = _pointers_outside(h, library)  # before NEURON reads or writes an unset one
    _check_streams(h, library)  # before NEURON's writer reads a stream that is not there
    places = _places(outside)
    if v_init is not None:
        h.finitialize(v_init)
    with _handover_folder(ranks) as tmp:
        markers = _mark(h, places)
        try:
            pc.nrncore_write(tmp)
        except RuntimeError as exc:
            raise PortneuronError(
                f"NEURON could not hand over the model ({exc}); build it with gids "
                f"(pc.set_gid2node, pc.cell) and call h.finitialize() before portneuron.direct.run"
            ) from None
        finally:
            _unmark(outside)
        groups, mine = _written_groups(ranks, Path(tmp))
        try:
            model = load_dataset(tmp, library, ranks, groups=mine)
        except PortneuronError as exc:  # the folder is a temporary one: say whose model
            raise PortneuronError(str(exc).replace(tmp, "NEURON's model")) from None
        _vectors_by_address(h, model)
        model.source = "NEURON model"

    def node_of(seg) -> int:
        thread = _group_of(pc, seg)
        if thread >= len(groups):
            raise PortneuronError(f"{seg}: its thread wrote no cell group (does it have a gid?)")
        return model.node_of(groups[thread], seg.node_index())

    if places:
        _point_outside(model, places, [node_of(seg) for seg in markers])
    if any(m.mechanism.diffusion and m.count for m in model.mechanisms):
        model.sections = _sections(h, pc, model, groups)
    if section_types:
        model.section_types = _section_types(h, pc, model, groups)
    sim = Simulation(
        model, load_backend(backend or best_backend()), dt=h.dt if dt is None else dt,
        ranks=ranks, fast_imem=fast_imem or bool(h.CVode().use_fast_imem()), threads=threads,
    )  # fmt: skip
    return DirectModel(sim, node_of, {address: k for k, address in enumerate(places)})


class DirectModel:
    """A model `load` handed over from NEURON and compiled: `run` it from t = 0 as often
    as wanted, each run from NEURON's voltages at the hand-over (or `v_init`) through the
    INITIAL blocks, as NEURON's finitialize; `set` a parameter between runs. Values
    outside the model that POINTERs reach go on from where the last run left them, as
    NEURON's Vector elements would."""

    def __init__(self, sim, node_of, places: dict[int, int]) -> None:
        self.sim, self.model, self.node_of, self.places = sim, sim.model, node_of, places
        self.v0 = self.model.nodes.v.copy()  # NEURON's, at the hand-over

    def set(self, segment, mechanism: str, variable: str, value: float) -> None:
        """`variable` of `mechanism` (or of an ion, "ca_ion") at `segment` to `value`, for
        the runs after this: a PARAMETER (`(soma(0.5), "hh", "gnabar", 0.1)`), a point
        process's by its segment."""
        try:
            array, index = locate(self.model, self.node_of(segment), mechanism, variable, segment)
        except KeyError as exc:
            raise PortneuronError(f"DirectModel.set: {exc.args[0]}") from None
        array[index] = value

    def run(
        self,
        tstop: float,
        record: Sequence[Any] = (),
        record_values: Sequence[Any] = (),
        reports: Sequence[Any] = (),
        outdir: str | Path = ".",
        v_init: float | None = None,
    ) -> DirectResult:
        """From t = 0 to `tstop` [ms], from `v_init` where given, else from NEURON's
        voltages at the hand-over; `record`, `record_values`, `reports` and `outdir` as
        portneuron.direct.run's."""
        sim, model, node_of = self.sim, self.model, self.node_of
        nodes = [node_of(seg) for seg in record]
        keys = [_probe_key(entry) for entry in record_values]
        probes = []
        for key, entry in zip(keys, record_values):
            if key[0] == "outside":
                if key[1] not in self.places:
                    raise PortneuronError(
                        f"record_values: no POINTER of the model points at {entry!r}"
                    )
                probes.append((model.outside, self.places[key[1]]))
                continue
            seg, m, var = entry
            if _is_membrane_current(key):
                if not sim.fast_imem:
                    raise PortneuronError(
                        f"record_values: {var} is not computed in this model; load it with "
                        f"fast_imem=True"
                    )
                probes.append((sim.i_membrane, node_of(seg)))
                continue
            try:
                probes.append(locate(model, node_of(seg), m, var, seg))
            except KeyError as exc:
                raise PortneuronError(f"record_values: {exc.args[0]}") from None
        recording: dict = {"record": nodes, "probes": probes}
        written = None
        if reports:
            if nodes or probes:
                raise PortneuronError(
                    "direct.run: give reports or record and record_values, not both (a "
                    "report's rows go to its file as the run goes)"
                )
            from portneuron.reports import Reports

            for spec in reports:
                spec.check()
            Path(outdir).mkdir(parents=True, exist_ok=True)
            written = Reports(sim, list(reports), Path(outdir), sim.ranks)
            recording = written.recording()
        model.nodes.v[...] = self.v0
        try:
            if written is not None:  # the JIT here, untimed
                written.compile()
            else:
                sim.epoch_program(None, probes)
            sim.finitialize(v_init)  # as NEURON's h.finitialize, before the run it times
            if written is not None:
                written.expect(tstop)
            start = time.perf_counter()
            result = sim.run(tstop, initialize=False, **recording)
        except BaseException:
            if written is not None:
                written.abort()  # a run that stopped leaves no report
            raise
        if written is not None:
            written.close()
        simulate_s = time.perf_counter() - start
        traces = [result.v[:, k].copy() for k in range(len(nodes))]
        values = [result.values[:, k].copy() for k in range(len(probes))]
        spikes = sorted(s for part in sim.ranks.allgather(result.spikes) for s in part)
        return DirectResult(
            spikes, result.t, traces, list(record), model, node_of, keys, values, simulate_s,
            sim.stepwise_reason,
        )  # fmt: skip


def _ranks(pc) -> Ranks:
    """The run's ranks: NEURON's, where it runs under mpiexec (each rank hands over its own
    cells and portneuron's rank of the same number runs them), else one."""
    nhost = int(pc.nhost())
    if nhost == 1:
        return Ranks()
    ranks = world()
    if ranks.size != nhost:
        raise PortneuronError(
            f"NEURON runs on {nhost} ranks but mpi4py sees {ranks.size}; start both from one "
            f"mpiexec (NEURON with the same MPI library: MPI_LIB_NRN_PATH)"
        )
    if int(pc.nthread()) != 1:
        raise PortneuronError(
            f"direct mode under MPI hands over one thread a rank, not {int(pc.nthread())}; "
            f"call pc.nthread(1)"
        )
    return ranks


@contextmanager
def _handover_folder(ranks: Ranks) -> Iterator[str]:
    """A fresh folder for NEURON's writer: this process's own, or under MPI one folder a
    rank inside one that rank 0 makes, which every rank must see (NEURON's rank 0 writes
    the mechanism table and the globals there for all)."""
    if ranks.size == 1:
        with tempfile.TemporaryDirectory(prefix="portneuron-direct-") as tmp:
            yield tmp
        return
    root = ranks.comm.bcast(
        tempfile.mkdtemp(prefix="portneuron-direct-") if ranks.rank == 0 else None, root=0
    )
    try:
        if not Path(root).is_dir():
            raise PortneuronError(
                f"rank {ranks.rank} cannot see {root}, the folder rank 0 made for NEURON's "
                f"hand-over; set TMPDIR to a folder every rank shares"
            )
        folder = Path(root) / f"rank{ranks.rank}"
        folder.mkdir()
        yield str(folder)
    finally:
        ranks.comm.Barrier()
        if ranks.rank == 0:
            shutil.rmtree(root, ignore_errors=True)


def _written_groups(ranks: Ranks, folder: Path) -> tuple[list[int], list[int] | None]:
    """The cell groups NEURON's writer listed, in thread order, and under MPI those this
    rank wrote (its folder's; the list, the mechanism table and the globals are rank 0's,
    copied beside them)."""
    if ranks.size == 1:
        return read_files_dat(folder / "files.dat"), None
    ranks.comm.Barrier()  # rank 0 has written the list and the tables
    if ranks.rank != 0:
        for name in ("files.dat", "bbcore_mech.dat", "globals.dat"):
            shutil.copyfile(folder.parent / "rank0" / name, folder / name)
    mine = sorted(int(p.name.split("_")[0]) for p in folder.glob("*_1.dat"))
    if not mine:
        raise PortneuronError(
            f"NEURON's rank {ranks.rank} wrote no cell group: give each rank cells with gids "
            f"(pc.set_gid2node, pc.cell)"
        )
    return mine, mine


def _vectors_by_address(h, model) -> None:
    """Event Vectors a dataset cannot carry: bmtk's vecevent.mod keeps each VecStim's Vector
    address in an ASSIGNED (`space`), which NEURON's writer copies as a number and nothing
    more. In the same process that address is still good: it is the `this_pointer` of one
    of hoc's Vector objects (hocdec.h's Object: two ints, then that pointer), so the
    Vector's times are read from NEURON. Each is checked against the instance's state after
    finitialize (index one on, etime its first time)."""
    wanted = [
        (mset, name)
        for mset in model.mechanisms
        for name in mset.mechanism.vectors
        if name not in mset.vectors and name in mset.data
    ]
    if not wanted:
        return
    import ctypes

    by_address = {}
    for vec in h.List("Vector"):
        this = ctypes.c_void_p.from_address(int(vec.hocobjptr()) + 8).value
        by_address[this] = vec
    for mset, name in wanted:
        sizes, times = [], []
        for i, address in enumerate(mset.data[name].view(np.uint64)):
            vec = by_address.get(int(address)) if address else None
            t = np.array(vec.to_python(), dtype=np.float64) if vec is not None else np.zeros(0)
            index = int(mset.data["index"][i])
            if address and (
                vec is None or (0 < index <= len(t) and t[index - 1] != mset.data["etime"][i])
            ):
                raise PortneuronError(
                    f"{mset.name} {i}: cannot find its event Vector in NEURON (its address is "
                    f"kept in {name!r}); use the vecevent.mod with a BBCOREPOINTER that NEURON ships"
                )
            sizes.append(len(t))
            times.append(t)
        size = np.array(sizes, dtype=np.int32)
        data = np.concatenate(times) if times else np.zeros(0)
        mset.vectors[name] = (data, (np.cumsum(size) - size).astype(np.int32), size)


@dataclass
class _Outside:
    """A POINTER that points outside the model, at a double NEURON keeps elsewhere (a
    Vector's element, as hnn-core points its dipoles' Qtotal): NEURON's writer cannot hand
    it over, so direct mode points it, for the write only, at a marker node's v, and then
    at the model's `outside` value for its place."""

    owner: Any  # the density mechanism at a segment, or the point process
    mechanism: str
    pointer: str
    ref: Any  # NEURON's pointer, to point it back
    address: int
    segment: Any  # where the owner is


_RAW = re.compile(r"raw=(0x[0-9a-fA-F]+)")


def _pointers_outside(h, library) -> list[_Outside]:
    """Every POINTER of the model is set (NEURON itself crashes on one that is not, at
    finitialize or in its writer): one clear line instead. Those that point outside the
    model, as NEURON writes them (`data_handle<double>{raw=0x...}`), are returned."""
    pointers = library.pointers()
    outside: list[_Outside] = []

    def check(owner, name: str, where: str, segment) -> None:
        for pointer in pointers[name][1]:
            try:
                ref = getattr(owner, f"_ref_{pointer}")
                target = repr(ref)
            except AttributeError:  # "... was not made to point to anything"
                target = "{null}"
            if "{null}" in target:
                raise PortneuronError(
                    f"{where}: POINTER {pointer} of {name} is not set; point it with "
                    f"h.setpointer (NEURON would crash on it)"
                )
            raw = _RAW.search(target)
            if raw:
                outside.append(_Outside(owner, name, pointer, ref, int(raw[1], 16), segment))

    density = {name for name, (kind, _) in pointers.items() if kind == "density"}
    if density:
        for sec in h.allsec():
            for seg in sec:
                for mech in seg:
                    if mech.name() in density:
                        check(mech, mech.name(), str(seg), seg)
    for name, (kind, _) in pointers.items():
        if kind != "density" and hasattr(h, name):
            for target in h.List(name):  # an artificial cell is nowhere (NEURON asserts)
                where = target.get_segment() if kind == "point_process" else None
                check(target, name, str(target), where)
    return outside


def _places(outside: list[_Outside]) -> dict[int, list[_Outside]]:
    """The places outside the model, in order of first appearance: the POINTERs at each."""
    places: dict[int, list[_Outside]] = {}
    for o in outside:
        places.setdefault(o.address, []).append(o)
    return places


def _mark(h, places: dict[int, list[_Outside]]) -> list[Any]:
    """Point each outside POINTER at the v of one segment per place (its marker, a segment
    of the cell its first POINTER's owner is in, no two places sharing one); the markers, in
    the order of the places."""
    used, markers = set(), []
    for first, *_ in places.values():
        cell = first.segment and h.SectionRef(sec=first.segment.sec).root.wholetree()
        for seg in (seg for sec in cell or h.allsec() for seg in sec):
            if (seg.sec, seg.x) not in used:
                used.add((seg.sec, seg.x))
                markers.append(seg)
                break
        else:
            raise PortneuronError(
                f"{first.owner}: too many places outside the model for the segments of its "
                f"cell; point its POINTER {first.pointer} into the model"
            )
    for marker, pointers in zip(markers, places.values()):
        for o in pointers:
            setattr(o.owner, f"_ref_{o.pointer}", marker._ref_v)
    return markers


def _unmark(outside: list[_Outside]) -> None:
    for o in outside:
        setattr(o.owner, f"_ref_{o.pointer}", o.ref)


def _point_outside(model, places: dict[int, list[_Outside]], marker_nodes: list[int]) -> None:
    """The POINTERs that point outside the model, at the model's `outside` values: one per
    place, starting from NEURON's values there."""
    model.outside = np.array([float(pointers[0].ref[0]) for pointers in places.values()])
    place_of_node = {node: k for k, node in enumerate(marker_nodes)}
    outside = [o for pointers in places.values() for o in pointers]
    for name, pointer in dict.fromkeys((o.mechanism, o.pointer) for o in outside):
        mset = model.mechanism_set(name)
        count = sum(1 for o in outside if (o.mechanism, o.pointer) == (name, pointer))
        target = mset.pointers.get(pointer) if mset is not None else None
        if (
            target is None
            or count != mset.count
            or target.space != "node.v"
            or not all(int(n) in place_of_node for n in target.index)
        ):
            raise PortneuronError(
                f"{name}: POINTER {pointer} points into a NEURON Vector for some instances and "
                f"into the model for others; portneuron runs one or the other"
            )
        index = np.array([place_of_node[int(n)] for n in target.index], dtype=np.int32)
        mset.pointers[pointer] = PointerTarget("outside", index)


def _check_streams(h, library) -> None:
    """Every instance of a mechanism with a BBCOREPOINTER Random123 stream has one: its
    bbcore_write reads the stream without looking (NEURON's writer would crash), and a
    hoc Random in its place (setRNG(Random)) is not a stream portneuron can follow. Only
    where the flag saying so (`usingR123`) is RANGE can Python see it: published files
    keep it hidden, and NEURON's writer then crashes on an instance without a stream as it
    does for CoreNEURON (the dataset reader refuses one with a hoc Random)."""
    for name, flag in library.streams().items():
        if not hasattr(h, name):
            continue  # not loaded in NEURON, or a density mechanism (their files have none)
        for instance in h.List(name):
            if hasattr(instance, flag) and getattr(instance, flag) != 1.0:
                raise PortneuronError(
                    f"{instance}: its Random123 stream is not set ({flag} is 0: setRNG was "
                    f"not given ids, or was given a hoc Random); call "
                    f"{instance.hname()}.setRNG(id1, id2, id3) (NEURON's writer would crash on it)"
                )


def _section_nodes(h, pc, model, groups: list[int]) -> Iterator[tuple[Any, list[int]]]:
    """Each section of the model's cells with the model nodes of its segments."""
    place = {
        (int(g), int(i)): k for k, (g, i) in enumerate(zip(model.source_group, model.source_node))
    }
    for sec in h.allsec():
        thread = _group_of(pc, sec(0.5))
        group = groups[thread] if thread < len(groups) else -1
        nodes = [place.get((group, int(seg.node_index()))) for seg in sec]
        if all(node is not None for node in nodes):  # else of a cell not handed over
            yield sec, nodes


def _section_types(h, pc, model, groups: list[int]) -> SectionTypes:
    """Each cell's nodes' section types, by the sections' names, which NEURON's writer
    leaves out (reports of a section type need them)."""
    node_type = np.zeros(model.nodes.count, dtype=np.int8)
    for sec, nodes in _section_nodes(h, pc, model, groups):
        node_type[nodes] = section_type(sec.name())
    first = model.nodes.first
    cells = [node_type[lo:hi] for lo, hi in zip(first, first[1:])]
    return SectionTypes(cells, np.arange(len(cells), dtype=np.int32))


def _sections(h, pc, model, groups: list[int]) -> Sections:
    """The sections of the model's cells, which NEURON's writer leaves out (only
    LONGITUDINAL_DIFFUSION needs them): each one's nodes, length, nseg, rallbranch and
    parent section."""
    node_section = np.full(model.nodes.count, -1, dtype=np.int32)
    index: dict[Any, int] = {}
    length, nseg, rallbranch, first = [], [], [], []
    for sec, nodes in _section_nodes(h, pc, model, groups):
        index[sec] = len(length)
        node_section[nodes] = len(length)
        length.append(sec.L)
        nseg.append(sec.nseg)
        rallbranch.append(sec.rallbranch)
        first.append(nodes[0])
    parent = np.full(len(index), -1, dtype=np.int32)
    for sec, k in index.items():
        above = sec.parentseg()
        if above is not None:
            parent[k] = index.get(above.sec, -1)
    return Sections(
        node_section, np.array(length, dtype=np.float64), np.array(nseg, dtype=np.int32),
        np.array(rallbranch, dtype=np.float64), parent, np.array(first, dtype=np.int32),
    )  # fmt: skip


def _group_of(pc, seg) -> int:
    """The thread (so the cell group) that simulates `seg`."""
    from neuron import h

    if int(pc.nthread()) == 1:
        return 0
    root = h.SectionRef(sec=seg.sec).root
    for thread in range(int(pc.nthread())):
        if any(sec == root for sec in pc.get_partition(thread)):
            return thread
    raise PortneuronError(f"{seg}: not in any thread's partition")
