"""Real cells: hnn-core's layer 5 pyramidal cell alone, NEURON against portneuron, in one run.

hnn-core (PyPI, tests/pypi.py) builds the cell in NEURON (its 9 channel mechanisms, its
dipole's POINTERs, 55 compartments) with an IClamp of 0.5 nA at the soma from 10 ms:

- `cell`: one run of 1 s;
- `large`: the same cell with every section's nseg 21 times (1,155 compartments), 200 ms;
- `fit`: the fitting loop, `--fit-runs` runs of 100 ms, the soma's sodium conductance
  changed before each: NEURON finitializes and runs again; portneuron hands the cell over
  and compiles it once (portneuron.direct.load) and runs it again (DirectModel.set, run);
- `network`: 100 such cells (IClamps of 0.5 down to 0.2 nA), each driving the next three
  cells' basal AMPA synapse (0.002 uS, 2 to 4 ms), 200 ms; its spikes too are checked.

Each engine runs in a process of its own (peak RSS is its own), the rounds interleaved.
portneuron's time is the whole call (NEURON's hand-over, the front end and the kernels
and the epoch driver from the cache, which a first run of each case fills, included) and, apart, the simulation alone; NEURON's is its run. Every run
checks that the soma's voltage trace is NEURON's, bit for bit (a digest of it). No
CoreNEURON row: NEURON's writer cannot hand CoreNEURON the dipole's POINTERs into a
Vector. Results go to perf/results.jsonl (kind "cells") and RESULTS.md.

    python perf/cells.py                 # cell, large, fit (100 runs), network; 2 rounds
    python perf/cells.py --cases cell --rounds 3 --fit-runs 1000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ringtest import ROOT, append_results, measured, median_of

sys.path.insert(0, str(ROOT / "tests"))
import hnn_network  # noqa: E402

CASES = {"cell": (1000.0, 1), "large": (200.0, 21), "fit": (100.0, 1), "network": (200.0, 1)}
NETWORK = 100  # cells of the network case, each driving the next three's AMPA synapses


def build(hnn: Path, case: str):
    """The case's cells in NEURON, in this process: (NEURON's h, the first cell's soma
    segment, its mechanisms' folder, what must be kept alive)."""
    sys.path.insert(0, str(hnn))
    import neuron

    mods = hnn / "hnn_core" / "mod"
    neuron.load_mechanisms(str(mods))
    from hnn_core.cells_default import pyramidal
    from neuron import h

    h.load_file("stdrun.hoc")
    more = CASES[case][1]
    pc, keep = h.ParallelContext(), []
    for gid in range(NETWORK if case == "network" else 1):
        cell = pyramidal(cell_name="L5_pyramidal", gid=gid)
        for section in cell.sections.values():  # before NEURON builds it (and sets POINTERs)
            section.nseg *= more
        cell.build(sec_name_apical="apical_trunk")
        seg = cell._nrn_sections["soma"](0.5)
        stim = h.IClamp(seg)
        stim.delay, stim.dur, stim.amp = 10.0, 1e9, 0.5 - 0.3 * gid / NETWORK
        pc.set_gid2node(gid, pc.id())
        pc.cell(gid, h.NetCon(seg._ref_v, None, sec=seg.sec))
        keep += [cell, stim]
    soma = keep[0]._nrn_sections["soma"](0.5)
    if case == "network":
        for gid in range(NETWORK):
            for k in (1, 2, 3):
                target = keep[2 * ((gid + k) % NETWORK)]._nrn_synapses["basal_2_ampa"]
                nc = pc.gid_connect(gid, target)
                nc.weight[0], nc.delay = 0.002, 1.0 + k
                keep.append(nc)
    h.dt, h.celsius = 0.025, 37.0
    return h, soma, mods, keep


