"""Measured load balance on a network of very different cells: the scheduler against a split
by cell count.

tests/mixed_network.py (16 large active cells, then 112 small ones, in gid order as
population-ordered models number them; portneuron's native builder) runs on 1 process and
under mpiexec on 2 ranks (1 thread each, llvm), placed by the scheduler (cost from the IR)
and by count (the first half of the gids on rank 0, as Arbor splits). Each rank's measured
work is its simulate time less its time in the spike exchange; the imbalance is the largest
over the mean, less 1. Repetitions are interleaved; the figures are medians. Every run's
spikes must be the one-process run's. Results go to perf/results.jsonl (kind "imbalance")
and perf/RESULTS.md.

    python perf/imbalance.py [--tstop 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from ringtest import ROOT, append_results, measured

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def run(ranks: int, policy: str, tstop: float) -> dict:
    command = [sys.executable, str(ROOT / "tests" / "mixed_network.py"), policy, str(tstop), "llvm"]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command]
    stdout, rss = measured(command)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = rss
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tstop", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if MPIEXEC is None:
        sys.exit("perf/imbalance.py: no mpiexec beside this Python; pip install -e '.[mpi]'")
    configs = [(1, "cost"), (2, "cost"), (2, "count")]
    rounds: dict[tuple[int, str], list[dict]] = {c: [] for c in configs}
    for k in range(args.repeat):
        for ranks, policy in configs:
            rounds[(ranks, policy)].append(run(ranks, policy, args.tstop))
            print(f"round {k + 1}: {ranks} ranks by {policy} done", file=sys.stderr)
    spikes = {json.dumps(r.pop("spikes")) for runs in rounds.values() for r in runs}
    assert len(spikes) == 1, "the spikes differ between placements or rank counts"
    nspikes = len(json.loads(spikes.pop()))
    one = statistics.median(r["simulate_s"] for r in rounds[(1, "cost")])
    results = []
    for (ranks, policy), runs in rounds.items():
        simulate = statistics.median(r["simulate_s"] for r in runs)
        r0 = runs[0]
        results.append({
            "kind": "imbalance", "tstop": args.tstop, "ranks": ranks, "placement": policy,
            "cells": r0["cells"], "compartments": r0["compartments"], "spikes": nspikes,
            "predicted_imbalance": round(r0["predicted_imbalance"], 4),
            "imbalance": round(statistics.median(r["imbalance"] for r in runs), 4),
            "imbalance_all": [round(r["imbalance"], 4) for r in runs],
            "rank_busy_s": [round(statistics.median(r["rank_busy_s"][i] for r in runs), 4)
                            for i in range(ranks)],
            "simulate_s": round(simulate, 4), "speedup_vs_1r": round(one / simulate, 3),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": len(runs),
        })  # fmt: skip
    append_results(results)


if __name__ == "__main__":
    main()
