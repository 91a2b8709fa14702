"""The spike exchange's cost, measured on a few ranks and extrapolated to 10 - 10,000.

Every min-delay epoch each rank calls `Ranks.allgather_spikes`: an allgather of the spike
counts, then an allgatherv of the (t, gid) pairs (16 bytes a spike), as CoreNEURON does.
This script times that call under mpiexec (the mpich wheel) on 2 and 4 ranks of this
machine for 0 to 10,000 spikes a rank, and fits the textbook model of the two collectives
(recursive doubling: each costs a latency per round, ceil(log2 p) rounds, and a time per
byte for the (p - 1)/p of the data each rank receives):

    T(p, S) = 2 a ceil(log2 p) + b (8 p + 16 S) (p - 1) / p       S: spikes, all ranks

a and b are fitted on the rank counts this machine has cores for. It then predicts the
exchange per epoch for p = 10 to 10,000 ranks under weak scaling (128 cells a rank, of the
ringtest perf/mpi.py ran last, firing at its measured rate; epochs of 1 ms), with this
machine's a and b (shared memory) and with a cluster's (a = 1.5 us a round, b = 1 / 12.5
GB/s: an HDR InfiniBand link, stated, not measured), next to one rank's compute for an
epoch of those cells (perf/mpi.py's 1-rank row). Results go to perf/results.jsonl (kind "exchange") and
perf/RESULTS.md.

    python perf/exchange.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from ringtest import HERE, append_results, measured

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))

#: Timed under mpiexec: `Ranks.allgather_spikes` with S spikes a rank, the median of
#: `repeat` calls after 10 unmeasured ones, every rank entering together (a barrier).
TIMER = """
import json, sys, time
import numpy as np
from portneuron.parallel import world
ranks = world()
repeat = int(sys.argv[1])
out = {}
for per_rank in (0, 10, 100, 1000, 10000):
    t = np.arange(per_rank, dtype=np.float64) * 0.025
    gid = np.arange(per_rank, dtype=np.int64) + ranks.rank * per_rank
    times = []
    for k in range(repeat + 10):
        ranks.comm.Barrier()
        start = time.perf_counter()
        ranks.allgather_spikes(t, gid)
        if k >= 10:
            times.append(time.perf_counter() - start)
    out[per_rank] = float(np.median(times))
if ranks.rank == 0:
    print(json.dumps(out))
"""

CELLS_PER_RANK = 128
EPOCH_MS = 1.0
CLUSTER = (1.5e-6, 1 / 12.5e9)  # latency a round [s], time a byte [s]


def model(a: float, b: float, p: int, spikes: float) -> float:
    rounds = math.ceil(math.log2(p)) if p > 1 else 0
    return 2 * a * rounds + b * (8 * p + 16 * spikes) * (p - 1) / p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    if MPIEXEC is None:
        sys.exit("perf/exchange.py: no mpiexec beside this Python; pip install -e '.[mpi]'")
    measured_rows = []
    for p in (2, 4):
        stdout, _ = measured([MPIEXEC, "-n", str(p), sys.executable, "-c", TIMER, str(args.repeat)])
        for per_rank, seconds in json.loads(stdout.strip().splitlines()[-1]).items():
            measured_rows.append((p, int(per_rank) * p, seconds))
    # least squares for a and b over the ranks this machine has cores for (more ranks
    # than cores time the operating system's scheduler, not the exchange)
    fitted = [row for row in measured_rows if row[0] <= (os.cpu_count() or 1)]
    design = np.array([[2 * math.ceil(math.log2(p)), (8 * p + 16 * s) * (p - 1) / p]
                       for p, s, _ in fitted])  # fmt: skip
    observed = np.array([t for *_, t in fitted])
    (a, b), *_ = np.linalg.lstsq(design, observed, rcond=None)
    fit_error = max(abs(model(a, b, p, s) - t) / t for p, s, t in fitted)
    compute, ringtest = epoch_compute()
    rows = []
    for p in (10, 100, 1000, 10000):
        spikes = ringtest["firing"] * CELLS_PER_RANK * p * EPOCH_MS
        here, cluster = model(a, b, p, spikes), model(*CLUSTER, p, spikes)
        rows.append({
            "ranks": p, "spikes_per_epoch": round(spikes), "exchange_s_fitted": here,
            "exchange_s_cluster": cluster, "compute_s_per_epoch": compute,
            "exchange_share_cluster": round(cluster / (cluster + compute), 4) if compute else None,
        })  # fmt: skip
    append_results([{
        "kind": "exchange", "latency_s": a, "seconds_per_byte": b, "fit_max_rel_error": fit_error,
        "measured": [{"ranks": p, "spikes": s, "seconds": t} for p, s, t in measured_rows],
        "fitted_ranks": sorted({p for p, _, _ in fitted}), "ringtest": ringtest,
        "cells_per_rank": CELLS_PER_RANK, "firing_per_cell_ms": ringtest["firing"],
        "epoch_ms": EPOCH_MS,
        "cluster": {"latency_s": CLUSTER[0], "seconds_per_byte": CLUSTER[1]},
        "predicted": rows, "repeat": args.repeat,
    }])  # fmt: skip


def epoch_compute() -> tuple[float, dict]:
    """One rank's compute for an epoch (1 ms, 40 steps) of CELLS_PER_RANK cells of the
    ringtest perf/mpi.py ran last (its 1-rank, 1-thread portneuron row), and that ringtest's
    shape and firing (spikes a cell a ms)."""
    latest = None
    for line in (HERE / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "mpi" and r.get("engine") == "portneuron llvm 1r" and r["threads"] == 1:
            latest = r
    if latest is None:
        sys.exit("perf/exchange.py: run perf/mpi.py first (its 1-rank row is the compute)")
    cells = latest["nring"] * latest["ncell"]
    per_cell_step = latest["ns_per_compartment_step"] * latest["compartments"] / cells
    ringtest = {"nring": latest["nring"], "ncell": latest["ncell"], "branch": latest["branch"],
                "compart": latest["compart"], "commit": latest["commit"],
                "firing": latest["spikes"] / cells / latest["tstop"]}  # fmt: skip
    return per_cell_step * 1e-9 * CELLS_PER_RANK * EPOCH_MS / 0.025, ringtest


if __name__ == "__main__":
    main()
