"""GPU rows: the natively built ringtest at about 1M, 4M and 16M compartments on the cuda
backend, against the llvm backend on every core of the same machine, in one run.

Each run is `portneuron run --json` in its own process (simulate time only: the model
built, the kernels compiled and the state initialised before the clock starts; for cuda
the time includes uploading the model and bringing it back). Rounds are interleaved, and
times are medians. The engines' spike files are compared: `spikes_identical` says whether
cuda's equal llvm's. Lines go to perf/results.jsonl (kind "gpu"), and perf/RESULTS.md is
rewritten with the latest GPU run as its own section.

    python perf/gpu.py                                   # nring 250 1000 4000, 50 ms
    python perf/gpu.py --nring 2 --tstop 5 --engines llvm numpy    # the script, on a CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ringtest import append_results, measured

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHAPE = {"ncell": 8, "branch": [64, 64], "compart": [8, 8]}  # 513 compartments a cell


def run(engine: str, nring: int, tstop: float, out: Path) -> dict:
    """One `portneuron run` of the native ringtest on `engine`, spikes to `out`."""
    command = [sys.executable, "-m", "portneuron", "run", "--nring", str(nring),
               "--ncell", str(SHAPE["ncell"]), "--branch", *map(str, SHAPE["branch"]),
               "--compart", *map(str, SHAPE["compart"]), "-e", str(tstop), "-o", str(out),
               "--json", "--backend", engine]  # fmt: skip
    stdout, rss = measured(command)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = rss
    return result


def device() -> str:
    """The GPU's name and driver, as nvidia-smi gives them (or why not)."""
    try:
        query = [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ]
        return subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"no nvidia-smi ({exc.__class__.__name__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nring", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--tstop", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--engines", nargs="+", default=["cuda", "llvm"])
    parser.add_argument("--commit", help="the commit measured (default: git's HEAD here)")
    args = parser.parse_args()
    rounds: dict[tuple[int, str], list[dict]] = {}
    identical: dict[int, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            for nring in args.nring:
                spikes = {}
                for engine in args.engines:
                    out = Path(tmp) / f"{nring}-{engine}"
                    try:
                        rounds.setdefault((nring, engine), []).append(
                            run(engine, nring, args.tstop, out)
                        )
                    except subprocess.CalledProcessError as exc:
                        print(f"{engine} {nring} rings failed: {exc.stderr}", file=sys.stderr)
                        continue
                    spikes[engine] = (out / "out.dat").read_text()
                    print(f"round {k + 1}: {engine}, {nring} rings done", file=sys.stderr)
                if len(spikes) == len(args.engines):
                    same = len(set(spikes.values())) == 1
                    identical[nring] = identical.get(nring, True) and same
    results = []
    for (nring, engine), runs in rounds.items():
        r = dict(runs[0])
        r["simulate_s"] = statistics.median(x["simulate_s"] for x in runs)
        r["simulate_s_all"] = [round(x["simulate_s"], 4) for x in runs]
        steps = round(args.tstop / 0.025)
        r["ns_per_compartment_step"] = round(r["simulate_s"] * 1e9 / (r["compartments"] * steps), 3)
        r.update(engine=f"portneuron {engine}", nring=nring, runs=len(runs))
        r["spikes_identical"] = identical.get(nring)
        results.append(r)
    for r in results:  # each engine over the last one given (llvm by default), same size
        anchor = [
            a
            for a in results
            if a["nring"] == r["nring"] and a["engine"].endswith(" " + args.engines[-1])
        ]
        if anchor:
            ratio = r["ns_per_compartment_step"] / anchor[0]["ns_per_compartment_step"]
            r[f"vs_{args.engines[-1]}"] = round(ratio, 3)
    lines = [
        {"kind": "gpu", "device": device(), "tstop": args.tstop, **SHAPE, **r} for r in results
    ]
    append_results(lines, args.commit)
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
