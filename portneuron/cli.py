"""The `portneuron` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .backends.base import BackendUnavailable
from .errors import PortneuronError
from .interrupts import (
    BEFORE_THE_RUN,
    Interrupted,
    finished,
    stop_on_signals,
    stopped,
    stopped_early,
)
from .parallel import Ranks, world, world_size


def _fraction_or_off(text: str) -> float | None:
    if text == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"give a fraction >= 0 or 'off', not {text!r}")
    return value


def _mod_path(name: str) -> Path:
    """A `.mod` path, or the name of one of NEURON's built-in mechanisms (hh, expsyn, ...)."""
    from .nmodl import builtin_mod_files

    path = Path(name)
    if path.exists():
        return path
    builtins = builtin_mod_files()
    stem = path.stem.lower()
    if stem in builtins:
        return builtins[stem]
    aliases = {"pas": "passive", "iclamp": "stim", "seclamp": "svclmp", "netstim": "netstim"}
    if stem in aliases:
        return builtins[aliases[stem]]
    raise PortneuronError(
        f"{name}: no such file, and not a built-in mechanism ({', '.join(builtins)})"
    )


def cmd_compile(args: argparse.Namespace) -> int:
    from .ir import format_mechanism
    from .nmodl import compile_file

    for name in args.files:
        mechanism = compile_file(_mod_path(name))
        if args.emit == "ir":
            sys.stdout.write(format_mechanism(mechanism))
            continue
        from .backends import emitter

        backend = emitter(args.emit)  # a GPU's source needs no GPU
        comment = ";" if args.emit in ("llvm", "asm") else "//"
        for kernel in mechanism.kernels:
            print(f"{comment} ==== {mechanism.name}.{kernel.name} ({args.emit})")
            sys.stdout.write(backend.emit(kernel, args.emit))
    return 0


