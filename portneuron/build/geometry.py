"""Cable geometry as NEURON 9 computes it: areas, axial coupling, node order.

Everything here follows NEURON's treeset.cpp and cabcode.cpp operation for operation (the
same IEEE operations in the same order), so a cell built here has the a, b and area NEURON
writes for it, to the bit:

- a section of nseg segments has nseg nodes at (j + 0.5)/nseg plus a node at its x = 1 end;
  a root section also gets a root node (its x = 0 end); end nodes have area 100 (a
  placeholder: they have no membrane);
- without 3-d points a segment is a cylinder; with them, area and resistance integrate the
  frusta between points (trapezoids over arc length), and the segment's diam becomes the
  average; 3-d points are single precision, arc lengths double;
- a[first node] = -100 * rallbranch * rinv / area(parent node), a[j] = -100 rinv / area(j-1),
  b[j] = -100 rinv / area(j), rinv [uS] the conductance to the parent node;
- nodes are numbered per cell breadth-first over sections from the root; a section's children
  are ordered by connection position, the most recently connected first among equals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from portneuron.model import Sections, section_type

PI = math.pi  # NEURON's PI, 3.14159265358979323846


@dataclass
class Pt3d:
    """NEURON's 3-d points: coordinates and diameters in single precision, arcs in double."""

    x: np.ndarray  # float32
    y: np.ndarray
    z: np.ndarray
    d: np.ndarray
    arc: np.ndarray  # float64

    @classmethod
    def from_points(cls, points: np.ndarray) -> Pt3d:
        """pt3dclear, then pt3dadd for each (x, y, z, diam) row."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 4).astype(np.float32)
        arc = np.zeros(len(p))
        for i in range(1, len(p)):
            t = p[i, :3] - p[i - 1, :3]  # float32 differences, squared in double
            t = t.astype(np.float64)
            arc[i] = arc[i - 1] + math.sqrt(t[0] * t[0] + t[1] * t[1] + t[2] * t[2])
        return cls(p[:, 0].copy(), p[:, 1].copy(), p[:, 2].copy(), p[:, 3].copy(), arc)


def node_index(nseg: int, x: float) -> int:
    """The segment holding x (0 < x < 1); a boundary k/nseg belongs to segment k."""
    i = int(float(nseg) * x)
    return nseg - 1 if i == nseg else i


def set_length(L: float, pt3d: Pt3d | None) -> float:
    """`sec.L = L`: with 3-d points the arcs and coordinates are scaled, not recomputed."""
    if pt3d is not None and len(pt3d.arc) > 1:
        fac = L / pt3d.arc[-1]
        pt3d.arc *= fac
        for coord in (pt3d.x, pt3d.y, pt3d.z):
            origin = float(coord[0])
            coord[:] = (origin + (coord.astype(np.float64) - origin) * fac).astype(np.float32)
    return float(L)


def set_diameters(diam: np.ndarray, pt3d: Pt3d | None) -> None:
    """After a segment diam changes: 3-d point diameters follow the segments they fall in."""
    if pt3d is None or len(pt3d.arc) < 2:
        return
    length = pt3d.arc[-1]
    nseg = len(diam)
    for i in range(len(pt3d.arc)):
        xx = min(pt3d.arc[i] / length, 1.0)
        pt3d.d[i] = np.float32(diam[node_index(nseg, xx)])


def area_ri(
    L: float, Ra: float, diam: np.ndarray, pt3d: Pt3d | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(area [um2], rinv [uS], diam [um]) of a section's nseg + 1 nodes (the last is x = 1)."""
    nseg = len(diam)
    area, rinv, seg_diam = np.empty(nseg + 1), np.empty(nseg + 1), diam.astype(np.float64)
    if pt3d is not None and len(pt3d.arc) >= 2:
        L = float(pt3d.arc[-1])
        rright = _frusta(pt3d, Ra, nseg, area, rinv, seg_diam)
    else:
        dx = max(L, 1e-9) / float(nseg)
        rright = 0.0
        for j in range(nseg):
            d = float(diam[j])
            area[j] = PI * d * dx
            rleft = 1e-2 * Ra * (dx / 2) / (PI * d * d / 4.0)
            rinv[j] = 1.0 / (rleft + rright)
            rright = rleft
    area[nseg] = 100.0
    rinv[nseg] = 1.0 / rright
    return area, rinv, seg_diam


def _frusta(
    pt3d: Pt3d, Ra: float, nseg: int, area: np.ndarray, rinv: np.ndarray, seg_diam: np.ndarray
) -> float:
    """Trapezoidal integration over the 3-d points (NEURON's diam_from_list)."""
    arc = pt3d.arc
    dd = np.abs(pt3d.d.astype(np.float64))
    npt = len(arc)
    j, x1, y1 = 0, float(arc[0]), float(dd[0])
    ds = float(arc[npt - 1]) / float(nseg)
    rparent = 0.0
    for inode in range(nseg):
        si = float(inode) * ds
        diam_sum = area_sum = 0.0
        rleft = ri = 0.0
        for half in (0, 1):
            ri = 0.0
            sip = si + ds / 2.0
            while True:
                jp = j + 1
                if arc[jp] > sip or jp == npt - 1:
                    gap = arc[jp] - arc[j]
                    frac = 1.0 if abs(gap) < 1e-10 else (sip - arc[j]) / gap
                    x2, y2, jnext = sip, (1.0 - frac) * dd[j] + frac * dd[jp], j
                else:
                    x2, y2, jnext = float(arc[jp]), float(dd[jp]), jp
                delta = x2 - x1
                diam_sum += (y2 + y1) * delta
                if delta < 1e-15:
                    delta = 1e-15
                temp = y2 * y1 / delta
                if temp == 0:
                    temp = 1e-15
                ri += 1 / temp
                temp = 0.5 * (y2 - y1)
                temp = math.sqrt(delta * delta + temp * temp)
                area_sum += (y2 + y1) * temp
                x1, y1 = x2, y2
                if j == jnext:
                    break
                j = jnext
            if half == 0:
                rleft = ri * Ra / PI * (4.0 * 0.01)
            else:
                ri = ri * Ra / PI * (4.0 * 0.01)
            si = sip
        rinv[inode] = 1.0 / (rparent + rleft)
        diam_sum *= 0.5 / ds
        if abs(diam_sum - seg_diam[inode]) > 1e-9 or diam_sum < 1e-5:
            seg_diam[inode] = diam_sum
        area[inode] = area_sum * 0.5 * PI
        rparent = ri
    return rparent


