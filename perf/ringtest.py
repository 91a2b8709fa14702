"""The ringtest side by side: NEURON, CoreNEURON, Arbor and portneuron, in one run.

Each engine runs in its own process (so peak RSS is its own) on the same model: NEURON builds
the ringtest (tests/neuron_models.py) and writes its dataset, which CoreNEURON (`nrniv-core`
from the neuron wheel) and portneuron (`portneuron run -d`) read; Arbor builds the same cells
from the same random shapes (perf/arbor_ringtest.py). Repetitions are interleaved (each round
runs every engine once), and times are simulate-only medians; ns per compartment-step divides
by NEURON's segment count, the same for every engine. portneuron's JIT time is measured cold
(an empty compile cache) and warm. Results go to perf/results.jsonl, and perf/RESULTS.md is
rewritten from the latest run of each model size. This process stays small and only starts
children: a child's peak RSS (wait4) includes what it inherited from its parent at fork.

    python perf/ringtest.py                       # 16 x 8 cells, 10-20 branches, 100 ms
    python perf/ringtest.py --nring 64 --branch 64 64 --compart 8 8   # the large ringtest
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


def measured(cmd: list[str], extra_env: dict | None = None) -> tuple[str, float]:
    """Run `cmd`; its stdout and its own peak RSS [MiB] (from wait4, not a running maximum).
    It runs as a user's Python does, its modules' bytecode written and read again (where
    this environment sets PYTHONDONTWRITEBYTECODE, every run compiled portneuron's sources:
    about 50 ms of a direct-mode call)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{HERE}", **(extra_env or {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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
branch, compart, threads = json.loads(sys.argv[5]), json.loads(sys.argv[6]), int(sys.argv[7])
t0 = time.perf_counter()
ring = nm.build_ringtest(nring=nring, ncell=ncell, nbranch=tuple(branch), ncompart=tuple(compart))
nm.pc.nthread(threads)
tvec, idvec = nm.h.Vector(), nm.h.Vector()
nm.pc.spike_record(-1, tvec, idvec)
nm._initialize(0.025)
setup = time.perf_counter() - t0
t0 = time.perf_counter()
nm.pc.psolve(tstop)
simulate = time.perf_counter() - t0
spikes = int(tvec.size())
if dataset != "-":
    nm.write_dataset(ring, dataset)
print(json.dumps({"engine": "neuron", "version": nm.h.nrnversion(), "spikes": spikes,
                  "setup_s": setup, "simulate_s": simulate, "threads": threads}))
"""

SIZES = """
import json, sys
from scale import model_bytes
from portneuron.io.dataset import load_dataset
model = load_dataset(sys.argv[1])
n = model.compartments
print(json.dumps({"compartments": n, "bytes": round(model_bytes(model) / n, 1)}))
"""

ARBOR = """
import json, sys
import arbor_ringtest
r = arbor_ringtest.run_arbor(nring=int(sys.argv[1]), ncell=int(sys.argv[2]), tstop=float(sys.argv[3]),
                             nbranch=tuple(json.loads(sys.argv[4])), ncompart=tuple(json.loads(sys.argv[5])),
                             threads=int(sys.argv[6]))