#: The cells whose traces `portneuron plot` draws where none are named: the report's first.
TRACES = 5


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends import backend_names, backend_status

    names = backend_names()
    if not names:
        print("no backends registered: is portneuron installed (pip install -e .)?")
        return 1
    for name in names:
        status = backend_status(name)
        state = "available" if status.available else "unavailable"
        print(f"{name:8s} {state:12s} {status.reason}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Simulate a dataset NEURON wrote with nrncore_write, like CoreNEURON's special-core, or
    (without -d) the built-in ringtest."""

    run, progress = RunState(args.tstop), None
    try:  # from the start: an interrupt in the imports says where it stopped as well
        from .backends import best_backend, load_backend
        from .checkpoint import restore, save
        from .io.spikes import write_spikes
        from .library import MechanismLibrary
        from .progress import Progress
        from .reports import Reports, fast_imem
        from .sim.simulation import Simulation

        check_run_options(args)  # every option, before any work
        ranks = _RUN_RANKS[0] = world()
        outdir = writable_folder(Path(args.outpath))
        if args.checkpoint is not None:
            writable_folder(Path(args.checkpoint), "--checkpoint")
        progress = Progress(enabled=not args.json and ranks.rank == 0)
        start = time.perf_counter()
        names = (args.backend or best_backend()).split(",")
        backend = load_backend(names[ranks.rank % len(names)])
        if len(set(names)) > 1:  # ranks drive different backends: load each by its speed
            from .cost import throughput

            with progress.phase("measuring each rank's backend"):
                speeds = ranks.allgather(throughput(backend, args.threads))
            ranks = _RUN_RANKS[0] = dataclasses.replace(ranks, speeds=tuple(speeds))
        library = MechanismLibrary(args.mechanisms)
        what = "reading the model" if args.datpath else "building the model"
        with progress.phase(what, unit="cells") as up:
            model = build_model(args, library, up, ranks)
        dt = args.dt if args.dt is not None else model.dt
        if ranks.rank == 0:
            check_min_delay(model, dt, progress)
        stats = model_stats(model, ranks) if args.model_stats else None
        if stats is not None and not args.json:
            progress.clear()
            print_model_stats(stats)
        imem = fast_imem(args.reports)
        sim = Simulation(
            model, backend, dt=dt, threads=args.threads, ranks=ranks, max_epoch=args.mindelay,
            fast_imem=imem,
        )  # fmt: skip
        reports = run.reports = Reports(sim, args.reports, outdir, ranks)  # files opened
        with progress.phase("compiling"):  # JIT now, so that the simulation's bar measures
            reports.compile()  # simulating: the driver that records what the reports do
        if args.restore is None:
            sim.finitialize(args.voltage)
        elif restore(sim, args.restore) >= args.tstop:
            raise PortneuronError(
                f"--restore {args.restore}: the checkpoint is at t = {sim.t:g} ms, not before "
                f"-e {args.tstop:g} ms; give a later stop time"
            )
        reports.expect(args.tstop)
        setup_s = time.perf_counter() - start
        start = time.perf_counter()
        exchange_s = -sim.exchange_s  # the time in the spike exchange from here on
        run.sim = sim
        rebalance: dict = {}
        if ranks.size > 1 and args.rebalance is not None and not (args.checkpoint or args.restore):
            with progress.phase("measuring the first epochs"):
                placed = rebalanced(args, library, sim, ranks, reports.recording())
            if placed is not None:  # placed again by measured speed: start again from 0
                ranks, rebalance = placed
                exchange_s += sim.exchange_s
                _RUN_RANKS[0] = ranks
                reports.abort()
                with progress.phase(what + " again", unit="cells") as up:
                    model = build_model(args, library, up, ranks)
                sim = run.sim = Simulation(
                    model, backend, dt=dt, threads=args.threads, ranks=ranks,
                    max_epoch=args.mindelay, fast_imem=imem,
                )  # fmt: skip
                reports = run.reports = Reports(sim, args.reports, outdir, ranks)
                reports.compile()
                sim.finitialize(args.voltage)
                reports.expect(args.tstop)
        with progress.phase("simulating", total=args.tstop, unit="ms") as up:
            result = sim.run(args.tstop, initialize=False, progress=up, **reports.recording())
        simulate_s = time.perf_counter() - start
        exchange_s += sim.exchange_s
        parts = ranks.gather(result.spikes)  # rank 0 writes every rank's spikes
        if parts is not None:
            result.spikes = sorted(spike for part in parts for spike in part)
            write_spikes(outdir / "out.dat", result.spikes)
            if args.sonata:
                from .io.sonata import write_spikes as write_sonata_spikes

                write_sonata_spikes(outdir / "out.h5", result.spikes)
        reports.close()
        if args.checkpoint is not None:
            save(sim, args.checkpoint)
        run.written = True
        summary = run_summary(model, backend, sim, result, (setup_s, simulate_s, exchange_s), ranks)
        summary.update(rebalance)
        if stats is not None:
            summary["model_stats"] = stats
        if ranks.rank != 0:
            return 0
        if args.json:
            print(json.dumps(summary))
        else:
            print(
                f"{summary['cells']} cells, {summary['compartments']} compartments (segments with "
                f"membrane; {summary['nodes']} nodes with the zero-area ones, which nrniv-core "
                f"counts), "
                f"{summary['spikes']} spikes to {outdir / 'out.dat'}\n"
                f"setup {setup_s:.3f} s, simulate {simulate_s:.3f} s "
                f"({summary['ns_per_compartment_step']} ns per compartment-step, "
                f"backend {backend.name}, {summary['threads']} thread(s), {summary['loop']}, "
                f"peak RSS {summary['peak_rss_mib']} MiB)"
            )
        return 0
    except Interrupted as stop:
        if progress is not None:
            progress.clear()
        return stopped(stop, run.where())
    finally:
        if run.reports is not None:
            run.reports.abort()  # a run that stopped leaves no report that looks complete


class RunState:
    """How far a run has come, for the line an interrupt prints."""

    def __init__(self, tstop: float) -> None:
        self.tstop, self.sim, self.written = tstop, None, False
        self.reports = None  # the run's, to abort where it stops

    def where(self) -> str:
        if self.written:
            return "stopped after out.dat was written whole"
        if self.sim is None:
            return BEFORE_THE_RUN
        return (
            f"stopped at t = {self.sim.t:.6g} ms of {self.tstop:g} ms; out.dat was not "
            f"written (one that was there is unchanged)"
        )


def check_run_options(args: argparse.Namespace) -> None:
    """Refuse impossible options before any work, the time step included (--dt, or the one
    the dataset's globals.dat names)."""
    for flag, value in (("-e/--tstop", args.tstop), ("--dt", args.dt), ("-v", args.voltage)):
        if value is not None and not math.isfinite(value):
            raise PortneuronError(f"{flag} must be a finite number, not {value}")
    if args.tstop < 0:
        raise PortneuronError(f"-e/--tstop must be >= 0, not {args.tstop}")
    if args.dt is not None and args.dt <= 0:
        raise PortneuronError(f"--dt must be positive, not {args.dt}")
    if args.threads is not None and args.threads < 1:
        raise PortneuronError(f"--threads must be >= 1, not {args.threads}")
    if args.celsius is not None and not -273.15 < args.celsius <= 1000.0:
        raise PortneuronError(
            f"--celsius must be above -273.15 and at most 1000, not {args.celsius}"
        )
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise PortneuronError(f"--seed must be from 0 to {MAX_SEED}, not {args.seed}")
    if args.mindelay is not None and not (math.isfinite(args.mindelay) and args.mindelay > 0):
        raise PortneuronError(f"--mindelay must be a positive number of ms, not {args.mindelay}")
    if args.restore is not None:
        from .checkpoint import read_manifest

        read_manifest(Path(args.restore))  # there, and of a format this reads
    from .reports import parse_report, read_report_conf

    args.reports = [parse_report(text) for text in args.report]
    if args.report_conf is not None:
        args.reports += read_report_conf(args.report_conf)
    names = [spec.name for spec in args.reports]
    for name in names:
        if names.count(name) > 1:
            raise PortneuronError(f"two reports named {name!r}: each needs a file of its own")
    if args.backend is not None and "," in args.backend:
        names, size = backend_list(args.backend), world_size()
        if size < len(names):
            raise PortneuronError(
                f"--backend {args.backend}: {len(names)} backends, one a rank, but this run "
                f"has {size} rank(s); run under mpiexec -n {len(names)} (or more: rank r "
                f"drives backend r modulo {len(names)})"
            )
    if args.datpath is None:
        check_ringtest_options(args)
    dt = args.dt
    if dt is None:
        dt = dataset_dt(Path(args.datpath)) if args.datpath is not None else RINGTEST_DT
    steps = args.tstop / dt + 0.5
    if steps >= MAX_STEPS:
        raise PortneuronError(
            f"-e {args.tstop:g} ms with dt {dt:g} ms is {steps:.3g} steps, more than any run "
            f"can take ({MAX_STEPS:.0e}); give a shorter -e or a larger --dt"
        )
    if int(steps) < 1:
        raise PortneuronError(
            f"-e {args.tstop:g} ms with dt {dt:g} ms is no step at all; give -e of at least "
            f"{dt / 2:g} ms, or a smaller --dt"
        )


#: The largest --seed (CoreNEURON's range).
MAX_SEED = 100_000_000
#: Steps a run may have at most: far beyond any machine's patience, and still exact in a
#: double, so that t advances.
MAX_STEPS = 1e15
#: The ringtest's time step [ms] (the original benchmark's).
RINGTEST_DT = 0.025
#: Peak memory per compartment of a ringtest build and run, measured 310 B, with a margin.
RINGTEST_BYTES_PER_COMPARTMENT = 400


def check_ringtest_options(args: argparse.Namespace) -> None:
    for name in ("nring", "ncell"):
        if getattr(args, name) < 1:
            raise PortneuronError(f"--{name} must be >= 1, not {getattr(args, name)}")
    for name in ("branch", "compart"):
        lo, hi = getattr(args, name)
        if not 1 <= lo <= hi:
            raise PortneuronError(f"--{name} LO HI needs 1 <= LO <= HI, not {lo} {hi}")
    compartments = args.nring * args.ncell * (1 + args.branch[1] * args.compart[1])
    need = compartments * RINGTEST_BYTES_PER_COMPARTMENT
    have = available_memory()
    if have is not None and need > have:
        raise PortneuronError(
            f"--nring {args.nring} --ncell {args.ncell} --branch {args.branch[0]} "
            f"{args.branch[1]} --compart {args.compart[0]} {args.compart[1]}: up to "
            f"{compartments:,} compartments need about {need / 2**30:.3g} GiB, and this "
            f"machine has {have / 2**30:.3g} GiB available; build a smaller ringtest"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def dataset_dt(datpath: Path) -> float:
    """The time step a dataset's globals.dat gives (NEURON's dt when it was written)."""
    from .io.dataset import read_globals

    if not datpath.is_dir():
        raise PortneuronError(f"{datpath}: no such folder; -d needs the folder nrncore_write wrote")
    dt = read_globals(datpath / "globals.dat").get("dt", RINGTEST_DT)
    if not (math.isfinite(dt) and dt > 0):
        raise PortneuronError(
            f"{datpath / 'globals.dat'}: dt is {dt}, but a time step is finite and positive; "
            f"the file is damaged (or give --dt)"
        )
    return dt


def writable_folder(outdir: Path, option: str = "-o") -> Path:
    """The folder `option` names (-o, --checkpoint), created if need be and tested for
    writing before any work."""
    import tempfile

    try:
        if outdir.exists() and not outdir.is_dir():
            raise PortneuronError(f"{option} {outdir}: needs a folder, and this is a file")
        if (outdir / "out.dat").is_dir():
            raise PortneuronError(
                f"{option} {outdir}: its out.dat is a folder; remove it or choose another"
            )
        outdir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=outdir).close()
    except (FileExistsError, NotADirectoryError):
        raise PortneuronError(
            f"{option} {outdir}: a part of this path is a file, not a folder; choose another folder"
        ) from None
    except OSError as exc:
        raise PortneuronError(
            f"{option} {outdir}: cannot write there ({exc.strerror}); choose a writable folder"
        ) from None
    return outdir


def build_model(args: argparse.Namespace, library, progress: Callable[[float], None], ranks):
    """The dataset's model, or the ringtest's (this rank's part of it), at the temperature
    and Random123 key the options give."""
    if args.datpath is not None:
        from .io.dataset import load_dataset

        model = load_dataset(args.datpath, library, ranks)
    else:
        from .build.ringtest import build_ringtest

        model = build_ringtest(
            args.nring, args.ncell, tuple(args.branch), tuple(args.compart), library,
            progress=progress, ranks=ranks,
        )  # fmt: skip
    celsius, seed = getattr(args, "celsius", None), getattr(args, "seed", None)  # run's
    if celsius is not None:  # the command line over globals.dat, as CoreNEURON
        model.celsius = celsius
    if seed is not None:
        model.random123_index = float(seed)
    return model


def model_stats(model, ranks) -> dict | None:
    """Every rank's cells, compartments, nodes, instances of each mechanism and the
    model's arrays by part [MiB], summed on rank 0 (None elsewhere)."""
    mine = {
        "cells": model.ncell, "compartments": model.compartments, "nodes": model.nodes.count,
        "instances": {m.name: m.count for m in model.mechanisms},
        "memory_mib": model.memory(),
    }  # fmt: skip
    parts = ranks.gather(mine)
    if parts is None:
        return None
    out = {k: sum(p[k] for p in parts) for k in ("cells", "compartments", "nodes")}
    for key in ("instances", "memory_mib"):
        total: dict = {}
        for p in parts:
            for name, value in p[key].items():
                total[name] = total.get(name, 0) + value
        out[key] = total
    out["memory_mib"] = {k: round(v / 2**20, 3) for k, v in out["memory_mib"].items()}
    return out


def print_model_stats(stats: dict) -> None:
    print(
        f"model: {stats['cells']} cells, {stats['compartments']} compartments, "
        f"{stats['nodes']} nodes"
    )
    width = max(map(len, [*stats["instances"], *stats["memory_mib"]]))
    print("instances of each mechanism:")
    for name, count in stats["instances"].items():
        print(f"  {name:<{width}} {count:>12}")
    print(f"the model's arrays [MiB] ({sum(stats['memory_mib'].values()):.3f} in all):")
    for name, mib in stats["memory_mib"].items():
        print(f"  {name:<{width}} {mib:>12.3f}")


#: Wall time [s] of the first epochs a run on several ranks measures (its slowest rank's)
#: before it may place its cells again; at most a quarter of the run.
PROBE_SECONDS = 0.1


def rebalanced(
    args: argparse.Namespace, library, sim, ranks: Ranks, recording: dict
) -> tuple[Ranks, dict] | None:
    """The first epochs, measured: epoch after epoch until the slowest rank has spent
    PROBE_SECONDS (a run too short for that, within a quarter of it, is left alone), each
    rank's work (its time less its time in the spike exchange) over the cost the scheduler
    gave it is its speed. Where the measured imbalance exceeds --rebalance and the
    scheduler, given those speeds, places the items otherwise and better by more than
    that, the ranks with the measured speeds (to build again and start from t = 0) and
    what the summary says of it; else None, the run going on from where it is."""
    import numpy as np

    from . import scheduler

    busy = first_epochs(args, sim, ranks, recording)
    if busy is None:
        return None
    before = scheduler.imbalance(busy)
    if before <= args.rebalance:
        return None
    items, placement_of = placed_items(args, library)
    rank = placement_of(ranks.size, ranks.speeds)
    speeds = measured_speeds(scheduler.loads(items, rank, ranks.size), busy)
    again = placement_of(ranks.size, speeds)
    finish = scheduler.loads(items, again, ranks.size) / np.asarray(speeds)
    if (again == rank).all() or scheduler.imbalance(finish) + args.rebalance >= before:
        return None
    report = {"rebalanced": {"after_ms": round(sim.t, 9), "imbalance": round(before, 4),
                             "rank_busy_s": [round(b, 6) for b in busy]}}  # fmt: skip
    return dataclasses.replace(ranks, speeds=speeds), report


def first_epochs(
    args: argparse.Namespace, sim, ranks: Ranks, recording: dict
) -> list[float] | None:
    """Every rank's work in the first epochs (its time less its time in the exchange), run
    until the slowest rank has spent PROBE_SECONDS (the reports recording: `recording`,
    Reports.recording's); None where that takes more than a quarter of the run."""

    epoch_ms = sim.epoch_steps() * sim.dt
    exchanged, start = sim.exchange_s, time.perf_counter()
    while True:
        if sim.t + epoch_ms > args.tstop / 4:
            return None
        sim.run(sim.t + epoch_ms, initialize=False, **recording)
        elapsed = time.perf_counter() - start
        if -ranks.min(-elapsed) >= PROBE_SECONDS:  # every rank stops after the same epoch
            return ranks.allgather(elapsed - (sim.exchange_s - exchanged))


def measured_speeds(loads, busy) -> tuple[float, ...]:
    """Each rank's cost done a second in the first epochs."""
    return tuple(float(load / max(b, 1e-9)) for load, b in zip(loads, busy))


def placed_items(args: argparse.Namespace, library):
    """The items the scheduler places (a dataset's groups, or the ringtest's cells), their
    costs, and the placement as a function of (ranks, speeds): what `run` places and `plan`
    prints."""
    import numpy as np

    if args.datpath is not None:
        from .io.dataset import group_costs, placement, read_files_dat

        folder = Path(args.datpath)
        groups = read_files_dat(folder / "files.dat")
        costs = np.asarray(group_costs(folder, groups), dtype=np.float64)
        return costs, lambda n, speeds: placement(folder, groups, n, speeds)
    from .build.ringtest import cell_costs, placement

    size = (args.nring, args.ncell, tuple(args.branch), tuple(args.compart))
    costs = cell_costs(*size, library)
    return costs, lambda n, speeds: placement(*size, n, library, speeds)


def check_min_delay(model, dt: float, progress) -> None:
    """Warn where dt exceeds the min-delay: events are then due within the step that sends
    them (delivered there, as NEURON does), so the model cannot run in compiled epochs."""
    md = model.min_delay()
    if dt > md:
        progress.clear()
        print(
            f"portneuron: warning: dt {dt:g} ms is larger than the model's min-delay "
            f"{md:g} ms, so the model runs step by step (no compiled epochs); a smaller "
            f"--dt lets it run whole epochs",
            file=sys.stderr,
        )


def run_summary(model, backend, sim, result, times: tuple[float, float, float], ranks) -> dict:
    """The run's figures, every rank's summed (compartments, cells) on rank 0; the times
    (setup, simulate, and of that the time in the spike exchange) and the peak RSS are
    rank 0's."""
    import resource

    setup_s, simulate_s, exchange_s = times
    compartments = int(ranks.sum(model.compartments))
    compartment_steps = compartments * max(result.steps, 1)
    return {
        "cells": int(ranks.sum(model.ncell)),
        "compartments": compartments,
        "nodes": int(ranks.sum(model.nodes.count)),
        "ranks": ranks.size,
        "spikes": len(result.spikes),
        "setup_s": round(setup_s, 6),
        "simulate_s": round(simulate_s, 6),
        "ns_per_compartment_step": round(simulate_s * 1e9 / compartment_steps, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "backend": backend.name,
        "threads": sim.threads_used,
        "epoch_ms": round(sim.epoch_steps() * sim.dt, 9),
        "celsius": model.celsius,
        "seed": int(model.random123_index),
        "jit_s": round(backend.jit_seconds(), 6) if hasattr(backend, "jit_seconds") else 0.0,
        "loop": "stepwise: " + sim.stepwise_reason if sim.stepwise_reason else "compiled epochs",
        **measured_load(simulate_s - exchange_s, ranks),
        **backends_used(model, backend, ranks),
    }


def backends_used(model, backend, ranks) -> dict:
    """Where ranks drive different backends: each rank's, its measured speed (operations a
    second) and its cells."""
    if ranks.speeds is None:
        return {}
    names = ranks.gather(backend.name)
    cells = ranks.gather(int(model.ncell))
    if names is None:
        return {}
    return {
        "rank_backends": names,
        "rank_speeds": [float(f"{v:.4g}") for v in ranks.speeds],
        "rank_cells": cells,
    }


def measured_load(work_s: float, ranks) -> dict:
    """With several ranks, each one's own work (its simulate time less its time in the
    spike exchange meanwhile) and the imbalance: the largest over the mean, less 1."""
    if ranks.size == 1:
        return {}
    from .scheduler import imbalance

    busy = ranks.gather(work_s)
    if busy is None:
        return {}
    return {"rank_busy_s": [round(b, 6) for b in busy], "imbalance": round(imbalance(busy), 4)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portneuron",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="show the versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="lower .mod files and print the result")
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE.mod",
        help="a .mod file or a built-in name (hh, pas, expsyn, ...)",
    )
    p.add_argument(
        "--emit",
        default="ir",
        help="what to print: portneuron IR (ir), or what a backend makes of it: optimised LLVM "
        "IR (llvm), host assembly (asm), CUDA C (cuda), OpenCL C (opencl) (default: ir)",
    )
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "run",
        help="simulate a NEURON dataset (or the built-in ringtest) and write out.dat",
        description="Simulate a dataset NEURON wrote with nrncore_write (or, without -d, the "
        "built-in ringtest) and write its spikes to OUTDIR/out.dat (time<TAB>gid, sorted), "
        "whole or not at all. A progress bar shows on a terminal for long runs; Ctrl-C stops "
        "with one line (exit 130; SIGTERM: 143).",
    )
    model_options(p)
    p.add_argument("-e", "--tstop", type=float, default=100.0, help="stop time [ms] (100)")
    p.add_argument("--dt", type=float, default=None, help="time step [ms] (the dataset's)")
    p.add_argument("-o", "--outpath", default=".", help="folder for out.dat (.)")
    p.add_argument(
        "-v",
        "--voltage",
        type=float,
        default=None,
        help="initial voltage [mV] (default: the dataset's voltages)",
    )
    p.add_argument(
        "--backend",
        default=None,
        help="numpy, llvm or cuda (default: the best here); under mpiexec a list, one a rank "
        "(cuda,llvm: rank r drives the r-th modulo its length), each rank loaded by its "
        "measured speed",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for the cell groups (default: every core; compiled backends only)",
    )
    p.add_argument(
        "--rebalance",
        type=_fraction_or_off,
        default=0.1,
        metavar="FRACTION",
        help="on several ranks: after the first epochs (0.1 s of them), where the measured "
        "imbalance exceeds FRACTION (0.1) and placing the cells again by each rank's "
        "measured speed would do better by more, do so and start again from t = 0; "
        "'off': never",
    )
    p.add_argument(
        "--mechanisms",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of .mod files for mechanisms that are not NEURON built-ins",
    )
    p.add_argument(
        "-l",
        "--celsius",
        type=float,
        default=None,
        help="temperature [degC] (default: the dataset's globals.dat; the ringtest's 6.3)",
    )
    p.add_argument(
        "-s",
        "--seed",
        type=int,
        default=None,
        help="Random123's global index, the key of every random stream, 0 to 100000000 "
        "(default: the dataset's Random123_globalindex, else 0)",
    )
    p.add_argument(
        "--mindelay",
        type=float,
        default=None,
        metavar="MS",
        help="longest interval [ms] between spike exchanges (an epoch): the smaller of this "
        "and the smallest NetCon delay (default: the smallest NetCon delay)",
    )
    p.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="TARGET[@DT]",
        help="a SONATA compartment report of every cell's voltage to OUTDIR/TARGET.h5: "
        "TARGET soma (each cell's first compartment) or all (every compartment), every DT "
        "ms (0.1); may be given again",
    )
    p.add_argument(
        "--report-conf",
        metavar="FILE",
        default=None,
        help='reports from a JSON file: {"reports": [{"name", "target", "cells", "dt", '
        '"start", "end", "variable"}, ...]} (the README shows one)',
    )
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        default=None,
        help="at the end of the run, write its complete state to DIR (time, voltages, every "
        "mechanism's variables, events in flight), from which --restore continues it",
    )
    p.add_argument(
        "--restore",
        metavar="DIR",
        default=None,
        help="continue from the checkpoint in DIR (the same model and options; -e is then "
        "the time to stop at, after the checkpoint's)",
    )
    p.add_argument(
        "--sonata",
        action="store_true",
        help="also write the spikes as a SONATA spike file, OUTDIR/out.h5",
    )
    p.add_argument(
        "--model-stats",
        action="store_true",
        help="print the model's cells, compartments, instances of each mechanism and its "
        "arrays' memory by part before simulating",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "plan",
        help="print how a run on N ranks places the cells (or a dataset's groups)",
        description="Print the scheduler's placement of the model on N ranks (longest-first "
        "bin packing: the ringtest's cells in blocks of one shape, by the operations a step "
        "of them runs, counted from the IR; a dataset's groups by the "
        "size of their files; over ranks of different backends by each one's measured "
        "speed): each rank's device, share and predicted load, and the predicted imbalance "
        "next to a split by count. With --measured, a run's measured load (its --json "
        "summary's rank_busy_s) and imbalance beside them.",
    )
    model_options(p)
    p.add_argument("-n", "--ranks", type=int, required=True, help="number of ranks")
    p.add_argument(
        "--backend",
        default=None,
        help="each rank's backend, as for run (a list: rank r drives the r-th modulo its "
        "length; their speeds are measured here, as a run measures them)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads a rank, as for run")
    p.add_argument(
        "--measured",
        metavar="SUMMARY",
        default=None,
        help="a run's --json summary (on as many ranks): its measured load beside the plan's",
    )
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("backends", help="list backends and whether they can run here")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser(
        "plot",
        help="draw a run's spike raster and report traces to a PNG",
        description="Draw the spikes of a run (its out.dat) as a raster and, where the run "
        "wrote a report (--report soma, or one given here), the voltage of some of its "
        "cells below, to a PNG (1200 x 720).",
    )
    p.add_argument("run", help="a run's output folder (or its out.dat)")
    p.add_argument(
        "--report", default=None, help="a report to draw traces from (default: RUN/soma.h5)"
    )
    p.add_argument(
        "--cells", type=int, nargs="+", default=None, metavar="GID",
        help=f"the cells whose traces to draw (default: the report's first {TRACES})",
    )  # fmt: skip
    p.add_argument("-o", "--output", default=None, help="the PNG (default: RUN/plot.png)")
    p.set_defaults(func=cmd_plot)
    return parser


