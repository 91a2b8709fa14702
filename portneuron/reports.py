"""Reports: a variable of chosen cells' compartments at a chosen interval and window,
written as SONATA compartment reports (portneuron.io.sonata) while a run goes.

A report names what it records (`target`: "soma", each cell's first compartment, its root
section's first segment; "all", every compartment of the cell; "axon", "dend" or "apic",
every compartment of the sections of that type, by NEURON's names, where the model knows
them: direct mode, the native builder, not a dataset), of which cells (gids; all
by default), every `dt` ms from `start` to `end`, and which variable (`variable`: "v", the
default; "i_membrane" or "i_membrane_", the membrane current in nA as NEURON's
cvode.use_fast_imem(1) gives it, which the simulation then computes; a density mechanism's
by NEURON's name, as "m_hh"; an ion's, as "ina" or "nai": then of the compartments that
have it; a point process's, as "ExpSyn.g": then of its instances on those compartments,
numbered in the cell). Compiled epochs record them all
(the epoch driver records v and each other array a Launch each), where NEURON's
Vector.record samples them. An element
is a compartment's number in its cell, in NEURON's node order (the segments with
membrane; the zero-area nodes at section ends and the roots are not compartments).
Reports come from the command line (`portneuron run --report soma@0.1`) or a report file
(`--report-conf FILE`), JSON:

    {"reports": [{"name": "soma", "target": "soma", "dt": 0.1},
                 {"name": "trees", "target": "all", "cells": [0, 5], "dt": 1.0,
                  "start": 10.0, "end": 50.0},
                 {"name": "sodium", "target": "soma", "variable": "ina", "dt": 0.1}]}

Each goes to OUTDIR/<name>.h5, whole or not at all. Under MPI every rank records its own
cells and rank 0 writes one file, each epoch's rows gathered (bounded memory)."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portneuron.errors import PortneuronError
from portneuron.model import SECTION_TYPES
from portneuron.parallel import Ranks

#: The section types a report may target, every compartment of each such section
#: (portneuron.model.SECTION_TYPES; "soma" is a cell's first compartment).
TYPE_TARGETS = ("axon", "dend", "apic")
TARGETS = ("soma", "all", *TYPE_TARGETS)
KEYS = {"name", "target", "variable", "cells", "dt", "start", "end"}
#: The names of each node's membrane current, NEURON's i_membrane_ [nA], also CoreNEURON's
#: report type (not the extracellular mechanism's i_membrane [mA/cm2], which it is not).
MEMBRANE_CURRENT = ("i_membrane_", "i_membrane")
#: The units of an ion's variables, by their names' shapes (NEURON's: ina, nai, nao, ena).
ION_UNITS = {"i": "mA/cm2", "e": "mV", "in": "mM", "out": "mM"}


@dataclass
class ReportSpec:
    name: str
    target: str = "soma"
    dt: float = 0.1  # [ms]
    start: float = 0.0  # [ms]
    end: float = math.inf  # [ms]
    cells: list[int] | None = None  # gids; None: every cell
    variable: str = "v"
    where: str = field(default="", compare=False)  # the option or file entry it came from

    def check(self) -> None:
        where = self.where or f"report {self.name!r}"
        if self.target not in TARGETS:
            raise PortneuronError(
                f"{where}: target {self.target!r} is not one of {', '.join(TARGETS)}"
            )
        parts = self.variable.split(".")
        if len(parts) > 2 or not all(part.isidentifier() for part in parts):
            raise PortneuronError(
                f"{where}: variable {self.variable!r} is no NEURON name; give v, a "
                f"mechanism's as m_hh, an ion's as ina or nai, a point process's as ExpSyn.g"
            )
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise PortneuronError(f"{where}: dt must be a positive number of ms, not {self.dt}")
        if not (math.isfinite(self.start) and self.start >= 0 and self.end >= self.start):
            raise PortneuronError(
                f"{where}: the window needs 0 <= start <= end, not {self.start} to {self.end}"
            )
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise PortneuronError(f"{where}: {self.name!r} cannot name a file; give a plain name")


def parse_report(text: str) -> ReportSpec:
    """`--report TARGET[@DT]`: every cell's `TARGET` every DT ms (0.1), to TARGET.h5."""
    target, _, dt = text.partition("@")
    try:
        spec = ReportSpec(target, target, float(dt) if dt else 0.1, where=f"--report {text}")
    except ValueError:
        raise PortneuronError(
            f"--report {text}: {dt!r} is no interval; give TARGET@DT, DT in ms"
        ) from None
    spec.check()
    return spec