r["threads"] = int(sys.argv[6])
print(json.dumps(r))
"""


def coreneuron(dataset: Path, tstop: float) -> dict:
    exe = Path(sys.executable).parent / "nrniv-core"
    with tempfile.TemporaryDirectory() as out:
        stdout, rss = measured([str(exe), "-d", str(dataset), "-e", str(tstop), "-o", out])
        spikes = len(Path(out, "out.dat").read_text().splitlines())
    solver = float(re.search(r"Solver Time\s*:\s*([0-9.eE+-]+)", stdout).group(1))
    return {"engine": "coreneuron", "spikes": spikes, "simulate_s": solver, "peak_rss_mib": rss}


def portneuron(
    dataset: Path, tstop: float, backend: str, threads: int = 1, cache: str | None = None
) -> dict:
    env = {"PORTNEURON_CACHE": cache} if cache else {}
    with tempfile.TemporaryDirectory() as out:
        stdout, rss = measured(
            [sys.executable, "-m", "portneuron", "run", "-d", str(dataset), "-e", str(tstop),
             "-o", out, "--json", "--backend", backend, "--threads", str(threads)], env
        )  # fmt: skip
    result = json.loads(stdout)
    result["peak_rss_mib"] = rss
    result["engine"] = f"portneuron {backend}"
    result["engine_tstop"] = tstop  # numpy may run a shorter time than the others
    return result


def median_of(runs: list[dict]) -> dict:
    best = dict(runs[0])
    best["simulate_s"] = statistics.median(r["simulate_s"] for r in runs)
    best["simulate_s_all"] = [round(r["simulate_s"], 4) for r in runs]
    if all("peak_rss_mib" in r for r in runs):  # of the same rounds, not the first's
        best["peak_rss_mib"] = statistics.median(r["peak_rss_mib"] for r in runs)
    best["runs"] = len(runs)
    return best


def ringtest_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser with the ringtest's size and shape, its stop time and the repetitions."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--nring", type=int, default=16)
    parser.add_argument("--ncell", type=int, default=8)
    parser.add_argument("--tstop", type=float, default=100.0)
    parser.add_argument("--branch", type=int, nargs=2, default=[10, 20])
    parser.add_argument("--compart", type=int, nargs=2, default=[1, 1])
    parser.add_argument("--repeat", type=int, default=3)
    return parser


def main() -> None:
    parser = ringtest_arguments(__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--numpy-tstop",
        type=float,
        default=None,
        help="numpy backend's stop time (default: tstop, or 2 ms above 20,000 compartments)",
    )
    parser.add_argument("--no-arbor", action="store_true")
    args = parser.parse_args()
    size = [str(args.nring), str(args.ncell), str(args.tstop)]
    shape = [json.dumps(args.branch), json.dumps(args.compart)]
    rounds: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "ring"
        child(NEURON, *size, str(dataset), *shape, "1")  # writes the dataset
        sizes = child(SIZES, str(dataset))  # in a child: this process stays small
        compartments, bytes_per_compartment = sizes["compartments"], sizes["bytes"]
        numpy_tstop = args.numpy_tstop
        if numpy_tstop is None:
            numpy_tstop = args.tstop if compartments <= 20000 else min(args.tstop, 2.0)
        cold = portneuron(dataset, min(args.tstop, 1.0), "llvm", 1, str(Path(tmp) / "cache"))
        warm = portneuron(dataset, min(args.tstop, 1.0), "llvm", 1, str(Path(tmp) / "cache"))
        engines = {}
        for n in args.threads:
            engines[f"neuron {n}t"] = lambda n=n: child(NEURON, *size, "-", *shape, str(n))
            if n == 1:
                engines["coreneuron 1t"] = lambda: coreneuron(dataset, args.tstop)
            if not args.no_arbor:
                engines[f"arbor {n}t"] = lambda n=n: child(ARBOR, *size, *shape, str(n))
            if n == 1:
                engines["portneuron numpy 1t"] = lambda: portneuron(dataset, numpy_tstop, "numpy")
            engines[f"portneuron llvm {n}t"] = lambda n=n: portneuron(
                dataset, args.tstop, "llvm", n, str(Path(tmp) / "cache")
            )  # its kernels from the cache the warm run above used: every round warm
        for k in range(args.repeat):  # interleaved: every engine once per round
            for name, run in engines.items():
                try:
                    rounds.setdefault(name, []).append(run())
                except subprocess.CalledProcessError as exc:
                    print(
                        f"{name} skipped: {exc.stderr.strip().splitlines()[-1:]}", file=sys.stderr
                    )
                print(f"round {k + 1}: {name} done", file=sys.stderr)
    results = []
    for name, runs in rounds.items():
        r = median_of(runs)
        r["engine"], r["threads"] = name.rsplit(" ", 1)[0], int(name.rsplit(" ", 1)[1][:-1])
        steps = round(r.get("engine_tstop", args.tstop) / 0.025)
        r["compartments"] = compartments
        r["ns_per_compartment_step"] = round(r["simulate_s"] * 1e9 / (compartments * steps), 2)
        results.append(r)
    for r in results:  # ratios to each anchor at the same thread count (1 thread otherwise)
        for anchor in ("neuron", "coreneuron", "arbor"):
            same = [a for a in results if a["engine"] == anchor and a["threads"] == r["threads"]]
            same = same or [a for a in results if a["engine"] == anchor and a["threads"] == 1]
            if same:
                ratio = r["ns_per_compartment_step"] / same[0]["ns_per_compartment_step"]
                r[f"vs_{anchor}"] = round(ratio, 3)
    extra = {
        "bytes_per_compartment": bytes_per_compartment,
        "jit_cold_s": round(cold["jit_s"], 3),
        "jit_warm_s": round(warm["jit_s"], 3),
        "numpy_tstop": numpy_tstop,
    }
    record(args, results, extra)


def record(args, results: list[dict], extra: dict) -> None:
    config = {
        "nring": args.nring, "ncell": args.ncell, "branch": args.branch,
        "compart": args.compart, "tstop": args.tstop,
    }  # fmt: skip
    append_results([{**config, **extra, **r} for r in results])


def append_results(lines: list[dict], commit: str | None = None) -> None:
    """Append `lines` to results.jsonl, each stamped with the time, the commit (HEAD's
    unless given) and the machine, and rewrite RESULTS.md."""
    commit = (
        commit
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    )
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    with open(HERE / "results.jsonl", "a") as f:
        for line in lines:
            stamped = {"when": when, "commit": commit, "machine": machine, **line}
            f.write(json.dumps(stamped) + "\n")
    write_results_md()


def write_results_md() -> None:
    """perf/RESULTS.md: the latest run of each model size in results.jsonl."""
    latest: dict[str, list[dict]] = {}
    kinds: dict[str, list[dict]] = {
        "gpu": [], "hnn": [], "mpi": [], "imbalance": [], "exchange": [], "startup": [],
        "gap": [], "gap-placement": [], "scale": [], "report": [], "cells": [],
    }  # fmt: skip
    profiles: dict[str, dict] = {}  # the latest perf/profile.py run of each case
    gpu, hnn, mpi = kinds["gpu"], kinds["hnn"], kinds["mpi"]  # their latest runs
    for line in (HERE / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "profile":
            profiles[r["case"]] = r
            continue
        if r.get("kind") in kinds:
            runs = kinds[r["kind"]]
            if runs and runs[0]["when"] != r["when"]:
                runs.clear()
            runs.append(r)
            continue
        if "jit_cold_s" not in r:
            continue  # older runs (before this format) stay in results.md
        key = json.dumps([r["nring"], r["ncell"], r["branch"], r["compart"], r["tstop"]])
        runs = latest.setdefault(key, [])
        if runs and runs[0]["when"] != r["when"]:
            runs.clear()
        runs.append(r)
    parts = [
        "# perf/RESULTS.md\n\nWritten by `perf/ringtest.py` from the latest run of each model "
        "size (history: results.jsonl, older runs: results.md). Simulate time only, medians of "
        "interleaved repetitions; ratios are ns per compartment-step over the anchor's at the "
        "same thread count (below 1: faster than the anchor).\n"
    ]
    for runs in latest.values():
        r0 = runs[0]
        parts.append(
            f"\n## ringtest {r0['nring']} x {r0['ncell']} cells, branches {r0['branch']}, "
            f"compartments {r0['compart']}: {r0['compartments']:,} compartments, "
            f"{r0['tstop']:g} ms, dt 0.025\n\n"
            f"{r0['when']}, commit {r0['commit']}, {r0['machine']}, {r0['runs']} rounds. "
            f"portneuron model {r0['bytes_per_compartment']} bytes per compartment; JIT "
            f"{r0['jit_cold_s']} s cold, {r0['jit_warm_s']} s from the cache. numpy ran "
            f"{r0['numpy_tstop']:g} ms (its spikes are those of that time).\n\n"
            "| engine | threads | spikes | simulate s | ns/compartment-step "
            "| x NEURON | x CoreNEURON | x Arbor | peak RSS MiB |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        )
        for r in runs:
            parts.append(
                f"| {r['engine']} | {r['threads']} | {r['spikes']} | {r['simulate_s']:.3f} | "
                f"{r['ns_per_compartment_step']} | {r.get('vs_neuron', '')} | "
                f"{r.get('vs_coreneuron', '')} | {r.get('vs_arbor', '')} | "
                f"{_mib(r.get('peak_rss_mib', ''))} |\n"
            )
    if kinds["cells"]:
        parts.append(cells_section(kinds["cells"]))
    if hnn:
        parts.append(hnn_section(hnn))
    if mpi:
        parts.append(mpi_section(mpi))
    if kinds["imbalance"]:
        parts.append(imbalance_section(kinds["imbalance"]))
    if kinds["exchange"]:
        parts.append(exchange_section(kinds["exchange"][-1]))
    if kinds["startup"]:
        parts.append(startup_section(kinds["startup"]))
    if kinds["gap"]:
        parts.append(gap_section(kinds["gap"]))
    if kinds["gap-placement"]:
        parts.append(gap_placement_section(kinds["gap-placement"]))
    if kinds["scale"]:
        parts.append(scale_section(kinds["scale"]))
    if kinds["report"]:
        parts.append(report_section(kinds["report"]))
    parts.extend(profile_section(r) for r in profiles.values())
    if gpu:
        parts.append(gpu_section(gpu))
    (HERE / "RESULTS.md").write_text("".join(parts))
    print("".join(parts))


def _mib(value) -> str:
    """A MiB figure to 0.01 (medians of two runs are half-MiB sums in binary)."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def cells_section(runs: list[dict]) -> str:
    """The latest perf/cells.py run as a table."""
    r0 = runs[0]
    text = (
        "\n## Real cells: hnn-core's layer 5 pyramidal cell alone, IClamp 0.5 nA, dt 0.025 "
        f"(perf/cells.py)\n\n{r0['when']}, commit {r0['commit']}, {r0['machine']}, "
        f"{r0['runs']} rounds. Built by hnn-core in NEURON; portneuron's whole call hands it "
        "over and compiles it (from the cache) in direct mode, once for all the runs of a "
        "case (portneuron.direct.load). x NEURON: time over NEURON's (below 1: faster). "
        "Same bits: the soma's voltage trace is NEURON's in every run. No CoreNEURON row: "
        "NEURON's writer cannot hand it the dipole's POINTERs into a Vector.\n\n"
        "| case | engine | compartments | runs x ms | spikes | same bits | simulate s "
        "| whole call s | x NEURON (whole call) | x NEURON (simulate) | ns/compartment-step "
        "| peak RSS MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |\n"
    )
    for r in runs:
        text += (
            f"| {r['case']} | {r['engine']} | {r['compartments']:,} | {r['runs_per_call']} x "
            f"{r['tstop']:g} | {r['spikes']} | {r['same_bits']} | {r['simulate_s']:.3f} | "
            f"{r['total_s']:.3f} | {r['vs_neuron_total']} | {r['vs_neuron_simulate']} | "
            f"{r['ns_per_compartment_step']} | {_mib(r['peak_rss_mib'])} |\n"
        )
    return text


