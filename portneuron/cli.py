"""The `portneuron` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    p.add_argument("--emit", choices=["ir"], default="ir", help="what to print (default: ir)")
    p.set_defaults(func=cmd_compile)

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
    except PortneuronError as exc:
        print(f"portneuron: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