def read_report_conf(path: str | Path) -> list[ReportSpec]:
    """A report file's reports (JSON, this module's docstring); one line for what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PortneuronError(f"{path}: cannot read the report file ({exc.strerror})") from None
    try:
        entries = json.loads(text)["reports"]
    except json.JSONDecodeError as exc:
        raise PortneuronError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    except (KeyError, TypeError):
        raise PortneuronError(f'{path}: no "reports" list; give {{"reports": [...]}}') from None
    if not isinstance(entries, list):
        raise PortneuronError(f'{path}: "reports" is not a list')
    specs = []
    for k, entry in enumerate(entries):
        where = f"{path}: report {k}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PortneuronError(f'{where}: give an object with a "name"')
        unknown = set(entry) - KEYS
        if unknown:
            raise PortneuronError(
                f"{where}: unknown key {sorted(unknown)[0]!r}; the keys are {', '.join(sorted(KEYS))}"
            )
        try:
            spec = ReportSpec(
                entry["name"], str(entry.get("target", "soma")), float(entry.get("dt", 0.1)),
                float(entry.get("start", 0.0)), float(entry.get("end", math.inf)),
                None if entry.get("cells") is None else [int(g) for g in entry["cells"]],
                str(entry.get("variable", "v")), where=f"{where} ({entry['name']})",
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise PortneuronError(f"{where}: {exc}") from None
        spec.check()
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise PortneuronError(f"{path}: two reports named {names[0]!r}: give each its own name")
    return specs


@dataclass
class Source:
    """Where a report's variable is: `array` (None: v, recorded in compiled epochs), the
    node of each of its elements (`nodes`, in their order), and `units`; `points`: of a
    point process, whose elements are its instances (several on a node), not the
    compartments."""

    array: np.ndarray | None
    nodes: np.ndarray
    units: str
    points: bool = False

    def pick(self, compartments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The elements on `compartments` (a cell's, sorted) and their element ids: a
        compartment's number in the cell, or a point process's among those picked."""
        order = self.order
        lo, hi = np.searchsorted(self.nodes[order], [compartments[0], compartments[-1] + 1])
        mine = order[lo:hi][np.isin(self.nodes[order[lo:hi]], compartments)]
        if self.points:
            mine = np.sort(mine)  # the instances' own order
            return mine, np.arange(len(mine))
        return mine, np.searchsorted(compartments, self.nodes[mine])

    @functools.cached_property
    def order(self) -> np.ndarray:
        return np.argsort(self.nodes, kind="stable")


def fast_imem(specs: list[ReportSpec]) -> bool:
    """Whether the reports need the membrane current computed (Simulation's fast_imem)."""
    return any(spec.variable in MEMBRANE_CURRENT for spec in specs)


def variable_source(sim, spec: ReportSpec) -> Source:
    """A report's variable in a simulation's model: v; i_membrane_ (or CoreNEURON's report
    type i_membrane), where the simulation computes it; a density mechanism's by NEURON's
    name (m_hh: hh's m); an ion's (ina, nai, nao, ena); a point process's as its
    mechanism.variable (ExpSyn.g)."""
    name, model = spec.variable, sim.model
    if name == "v":
        return Source(None, np.zeros(0, np.int64), "mV")
    if name in MEMBRANE_CURRENT:
        if not sim.fast_imem:
            raise PortneuronError(
                f"{spec.where or spec.name}: {name} is not computed in this simulation; "
                f"make it with Simulation(..., fast_imem=True)"
            )
        return Source(sim.i_membrane, np.arange(model.nodes.count), "nA")
    for ion in model.ions:
        if name in ion.data and ion.data[name].ndim == 1:
            shape = "in" if name == f"{ion.name}i" else "out" if name == f"{ion.name}o" else name[0]
            return Source(ion.data[name], ion.node_index, ION_UNITS.get(shape, ""))
    mechanism, point, variable = name.partition(".")
    if not point:
        variable, _, mechanism = name.rpartition("_")
    kind = "point_process" if point else "density"
    for mset in model.mechanisms:
        if mset.name != mechanism or mset.mechanism.kind != kind:
            continue
        declared = {v.name: v for v in mset.mechanism.variables if v.per_instance}
        if variable in declared and not declared[variable].length:
            unit = declared[variable].unit
            return Source(mset.data[variable], mset.node_index, unit, bool(point))
    raise PortneuronError(
        f"{spec.where or spec.name}: no variable {name!r} in this model; give v, a density "
        f"mechanism's by NEURON's name (as m_hh), an ion's (as ina, nai) or a point "
        f"process's (as ExpSyn.g)"
    )


