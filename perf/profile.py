"""Where a real cell's time goes: one of perf/cells.py's cases (`cell`, hnn-core's layer 5
pyramidal cell, 55 compartments, IClamp 0.5 nA, 1 s; `large`, the same with 21 times the
segments; `network`, 100 of them) through direct mode on llvm, sampled by Linux `perf`
over the whole call (the hand-over from NEURON and loading the compiled kernels, then the
run).

The kernels are compiled with PORTNEURON_PROFILE=1: each phase of the epoch driver stays
a function of its own, named by its mechanism and kernel (cached apart from the kernels
runs use; their code is the same but not inlined into the driver, so the total is a
little slower than perf/cells.py's). Each sample is put in one share: a phase (a
mechanism's current, state or NET_RECEIVE kernel, the matrix solve, the voltage update,
the spike threshold), the driver's own code (event delivery, loops over the steps and
blocks), the C library's math (pow, log, exp called per lane), Python (with NumPy: the
hand-over, the per-epoch work), the kernel (system calls, page faults), other.

    python perf/profile.py [--case cell] [--tstop MS] [--frequency 4999]

Prints a table and appends it to perf/results.jsonl (kind "profile"), which RESULTS.md
shows. Needs `perf` (linux-tools) allowed to sample this process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cells import CASES, build
from ringtest import ROOT, append_results

sys.path.insert(0, str(ROOT / "tests"))
import hnn_network  # noqa: E402

#: A compiled phase's symbol: the kernel's module (pn_<hash>), then the launched kernel's
#: name and its number in the module.
PHASE = re.compile(r"^pn_[0-9a-f]+\.(.+)\.\d+$")
DRIVER = re.compile(r"^pn_[0-9a-f]+$")
MATH = {"pow", "log", "exp", "log10", "expm1", "sin", "cos", "tanh", "atan", "fmod"}


def worker(hnn: Path, case: str, tstop: float) -> None:
    """Build the case in NEURON, then the timed call; prints the call's clock marks."""
    _, soma, mods, _keep = build(hnn, case)
    marks = [time.clock_gettime(time.CLOCK_MONOTONIC)]
    import portneuron.direct

    loaded = portneuron.direct.load(backend="llvm", mechanisms=[mods], v_init=-65.0, threads=1)
    marks.append(time.clock_gettime(time.CLOCK_MONOTONIC))
    result = loaded.run(tstop, record=[soma], v_init=-65.0)
    marks.append(time.clock_gettime(time.CLOCK_MONOTONIC))
    print(json.dumps({"marks": marks, "simulate_s": result.simulate_s}))


def share(symbol: str, dso: str) -> str:
    """The share a sample of `symbol` in `dso` goes to."""
    if match := PHASE.match(symbol):
        return match.group(1)
    if DRIVER.match(symbol):
        return "driver (events, step and block loops)"
    name = symbol.split("@")[0].lstrip("_").removeprefix("ieee754_").split("_")[0]
    if "libm" in dso and name in MATH:
        return f"C library {name}"
    if "python" in dso or "numpy" in dso or "openblas" in dso or dso.endswith(".py"):
        return "Python and NumPy"
    if dso.startswith("[kernel"):
        return "kernel (system calls, page faults)"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="cell", choices=[c for c in CASES if c != "fit"])
    parser.add_argument("--tstop", type=float, default=None, help="default: the case's")
    parser.add_argument("--frequency", type=int, default=4999)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1], float(args.worker[2]))
        return
    tstop = args.tstop if args.tstop is not None else CASES[args.case][0]
    perf = shutil.which("perf")
    if perf is None:
        sys.exit("perf/profile.py: needs Linux perf (linux-tools) on PATH")
    env = {**os.environ, "PORTNEURON_PROFILE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's Python runs (ringtest.measured)
    with tempfile.TemporaryDirectory() as tmp:
        hnn = hnn_network.prepare(Path(tmp))
        if isinstance(hnn, str):
            sys.exit(f"perf/profile.py: {hnn}")
        command = [sys.executable, __file__, "--worker", str(hnn), args.case, str(tstop)]
        subprocess.run(command, env=env, check=True, capture_output=True)  # fills the cache
        data = Path(tmp) / "perf.data"
        done = subprocess.run(
            [perf, "record", "-k", "CLOCK_MONOTONIC", "-F", str(args.frequency), "-o", str(data),
             "--", *command], env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        out = json.loads(done.stdout.strip().splitlines()[-1])
        script = subprocess.run(
            [perf, "script", "-i", str(data), "-F", "time,ip,sym,dso"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    start, loaded, end = out["marks"]
    counts = {"load": collections.Counter(), "run": collections.Counter()}
    for line in script.splitlines():
        found = re.match(r"\s*(\d+\.\d+):\s+\S+\s+(.*?)\s+\((.*)\)\s*$", line)
        if not found:
            continue
        at, symbol, dso = float(found.group(1)), found.group(2), found.group(3)
        if start <= at < end:
            symbol = symbol.split("+")[0]
            counts["load" if at < loaded else "run"][share(symbol, dso)] += 1
    total = sum(sum(c.values()) for c in counts.values())
    whole = end - start
    rows = []
    for part, counter in counts.items():
        for name, n in counter.most_common():
            rows.append({"part": part, "share": name, "samples": n,
                         "fraction": round(n / total, 4), "ms": round(1e3 * whole * n / total, 1)})  # fmt: skip
    result = {
        "kind": "profile", "case": args.case, "tstop": tstop,
        "whole_s": round(whole, 4), "load_s": round(loaded - start, 4),
        "simulate_s": round(out["simulate_s"], 4), "samples": total, "rows": rows,
    }  # fmt: skip
    append_results([result])
    print(f"whole call {whole:.3f} s (load {loaded - start:.3f} s, simulate "
          f"{out['simulate_s']:.3f} s), {total} samples")  # fmt: skip
    for r in rows:
        print(f"{r['part']:5} {r['share']:45} {r['fraction']:7.2%} {r['ms']:8.1f} ms")


if __name__ == "__main__":
    main()
