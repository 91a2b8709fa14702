"""Describing a cell: sections, their geometry and mechanisms, point processes, a detector.

A `Cell` is a template: it holds per-section values only (no per-segment objects), and
`Cell.compile()` turns it into the node arrays of one cell in NEURON's node order, which a
Network stamps out once per gid. Names follow NEURON: `sec(x)` places are (section, x) with
0 <= x <= 1; x = 0 and 1 are the section's end nodes, anything between is the segment
holding x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from portneuron.errors import PortneuronError

from . import geometry


@dataclass(slots=True)
class Section:
    """One unbranched cable. `parent`/`parent_x`: where its 0 end connects (None: the root).
    `diam` and `cm` hold one value per segment; `pt3d`, when present, defines the shape."""

    index: int
    name: str
    L: float  # [um]
    diam: np.ndarray  # [um], per segment
    nseg: int
    Ra: float  # [ohm cm]
    cm: np.ndarray  # [uF/cm2], per segment
    parent: int | None
    parent_x: float
    rallbranch: float = 1.0
    pt3d: geometry.Pt3d | None = None
    mechanisms: dict[str, dict[str, float | np.ndarray]] = field(default_factory=dict)


@dataclass
class PointProcess:
    mechanism: str
    section: int
    x: float
    values: dict[str, float]


@dataclass
class CompiledCell:
    """One cell's arrays in NEURON's node order; node 0 is the root (soma(0)). It holds
    no Section: a Network stamps it out as it does its Cell (`Network.add_cell`), and a
    builder of many templates can keep these and let the Cells go."""

    parent: np.ndarray  # int32, -1 for the root
    a: np.ndarray
    b: np.ndarray
    area: np.ndarray
    diam: np.ndarray
    cm: np.ndarray  # [uF/cm2], NaN where a node has no membrane
    density: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]  # mech -> (nodes, values)
    points: list[tuple[str, int, dict[str, float]]]  # (mech, node, values), creation order
    detector: tuple[int, float] | None  # (node, threshold)
    layout: geometry.CellLayout

    def node_at(self, section: Section, x: float) -> int:
        return self.layout.node_at(section, x)

    def compile(self) -> CompiledCell:
        """Itself: a compiled template is used where its Cell would be."""
        return self

    @property
    def count(self) -> int:
        return len(self.parent)


class Cell:
    """A cell template built section by section, as in NEURON."""

    def __init__(self, name: str = "cell") -> None:
        self.name = name
        self.sections: list[Section] = []
        self.points: list[PointProcess] = []
        self.detector: tuple[int, float, float] | None = None
        self._compiled: CompiledCell | None = None

    # ------------------------------------------------------------------ building
    def section(
        self,
        name: str,
        L: float = 100.0,
        diam: float = 500.0,
        nseg: int = 1,
        Ra: float = 35.4,
        cm: float = 1.0,
        parent: Section | None = None,
        x: float = 1.0,
        pt3d: np.ndarray | None = None,
    ) -> Section:
        """A new section (NEURON's defaults), connected by its 0 end to `parent(x)`.

        With `pt3d` (rows x, y, z, diam [um]) the points define the shape, as after
        pt3dadd in NEURON, and L and diam are not applied; use `set_diam` and `set_length`
        afterwards to change them in NEURON's way."""
        if nseg < 1:
            raise PortneuronError(f"section {name}: nseg must be >= 1, not {nseg}")
        if not (L > 0 and diam > 0 and Ra > 0):
            raise PortneuronError(f"section {name}: L, diam and Ra must be positive")
        if parent is None and self.sections:
            raise PortneuronError(f"section {name}: only the first section can be the root")
        if not 0.0 <= x <= 1.0:
            raise PortneuronError(f"section {name}: connection point x={x} is outside [0, 1]")
        sec = Section(
            len(self.sections), name, float(L), np.full(int(nseg), float(diam)), int(nseg),
            float(Ra), np.full(int(nseg), float(cm)), None if parent is None else parent.index,
            float(x),
        )  # fmt: skip
        if pt3d is not None:
            sec.pt3d = geometry.Pt3d.from_points(pt3d)
            sec.L = float(sec.pt3d.arc[-1])
        self.sections.append(sec)
        self._compiled = None
        return sec

    def set_diam(self, section: Section, diam: float | np.ndarray) -> None:
        """`sec.diam = d` (or per segment): 3-d points, if any, take the new diameters."""
        section.diam[:] = diam
        geometry.set_diameters(section.diam, section.pt3d)
        self._compiled = None

    def set_nseg(self, section: Section, nseg: int) -> None:
        """`sec.nseg = n`: per-segment diam and cm move as NEURON moves them (each new
        segment takes the value of the old segment at its centre)."""
        if nseg < 1:
            raise PortneuronError(f"section {section.name}: nseg must be >= 1, not {nseg}")
        old = section.nseg
        take = [int(old * ((i + 0.5) / nseg)) for i in range(nseg)]
        section.diam, section.cm, section.nseg = section.diam[take], section.cm[take], nseg
        self._compiled = None

    def set_length(self, section: Section, L: float) -> None:
        """`sec.L = L`: with 3-d points, their arcs and coordinates are scaled."""
        section.L = geometry.set_length(L, section.pt3d)
        self._compiled = None

    def insert(self, section: Section, mechanism: str, **values: float) -> None:
        """Insert a density mechanism; values are one number or one per segment."""
        section.mechanisms.setdefault(mechanism, {}).update(values)
        self._compiled = None

    def point_process(self, section: Section, x: float, mechanism: str, **values: float) -> int:
        """Place a point process (a synapse, a clamp) at section(x); returns its index."""
        if not 0.0 <= x <= 1.0:
            raise PortneuronError(f"{mechanism} at {section.name}({x}): x must be in [0, 1]")
        self.points.append(PointProcess(mechanism, section.index, float(x), dict(values)))
        self._compiled = None
        return len(self.points) - 1

    def spike_detector(self, section: Section, x: float = 0.5, threshold: float = 10.0) -> None:
        """The cell's spike source: section(x).v crossing `threshold` [mV] upward."""
        self.detector = (section.index, float(x), float(threshold))
        self._compiled = None

    # ------------------------------------------------------------------ compiling
    def compile(self) -> CompiledCell:
        if self._compiled is None:
            self._compiled = self._compile()
        return self._compiled

    def _compile(self) -> CompiledCell:
        if not self.sections:
            raise PortneuronError(f"cell {self.name}: no sections")
        layout = geometry.cell_nodes(self.sections)
        density: dict[str, list] = {}
        for index in layout.order:
            sec = self.sections[index]
            for mech, values in sec.mechanisms.items():
                density.setdefault(mech, []).append((layout.segment_nodes(sec), values))
        dense = {}
        for mech, parts in density.items():
            nodes = np.concatenate([n for n, _ in parts])
            keys = {k for _, values in parts for k in values}
            lengths = [len(n) for n, _ in parts]
            # NaN: not set on that section, the mechanism's default applies
            columns = {k: _column([v.get(k, np.nan) for _, v in parts], lengths) for k in keys}
            order = np.argsort(nodes, kind="stable")  # instances in node order, as NEURON
            dense[mech] = (nodes[order].astype(np.int32), {k: c[order] for k, c in columns.items()})
        points = [
            (p.mechanism, layout.node_at(self.sections[p.section], p.x), p.values)
            for p in self.points
        ]
        detector = None
        if self.detector is not None:
            sec, x, threshold = self.detector
            detector = (layout.node_at(self.sections[sec], x), threshold)
        return CompiledCell(
            layout.parent, layout.a, layout.b, layout.area, layout.diam, layout.cm,
            dense, points, detector, layout,
        )  # fmt: skip


def _column(values: list, lengths: list[int]) -> np.ndarray:
    """Each section's value of one variable, over its `lengths[i]` segments: a number for
    the whole section, or one per segment."""
    if all(isinstance(v, (int, float)) for v in values):
        return np.repeat(np.array(values, dtype=float), lengths)
    return np.concatenate(
        [np.broadcast_to(np.asarray(v, float), (n,)) for v, n in zip(values, lengths)]
    )