def cmd_plot(args: argparse.Namespace) -> int:
    """`portneuron plot`: out.dat's raster, and a report's traces, to a PNG."""
    from .plot import plot

    where = Path(args.run)
    out_dat = where / "out.dat" if where.is_dir() else where
    folder = out_dat.parent
    report = Path(args.report) if args.report else folder / "soma.h5"
    if args.report is None and not report.exists():
        report = None
    elif not report.exists():
        raise PortneuronError(f"{report}: no such report")
    output = Path(args.output) if args.output else folder / "plot.png"
    print(plot(out_dat, output, report, args.cells or TRACES))
    return 0


def model_options(p: argparse.ArgumentParser) -> None:
    """-d, or the ringtest's size and shape."""
    p.add_argument(
        "-d", "--datpath", help="folder NEURON's nrncore_write wrote (default: the ringtest)"
    )
    p.add_argument("--nring", type=int, default=16, help="ringtest: rings (16)")
    p.add_argument("--ncell", type=int, default=8, help="ringtest: cells per ring (8)")
    p.add_argument(
        "--branch",
        type=int,
        nargs=2,
        default=[10, 20],
        metavar=("LO", "HI"),
        help="ringtest: dendrites per cell, inclusive range (10 20)",
    )
    p.add_argument(
        "--compart",
        type=int,
        nargs=2,
        default=[1, 1],
        metavar=("LO", "HI"),
        help="ringtest: segments per dendrite, inclusive range (1 1)",
    )


