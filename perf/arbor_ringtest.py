"""The ringtest benchmark in Arbor, for timing side by side with NEURON and CoreNEURON.

It builds the network of tests/neuron_models.build_ringtest with Arbor's built-in mechanisms
(hh, pas, expsyn): the same rings, connections, stimuli, parameters and cell shapes (from
neuron_models.cell_types and cell_shape, which draw them with NEURON's Random123), and one CV
per NEURON segment. Where it differs from the NEURON model:

- Arbor's hh has no rate tables, its integration scheme is Arbor's, and it interpolates
  threshold crossing times (NEURON's fixed step reports the end of the step): each hop of a
  ring comes about one dt (0.025 ms) earlier than in NEURON, so by 100 ms some rings fire
  one spike more (599 spikes against NEURON's 592 for the defaults).
- Arbor's detector reads the voltage of the CV holding its site; at soma(1), the boundary
  with dend[0], that would be dend[0]'s CV, so it sits in the soma's CV, which NEURON's
  zero-area soma(1) node follows closely: by axial resistance it lies 1/2500 of the way from
  the soma's node to dend[0]'s.
- Adjacent CVs are coupled through the axial resistance between their midpoints, as NEURON
  couples its segment nodes; NEURON's zero-area nodes at section ends appear in Arbor as
  zero-length CVs at forks only (elsewhere they are in series and change nothing). "compartments" counts NEURON's segments (soma +
  every nseg), "cvs" Arbor's CVs with the zero-length ones.
- Cells of one type share one `arbor.cable_cell` (their shapes are identical).

`python perf/arbor_ringtest.py --help` for the options; it prints `run_arbor`'s dict as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import arbor
import numpy as np
from arbor import units as U

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import neuron_models as nm  # noqa: E402

SOMA_L = 12.6157  # um
SOMA_DIAM = float(np.float32(12.6157))  # um; NEURON keeps it as a single-precision 3-d diam
DEND0_L, DEND_L, DEND_DIAM = 200.0, 10.0, 1.0  # um
HH = {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.0003, "el": -54.3}  # S/cm2 and mV


def _as_range(value: int | tuple[int, int]) -> tuple[int, int]:
    """(n, n) for an int n, else the pair as ints: an inclusive [lo, hi] range."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def make_cell(parents: list[int], nsegs: list[int]) -> arbor.cable_cell:
    """One ringtest cell: segment 0 is the soma, segment i + 1 is NEURON's dend[i].

    `parents` and `nsegs` are neuron_models.cell_shape's; dend[i] gets nsegs[i] CVs, the soma 1.
    Labels: "det" is the threshold detector, "syn" the driven ExpSyn, "inh" the unused one.
    """
    tree = arbor.segment_tree()
    radius = SOMA_DIAM / 2
    tree.append(arbor.mnpos, arbor.mpoint(0, 0, 0, radius), arbor.mpoint(SOMA_L, 0, 0, radius), 1)
    ends = []  # x of each dendrite's distal end; dendrites lie along x, overlapping
    for i, parent in enumerate(parents):
        start, length = (SOMA_L, DEND0_L) if i == 0 else (ends[parent], DEND_L)
        seg = 0 if i == 0 else parent + 1
        prox, dist = (arbor.mpoint(x, 0, 0, DEND_DIAM / 2) for x in (start, start + length))
        tree.append(seg, prox, dist, 3)
        ends.append(start + length)

    labels = arbor.label_dict(
        {
            "soma": "(tag 1)",
            "dend": "(tag 3)",
            "det": "(on-components 0.5 (segment 0))",  # soma(1) in NEURON; see the top
            "syn": "(on-components 0.8 (segment 1))",  # dend[0](0.8)
            "inh": "(on-components 0.1 (segment 1))",  # dend[0](0.1)
        }
    )
    # CV boundaries: every segment's ends, plus the inner segment boundaries of each dendrite
    boundaries = "(segment-boundaries)"
    inner = [
        f"(on-components {k / n!r} (segment {i + 1}))"
        for i, n in enumerate(nsegs)
        for k in range(1, n)
    ]
    if inner:
        boundaries = f"(join {boundaries} {' '.join(inner)})"
    decor = (
        arbor.decor()
        .set_property(
            Vm=nm.V_INIT * U.mV,
            cm=0.01 * U.F / U.m2,
            rL=100 * U.Ohm * U.cm,
            tempK=(nm.CELSIUS + 273.15) * U.Kelvin,
        )
        .paint('"soma"', arbor.density("hh", HH))
        .paint('"dend"', arbor.density("pas/e=-65", {"g": 0.001}))
        .place('"syn"', arbor.synapse("expsyn", {"tau": 2.0, "e": 0.0}), "syn")
        .place('"inh"', arbor.synapse("expsyn", {"tau": 5.0, "e": -80.0}), "inh")
        .place('"det"', arbor.threshold_detector(nm.THRESHOLD * U.mV), "det")
    )
    cvs = arbor.cv_policy_explicit(boundaries)
    return arbor.cable_cell(arbor.morphology(tree), decor, labels, cvs)


