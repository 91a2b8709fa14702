"""SWC morphologies, turned into sections exactly as NEURON's Import3d does.

NEURON users load SWC files with Import3d (`Import3d_SWC_read` + `Import3d_GUI.instantiate`);
to give the same cell, this follows its conventions (read_swc.hoc, import3d_gui.hoc):

- every number is read as a float32 (hoc's `%f`), radius doubled to diameter; rows must be
  in increasing id order;
- a section is a run of rows, each the parent of the next, of one type and with no other
  child; a child section starts with a copy of its parent point (with its own first
  diameter when the parent is the soma);
- a single-point soma, or NeuroMorpho's 3-point soma, becomes a cylinder along x with
  L = diam, and its neurites attach at soma(0.5); on a multi-point soma a neurite attaches at
  soma(0) from the first point, soma(1) from the last, soma(0.5) from any other;
- sections with one point, or two coincident ones, are dropped and their children moved up;
- 3-d points go through `%.8g` text before NEURON stores them as float32;
- names soma[i], axon[i], dend[i], apic[i] (others dend_<type>), nseg 1.

The rows are parsed here rather than through MorphIO: Import3d's rules depend on the file's
row order and raw values, which MorphIO normalises away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portneuron.errors import PortneuronError

from .cell import Cell, Section

EPS = 1e-11  # hoc's float_epsilon: comparisons in Import3d use it
_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
NAMES = {1: "soma", 2: "axon", 3: "dend", 4: "apic"}


def read_rows(path: Path) -> np.ndarray:
    """The SWC samples (id, type, x, y, z, diameter, parent), each number via float32."""
    rows = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise PortneuronError(f"{path}: cannot read: {exc.strerror}") from None
    for line in lines:
        values, pos = [], 0
        while len(values) < 7 and (m := _NUMBER.match(line, pos)):
            values.append(float(np.float32(m.group(1))))
            pos = m.end()
        if len(values) == 7:  # anything else (comments, blank lines) is skipped, as hoc does
            values[5] *= 2.0
            rows.append(values)
    table = np.array(rows, dtype=np.float64).reshape(-1, 7)
    if not len(table):
        raise PortneuronError(f"{path}: no SWC samples (lines of 7 numbers)")
    bad = np.flatnonzero(np.diff(table[:, 0]) <= 0)
    if len(bad):
        raise PortneuronError(
            f"{path}: sample id {int(table[bad[0] + 1, 0])} does not follow {int(table[bad[0], 0])}; "
            f"NEURON's Import3d needs ids in increasing order: sort the file"
        )
    late = np.flatnonzero(table[:, 6] >= table[:, 0])
    if len(late):
        raise PortneuronError(
            f"{path}: sample {int(table[late[0], 0])} names parent {int(table[late[0], 6])}, "
            f"which is not before it; parents must come first"
        )
    return table


@dataclass
class _Piece:
    first: int  # first own row
    rows: list[int]  # point rows (a child's first is its parent's point)
    type: int = 0
    parent: _Piece | None = None
    x: float = 1.0
    wire: bool = False  # the copied parent point is not a 3-d point (a logical connection)
    diam: list[float] = field(default_factory=list)


def _pieces(t: np.ndarray) -> list[_Piece]:
    """Import3d's sections of the rows (read_swc.hoc mark_branch, sectionify, mksection)."""
    n = len(t)
    ids, typ, x, y, z, d, pid = (t[:, k].copy() for k in range(7))
    index = {int(v): i for i, v in enumerate(ids)}

    def parent(i: int) -> int:
        return -1 if pid[i] < 0 else index.get(int(pid[i]), -1)

    def at(i: int) -> int:  # hoc reads index -1 as element 0
        return max(i, 0)

    nchild, to_proximal = np.zeros(n), np.zeros(n, bool)
    for i in range(n):
        p = parent(i)
        if p < 0:
            continue
        nchild[p] += 1
        if p != i - 1:
            nchild[p] += 0.01
            if (p > 1 and typ[p] != 1 and typ[at(parent(p))] == 1) or (p == 0 and typ[p] != 1):
                to_proximal[i], nchild[p] = True, 1.0
        if typ[p] != typ[i]:
            nchild[p] += 0.01
    soma_children = np.zeros(n, int)
    for i in range(1, n):
        if typ[i] == 1 and parent(i) >= 0 and typ[parent(i)] == 1:
            soma_children[parent(i)] += 1
    nsoma = int((typ == 1).sum())
    three_point = (
        nsoma == 3 and parent(1) == 0 and parent(2) == 0 and nchild[1] == 0 and nchild[2] == 0
        and abs(d[1] - d[0]) <= EPS and abs(d[2] - d[0]) <= EPS
        and abs(sum(np.sqrt((x[i] - x[0]) ** 2 + (y[i] - y[0]) ** 2 + (z[i] - z[0]) ** 2)
                    for i in (1, 2)) / d[0] - 1) < 0.01 - EPS
    )  # fmt: skip
    if three_point:  # NeuroMorpho's soma: one section, of its centre only
        pid[2] = ids[1]
    for i in range(n - 1):
        if typ[i] == 1 and typ[i + 1] == 1 and parent(i + 1) == i:
            if i == 0 or soma_children[i] <= 1:
                nchild[i] = 1.0
    ends = [i for i in range(n) if abs(nchild[i] - 1) > EPS]
    starts = [0] + [e + 1 for e in ends[:-1]]
    owner = np.zeros(n, int)
    for k, (s, e) in enumerate(zip(starts, ends)):
        owner[s : e + 1] = k
    pieces: list[_Piece] = []
    for k, (first, last) in enumerate(zip(starts, ends)):
        stop = last + 1
        if k == 0:
            piece = _Piece(first, list(range(first, 1 if three_point else stop)))
        else:
            pf = parent(first)
            piece = _Piece(first, [at(pf), *range(first, stop)])
            up = piece.parent = pieces[owner[at(pf)]]
            neurite_on_soma = up.type == 1 and typ[first] != 1
            own = stop - first
            if up is pieces[0] and neurite_on_soma and len(up.rows) == 1:
                piece.x, piece.wire = 0.5, own > 1
            elif up is pieces[0] and pf == up.first:
                piece.x = 0.0
                piece.wire = typ[first] != 1 and soma_children[at(pf)] > 1
            elif up.type == 1:
                offset = -1 if up.first == 0 else -2
                if pf < up.first + len(up.rows) + offset:  # an interior soma point
                    piece.x, piece.wire = 0.5, neurite_on_soma and own > 1
                else:
                    piece.wire = own > 1 and soma_children[at(pf)] > 1 and typ[first] != 1
        piece.type = int(typ[first])
        piece.diam = [float(d[r]) for r in piece.rows]
        if piece.parent is not None and piece.parent.type == 1 and piece.type != 1:
            piece.diam[0] = piece.diam[1]
        if to_proximal[first]:
            piece.x = 0.0
        pieces.append(piece)
    for k in range(len(pieces) - 1, 0, -1):  # chk_valid: no zero-length sections
        piece = pieces[k]
        pts = piece.rows[int(piece.wire) :]
        if len(pts) <= 1 or (
            len(pts) == 2 and all(abs(c[pts[0]] - c[pts[1]]) < EPS for c in (x, y, z))
        ):
            del pieces[k]
            for other in pieces[k:]:
                if other.parent is piece:
                    other.parent, other.x = piece.parent, piece.x
    return pieces


