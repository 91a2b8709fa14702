"""The NMODL front end: `.mod` source -> `ir.Mechanism`.

Parsing is NEURON's own parser; lowering, ODE solving (sympy) and TABLE handling are ours.
Every problem the user can cause is an `NmodlError`, one line with file:line[:col].
What a source compiles to is kept on disk (cache.py), so the parser and sympy are imported
only where a source is new.
"""

from __future__ import annotations

from pathlib import Path

from portneuron.errors import NmodlError
from portneuron.ir import Mechanism, verify_mechanism

from . import cache
from .parse import builtin_mod_dir, read_mod_text


def compile_source(source: str, filename: str = "<string>") -> Mechanism:
    """Lower NMODL text to a verified mechanism."""
    mechanism = cache.load(source, filename)
    if mechanism is None:
        mechanism = _compile(source, filename)
        cache.save(source, filename, mechanism)
    return mechanism


def _compile(source: str, filename: str) -> Mechanism:
    from .declarations import collect
    from .lower import DynamicArray
    from .mechanism import Assembler
    from .parse import SourceMap, parse
    from .solvers import NotCnexp
    from .symbolic import NotSymbolic

    program = parse(source, filename)
    source_map = SourceMap(source, filename)
    decl = collect(program, source_map)
    try:
        while True:
            try:
                assembler = Assembler(decl)
                mechanism = assembler.mechanism()
                if assembler.use.needed:  # values NEURON shares, which must be shared
                    mechanism = Assembler(decl, shared=assembler.use.needed).mechanism()
                break
            except DynamicArray as exc:  # again, with that array indexed in place
                if exc.name in decl.dynamic_arrays:
                    raise
                decl.dynamic_arrays.add(exc.name)
            except NotCnexp as exc:  # again, that block solved by derivimplicit
                if exc.block in decl.not_cnexp:
                    raise
                decl.not_cnexp.add(exc.block)
    except NotSymbolic as exc:
        raise NmodlError(f"cannot solve the equations symbolically: {exc}", filename) from None
    except RecursionError:
        raise NmodlError("expression nested too deeply", filename) from None
    return verify_mechanism(mechanism)


def compile_file(path: str | Path) -> Mechanism:
    """Lower a `.mod` file to a verified mechanism."""
    path = Path(path)
    try:
        source = read_mod_text(path)
    except OSError as exc:
        raise NmodlError(f"cannot read: {exc.strerror}", str(path)) from None
    return compile_source(source, str(path))


def builtin_mod_files() -> dict[str, Path]:
    """NEURON's built-in mechanism sources, by file stem (hh, passive, expsyn, ...)."""
    return {p.stem: p for p in sorted(builtin_mod_dir().glob("*.mod"))}


__all__ = ["NmodlError", "builtin_mod_dir", "builtin_mod_files", "compile_file", "compile_source"]