def cmd_plan(args: argparse.Namespace) -> int:
    """The placement a run on `args.ranks` ranks would use: each rank's device, its share of
    the model and its predicted load, and the predicted balance; with --measured, a run's
    measured load beside it."""
    import numpy as np

    from . import scheduler
    from .library import MechanismLibrary

    if args.ranks < 1:
        raise PortneuronError(f"-n {args.ranks}: give at least 1 rank")
    if args.threads is not None and args.threads < 1:
        raise PortneuronError(f"--threads must be >= 1, not {args.threads}")
    if args.datpath is None:
        check_ringtest_options(args)
    measured = read_measured(Path(args.measured), args.ranks) if args.measured else None
    devices, speeds = plan_devices(args)
    what, unit = ("groups", "bytes") if args.datpath is not None else ("cells", "operations")
    costs, placement_of = placed_items(args, MechanismLibrary())
    rank = placement_of(args.ranks, speeds)
    rates = np.ones(args.ranks) if speeds is None else np.asarray(speeds)
    finish = scheduler.loads(costs, rank, args.ranks) / rates
    by_count = np.arange(len(costs)) * args.ranks // max(len(costs), 1)  # equal blocks
    count_finish = scheduler.loads(costs, by_count, args.ranks) / rates
    loads = scheduler.loads(costs, rank, args.ranks)
    plan = {
        "ranks": args.ranks,
        "devices": devices,
        what: [int(n) for n in np.bincount(rank, minlength=args.ranks)],
        "cost": [float(x) for x in loads],
        "unit": unit,
        "predicted_share": [round(float(x), 4) for x in finish / (finish.sum() or 1.0)],
        "imbalance": round(scheduler.imbalance(finish), 4),
        "imbalance_by_count": round(scheduler.imbalance(count_finish), 4),
    }
    if speeds is not None:
        plan["speeds"] = [float(f"{x:.4g}") for x in speeds]
    if measured is not None:
        plan["measured_busy_s"] = measured
        plan["measured_imbalance"] = round(scheduler.imbalance(measured), 4)
    if args.json:
        print(json.dumps(plan))
        return 0
    blocks = " (blocks of 8 cells of one shape)" if args.datpath is None else ""
    by = f"{unit} over each rank's measured speed" if speeds is not None else unit
    print(f"{len(costs)} {what} on {args.ranks} ranks, longest first by {by}{blocks}:")
    width = max(len("device"), *(len(d) for d in devices))
    header = f"{'rank':>6}  {'device':<{width}} {what:>8} {unit:>14} {'predicted':>10}"
    print(header + (f" {'measured':>10} {'busy s':>9}" if measured is not None else ""))
    busy_total = sum(measured) if measured is not None else 0.0
    for r in range(args.ranks):
        line = (
            f"{r:>6}  {devices[r]:<{width}} {plan[what][r]:>8} {loads[r]:>14.0f} "
            f"{100 * plan['predicted_share'][r]:>9.1f}%"
        )
        if measured is not None:
            line += f" {100 * measured[r] / (busy_total or 1.0):>9.1f}% {measured[r]:>9.3f}"
        print(line)
    print(
        f"predicted imbalance (largest over mean, less 1): {100 * plan['imbalance']:.1f} %; "
        f"split by count: {100 * plan['imbalance_by_count']:.1f} %"
    )
    if measured is not None:
        print(f"measured imbalance ({args.measured}): {100 * plan['measured_imbalance']:.1f} %")
    return 0


