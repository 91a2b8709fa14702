"""Start-up: how soon `portneuron run` (the default model: the native ringtest, no input
files) starts simulating, cold (nothing compiled: the front end parses every .mod file
with NEURON's parser and sympy, the llvm backend lowers and optimises every kernel) and
warm (both from their stores on disk, PORTNEURON_CACHE), each in a fresh process, as a
user's machine runs it (Python's bytecode written on the first run and read after).
Measured: from the interpreter's first line to the first Simulation.run (`to first step`),
and the whole command, 1 ms simulated and its outputs written, from outside (`process`);
what the process imported of the front end. Results go to perf/results.jsonl (kind
"startup") and RESULTS.md.

    python perf/startup.py             # 5 warm rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ringtest import ROOT, append_results

CHILD = """
import time
start = time.perf_counter()
import json, sys
import portneuron.sim.simulation as simulation
first = []
run = simulation.Simulation.run
def timed(self, *args, **kwargs):
    if not first:
        first.append(time.perf_counter() - start)
    return run(self, *args, **kwargs)
simulation.Simulation.run = timed
from portneuron.cli import main
assert main(["run", "-e", "1", "-o", sys.argv[1]]) == 0
front = sorted({m.split(".")[0] for m in sys.modules} & {"sympy", "_nmodl"})
print(json.dumps({"to_first_step_s": first[0], "front_end": front}))
"""


def once(folder: Path, env: dict) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder / "out")], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    result = json.loads(next(x for x in reversed(out.stdout.splitlines()) if x.startswith("{")))
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PORTNEURON_CACHE=str(folder / "cache"), PYTHONPYCACHEPREFIX=str(folder / "pyc"))
        cold = once(folder, env)
        warm = [once(folder, env) for _ in range(args.repeat)]
    lines = [{"kind": "startup", "run": "cold", "runs": 1, **cold}]
    lines.append({
        "kind": "startup", "run": "warm", "runs": len(warm), "front_end": warm[-1]["front_end"],
        **{k: statistics.median(r[k] for r in warm) for k in ("to_first_step_s", "process_s")},
        "to_first_step_max_s": max(r["to_first_step_s"] for r in warm),
    })  # fmt: skip
    append_results(lines)


if __name__ == "__main__":
    main()
