"""Gap junctions side by side: NEURON, CoreNEURON and portneuron on one network, in one run.

NEURON builds tests/gap_models.py's network (`--cells` cells of an hh soma and a passive
dendrite, `--junctions` random junctions of tests/mods/halfgap.mod, 3 NetCons from each cell,
5 NetStims), runs it (pc.psolve, on 1 and 2 threads) and writes its dataset in 1 and in 2 cell
groups; CoreNEURON (nrniv-core built with the junction by `nrnivmodl -coreneuron`) runs them on
1 and 2 ranks, and portneuron (llvm) on 1 and 2 ranks in compiled epochs: on 1 rank step-major,
the driver copying the junctions after every step, an epoch a call; on 2, whose junctions cross
ranks, a step a call, the values copied and exchanged between the calls (and on 1 rank step by
step). What the coupling costs portneuron: the host's copies each step, timed in the 1-rank run
(none since the driver copies: its own copies are not timed apart); and the same network
without junctions (another model: its cells fire more), step by step and in compiled epochs of
the min-delay. Each engine in its own process, rounds
interleaved, simulate-only medians; ns per compartment-step over NEURON's segments. Results:
perf/results.jsonl (kind "gap"), RESULTS.md.

    python perf/gap.py                        # 1000 cells, 1500 junctions, 100 ms, 2 rounds
    python perf/gap.py --cells 200 --junctions 300 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ringtest import ROOT, append_results, measured, median_of

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
MOD = ROOT / "tests" / "mods" / "halfgap.mod"

NEURON = """
import json, sys, time
import neuron
neuron.load_mechanisms(sys.argv[1])
from neuron import h
import gap_models as gm
cells, junctions, tstop = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
threads, dataset = int(sys.argv[5]), sys.argv[6]
segments, keep = gm.network(cells, junctions)
gm.pc.nthread(threads)
gm.pc.setup_transfer()
tvec, idvec = h.Vector(), h.Vector()
gm.pc.spike_record(-1, tvec, idvec)
h.dt = 0.025
h.finitialize(gm.V_INIT)
t0 = time.perf_counter()
gm.pc.psolve(tstop)
simulate = time.perf_counter() - t0
spikes = int(tvec.size())
h.finitialize(gm.V_INIT)
gm.pc.nrncore_write(dataset)
print(json.dumps({"engine": "neuron", "threads": threads, "spikes": spikes,
                  "simulate_s": simulate}))
"""

PORTNEURON = """
import json, sys, time
from portneuron.backends import load_backend
from portneuron.io.dataset import load_dataset
from portneuron.library import MechanismLibrary
from portneuron.sim.simulation import Simulation
model = load_dataset(sys.argv[1], MechanismLibrary([sys.argv[2]]))
epochs = sys.argv[4] == "epochs"
sim = Simulation(model, load_backend("llvm"), threads=1, compiled_epochs=epochs)
sim.finitialize()
sim.epoch_program()  # compiled now, not in the simulate time
transfer, spent = sim._transfer, [0.0]

def timed(**how):  # the coupling's own cost: the copies, each step
    t0 = time.perf_counter()
    transfer(**how)
    spent[0] += time.perf_counter() - t0

sim._transfer = timed
t0 = time.perf_counter()
result = sim.run(float(sys.argv[3]), initialize=False)
simulate = time.perf_counter() - t0
print(json.dumps({"spikes": len(result.spikes), "simulate_s": simulate, "transfer_s": spent[0],
                  "compartments": model.compartments,
                  "loop": "stepwise: " + sim.stepwise_reason if sim.stepwise_reason
                  else "compiled epochs"}))