class RingRecipe(arbor.recipe):
    """The ringtest network: gid = ring * ncell + i, cell i drives cell (i + 1) % ncell."""

    def __init__(
        self, nring: int, ncell: int, nbranch: tuple[int, int], ncompart: tuple[int, int]
    ) -> None:
        super().__init__()
        self.ncell = ncell
        self.props = arbor.neuron_cable_properties()
        types = nm.cell_types(nring * ncell)
        shapes = {t: nm.cell_shape(t, nbranch, ncompart) for t in set(types)}
        cells = {t: make_cell(*shape) for t, shape in shapes.items()}
        self.cells = [cells[t] for t in types]
        # NEURON's count: 1 soma segment plus every dendrite's nseg
        self.compartments = sum(1 + sum(shapes[t][1]) for t in types)

    def num_cells(self) -> int:
        return len(self.cells)

    def cell_kind(self, gid: int) -> arbor.cell_kind:
        return arbor.cell_kind.cable

    def cell_description(self, gid: int) -> arbor.cable_cell:
        return self.cells[gid]

    def connections_on(self, gid: int) -> list[arbor.connection]:
        """The one incoming connection: from the previous cell of the ring."""
        ring, i = divmod(gid, self.ncell)
        source = ring * self.ncell + (i - 1) % self.ncell
        return [arbor.connection((source, "det"), "syn", nm.WEIGHT, nm.DELAY * U.ms)]

    def event_generators(self, gid: int) -> list[arbor.event_generator]:
        """The NetStim of the ring, for its first cell: one event arriving at t = DELAY."""
        if gid % self.ncell:
            return []
        schedule = arbor.explicit_schedule([nm.DELAY * U.ms])
        return [arbor.event_generator("syn", nm.WEIGHT, schedule)]

    def global_properties(self, kind: arbor.cell_kind) -> arbor.cable_global_properties:
        return self.props


def run_arbor(
    nring: int = 16,
    ncell: int = 8,
    nbranch: int | tuple[int, int] = (10, 20),
    ncompart: int | tuple[int, int] = 1,
    tstop: float = 100.0,
    dt: float = 0.025,
    threads: int = 1,
) -> dict:
    """Builds and runs ringtest in Arbor (one domain, CPU threads); returns sizes and timings."""
    t0 = time.perf_counter()
    recipe = RingRecipe(nring, ncell, _as_range(nbranch), _as_range(ncompart))
    context = arbor.context(arbor.proc_allocation(threads=threads, gpu_id=None))
    sim = arbor.simulation(recipe, context, arbor.partition_load_balance(recipe, context))
    sim.record(arbor.spike_recording.all)
    t1 = time.perf_counter()
    sim.run(tstop * U.ms, dt * U.ms)
    t2 = time.perf_counter()

    nstep = round(tstop / dt)
    return {
        "engine": "arbor",
        "version": arbor.__version__,
        "cells": recipe.num_cells(),
        "compartments": recipe.compartments,
        "cvs": sum(arbor.cv_data(cell).num_cv for cell in recipe.cells),
        "spikes": len(sim.spikes()),
        "setup_s": t1 - t0,
        "simulate_s": t2 - t1,
        "ns_per_compartment_step": (t2 - t1) * 1e9 / (recipe.compartments * nstep),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: runs `run_arbor` and prints its dict as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nring", type=int, default=16)
    p.add_argument("--ncell", type=int, default=8)
    p.add_argument("--nbranch", type=int, nargs=2, default=(10, 20), metavar=("LO", "HI"))
    p.add_argument("--ncompart", type=int, nargs=2, default=(1, 1), metavar=("LO", "HI"))
    p.add_argument("--tstop", type=float, default=100.0)
    p.add_argument("--dt", type=float, default=0.025)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(run_arbor(**vars(args))))


if __name__ == "__main__":
    main()
