"""The `portneuron` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .backends.base import BackendUnavailable
from .errors import PortneuronError


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
        if args.emit == "cuda":  # source only: no PyCUDA or GPU needed, so not load_backend
            from .backends.cuda import CudaBackend

            backend, comment = CudaBackend(), "//"
        else:
            from .backends import load_backend

            backend, comment = load_backend("llvm"), ";"
        for kernel in mechanism.kernels:
            print(f"{comment} ==== {mechanism.name}.{kernel.name} ({args.emit})")
            sys.stdout.write(backend.emit(kernel, args.emit))
    return 0


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
    import json
    import resource
    import time

    from .backends import load_backend
    from .io.dataset import load_dataset
    from .io.spikes import write_spikes
    from .library import MechanismLibrary
    from .sim.simulation import Simulation

    if not args.tstop >= 0:
        raise PortneuronError(f"-e/--tstop must be >= 0, not {args.tstop}")
    outdir = Path(args.outpath)
    if outdir.exists() and not outdir.is_dir():
        raise PortneuronError(f"{outdir}: -o needs a folder, and this is a file")
    start = time.perf_counter()
    backend = load_backend(args.backend or best_backend())
    if args.datpath is not None:
        model = load_dataset(args.datpath, MechanismLibrary(args.mechanisms))
    else:
        from .build.ringtest import build_ringtest

        for name in ("nring", "ncell"):
            if getattr(args, name) < 1:
                raise PortneuronError(f"--{name} must be >= 1, not {getattr(args, name)}")
        for name in ("branch", "compart"):
            lo, hi = getattr(args, name)
            if not 1 <= lo <= hi:
                raise PortneuronError(f"--{name} LO HI needs 1 <= LO <= HI, not {lo} {hi}")
        model = build_ringtest(
            args.nring, args.ncell, tuple(args.branch), tuple(args.compart),
            MechanismLibrary(args.mechanisms),
        )  # fmt: skip
    dt = args.dt if args.dt is not None else model.dt
    if args.threads is not None and args.threads < 1:
        raise PortneuronError(f"--threads must be >= 1, not {args.threads}")
    sim = Simulation(model, backend, dt=dt, threads=args.threads)
    sim.finitialize(args.voltage)
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    result = sim.run(args.tstop, initialize=False)
    simulate_s = time.perf_counter() - start
    outdir.mkdir(parents=True, exist_ok=True)
    write_spikes(outdir / "out.dat", result.spikes)
    compartment_steps = model.compartments * max(result.steps, 1)
    summary = {
        "cells": model.ncell,
        "compartments": model.compartments,
        "spikes": len(result.spikes),
        "setup_s": round(setup_s, 6),
        "simulate_s": round(simulate_s, 6),
        "ns_per_compartment_step": round(simulate_s * 1e9 / compartment_steps, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "backend": backend.name,
        "threads": sim.threads_used,
        "jit_s": round(backend.jit_seconds(), 6) if hasattr(backend, "jit_seconds") else 0.0,
        "loop": "stepwise: " + sim.stepwise_reason if sim.stepwise_reason else "compiled epochs",
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['cells']} cells, {summary['compartments']} compartments, "
            f"{summary['spikes']} spikes to {outdir / 'out.dat'}\n"
            f"setup {setup_s:.3f} s, simulate {simulate_s:.3f} s "
            f"({summary['ns_per_compartment_step']} ns per compartment-step, "
            f"backend {backend.name}, {summary['threads']} thread(s), {summary['loop']}, "
            f"peak RSS {summary['peak_rss_mib']} MiB)"
        )
    return 0


def best_backend() -> str:
    """The fastest backend that can run here (compiled ones first, numpy as the fallback).
    Not cuda yet: it copies every kernel's arrays to the GPU and back, so it is chosen
    only by name until the model's arrays stay on the GPU."""
    from .backends import backend_names, backend_status

    for name in ("llvm", "numpy"):
        if name in backend_names() and backend_status(name).available:
            return name
    return "numpy"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portneuron", description=__doc__)
    parser.add_argument("--version", action="version", version=f"portneuron {_version()}")
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
        choices=["ir", "llvm", "asm", "cuda"],
        default="ir",
        help="what to print: portneuron IR, optimised LLVM IR, host assembly or CUDA C "
        "(default: ir)",
    )
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "run", help="simulate a NEURON dataset (or the built-in ringtest) and write out.dat"
    )
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
    p.add_argument("--backend", default=None, help="numpy, llvm or cuda (default: the best here)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for the cell groups (default: every core; compiled backends only)",
    )
    p.add_argument(
        "--mechanisms",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of .mod files for mechanisms that are not NEURON built-ins",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("backends", help="list backends and whether they can run here")
    p.set_defaults(func=cmd_backends)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PortneuronError, BackendUnavailable) as exc:
        print(f"portneuron: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