"""


def last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def neuron(args, mods: Path, junctions: int, threads: int, dataset: Path) -> dict:
    stdout, rss = measured(
        [sys.executable, "-c", NEURON, str(mods), str(args.cells), str(junctions),
         str(args.tstop), str(threads), str(dataset)]
    )  # fmt: skip
    return {**last_json(stdout), "ranks": 1, "peak_rss_mib": rss}


def coreneuron(args, core: Path, ranks: int, dataset: Path, out: Path) -> dict:
    """The special-core built with the junction; on 2 ranks --mpi with the neuron wheel's
    mpich library (the mpich wheel's libmpi)."""
    import neuron

    command = [str(core), "-d", str(dataset), "-e", str(args.tstop), "-o", str(out)]
    if ranks > 1:
        lib = Path(neuron.__file__).parent / ".data" / "lib" / "libcorenrnmpi_mpich.so"
        libmpi = Path(sys.executable).parent.parent / "lib" / "libmpi.so.12"
        command = [MPIEXEC, "-n", str(ranks), "env", f"LD_PRELOAD={libmpi}",
                   "OMP_NUM_THREADS=1", *command[:1], "--mpi", "--mpi-lib", str(lib),
                   *command[1:]]  # fmt: skip
    stdout, rss = measured(command, {"OMP_NUM_THREADS": "1"})
    solver = float(re.search(r"Solver Time\s*:\s*([0-9.eE+-]+)", stdout).group(1))
    spikes = len((out / "out.dat").read_text().splitlines())
    return {"engine": "coreneuron", "ranks": ranks, "threads": 1, "spikes": spikes,
            "simulate_s": solver, "peak_rss_mib": rss}  # fmt: skip


def portneuron(args, ranks: int, dataset: Path, out: Path, loop: str, plain: bool = False) -> dict:
    """One rank: the Simulation in a child (`loop`: "stepwise" or "epochs"); two: `portneuron
    run -d` under mpiexec (compiled epochs). `plain`: the model without junctions."""
    if ranks == 1:
        stdout, rss = measured(
            [sys.executable, "-c", PORTNEURON, str(dataset), str(MOD.parent), str(args.tstop),
             loop]
        )  # fmt: skip
        result = last_json(stdout)
    else:
        stdout, rss = measured(
            [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "portneuron", "run", "-d",
             str(dataset), "--mechanisms", str(MOD.parent), "-e", str(args.tstop), "-o",
             str(out), "--json", "--threads", "1"]
        )  # fmt: skip
        result = last_json(stdout)
    name = "portneuron llvm" + (f" ({loop}, no junctions)" if plain else
                                ", stepwise" if loop == "stepwise" else "")  # fmt: skip
    return {**result, "engine": name, "ranks": ranks, "threads": 1, "peak_rss_mib": rss}


def build(folder: Path) -> tuple[Path, Path]:
    """NEURON's mechanisms and CoreNEURON's special-core, built with the junction."""
    shutil.copy(MOD, folder / MOD.name)
    nrnivmodl = Path(sys.executable).parent / "nrnivmodl"
    made = subprocess.run(
        [str(nrnivmodl), "-coreneuron", "."], cwd=folder, capture_output=True, text=True
    )
    core = folder / "x86_64" / "special-core"
    if made.returncode != 0 or not core.exists():
        sys.exit(f"perf/gap.py: nrnivmodl -coreneuron failed: {made.stderr[-500:]}")
    return folder, core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--junctions", type=int, default=1500)
    parser.add_argument("--tstop", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "mods").mkdir()
        mods, core = build(tmp / "mods")
        rounds: dict[tuple, list[dict]] = {}
        for k in range(args.repeat):
            runs = []
            for threads in (1, 2):  # NEURON's runs write the datasets: 1 and 2 groups
                runs.append(neuron(args, mods, args.junctions, threads, tmp / f"gap{threads}"))
            runs.append(neuron(args, mods, 0, 1, tmp / "plain"))
            runs[-1]["engine"] = "neuron (no junctions)"
            for ranks in (1, 2):
                data = tmp / f"gap{ranks}"
                runs.append(coreneuron(args, core, ranks, data, tmp / f"core{ranks}"))
                runs.append(portneuron(args, ranks, data, tmp / f"pn{ranks}", "epochs"))
            runs.append(portneuron(args, 1, tmp / "gap1", tmp / "pn", "stepwise"))
            for loop in ("stepwise", "epochs"):
                runs.append(portneuron(args, 1, tmp / "plain", tmp / "pn", loop, plain=True))
            for r in runs:
                rounds.setdefault((r["engine"], r["ranks"], r["threads"]), []).append(r)
            print(f"round {k + 1} done", file=sys.stderr)
        same = (tmp / "core1" / "out.dat").read_text() == (tmp / "pn2" / "out.dat").read_text()
    compartments = rounds[("portneuron llvm", 1, 1)][0]["compartments"]
    steps = round(args.tstop / 0.025)
    results = [median_of(runs) for runs in rounds.values()]
    anchor = {r["ranks"] * r["threads"]: r for r in results if r["engine"] == "neuron"}
    for r in results:
        r["ns_per_compartment_step"] = round(r["simulate_s"] * 1e9 / (compartments * steps), 2)
        r["peak_rss_mib"] = round(r["peak_rss_mib"], 1)
        base = anchor.get(r["ranks"] * r["threads"])
        if base is not None:
            r["vs_neuron"] = round(r["simulate_s"] / base["simulate_s"], 3)
    coupled = rounds[("portneuron llvm", 1, 1)]
    per_step = statistics.median(r["transfer_s"] for r in coupled) / steps
    extra = {"kind": "gap", "cells": args.cells, "junctions": args.junctions,
             "tstop": args.tstop, "runs": args.repeat, "compartments": compartments,
             "coupling_us_per_step": round(per_step * 1e6, 2),
             "coupling_ns_per_junction_step": round(per_step * 1e9 / (2 * args.junctions), 2),
             "out_dat_same": same}  # fmt: skip
    append_results([{**extra, **r} for r in results])


if __name__ == "__main__":
    main()
