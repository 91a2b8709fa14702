"""Scale: a ringtest of millions of compartments, built natively and advanced 10 ms.

Reports build time per compartment, the model's own memory per compartment (its arrays),
the process's peak RSS, how far it is above the baseline (Python with portneuron and the
backend's libraries loaded, before the model) in units of the model's arrays, and the
simulate time; appends to perf/results.md and .jsonl.

    python perf/scale.py [--nring 1250] [--ncell 8] [--branch 64 64] [--compart 8 8] [--tstop 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def model_bytes(model) -> int:
    """Bytes held by the Model's arrays (nodes, mechanism data, ions, presyns, netcons)."""
    return sum(model.memory().values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nring", type=int, default=1250)
    parser.add_argument("--ncell", type=int, default=8)
    parser.add_argument("--branch", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--compart", type=int, nargs=2, default=[8, 8])
    parser.add_argument("--tstop", type=float, default=10.0)
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args()

    from portneuron.backends import load_backend

    from portneuron.build.ringtest import build_ringtest
    from portneuron.sim.simulation import Simulation

    backend = load_backend(args.backend)  # its libraries are part of the baseline
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    model = build_ringtest(args.nring, args.ncell, tuple(args.branch), tuple(args.compart))
    build_s = time.perf_counter() - start
    n = model.compartments
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sim = Simulation(model, backend)
    start = time.perf_counter()
    result = sim.run(args.tstop)
    simulate_s = time.perf_counter() - start
    steps = result.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model_mib = model_bytes(model) / 2**20
    out = {
        "engine": f"portneuron-{args.backend}", "nring": args.nring, "ncell": args.ncell,
        "branch": args.branch, "compart": args.compart, "cells": model.ncell,
        "compartments": n, "nodes": model.nodes.count, "build_s": round(build_s, 3),
        "build_us_per_compartment": round(build_s * 1e6 / n, 3),
        "model_bytes_per_compartment": round(model_bytes(model) / n, 1),
        "peak_rss_mib_after_build": round(rss_build, 1), "python_baseline_rss_mib": round(rss0, 1),
        "peak_rss_mib": round(peak, 1), "model_arrays_mib": round(model_mib, 1),
        "peak_above_baseline_per_model_arrays": round((peak - rss0) / model_mib, 3),
        "tstop": args.tstop, "simulate_s": round(simulate_s, 2),
        "ns_per_compartment_step": round(simulate_s * 1e9 / (n * steps), 2),
        "spikes": len(result.spikes),
    }  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"\n## scale: native ringtest {args.nring}x{args.ncell}, branches {args.branch}, "
        f"compartments {args.compart}, {args.tstop:g} ms ({when}, commit {commit})\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in out.items())
    )
    with open(HERE / "results.md", "a") as f:
        f.write(text)
    with open(HERE / "results.jsonl", "a") as f:
        f.write(json.dumps({"when": when, "commit": commit, "kind": "scale", **out}) + "\n")
    print(text)


if __name__ == "__main__":
    main()
