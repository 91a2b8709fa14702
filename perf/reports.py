"""Reports: what a SONATA report of every compartment costs a run of a million.

Runs `portneuron run` on the native ringtest (1,026,000 compartments by default) without a
report and with `--report all@DT`, interleaved, each a fresh process into a folder of its
own, and reports the simulate time (the report's writing included), its ratio to the run
without, the peak RSS, the report's size and the time the file system takes to write as
many bytes to a new file alone, through the page cache to the disk (fsync); appends to
perf/results.jsonl (kind "report").

    python perf/reports.py [--nring 250] [--tstop 10] [--dt-report 0.1] [--rounds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def one_run(args, report: bool, out: Path) -> dict:
    command = [sys.executable, "-m", "portneuron", "run", "--nring", str(args.nring),
               "--branch", "64", "64", "--compart", "8", "8", "-e", str(args.tstop),
               "--backend", args.backend, "--json", "-o", str(out)]  # fmt: skip
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if report:
        command += ["--report", f"all@{args.dt_report}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    size = (out / "all.h5").stat().st_size if report else 0
    write_s = 0.0
    if report:  # the file system's share: as many bytes to a new file beside it, alone,
        # on the disk before the next run (its write-back would slow that run)
        block = np.zeros(2**20 // 4, dtype=np.float32)
        start = time.perf_counter()
        with open(out / "bytes", "wb") as f:
            for _ in range(size // block.nbytes):
                block.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        write_s = time.perf_counter() - start
    return {"simulate_s": summary["simulate_s"], "peak_rss_mib": summary["peak_rss_mib"],
            "compartments": summary["compartments"], "report_mib": size / 2**20,
            "threads": summary["threads"],
            "write_s": write_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nring", type=int, default=250)
    parser.add_argument("--tstop", type=float, default=10.0)
    parser.add_argument("--dt-report", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="llvm")
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(args, True, Path(tmp) / "warm")  # kernels into the cache
        for k in range(args.rounds):
            for report in (False, True):  # each into a folder of its own: replacing or
                # removing the last run's 400 MB report times the system's freeing of it
                runs[report].append(one_run(args, report, Path(tmp) / f"{k}{report}"))
    plain = statistics.median(r["simulate_s"] for r in runs[False])
    reported = statistics.median(r["simulate_s"] for r in runs[True])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    out = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit, "kind": "report", "backend": args.backend, "nring": args.nring,
        "threads": runs[True][0]["threads"], "cores": os.cpu_count(),
        "compartments": runs[True][0]["compartments"], "tstop": args.tstop,
        "dt_report": args.dt_report, "rounds": args.rounds, "simulate_s": plain,
        "simulate_reported_s": reported, "ratio": round(reported / plain, 3),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs[False]),
        "peak_rss_reported_mib": max(r["peak_rss_mib"] for r in runs[True]),
        "report_mib": round(runs[True][0]["report_mib"], 1),
        "bytes_written_alone_s": round(statistics.median(r["write_s"] for r in runs[True]), 3),
    }  # fmt: skip
    with open(HERE / "results.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