def hnn_section(runs: list[dict]) -> str:
    """The latest perf/hnn.py run as a table."""
    r0 = runs[0]
    text = (
        f"\n## hnn-core's default network: {r0['cells']} cells, {r0['compartments']:,} "
        f"compartments, {r0['tstop']:g} ms, dt 0.025 (perf/hnn.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}, {r0['runs']} rounds. Built by "
        "hnn-core in NEURON; portneuron runs it through direct mode. No CoreNEURON or Arbor "
        "row: NEURON's writer cannot hand CoreNEURON the dipoles' POINTERs into Vectors.\n\n"
        "| engine | threads | spikes | simulate s | ns/compartment-step | x NEURON "
        "| peak RSS MiB |\n| --- | --- | --- | --- | --- | --- | --- |\n"
    )
    for r in runs:
        text += (
            f"| {r['engine']} | {r['threads']} | {r['spikes']} | {r['simulate_s']:.3f} | "
            f"{r['ns_per_compartment_step']} | {r['vs_neuron']} | {r['peak_rss_mib']} |\n"
        )
    return text


def startup_section(runs: list[dict]) -> str:
    """The latest perf/startup.py run as a table."""
    r0 = runs[0]
    text = (
        "\n## Start-up: `portneuron run -e 1`, the default model (perf/startup.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}. Each run a fresh process; "
        "cold: nothing compiled, warm: mechanisms and kernels from their stores on disk "
        "(median of the rounds). To first step: from the interpreter's first line to the "
        "first Simulation.run; process: the whole command from outside, 1 ms simulated "
        "and written.\n\n"
        "| run | rounds | to first step s | process s | front end imported |\n"
        "| --- | --- | --- | --- | --- |\n"
    )
    for r in runs:
        text += (
            f"| {r['run']} | {r['runs']} | {r['to_first_step_s']:.3f} | {r['process_s']:.3f} "
            f"| {', '.join(r['front_end']) or 'nothing'} |\n"
        )
    return text


