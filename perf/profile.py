"""Where a real cell's time goes: hnn-core's layer 5 pyramidal cell (perf/cells.py's `cell`
case: 55 compartments, IClamp 0.5 nA, 1 s) through direct mode on llvm, sampled by Linux
`perf` over the whole call (the hand-over from NEURON and loading the compiled kernels,
then the run).

The kernels are compiled with PORTNEURON_PROFILE=1: each phase of the epoch driver stays
a function of its own, named by its mechanism and kernel (cached apart from the kernels
runs use; their code is the same but not inlined into the driver, so the total is a
little slower than perf/cells.py's). Each sample is put in one share: a phase (a
mechanism's current, state or NET_RECEIVE kernel, the matrix solve, the voltage update,
the spike threshold), the driver's own code (event delivery, loops over the steps and
blocks), the C library's math (pow, log, exp called per lane), Python (with NumPy: the
hand-over, the per-epoch work), the kernel (system calls, page faults), other.

    python perf/profile.py [--tstop 1000] [--frequency 4999]

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

from ringtest import ROOT, append_results

sys.path.insert(0, str(ROOT / "tests"))
import hnn_network  # noqa: E402

#: A compiled phase's symbol: the kernel's module (pn_<hash>), then the launched kernel's
#: name and its number in the module.
PHASE = re.compile(r"^pn_[0-9a-f]+\.(.+)\.\d+$")
DRIVER = re.compile(r"^pn_[0-9a-f]+$")
MATH = {"pow", "log", "exp", "log10", "expm1", "sin", "cos", "tanh", "atan", "fmod"}


def worker(hnn: Path, tstop: float) -> None:
    """Build the cell in NEURON, then the timed call; prints the call's clock marks."""
    sys.path.insert(0, str(hnn))
    import neuron

    mods = hnn / "hnn_core" / "mod"
    neuron.load_mechanisms(str(mods))
    from hnn_core.cells_default import pyramidal
    from neuron import h

    h.load_file("stdrun.hoc")
    cell = pyramidal(cell_name="L5_pyramidal", gid=0)
    cell.build(sec_name_apical="apical_trunk")
    soma = cell._nrn_sections["soma"](0.5)
    stim = h.IClamp(soma)
    stim.delay, stim.dur, stim.amp = 10.0, 1e9, 0.5
    pc = h.ParallelContext()
    pc.set_gid2node(0, pc.id())
    pc.cell(0, h.NetCon(soma._ref_v, None, sec=soma.sec))
    h.dt, h.celsius = 0.025, 37.0
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
    parser.add_argument("--tstop", type=float, default=1000.0)
    parser.add_argument("--frequency", type=int, default=4999)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), float(args.worker[1]))
        return
    perf = shutil.which("perf")
    if perf is None:
        sys.exit("perf/profile.py: needs Linux perf (linux-tools) on PATH")
    env = {**os.environ, "PORTNEURON_PROFILE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's Python runs (ringtest.measured)
    with tempfile.TemporaryDirectory() as tmp:
        hnn = hnn_network.prepare(Path(tmp))
        if isinstance(hnn, str):
            sys.exit(f"perf/profile.py: {hnn}")
        command = [sys.executable, __file__, "--worker", str(hnn), str(args.tstop)]
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
        "kind": "profile", "case": "cell", "tstop": args.tstop,
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
