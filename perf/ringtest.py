"""The ringtest side by side: NEURON, CoreNEURON, Arbor and portneuron, in one run.

Each engine runs in its own process (so peak RSS is its own) on the same model: NEURON builds
the ringtest (tests/neuron_models.py) and writes its dataset, which CoreNEURON (`nrniv-core`
from the neuron wheel) and portneuron (`portneuron run`) read; Arbor builds the same cells
from the same random shapes (perf/arbor_ringtest.py). Times are simulate-only medians over
`--repeat` runs; ns per compartment-step divides by the number of compartments (NEURON's
segments: nodes with membrane, the same count for every engine). Results are appended to perf/results.md and perf/results.jsonl.

    python perf/ringtest.py [--nring 16] [--tstop 100] [--backends numpy] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measured(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd`; its stdout and its own peak RSS [MiB] (from wait4, not a running maximum)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{HERE}"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, out.read(), err.read())
        return out.read(), round(usage.ru_maxrss / 1024, 1)


def child(code: str, *args: str) -> dict:
    """Run `code` in a fresh Python; it prints one JSON object last."""
    stdout, rss = measured([sys.executable, "-c", code, *args])
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = rss
    return result


NEURON = """
import json, sys, time
import neuron_models as nm
nring, ncell, tstop, dataset = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
branch, compart = json.loads(sys.argv[5]), json.loads(sys.argv[6])
t0 = time.perf_counter()
ring = nm.build_ringtest(nring=nring, ncell=ncell, nbranch=tuple(branch), ncompart=tuple(compart))
tvec, idvec = nm.h.Vector(), nm.h.Vector()
nm.pc.spike_record(-1, tvec, idvec)
nm._initialize(0.025)
setup = time.perf_counter() - t0
t0 = time.perf_counter()
nm.pc.psolve(tstop)
simulate = time.perf_counter() - t0
spikes = int(tvec.size())
nm.write_dataset(ring, dataset)
print(json.dumps({"engine": "neuron", "version": nm.h.nrnversion(), "spikes": spikes,
                  "setup_s": setup, "simulate_s": simulate}))
"""

ARBOR = """
import json, sys
import arbor_ringtest
r = arbor_ringtest.run_arbor(nring=int(sys.argv[1]), ncell=int(sys.argv[2]), tstop=float(sys.argv[3]),
                             nbranch=tuple(json.loads(sys.argv[4])), ncompart=tuple(json.loads(sys.argv[5])))
print(json.dumps(r))
"""


def coreneuron(dataset: Path, tstop: float) -> dict:
    exe = Path(sys.executable).parent / "nrniv-core"
    with tempfile.TemporaryDirectory() as out:
        stdout, rss = measured([str(exe), "-d", str(dataset), "-e", str(tstop), "-o", out])
        spikes = len(Path(out, "out.dat").read_text().splitlines())
    solver = float(re.search(r"Solver Time\s*:\s*([0-9.eE+-]+)", stdout).group(1))
    return {"engine": "coreneuron", "spikes": spikes, "simulate_s": solver, "peak_rss_mib": rss}


def portneuron(dataset: Path, tstop: float, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        stdout, rss = measured(
            [sys.executable, "-m", "portneuron", "run", "-d", str(dataset), "-e", str(tstop),
             "-o", out, "--json", "--backend", backend]
        )  # fmt: skip
    result = json.loads(stdout)
    result["peak_rss_mib"] = rss
    result["engine"] = f"portneuron-{backend}"
    return result


def median_of(runs: list[dict]) -> dict:
    best = dict(runs[0])
    best["simulate_s"] = statistics.median(r["simulate_s"] for r in runs)
    best["runs"] = len(runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nring", type=int, default=16)
    parser.add_argument("--ncell", type=int, default=8)
    parser.add_argument("--tstop", type=float, default=100.0)
    parser.add_argument("--branch", type=int, nargs=2, default=[10, 20])
    parser.add_argument("--compart", type=int, nargs=2, default=[1, 1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["numpy"])
    parser.add_argument("--no-arbor", action="store_true")
    args = parser.parse_args()
    size = [str(args.nring), str(args.ncell), str(args.tstop)]
    shape = [json.dumps(args.branch), json.dumps(args.compart)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "ring"
        results.append(
            median_of([child(NEURON, *size, str(dataset), *shape) for _ in range(args.repeat)])
        )
        results.append(median_of([coreneuron(dataset, args.tstop) for _ in range(args.repeat)]))
        from portneuron.io.dataset import load_dataset

        compartments = load_dataset(dataset).compartments
        for backend in args.backends:
            runs = [portneuron(dataset, args.tstop, backend) for _ in range(args.repeat)]
            results.append(median_of(runs))
    if not args.no_arbor:
        try:
            results.append(median_of([child(ARBOR, *size, *shape) for _ in range(args.repeat)]))
        except subprocess.CalledProcessError as exc:
            print(f"arbor skipped: {exc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    steps = round(args.tstop / 0.025)
    reference = results[0]["simulate_s"]
    for r in results:
        r["compartments"] = compartments
        r["ns_per_compartment_step"] = round(r["simulate_s"] * 1e9 / (compartments * steps), 2)
        r["vs_neuron"] = round(r["simulate_s"] / reference, 3)
    record(args, results)


def record(args, results: list[dict]) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    head = (
        f"\n## ringtest {args.nring}x{args.ncell}, branches {args.branch}, compartments "
        f"{args.compart}, {args.tstop:g} ms, dt 0.025, 1 thread "
        f"({when}, commit {commit}, {machine})\n\n"
        "| engine | spikes | simulate s | ns/compartment-step | x NEURON time | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    )
    rows = "".join(
        f"| {r['engine']} | {r['spikes']} | {r['simulate_s']:.3f} | "
        f"{r['ns_per_compartment_step']} | {r['vs_neuron']} | {r.get('peak_rss_mib', '')} |\n"
        for r in results
    )
    with open(HERE / "results.md", "a") as f:
        f.write(head + rows)
    with open(HERE / "results.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps({"when": when, "commit": commit, "nring": args.nring,
                                "ncell": args.ncell, "tstop": args.tstop, **r}) + "\n")  # fmt: skip
    print(head + rows)


if __name__ == "__main__":
    main()
