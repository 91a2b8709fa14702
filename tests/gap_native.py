"""tests/gap_models.py's chain and network built natively (portneuron.build), draw for draw:
the same cells, junctions, synapses and stimuli in the same order, so the same model as
NEURON's, whose results it must give."""

from __future__ import annotations

import numpy as np

from portneuron.build import Cell, Network, Place
from portneuron.library import MechanismLibrary


def chain(library: MechanismLibrary, n: int = 10) -> tuple[Network, list[Place]]:
    net = Network(library)
    cell = Cell("hh")
    soma = cell.section("soma", L=20, diam=20)
    cell.insert(soma, "hh")
    cell.spike_detector(soma, 0.5, 0.0)
    for k in range(n):
        net.add_cell(cell, k)
    for k in range(n - 1):
        net.gap_junction(Place(k, soma), Place(k + 1, soma), "HalfGap", g=0.05)
    net.point_process(0, soma, 0.5, "IClamp", dur=40, amp=0.3, **{"del": 2})  # NEURON: delay
    return net, [Place(k, soma) for k in range(n)]


def network_cell() -> tuple[Cell, object, object]:
    """The network's cell, an hh soma and a passive dendrite of 3 segments: (cell, soma,
    dendrite)."""
    cell = Cell("cell")
    soma = cell.section("soma", L=15, diam=15)
    cell.insert(soma, "hh")
    dend = cell.section("dend", L=150, diam=1.5, nseg=3, parent=soma)
    cell.insert(dend, "pas", g=1e-4, e=-65)
    cell.spike_detector(soma, 0.5, 0.0)
    return cell, soma, dend


def network(
    library: MechanismLibrary, n: int = 100, couplings: int = 150
) -> tuple[Network, list[Place]]:
    rng = np.random.default_rng(19)
    net = Network(library)
    cell, soma, dend = network_cell()
    sections = (soma, dend)
    for k in range(n):
        net.add_cell(cell, k)
    for _ in range(couplings):
        a, b = rng.choice(n, 2, replace=False)
        sa = sections[int(rng.integers(2))]
        sb = sections[int(rng.integers(2))]
        pa = Place(int(a), sa, float(rng.uniform(0.1, 0.9)))
        pb = Place(int(b), sb, float(rng.uniform(0.1, 0.9)))
        net.gap_junction(pa, pb, "HalfGap", g=float(rng.uniform(0.005, 0.03)))
    for k in range(n):
        for target in rng.choice(n, 3, replace=False):
            if target == k:
                continue
            point = net.point_process(int(target), dend, 0.5, "ExpSyn", tau=2)
            net.connect(int(target), point, 0.004, float(rng.uniform(1, 4)), source_gid=k)
    for k in range(5):
        net.artificial_cell("NetStim", gid=1000 + k, start=2 + k, interval=10 + k, number=5)
        point = net.point_process(k * 17, soma, 0.5, "ExpSyn")
        net.connect(k * 17, point, 0.05, 1.0, source_gid=1000 + k)
    return net, [Place(k, sec) for k in range(n) for sec in sections]


MODELS = {"chain": chain, "network": network}