def backend_list(text: str) -> list[str]:
    """The backends of a --backend list (one a rank), each a registered one."""
    from .backends import backend_names

    names = text.split(",")
    for name in names:
        if name not in backend_names():
            known = ", ".join(backend_names())
            raise PortneuronError(f"unknown backend {name!r}; registered backends: {known}")
    return names


def plan_devices(args: argparse.Namespace) -> tuple[list[str], tuple[float, ...] | None]:
    """Each rank's device (its backend, on --threads threads or every core), and, where
    ranks drive different backends, each one's speed measured here as a run measures it."""
    from .backends import best_backend, load_backend

    names = backend_list(args.backend or best_backend())
    if len(names) > args.ranks:
        raise PortneuronError(
            f"--backend {args.backend}: {len(names)} backends, one a rank, for {args.ranks} "
            f"rank(s); give -n {len(names)} or more"
        )
    threads = f"{args.threads} thread{'s' * (args.threads != 1)}" if args.threads else "every core"
    per_rank = [names[r % len(names)] for r in range(args.ranks)]
    devices = [f"{n} ({threads})" if n != "numpy" else n for n in per_rank]
    if len(set(names)) == 1:
        return devices, None
    from .cost import throughput

    speed = {n: throughput(load_backend(n), args.threads) for n in sorted(set(names))}
    return devices, tuple(speed[n] for n in per_rank)