def _stored(value: float) -> float:
    """A value as Import3d hands it to pt3dadd: printed with %.8g, stored as float32."""
    return float(np.float32(float(f"{value:.8g}")))


def load_swc(
    path: str | Path, cell: Cell | None = None, Ra: float = 35.4, cm: float = 1.0
) -> tuple[Cell, dict[str, Section]]:
    """A Cell (new, or `cell`) with the sections of an SWC file, as NEURON's Import3d makes
    them; returns it and its sections by NEURON name (soma[0], dend[3], ...)."""
    path = Path(path)
    table = read_rows(path)
    pieces = _pieces(table)
    cell = cell or Cell(path.stem)
    counts: dict[int, int] = {}
    names, sections = {}, {}
    x, y, z = table[:, 2], table[:, 3], table[:, 4]
    for piece in pieces:  # Import3d's order: the order NEURON connects them in
        i = counts.get(piece.type, 0)
        counts[piece.type] = i + 1
        kind = NAMES.get(piece.type) or (
            f"minus_{-piece.type}" if piece.type < 0 else f"dend_{piece.type}"
        )
        names[id(piece)] = name = f"{kind}[{i}]"
        skip = int(piece.wire)
        rows, diam = piece.rows[skip:], piece.diam[skip:]
        px, py, pz = [x[r] for r in rows], [y[r] for r in rows], [z[r] for r in rows]
        if len(rows) == 1:  # one point: a cylinder along x with L = diam (the sphere's area)
            r = diam[0] / 2
            px, py, pz, diam = [px[0] - r, px[0], px[0] + r], py * 3, pz * 3, diam * 3
        points = np.array([[_stored(v) for v in p] for p in zip(px, py, pz, diam)])
        parent = None if piece.parent is None else sections[names[id(piece.parent)]]
        sections[name] = cell.section(
            name, nseg=1, Ra=Ra, cm=cm, parent=parent, x=piece.x, pt3d=points
        )
    return cell, sections