class Reports:
    """A run's reports: what it records (`record`, every `every` steps) and the sink that
    writes them (`sink`, after every epoch); `close` completes the files, `abort` leaves
    none. Every rank makes one (and calls `sink` alike); rank 0 writes."""

    def __init__(self, sim, specs: list[ReportSpec], outdir: Path, ranks: Ranks | None = None):
        self.specs, self.ranks, self.sim = specs, ranks or Ranks(), sim
        self.writers: list = []
        self.probes: list = []  # (array, element) of the variables other than v
        if not specs:
            return
        model, dt = sim.model, sim.dt
        self.every = 0
        for spec in specs:
            steps = spec.dt / dt
            if abs(steps - round(steps)) > 1e-9 * steps or round(steps) < 1:
                raise PortneuronError(
                    f"{spec.where or spec.name}: dt {spec.dt:g} ms is not a multiple of the "
                    f"run's dt {dt:g} ms"
                )
            self.every = math.gcd(self.every, round(steps))
        typed = next((spec for spec in specs if spec.target in TYPE_TARGETS), None)
        if typed is not None and model.section_types is None:
            raise PortneuronError(
                f"{typed.where or typed.name}: target {typed.target!r} needs the sections' "
                f"names, which a dataset does not carry; run the model in direct mode "
                f"(direct.load with section_types=True) or build it with portneuron.build"
            )
        first = model.nodes.first
        cap = model.mechanism_set("capacitance")
        membrane = np.sort(cap.node_index) if cap is not None else np.arange(model.nodes.count)
        cells = [c for c in range(model.ncell) if sim.cell_gid[c] >= 0]
        sources = [variable_source(sim, spec) for spec in specs]
        nodes, self.probes, picked, mapping = [], [], [], []
        for spec, source in zip(specs, sources):
            wanted = None if spec.cells is None else set(spec.cells)
            gids, counts, elements, at = [], [], [], []
            for c in cells:
                gid = int(sim.cell_gid[c])
                if wanted is not None and gid not in wanted:
                    continue
                lo, hi = np.searchsorted(membrane, [first[c], first[c + 1]])
                number = np.arange(hi - lo)  # each compartment's in its cell
                if spec.target == "soma":
                    number = number[:1]
                elif spec.target in TYPE_TARGETS:
                    kind = model.section_types.of(c)[membrane[lo:hi] - first[c]]
                    number = number[kind == SECTION_TYPES.index(spec.target) + 1]
                mine = membrane[lo + number]
                if source.array is not None and len(mine):  # the elements there
                    mine, k = source.pick(mine)
                    number = k if source.points else number[k]
                gids.append(gid)
                counts.append(len(mine))
                elements.append(number)
                at.append(mine)
            at = np.concatenate(at) if at else np.zeros(0, np.int64)
            if source.array is None:
                nodes.append(at)
            else:
                self.probes += [(source.array, int(i)) for i in at]
            picked.append(len(at))
            mapping.append((gids, counts, np.concatenate(elements) if elements else at))
        self.record = np.concatenate(nodes).astype(np.int64) if nodes else np.zeros(0, np.int64)
        # each report's columns: the voltages first, then the probes (views, not copies)
        n, m, self.columns = 0, len(self.record), []
        for source, count in zip(sources, picked):
            if source.array is None:
                self.columns.append(slice(n, n + count))
                n += count
            else:
                self.columns.append(slice(m, m + count))
                m += count
        everyone = self.ranks.gather(mapping)
        if everyone is None:
            return
        from .io.sonata import CompartmentReport

        try:
            for k, spec in enumerate(specs):
                parts = [m[k] for m in everyone]
                self.writers.append(
                    CompartmentReport(
                        outdir / f"{spec.name}.h5",
                        np.concatenate([np.array(p[0], dtype=np.int64) for p in parts]),
                        np.concatenate([np.array(p[1], dtype=np.int64) for p in parts]),
                        np.concatenate([p[2] for p in parts]),
                        spec.start,
                        spec.end,
                        spec.dt,
                        sources[k].units,
                    )
                )
        except BaseException:
            self.abort()
            raise

    def expect(self, tstop: float) -> None:
        """The run is to `tstop` from the simulation's state now: each report's rows laid
        out whole before they come (CompartmentReport.expect)."""
        if not self.writers:  # a rank that does not write
            return
        counts = [0] * len(self.writers)
        for times in self.sim.recorded_times(tstop, self.every):
            for k, writer in enumerate(self.writers):
                counts[k] += int(np.count_nonzero(writer.on(times)))
        for writer, count in zip(self.writers, counts):
            writer.expect(count)

    def recording(self) -> dict:
        """What Simulation.run records for the reports, and where it goes."""
        if not self.specs:
            return {}
        out = {"record": self.record, "record_every": self.every, "sink": self.sink,
               "rows_dtype": np.float32, "rows_into": self.rows_into}  # fmt: skip
        return {**out, "probes": self.probes} if self.probes else out

    def rows_into(self, rows: int, columns: int) -> np.ndarray | None:
        """Where a compiled epoch records its next rows: straight into the report's file
        buffer where one report on one rank takes them whole (sonata.Rows.space)."""
        if self.ranks.size > 1 or len(self.writers) != 1 or self.writers[0].rows_out is None:
            return None
        if self.columns[0] != slice(0, columns):
            return None
        return self.writers[0].rows_out.space(rows, columns)

    def compile(self) -> None:
        """The simulation's epoch driver for a run with these reports, compiled now (one
        that records float32 rows, and the probes' arrays)."""
        recording = self.recording()
        dtype = recording.get("rows_dtype", np.float64)
        self.sim.epoch_program(recording.get("record"), self.probes, dtype)

    def sink(self, times: np.ndarray, values: np.ndarray) -> None:
        """An epoch's recorded rows: each report's columns, every rank's in rank order."""
        parts = self.ranks.gather([values[:, cols] for cols in self.columns])
        if parts is None:
            return
        for k, writer in enumerate(self.writers):
            mine = [p[k] for p in parts]
            writer.write(times, mine[0] if len(mine) == 1 else np.concatenate(mine, axis=1))

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()
        self.writers = []