def gap_section(runs: list[dict]) -> str:
    """The latest perf/gap.py run as a table."""
    r0 = runs[0]
    text = (
        f"\n## Gap junctions: {r0['cells']} cells, {r0['junctions']} junctions, "
        f"{r0['compartments']:,} compartments, {r0['tstop']:g} ms, dt 0.025 (perf/gap.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}, {r0['runs']} rounds. Built "
        "by NEURON (tests/gap_models.py's network, tests/mods/halfgap.mod), written in 1 and "
        "2 cell groups; nrniv-core built with the junction. portneuron runs a coupled model "
        "in compiled epochs: on 1 rank step-major, the driver copying the junctions after "
        "every step; on 2, whose junctions cross ranks, a step a call, the values copied and "
        "exchanged between the calls (the stepwise row: every step's kernels called one by "
        "one). The host's copies on 1 rank take "
        f"{r0['coupling_us_per_step']} us a step ({r0['coupling_ns_per_junction_step']} ns "
        "a junction's half; 0 where the driver copies, its own copies not timed apart). "
        "The rows without junctions are another model (its cells fire "
        "more): the stepwise loop against compiled epochs. nrniv-core's out.dat on 1 rank "
        f"and portneuron's on 2 the same: {r0['out_dat_same']}.\n\n"
        "| engine | ranks | threads | spikes | simulate s | ns/compartment-step "
        "| x NEURON (as many cores) | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    for r in runs:
        text += (
            f"| {r['engine']} | {r['ranks']} | {r['threads']} | {r['spikes']} | "
            f"{r['simulate_s']:.3f} | {r['ns_per_compartment_step']} | "
            f"{r.get('vs_neuron', '')} | {r.get('peak_rss_mib', '')} |\n"
        )
    return text


def scale_section(runs: list[dict]) -> str:
    """The latest perf/scale.py run: memory at a million compartments."""
    r = runs[-1]
    return (
        f"\n## Memory: native ringtest {r['nring']} x {r['ncell']} cells, branches "
        f"{r['branch']}, compartments {r['compart']}: {r['compartments']:,} compartments, "
        f"{r['tstop']:g} ms (perf/scale.py)\n\n"
        f"{r['when']}, commit {r['commit']}, {r['engine']}. Baseline: the "
        "process with portneuron and the backend's libraries loaded, before the model. The "
        "model's arrays: nodes, mechanism and ion data, spike sources and NetCons.\n\n"
        "| model's arrays MiB | bytes/compartment | baseline MiB | peak after build MiB "
        "| peak MiB | (peak - baseline) / model's arrays | build s | simulate s |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
        f"| {r['model_arrays_mib']} | {r['model_bytes_per_compartment']} | "
        f"{r['python_baseline_rss_mib']} | {r['peak_rss_mib_after_build']} | "
        f"{r['peak_rss_mib']} | {r['peak_above_baseline_per_model_arrays']} | "
        f"{r['build_s']} | {r['simulate_s']} |\n"
    )


def report_section(runs: list[dict]) -> str:
    """The latest perf/reports.py run of each thread count: a report of every compartment,
    and its cost."""
    latest = {r.get("threads"): r for r in runs}  # the last of each
    r = runs[-1]
    rows = "".join(
        f"| {x['when']} | {x['commit']} | {x.get('threads', '?')} | {x['rounds']} | "
        f"{x['simulate_s']:.3f} | "
        f"{x['simulate_reported_s']:.3f} | {x['ratio']} | {x['peak_rss_mib']} | "
        f"{x['peak_rss_reported_mib']} | {x['report_mib']} | "
        f"{x.get('bytes_written_alone_s', '')} |\n"
        for x in sorted(latest.values(), key=lambda x: x["when"])
    )
    return (
        f"\n## Reports: every compartment of the native ringtest, {r['compartments']:,} "
        f"compartments, every {r['dt_report']:g} ms of {r['tstop']:g} ms (perf/reports.py)"
        f"\n\n{r['backend']}, this machine's {r.get('cores', '?')} cores, medians of the "
        "interleaved rounds, each a fresh `portneuron run` into a folder of its own; the report is a SONATA compartment report (float32), written as the run goes. "
        "Its bytes alone: the file system writing as many to a new file beside it, after "
        "the run, through the page cache to the disk (fsync; runs before 5ea437e: without "
        "the fsync)."
        "\n\n| when | commit | threads | rounds | simulate s | with the report s | ratio "
        "| peak RSS MiB | with the report MiB | report MiB | its bytes alone s |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + rows
    )


def profile_section(r: dict) -> str:
    """The latest perf/profile.py run: where the single cell's whole call goes."""
    rows = "".join(
        f"| {x['part']} | {x['share']} | {x['fraction']:.1%} | {x['ms']} |\n"
        for x in r["rows"]
        if x["fraction"] >= 0.002
    )
    return (
        f"\n## Where a real cell's time goes: perf/cells.py's {r['case']} case (hnn-core's "
        f"layer 5 pyramidal cell), {r['tstop']:g} ms (perf/profile.py)\n\n{r['when']}, "
        f"commit {r['commit']}, "
        f"{r['machine']}. Linux perf sampling the whole call ({r['whole_s']} s: load "
        f"{r['load_s']} s, the hand-over and the kernels from the cache; then the run, "
        f"simulate {r['simulate_s']} s), {r['samples']} samples, the driver's phases "
        "compiled as functions of their own (PORTNEURON_PROFILE=1: not inlined, a little "
        "slower). Shares of at least 0.2 %.\n\n| part | share | of the call | ms |\n"
        "| --- | --- | --- | --- |\n" + rows
    )


def gap_placement_section(runs: list[dict]) -> str:
    """The latest perf/gap_placement.py run as a table."""
    r0 = runs[0]
    text = (
        f"\n## Gap-junction components on ranks: {r0['cells']} cells, {r0['tstop']:g} ms "
        "(perf/gap_placement.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}, {r0['runs']} rounds. Built "
        "natively: hh soma and passive dendrite cells, coupled in components of the size "
        "given (random members; cells left over uncoupled), a network each size. portneuron "
        "llvm, one thread a rank, compiled epochs. kept: each component on one rank; split: "
        "placed as if uncoupled, the junction halves that cross ranks exchanged every step. "
        "Simulate time of the slower rank; each network's spikes the same in its every run "
        "(same). default: whether Network.placement's default keeps the components.\n\n"
        "| component size | placement | ranks | cells a rank | halves crossing ranks "
        "| spikes | same | simulate s | each rank s | x 1 rank | default | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    for r in runs:
        text += (
            f"| {r['size']} | {r['placement']} | {r['ranks']} | {r['cells_per_rank']} | "
            f"{r['crossing']} | {r['spikes']} | {r['same_spikes']} | {r['simulate_s']:.3f} | "
            f"{', '.join(f'{x:.3f}' for x in r['rank_s'])} | {r['vs_1_rank']} | "
            f"{'kept' if r['default_keeps'] else 'split'} | {r['peak_rss_mib']} |\n"
        )
    return text


def mpi_section(runs: list[dict]) -> str:
    """The latest perf/mpi.py run as a table."""
    r0 = runs[0]
    text = (
        f"\n## Ranks and threads: native ringtest {r0['nring']} x {r0['ncell']} cells, "
        f"branches {r0['branch']}, compartments {r0['compart']}: {r0['compartments']:,} "
        f"compartments, {r0['tstop']:g} ms, dt 0.025 (perf/mpi.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}, {r0['runs']} rounds. "
        "portneuron under mpiexec (mpich wheel), each rank building its own cells; NEURON "
        "builds the same model, on threads and under mpiexec; nrniv-core --mpi runs NEURON's dataset of it "
        "in 2 groups (NetStims with gids, so 16 spikes more). out.dat identical across every portneuron "
        f"run: {r0['identical_out_dat']}.\n\n"
        "| engine | ranks | threads | spikes | simulate s | ns/compartment-step | x NEURON "
        "(threads, as many cores) | x NEURON (as many ranks) | x CoreNEURON (as many ranks) "
        "| speed-up over 1 rank 1 thread | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    for r in runs:
        engine = r["engine"].rsplit(" ", 1)[0] if r["engine"].endswith("r") else r["engine"]
        text += (
            f"| {engine} | {r.get('ranks', 1)} | {r['threads']} | {r['spikes']} | "
            f"{r['simulate_s']:.3f} | {r['ns_per_compartment_step']} | {r['vs_neuron']} | "
            f"{r.get('vs_neuron_ranks', '')} | {r.get('vs_coreneuron', '')} | "
            f"{r['speedup_vs_1r1t']} | {r['peak_rss_mib']} |\n"
        )
    return text


def imbalance_section(runs: list[dict]) -> str:
    """The latest perf/imbalance.py run as a table."""
    r0 = runs[0]
    text = (
        f"\n## Load balance: tests/mixed_network.py, {sum(r0['cells'])} cells (16 large "
        f"active, then 112 small, by gid), {r0['compartments']:,} compartments, "
        f"{r0['tstop']:g} ms (perf/imbalance.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}, {r0['runs']} rounds; llvm, "
        "1 thread a rank, mpiexec (mpich wheel). Measured: each rank's simulate time less its "
        "time in the spike exchange; imbalance: the largest over the mean, less 1. The spikes "
        "are the same in every run.\n\n"
        "| ranks | placement | cells a rank | predicted imbalance | measured imbalance "
        "| rank work s | simulate s | speed-up over 1 rank | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    for r in runs:
        text += (
            f"| {r['ranks']} | {r['placement']} | {r['cells']} | {r['predicted_imbalance']} | "
            f"{r['imbalance']} | {r['rank_busy_s']} | {r['simulate_s']:.3f} | "
            f"{r['speedup_vs_1r']} | {r['peak_rss_mib']} |\n"
        )
    return text


def exchange_section(r: dict) -> str:
    """The latest perf/exchange.py run: the fitted model and its extrapolation."""
    rt = r["ringtest"]
    measured = ", ".join(
        f"{m['ranks']} ranks {m['spikes']} spikes {1e6 * m['seconds']:.1f} us"
        for m in r["measured"]
    )
    text = (
        "\n## The spike exchange from 10 to 10,000 ranks (perf/exchange.py)\n\n"
        f"{r['when']}, commit {r['commit']}, {r['machine']}. `Ranks.allgather_spikes` (an "
        "allgather of counts, an allgatherv of 16-byte spikes, as CoreNEURON exchanges) timed "
        f"under mpiexec, median of {r['repeat']} calls: {measured}. Fitted T = 2 a "
        "ceil(log2 p) + b (8 p + 16 S)(p - 1)/p: a = "
        f"{1e6 * r['latency_s']:.2f} us a round, b = {1e9 * r['seconds_per_byte']:.3f} ns a "
        f"byte (shared memory, fitted on {r['fitted_ranks']} ranks: more ranks than this "
        f"machine's cores time its scheduler; largest misfit "
        f"{100 * r['fit_max_rel_error']:.0f} %). Weak scaling: {r['cells_per_rank']} cells a "
        f"rank of the ringtest {rt['nring']} x {rt['ncell']}, branches {rt['branch']}, "
        f"compartments {rt['compart']} (perf/mpi.py at {rt['commit']}), firing "
        f"{r['firing_per_cell_ms']:.3f} spikes a cell a ms, {r['epoch_ms']:g} ms epochs; the "
        "cluster column puts a = 1.5 us and b = 1/12.5 GB/s (an HDR InfiniBand link: "
        "assumed, not measured). Compute: one rank's epoch of those cells on llvm, 1 thread "
        "(perf/mpi.py's 1-rank row). For scale, CoreNEURON's published runs reach "
        "28,672 ranks (458,752 cores of JUQUEEN's BlueGene/Q, one rank a node with 64 "
        "threads, strong and weak scaling: JSC High-Q Club, "
        "https://www.fz-juelich.de/ias/jsc/EN/Expertise/High-Q-Club/CoreNeuron), with the "
        "same allgather exchange.\n\n"
        "| ranks | spikes an epoch | exchange here (fitted) us | exchange on a cluster us "
        "| compute an epoch us | exchange share on a cluster |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    )
    for p in r["predicted"]:
        text += (
            f"| {p['ranks']:,} | {p['spikes_per_epoch']:,} | {1e6 * p['exchange_s_fitted']:.1f} | "
            f"{1e6 * p['exchange_s_cluster']:.1f} | {1e6 * p['compute_s_per_epoch']:.1f} | "
            f"{p['exchange_share_cluster']} |\n"
        )
    return text


def gpu_section(runs: list[dict]) -> str:
    """The latest perf/gpu.py run as a table."""
    r0 = runs[0]
    anchors = sorted({k for r in runs for k in r if k.startswith("vs_")})
    text = (
        f"\n## GPU: native ringtest, {r0['ncell']} cells a ring, branches {r0['branch']}, "
        f"compartments {r0['compart']}, {r0['tstop']:g} ms, dt 0.025 (perf/gpu.py)\n\n"
        f"{r0['when']}, commit {r0['commit']}, {r0['machine']}; device: {r0['device']}. "
        "Simulate time (for cuda: with the model's upload and download), medians of "
        f"{r0['runs']} interleaved rounds.\n\n"
        "| engine | threads | compartments | spikes | spikes identical | simulate s "
        "| ns/compartment-step | "
        + " | ".join(f"x {a[3:]}" for a in anchors)
        + " | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | " + "--- | " * len(anchors) + "--- |\n"
    )
    for r in sorted(runs, key=lambda r: (r["compartments"], r["engine"])):
        text += (
            f"| {r['engine']} | {r['threads']} | {r['compartments']:,} | {r['spikes']} | "
            f"{r['spikes_identical']} | {r['simulate_s']:.3f} | {r['ns_per_compartment_step']} | "
            + "".join(f"{r.get(a, '')} | " for a in anchors)
            + f"{r.get('peak_rss_mib', '')} |\n"
        )
    return text


if __name__ == "__main__":
    main()