def read_measured(path: Path, ranks: int) -> list[float]:
    """Each rank's busy seconds from a run's --json summary (rank_busy_s)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a JSON object"
        raise PortneuronError(
            f"{path}: {reason}; give --measured the file `portneuron run --json` printed"
        ) from None
    busy = summary.get("rank_busy_s") if isinstance(summary, dict) else None
    if busy is None:
        raise PortneuronError(
            f"{path}: no rank_busy_s (a run's --json summary has it when the run had several "
            f"ranks); run under mpiexec -n {ranks} with --json"
        )
    if len(busy) != ranks:
        raise PortneuronError(
            f"{path}: the run had {len(busy)} ranks, the plan -n {ranks}; give -n {len(busy)}"
        )
    return [float(b) for b in busy]


DESCRIPTION = """\
portneuron simulates NEURON models: NEURON's results, faster. It runs the CoreNEURON
datasets NEURON writes (ParallelContext.nrncore_write), like nrniv-core, or its built-in
ringtest benchmark, on the best backend here (llvm: compiled CPU code; numpy: the reference;
cuda: an NVIDIA GPU)."""

EPILOG = """\
examples:
  portneuron run                         the ringtest (16 rings of 8 cells, 100 ms)
  portneuron run -d DIR -e 50 -o OUT     a NEURON dataset for 50 ms; spikes to OUT/out.dat
  portneuron run -d DIR --mechanisms MODS   ... with the model's own .mod files
  portneuron compile hh --emit llvm      a mechanism's kernels as LLVM IR
  portneuron backends                    which backends run on this machine

