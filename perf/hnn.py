"""hnn-core's default network, NEURON against portneuron, in one run.

hnn-core (PyPI, tests/pypi.py) builds its default network (tests/hnn_network.py: 270 cells,
its drives' VecStims, its dipole summed by POINTERs) in NEURON; NEURON runs it with its own
fixed step (`pc.psolve`, hnn-core's way) and portneuron runs it through direct mode, each
engine in its own process (so peak RSS is its own), in interleaved rounds. Times are
simulate-only medians (portneuron: its run, without NEURON's hand-over; both: without
hnn-core's build); ns per compartment-step divides by NEURON's segment count. CoreNEURON
and Arbor have no row: NEURON's writer cannot hand CoreNEURON a POINTER into a Vector, and
Arbor has no such model. Results go to perf/results.jsonl (kind "hnn") and RESULTS.md.

    python perf/hnn.py                 # 170 ms, 3 rounds, llvm
    python perf/hnn.py --tstop 50 --repeat 1 --backends llvm numpy
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ringtest import ROOT, append_results, measured, median_of

sys.path.insert(0, str(ROOT / "tests"))
import hnn_network  # noqa: E402


def engine_run(hnn: Path, tstop: float, engine: str) -> dict:
    stdout, rss = measured(
        [sys.executable, str(ROOT / "tests" / "hnn_network.py"), str(hnn), str(tstop), engine]
    )
    out = json.loads(stdout.strip().splitlines()[-1])
    return {
        "engine": engine if engine == "neuron" else f"portneuron {engine}",
        "simulate_s": out[f"{engine}_simulate_s"],
        "spikes": out[f"{engine}_spikes"],
        "compartments": out["compartments"],
        "cells": out["cells"],
        "peak_rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tstop", type=float, default=170.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["llvm"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hnn = hnn_network.prepare(Path(tmp))
        if isinstance(hnn, str):
            sys.exit(f"perf/hnn.py: {hnn}")
        for engine in args.backends:  # the kernels and the drivers into the cache
            engine_run(hnn, 1.0, engine)
        rounds: dict[str, list[dict]] = {}
        for k in range(args.repeat):  # interleaved: every engine once per round
            for engine in ["neuron", *args.backends]:
                rounds.setdefault(engine, []).append(engine_run(hnn, args.tstop, engine))
                print(f"round {k + 1}: {engine} done", file=sys.stderr)
    steps = round(args.tstop / 0.025)
    results = [median_of(runs) for runs in rounds.values()]
    neuron = results[0]
    for r in results:
        r["threads"] = 1
        r["ns_per_compartment_step"] = round(r["simulate_s"] * 1e9 / (r["compartments"] * steps), 2)
        r["vs_neuron"] = round(r["simulate_s"] / neuron["simulate_s"], 3)
    append_results([{"kind": "hnn", "tstop": args.tstop, **r} for r in results])


if __name__ == "__main__":
    main()