@dataclass
class CellLayout:
    """One cell's nodes in NEURON's order: node 0 is the root node, then sections
    breadth-first, each with its segments then its x = 1 node. It keeps no Section: what
    it knows of them is arrays by section index, so a compiled template outlives its Cell."""

    parent: np.ndarray
    a: np.ndarray
    b: np.ndarray
    area: np.ndarray
    diam: np.ndarray
    cm: np.ndarray  # NaN on nodes without membrane
    order: np.ndarray  # int32: the section indices in node order
    sections: Sections  # numbered within the cell, by section index
    parent_node: np.ndarray  # int32, by section index: the node its 0 end hangs from
    node_type: np.ndarray  # int8: each node's section's type by its name (section_type)

    def segment_nodes(self, sec) -> np.ndarray:
        """The nodes of a section's nseg segments."""
        first = int(self.sections.first_node[sec.index])
        return np.arange(first, first + sec.nseg)

    def node_at(self, sec, x: float) -> int:
        """NEURON's node_exact: x <= 0 the parent node, x >= 1 the x = 1 node."""
        if x <= 0.0:
            return int(self.parent_node[sec.index])
        first = int(self.sections.first_node[sec.index])
        if x >= 1.0:
            return first + sec.nseg
        return first + node_index(sec.nseg, x)


def cell_nodes(sections: list) -> CellLayout:
    """Number the nodes of one cell (sections[0] is the root) and compute a, b, area."""
    children: dict[int, list] = {s.index: [] for s in sections}
    for s in sections[1:]:  # keep NEURON's child list: by position, newest first on ties
        siblings = children[s.parent]
        at = next((k for k, c in enumerate(siblings) if c.parent_x >= s.parent_x), len(siblings))
        siblings.insert(at, s)
    order, queue = [], [sections[0]]
    while queue:
        sec = queue.pop(0)
        order.append(sec)
        queue.extend(children[sec.index])

    n = 1 + sum(s.nseg + 1 for s in sections)
    parent = np.full(n, -1, np.int64)
    area, rinv = np.full(n, 100.0), np.zeros(n)
    diam, cm = np.zeros(n), np.full(n, np.nan)
    first_node, parent_node = {}, {}
    rall = np.ones(n)
    node = 1
    for sec in order:
        first_node[sec.index] = node
        sec_area, sec_rinv, sec_diam = area_ri(sec.L, sec.Ra, sec.diam, sec.pt3d)
        area[node : node + sec.nseg + 1] = sec_area
        rinv[node : node + sec.nseg + 1] = sec_rinv
        diam[node : node + sec.nseg] = sec_diam[: sec.nseg]
        cm[node : node + sec.nseg] = sec.cm
        rall[node] = sec.rallbranch
        node += sec.nseg + 1
    for sec in order:
        start = first_node[sec.index]
        if sec.parent is None:
            pn = 0
        else:
            p = sections[sec.parent]
            pn = _attach(p, sec.parent_x, first_node, parent_node)
        parent_node[sec.index] = pn
        parent[start] = pn
        parent[start + 1 : start + sec.nseg + 1] = np.arange(start, start + sec.nseg)
    # (-100 * rall) * rinv / area: for rall = 1 the product is exact, so one formula serves
    a, b = np.zeros(n), np.zeros(n)
    a[1:] = -1.0e2 * rall[1:] * rinv[1:] / area[parent[1:]]
    b[1:] = -1.0e2 * rinv[1:] / area[1:]
    node_section = np.full(n, -1, np.int32)
    for sec in sections:
        start = first_node[sec.index]
        node_section[start : start + sec.nseg] = sec.index
    table = Sections(
        node_section,
        np.array([s.L for s in sections], dtype=np.float64),
        np.array([s.nseg for s in sections], dtype=np.int32),
        np.array([s.rallbranch for s in sections], dtype=np.float64),
        np.array([-1 if s.parent is None else s.parent for s in sections], dtype=np.int32),
        np.array([first_node[s.index] for s in sections], dtype=np.int32),
    )
    types = np.array([0] + [section_type(s.name) for s in sections], dtype=np.int8)
    return CellLayout(
        parent.astype(np.int32), a, b, area, diam, cm,
        np.array([s.index for s in order], dtype=np.int32), table,
        np.array([parent_node[s.index] for s in sections], dtype=np.int32),
        types[node_section + 1],
    )  # fmt: skip


def _attach(p, x: float, first_node: dict[int, int], parent_node: dict[int, int]) -> int:
    """The node a child connected at p(x) hangs from."""
    if x >= 1.0:
        return first_node[p.index] + p.nseg
    if x > 0.0:
        return first_node[p.index] + node_index(p.nseg, x)
    return parent_node[p.index]  # x = 0: where p itself hangs (the root node for a root)
