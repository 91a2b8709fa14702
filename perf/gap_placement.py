"""Gap-junction components on ranks: each kept on one rank, or placed as if uncoupled.

A network built natively (portneuron.build) of `--cells` cells, each an hh soma and a passive
dendrite of 3 segments (tests/gap_native.py's network_cell), coupled in components of
`--sizes` cells, a network each size (random members: a random permutation cut in pieces,
each a chain of tests/mods/halfgap.mod's junctions; cells left over stay uncoupled), each
cell exciting 3 random others, NetStims driving 5. portneuron (llvm, one thread a rank,
compiled epochs) under mpiexec on 2 ranks: each component kept on one rank
(`placement(together=net.joined())`), against the same cells placed as if uncoupled
(`together=[]`), whose junctions then cross between ranks every step; and on 1 rank. The
spikes must be the same. What this chooses: how much more uneven the ranks' loads may be
before the components are split (network.JOINED_IMBALANCE); the results say whether
`Network.placement`'s default keeps them. Each run its own processes, rounds interleaved,
simulate-only medians (the slower rank's). Results: perf/results.jsonl (kind
"gap-placement"), RESULTS.md.

    python perf/gap_placement.py          # 1000 cells in components of 2, 300, 800; 2 rounds
    python perf/gap_placement.py --sizes 4 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from ringtest import ROOT, append_results, measured

CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
from portneuron.backends import load_backend
import gap_native
from portneuron.build import Network, Place
from portneuron.library import MechanismLibrary
from portneuron.parallel import world
from portneuron.sim.simulation import Simulation

mods, cells, size, tstop, how = sys.argv[1:6]
cells, size, tstop = int(cells), int(size), float(tstop)
ranks = world()
rng = np.random.default_rng(7)
net = Network(MechanismLibrary([Path(mods)]))
cell, soma, dend = gap_native.network_cell()
for k in range(cells):
    net.add_cell(cell, k)
order = rng.permutation(cells)
for k in range(0, cells - size + 1, size):
    members = [int(g) for g in order[k : k + size]]
    for a, b in zip(members, members[1:]):
        net.gap_junction(Place(a, soma), Place(b, dend), "HalfGap", g=0.02)
for k in range(cells):
    for target in rng.choice(cells, 3, replace=False):
        if target != k:
            point = net.point_process(int(target), dend, 0.5, "ExpSyn", tau=2)
            net.connect(int(target), point, 0.004, float(rng.uniform(1, 4)), source_gid=k)
for k in range(5):
    net.artificial_cell("NetStim", gid=cells + k, start=2 + k, interval=10 + k, number=5)
    point = net.point_process(k * 17, soma, 0.5, "ExpSyn")
    net.connect(k * 17, point, 0.05, 1.0, source_gid=cells + k)
where = net.placement(ranks.size, together=[] if how == "split" else net.joined(),
                      speeds=ranks.speeds)
default_keeps = net.placement(ranks.size, speeds=ranks.speeds) == net.placement(
    ranks.size, together=net.joined(), speeds=ranks.speeds)
model = net.build(local={g for g, r in where.items() if r == ranks.rank})
crossing = sum(where[a.gid] != where[b.gid] for a, b in net.transfers)
sim = Simulation(model, load_backend("llvm"), ranks=ranks, threads=1)
sim.finitialize()
sim.epoch_program()  # compiled now, not in the simulate time
t0 = time.perf_counter()
result = sim.run(tstop, initialize=False)
simulate = time.perf_counter() - t0
spikes, times = ranks.gather(result.spikes), ranks.gather(simulate)
counts, compartments = ranks.gather(model.ncell), ranks.gather(model.compartments)
if ranks.rank == 0:
    print(json.dumps({"spikes": sorted(s for p in spikes for s in p), "simulate_s": max(times),
                      "rank_s": times, "cells_per_rank": counts, "crossing": int(crossing),
                      "transfers": len(net.transfers), "compartments": sum(compartments),
                      "default_keeps": default_keeps}))
"""


def run(args, size: int, ranks: int, how: str) -> dict:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    command = [sys.executable, "-c", CHILD, str(ROOT / "tests" / "mods"), str(args.cells),
               str(size), str(args.tstop), how]  # fmt: skip
    if ranks > 1:
        command = [mpiexec, "-n", str(ranks), *command]
    stdout, rss = measured(command)
    out = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    return {"size": size, "ranks": ranks, "placement": how, "peak_rss_mib": rss, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 300, 800],
                        help="cells a component, one network each")  # fmt: skip
    parser.add_argument("--tstop", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rounds: dict[tuple, list[dict]] = {}
    for k in range(args.repeat):
        for size in args.sizes:
            for ranks, how in ((1, "kept"), (2, "kept"), (2, "split")):
                rounds.setdefault((size, ranks, how), []).append(run(args, size, ranks, how))
        print(f"round {k + 1} done", file=sys.stderr)
    results = []
    for runs in rounds.values():
        r = dict(runs[0])
        r["simulate_s_all"] = [round(x["simulate_s"], 4) for x in runs]
        r["simulate_s"] = statistics.median(x["simulate_s"] for x in runs)
        r["peak_rss_mib"] = round(statistics.median(x["peak_rss_mib"] for x in runs), 1)
        r["rank_s"] = [statistics.median(x["rank_s"][i] for x in runs) for i in range(r["ranks"])]
        same = {json.dumps(x["spikes"]) for key, xs in rounds.items() if key[0] == r["size"]
                for x in xs}  # fmt: skip
        r["same_spikes"] = len(same) == 1
        r["spikes"] = len(r["spikes"])
        r["runs"] = len(runs)
        results.append(r)
    for r in results:
        alone = next(a for a in results if a["size"] == r["size"] and a["ranks"] == 1)
        r["vs_1_rank"] = round(r["simulate_s"] / alone["simulate_s"], 3)
    extra = {"kind": "gap-placement", "cells": args.cells, "tstop": args.tstop}
    append_results([{**extra, **r} for r in results])


if __name__ == "__main__":
    main()
