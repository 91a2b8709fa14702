"""Compiled mechanisms kept between runs: a `.mod` source compiles to the same Mechanism
every time, so the front end's result is stored on disk by the source's content, its file
name and the front end itself (its code, sympy's version, NEURON's parser), and a run whose
mechanisms are all stored imports neither sympy nor NEURON's parser. A source that
INCLUDEs other files is not stored (what it includes is not in the key). The store is
PORTNEURON_CACHE/nmodl, else ~/.cache/portneuron/nmodl; one that cannot be read or
written only costs time."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import sys
from functools import cache
from pathlib import Path

import portneuron.ir
from portneuron.ir import Mechanism

from .parse import neuron_root


def cache_dir() -> Path:
    root = os.environ.get("PORTNEURON_CACHE") or Path.home() / ".cache" / "portneuron"
    return Path(root) / "nmodl"


@cache
def front_end() -> str:
    """A digest of what a source's Mechanism depends on besides the source."""
    digest = hashlib.sha256(sys.version.encode())
    for package in (Path(__file__).parent, Path(portneuron.ir.__file__).parent):
        for path in sorted(package.rglob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    sympy = importlib.util.find_spec("sympy")  # its version, read without importing it or
    if sympy is not None and sympy.origin is not None:  # every package's metadata
        try:
            digest.update((Path(sympy.origin).parent / "release.py").read_bytes())
        except OSError:
            pass
    try:
        parser = next((neuron_root() / "nmodl").glob("_nmodl*"), None)
        if parser is not None:
            digest.update(f"{parser.name} {parser.stat().st_size}".encode())
    except Exception:  # no NEURON: compiling says so
        pass
    return digest.hexdigest()


def _path(source: str, filename: str) -> Path | None:
    if "INCLUDE" in source:
        return None
    key = hashlib.sha256("\0".join((front_end(), filename, source)).encode()).hexdigest()
    return cache_dir() / f"{key[:32]}.pickle"


def load(source: str, filename: str) -> Mechanism | None:
    path = _path(source, filename)
    if path is None:
        return None
    try:
        mechanism = pickle.loads(path.read_bytes())
    except Exception:  # absent, or not ours: compile
        return None
    return mechanism if isinstance(mechanism, Mechanism) else None


def save(source: str, filename: str, mechanism: Mechanism) -> None:
    path = _path(source, filename)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(mechanism, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError:
        pass
