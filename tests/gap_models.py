"""Gap-junction models built in NEURON (tests/mods/halfgap.mod, coupled by ParallelContext's
source_var / target_var), run there and written by nrncore_write; then run by portneuron
from the dataset on each backend and thread count asked for. Run as a script by
tests/test_gap.py, it prints one JSON line:

    python gap_models.py MODS MODEL FOLDER BACKENDS [TSTOP] [DT] [THREADS]

MODEL: "two" (two passive cells, one of three segments, at different resting potentials,
coupled once), "pair" (two one-compartment passive cells), "chain" (10 hh cells in a chain, the first driven by an IClamp), "network"
(100 hh cells with random couplings and NetCons, NetStims driving a few), "gating" (two hh
cells, one junction taking the other cell's hh m, not a v). BACKENDS:
"numpy:1,llvm:2" (a backend and its threads).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from neuron import h

pc = h.ParallelContext()
h.load_file("stdrun.hoc")
V_INIT = -65.0


class Gaps:
    """Junctions between segments: each a HalfGap on either side, taking the other side's
    v (sids: 2k for the first side's v, 2k + 1 for the second's)."""

    def __init__(self) -> None:
        self.keep: list = []

    def couple(self, a, b, g: float) -> None:
        sid = 2 * (len(self.keep) // 2)
        for seg, own, other in ((a, sid, sid + 1), (b, sid + 1, sid)):
            gap = h.HalfGap(seg)
            gap.g = g
            pc.source_var(seg._ref_v, own, sec=seg.sec)
            pc.target_var(gap, gap._ref_vgap, other)
            self.keep.append(gap)


def _cell(gid: int, name: str):
    soma = h.Section(name=f"{name}{gid}")
    pc.set_gid2node(gid, pc.id())
    nc = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    nc.threshold = 0
    pc.cell(gid, nc)
    return soma


def two() -> tuple[list, list]:
    """Two passive cells (10 x 10 um; e_pas -65 and -55 mV; the second of 3 segments)
    joined by 2 nS between the first's middle and the second's 0.8."""
    cells = []
    for k in range(2):
        soma = _cell(k, "pas")
        soma.L = soma.diam = 10
        soma.nseg = 3 if k else 1
        soma.insert("pas")
        soma.g_pas, soma.e_pas = 1e-4, -65 + 10 * k
        cells.append(soma)
    gaps = Gaps()
    gaps.couple(cells[0](0.5), cells[1](0.8), 0.002)
    return [seg for sec in cells for seg in sec], [cells, gaps]


def chain(n: int = 10) -> tuple[list, list]:
    """`n` hh cells (20 x 20 um) in a chain, neighbours joined by 50 nS; an IClamp drives
    the first (0.3 nA from 2 ms for 40 ms): spikes run down the chain."""
    cells = []
    for k in range(n):
        soma = _cell(k, "hh")
        soma.L = soma.diam = 20
        soma.insert("hh")
        cells.append(soma)
    gaps = Gaps()
    for a, b in zip(cells, cells[1:]):
        gaps.couple(a(0.5), b(0.5), 0.05)
    stim = h.IClamp(cells[0](0.5))
    stim.delay, stim.dur, stim.amp = 2, 40, 0.3
    return [sec(0.5) for sec in cells], [cells, gaps, stim]


def network(n: int = 100, couplings: int = 150) -> tuple[list, list]:
    """`n` cells (an hh soma, a passive dendrite of 3 segments), `couplings` random gap
    junctions between dendrites and somas (5 to 30 nS), each cell exciting 3 random others
    through ExpSyns (weight 0.004 uS, delay 1 to 4 ms), and 5 NetStims (gids 1000 to 1004)
    driving 5 cells."""
    rng = np.random.default_rng(19)
    cells, keep = [], []
    for k in range(n):
        soma = _cell(k, "cell")
        soma.L = soma.diam = 15
        soma.insert("hh")
        dend = h.Section(name=f"dend{k}")
        dend.L, dend.diam, dend.nseg = 150, 1.5, 3
        dend.insert("pas")
        dend.g_pas, dend.e_pas = 1e-4, -65
        dend.connect(soma(1))
        cells.append((soma, dend))
    gaps = Gaps()
    for _ in range(couplings):
        a, b = rng.choice(n, 2, replace=False)
        sa = cells[a][int(rng.integers(2))]
        sb = cells[b][int(rng.integers(2))]
        gaps.couple(sa(rng.uniform(0.1, 0.9)), sb(rng.uniform(0.1, 0.9)), rng.uniform(0.005, 0.03))
    for k in range(n):
        for target in rng.choice(n, 3, replace=False):
            if target == k:
                continue
            syn = h.ExpSyn(cells[target][1](0.5))
            syn.tau = 2
            nc = pc.gid_connect(k, syn)
            nc.weight[0], nc.delay = 0.004, float(rng.uniform(1, 4))
            keep += [syn, nc]
    for k in range(5):  # with gids, so that threads (cell groups) may hold the cells
        ns = h.NetStim()
        ns.start, ns.interval, ns.number = 2 + k, 10 + k, 5
        pc.set_gid2node(1000 + k, pc.id())
        pc.cell(1000 + k, h.NetCon(ns, None))
        syn = h.ExpSyn(cells[k * 17][0](0.5))
        nc = pc.gid_connect(1000 + k, syn)
        nc.weight[0], nc.delay = 0.05, 1
        keep += [ns, syn, nc]
    pc.set_maxstep(10)
    return [sec(0.5) for cell in cells for sec in cell], [cells, gaps, keep]


def pair() -> tuple[list, list]:
    """Two one-compartment passive cells (10 x 10 um, e_pas -65 and -55 mV) joined by 2 nS:
    a linear system of two equations, solved exactly by tests/test_gap.py."""
    cells = []
    for k in range(2):
        soma = _cell(k, "pair")
        soma.L = soma.diam = 10
        soma.insert("pas")
        soma.g_pas, soma.e_pas = 1e-4, -65 + 10 * k
        cells.append(soma)
    gaps = Gaps()
    gaps.couple(cells[0](0.5), cells[1](0.5), 0.002)
    return [sec(0.5) for sec in cells], [cells, gaps]


def gating() -> tuple[list, list]:
    """Two hh cells (20 x 20 um), the first driven by an IClamp: a HalfGap on the second
    takes the first's hh m (a variable the SOLVE block changes after NEURON's copy; 1 nS),
    one on the first takes the second's v (20 nS). finitialize copies m before INITIAL sets
    it, so NEURON's run depends on m before it: initialized once here, m holds INITIAL's
    value then, as in the dataset (a fresh section's m is 0)."""
    cells = []
    for k in range(2):
        soma = _cell(k, "gating")
        soma.L = soma.diam = 20
        soma.insert("hh")
        cells.append(soma)
    stim = h.IClamp(cells[0](0.5))
    stim.delay, stim.dur, stim.amp = 2, 20, 0.3
    keep = [stim]
    for k, (source, g) in enumerate(
        ((cells[0](0.5)._ref_m_hh, 0.001), (cells[1](0.5)._ref_v, 0.02))
    ):
        gap = h.HalfGap(cells[1 - k](0.5))
        gap.g = g
        pc.source_var(source, k, sec=cells[k])
        pc.target_var(gap, gap._ref_vgap, k)
        keep.append(gap)
    pc.setup_transfer()
    h.finitialize(V_INIT)
    return [sec(0.5) for sec in cells], [cells, keep]


MODELS = {"two": two, "pair": pair, "chain": chain, "network": network, "gating": gating}


def neuron_run(segments, tstop: float, dt: float) -> tuple[np.ndarray, list]:
    """NEURON's voltages at `segments` (a row per step, t = 0 first) and spikes (t, gid)."""
    vecs = [h.Vector().record(seg._ref_v) for seg in segments]
    tvec, idvec = h.Vector(), h.Vector()
    pc.spike_record(-1, tvec, idvec)
    h.dt = dt
    h.finitialize(V_INIT)
    while h.t < tstop - dt / 2:
        h.fadvance()
    spikes = sorted(zip(tvec.to_python(), (int(g) for g in idvec)))
    return np.array([v.to_python() for v in vecs]).T, spikes


def main() -> None:
    mods, name, folder, runs = sys.argv[1:5]
    tstop = float(sys.argv[5]) if len(sys.argv) > 5 else 50.0
    dt = float(sys.argv[6]) if len(sys.argv) > 6 else 0.025
    import neuron

    neuron.load_mechanisms(mods)
    segments, keep = MODELS[name]()
    if len(sys.argv) > 7:  # threads: as many cell groups, junctions between them
        pc.nthread(int(sys.argv[7]))
    pc.setup_transfer()
    expected, spikes = neuron_run(segments, tstop, dt)
    h.dt = dt
    h.finitialize(V_INIT)
    pc.nrncore_write(folder)
    indices = [int(seg.node_index()) for seg in segments]
    np.save(f"{folder}/neuron_v.npy", expected)  # for tests/gap_native.py's models

    from portneuron.io.dataset import load_dataset
    from portneuron.library import MechanismLibrary
    from portneuron.sim.simulation import Simulation

    out = {"range": float(np.ptp(expected)), "spikes": spikes, "runs": {}}
    for run in filter(None, runs.split(",")):
        backend, threads = run.split(":")
        model = load_dataset(folder, MechanismLibrary([mods]))
        groups = [int(g) for g in np.unique(model.source_group)]
        if len(groups) > 1:  # which group holds which segment: only one group here
            raise SystemExit("portneuron's runs here take a dataset of one group")
        nodes = [model.node_of(groups[0], k) for k in indices]
        sim = Simulation(model, _backend(backend), dt=dt, threads=int(threads))
        result = sim.run(tstop, record=nodes)
        out["runs"][run] = {
            "max_dv": float(np.abs(result.v - expected).max()),
            "same_spikes": [(float(t), int(g)) for t, g in result.spikes] == spikes,
            "stepwise": sim.stepwise_reason,
        }
    print(json.dumps(out))


def _backend(name: str):
    """A backend by name; "cuda stand-in": cuda's, on its host stand-in (tests/cuda_host.py)."""
    from portneuron.backends import load_backend

    if name != "cuda stand-in":
        return load_backend(name)
    import tempfile

    from cuda_host import HostRuntime
    from portneuron.backends.cuda.backend import CudaBackend

    return CudaBackend(HostRuntime(Path(tempfile.mkdtemp())), 8, 64)


if __name__ == "__main__":
    main()