'portneuron COMMAND --help' lists a command's options."""


class _Version(argparse.Action):
    """--version, its text made when asked for: reading the packages' versions scans every
    installed package's metadata (40 to 80 ms of each command's start-up)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None) -> None:  # fmt: skip
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """portneuron's version and those of what its results depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    parts = [f"portneuron {__version__}", f"Python {platform.python_version()}"]
    for name in ("numpy", "llvmlite", "neuron", "sympy", "pycuda"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            if name != "pycuda":
                parts.append(f"{name} missing")
    return ", ".join(parts)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit (a closed pipe, a full disk)
    cannot add a second message."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


#: The ranks of the run cmd_run started (one process until then).
_RUN_RANKS = [Ranks()]


def main(argv: list[str] | None = None) -> int:
    """The command line; under mpiexec, a rank that fails says so in one line naming it and
    ends every rank (MPI_Abort), so that none waits for it."""
    code = _main(argv)
    ranks = _RUN_RANKS[0]
    if code != 0 and ranks.size > 1:
        sys.stderr.flush()
        # mpiexec forwards a rank's output through its proxies, which MPI_Abort ends at once:
        # give them a moment to pass the line on (CI once lost it)
        time.sleep(1.0)
        ranks.abort(code)
    return code


def _error(message: str) -> None:
    ranks = _RUN_RANKS[0]
    where = f"rank {ranks.rank} of {ranks.size}: " if ranks.size > 1 else ""
    print(f"portneuron: {where}{message}", file=sys.stderr)


def _main(argv: list[str] | None = None) -> int:
    previous = stop_on_signals()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (PortneuronError, BackendUnavailable) as exc:
        _error(f"error: {exc}")
        return 1
    except MemoryError as exc:
        _error(
            f"error: out of memory ({str(exc) or 'an allocation failed'}); "
            f"simulate a smaller model, or on a machine with more memory"
        )
        return 1
    except (Interrupted, KeyboardInterrupt) as stop:  # a run's own try says where it was
        return stopped_early(
            stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGINT), argv
        )
    except BrokenPipeError:
        _drop_stdout()
        return 0
    except OSError as exc:  # the file system's refusal of a path or a write the user chose
        _drop_stdout()
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"error: {where}{exc.strerror or exc}")
        return 1
    finally:
        finished(previous)


if __name__ == "__main__":
    sys.exit(main())