def worker(hnn: Path, case: str, engine: str, fit_runs: int) -> dict:
    """One engine's run of one case, in this process (NEURON builds the cell here)."""
    import numpy as np

    h, soma, mods, keep = build(hnn, case)
    tstop, pc = CASES[case][0], h.ParallelContext()
    spikes_t, spikes_gid = h.Vector(), h.Vector()
    pc.spike_record(-1, spikes_t, spikes_gid)
    gnabar = np.linspace(0.12, 0.3, fit_runs) if case == "fit" else [soma.hh2.gnabar]
    digest, spikes, simulate = hashlib.sha256(), 0, 0.0
    start = time.perf_counter()
    if engine == "neuron":
        v = h.Vector().record(soma._ref_v)
        for g in gnabar:
            soma.hh2.gnabar = g
            h.finitialize(-65.0)
            while h.t < tstop - h.dt / 2:
                h.fadvance()
            trace = np.array(v.to_python())
            digest.update(trace.tobytes())
            spikes += int((np.diff((trace > 0).astype(int)) == 1).sum())
        simulate = time.perf_counter() - start
        fired = sorted(zip(spikes_t.to_python(), map(int, spikes_gid.to_python())))
    else:
        import portneuron.direct

        loaded = portneuron.direct.load(backend=engine, mechanisms=[mods], v_init=-65.0, threads=1)
        for g in gnabar:
            loaded.set(soma, "hh2", "gnabar", g)
            result = loaded.run(tstop, record=[soma], v_init=-65.0)
            digest.update(result.traces[0].tobytes())
            spikes += int((np.diff((result.traces[0] > 0).astype(int)) == 1).sum())
            simulate += result.simulate_s
        fired = result.spikes
    total = time.perf_counter() - start
    if case == "network":  # the last run's spikes, every cell's, to the bit
        digest.update(repr(fired).encode())
        spikes = len(fired)
    return {"case": case, "engine": engine, "compartments": sum(s.nseg for s in h.allsec()),
            "tstop": tstop, "runs_per_call": len(gnabar), "simulate_s": simulate,
            "total_s": total, "spikes": spikes, "digest": digest.hexdigest()[:16]}  # fmt: skip


def engine_run(hnn: Path, case: str, engine: str, fit_runs: int) -> dict:
    stdout, rss = measured([sys.executable, __file__, "--worker", str(hnn), case, engine,
                            str(fit_runs)])  # fmt: skip
    return {**json.loads(stdout.strip().splitlines()[-1]), "peak_rss_mib": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fit-runs", type=int, default=100)
    parser.add_argument("--backend", default="llvm")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        hnn, case, engine, runs = args.worker
        print(json.dumps(worker(Path(hnn), case, engine, int(runs))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        hnn = hnn_network.prepare(Path(tmp))
        if isinstance(hnn, str):
            sys.exit(f"perf/cells.py: {hnn}")
        for case in args.cases:  # the kernels and each model's driver into the cache
            engine_run(hnn, case, args.backend, 1)
        rounds: dict[tuple[str, str], list[dict]] = {}
        for k in range(args.rounds):  # interleaved: every engine once per round
            for case in args.cases:
                for engine in ("neuron", args.backend):
                    got = engine_run(hnn, case, engine, args.fit_runs)
                    rounds.setdefault((case, engine), []).append(got)
                    print(f"round {k + 1}: {case} {engine} done", file=sys.stderr)
    results = []
    for case in args.cases:
        neuron = median_of(rounds[case, "neuron"])
        for engine in ("neuron", args.backend):
            runs = rounds[case, engine]
            r = median_of(runs)
            r["total_s"] = statistics.median(x["total_s"] for x in runs)
            r["same_bits"] = all(x["digest"] == runs[0]["digest"] for x in runs) and (
                runs[0]["digest"] == rounds[case, "neuron"][0]["digest"]
            )
            steps = round(r["tstop"] / 0.025) * r["runs_per_call"]
            r["ns_per_compartment_step"] = round(
                r["simulate_s"] * 1e9 / (r["compartments"] * steps), 2
            )
            r["vs_neuron_total"] = round(r["total_s"] / neuron["simulate_s"], 3)
            r["vs_neuron_simulate"] = round(r["simulate_s"] / neuron["simulate_s"], 3)
            r["engine"] = engine if engine == "neuron" else f"portneuron {engine}"
            results.append({"kind": "cells", **r})
    append_results(results)


if __name__ == "__main__":
    main()
