"""Finding mechanisms by name: NEURON's built-ins and the user's `.mod` folders.

A dataset names its mechanisms (hh, ExpSyn, ...); each name is resolved to a `.mod` file
the way nrnivmodl would see it: the user's folders first, then NEURON's built-in sources from
the neuron wheel. Files are compiled on first use and kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from portneuron.errors import NmodlError, PortneuronError
from portneuron.ir import Mechanism
from portneuron.nmodl.parse import read_mod_text

_NEURON_BLOCK = re.compile(r"\bNEURON\s*\{([^}]*)\}")
_NAME = re.compile(r"\b(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"COMMENT.*?ENDCOMMENT|:[^\n]*|\?[^\n]*", re.DOTALL)


def declared_name(source: str, path: Path | None = None) -> str | None:
    """The mechanism name a `.mod` source declares in its NEURON block; without one, as
    nocmodl names it, the file's (`path`'s) stem; None for `SUFFIX nothing`."""
    block = _NEURON_BLOCK.search(_COMMENT.sub("", source))
    match = _NAME.search(block.group(1)) if block else None
    if match:  # `SUFFIX nothing`: C functions for hoc, no mechanism (nocmodl registers none)
        return match.group(1) if match.group(1) != "nothing" else None
    return path.stem if path is not None and path.stem.isidentifier() else None


_POINTER = re.compile(r"\bPOINTER\s+(\w+(?:\s*,\s*\w+)*)")


def declared_pointers(source: str) -> list[str]:
    """The POINTER variables a `.mod` source declares in its NEURON block."""
    block = _NEURON_BLOCK.search(_COMMENT.sub("", source))
    if not block:
        return []
    return [n.strip() for m in _POINTER.finditer(block.group(1)) for n in m.group(1).split(",")]


#: NEURON's compiled-in mechanisms without a `.mod` source in the wheel (its hh, pas, ExpSyn,
#: ... sources are indexed from the wheel): a user file may not take their names either.
NEURON_BUILTIN_NAMES = (
    "morphology", "capacitance", "extracellular", "fastpas", "AlphaSynapse", "VClamp", "OClamp",
    "APCount", "IntFire1", "IntFire2", "IntFire4", "PointProcessMark",
)  # fmt: skip


class MechanismLibrary:
    """Mechanisms by NEURON name, compiled on demand. A user's file may not declare a name
    that NEURON already has, or that another of the user's files declares: NEURON refuses a
    second mechanism of one name, and portneuron refuses it the same way, naming both."""

    def __init__(self, folders: Iterable[str | Path] = ()) -> None:
        self.files: dict[str, Path] = {}
        self._compiled: dict[str, Mechanism] = {}
        self.builtin: set[str] = set()  # names whose file is NEURON's
        from portneuron.nmodl import builtin_mod_files

        self._index(builtin_mod_files().values(), builtin=True)
        seen: set[Path] = set()
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise PortneuronError(f"{folder}: --mechanisms needs a folder of .mod files")
            if folder.resolve() in seen:
                continue  # the same folder twice is one set of files, as for nrnivmodl
            seen.add(folder.resolve())
            self._index(sorted(folder.glob("*.mod")), builtin=False)

    def _index(self, paths: Iterable[Path], builtin: bool) -> None:
        for path in paths:
            try:
                name = declared_name(read_mod_text(path), path)
            except (OSError, NmodlError):
                continue  # compiled, and reported, only if a model uses it
            if name is None:
                continue
            if not builtin and (name in self.files or name in NEURON_BUILTIN_NAMES):
                other = self.files.get(name)
                if other is None:
                    what = "a mechanism built into NEURON"
                elif name in self.builtin:
                    what = f"NEURON's built-in ({other})"
                else:
                    what = str(other)
                raise PortneuronError(
                    f"{path}: declares mechanism {name}, as {what} does; NEURON refuses two "
                    f"mechanisms of one name: rename the SUFFIX or POINT_PROCESS in {path.name}"
                )
            if builtin:
                self.builtin.add(name)
            self.files[name] = path

    def pointers(self) -> dict[str, tuple[str, list[str]]]:
        """Mechanism name -> (its kind: "density", "point_process" or "artificial_cell", its
        POINTER variables), for the mechanisms that have some (read from the sources,
        nothing compiled)."""
        out = {}
        for name, path in self.files.items():
            try:
                source = read_mod_text(path)
            except (OSError, NmodlError):
                continue
            found = declared_pointers(source)
            if found:
                block = _NEURON_BLOCK.search(_COMMENT.sub("", source))
                kind = re.search(r"\b(POINT_PROCESS|ARTIFICIAL_CELL)\b", block.group(1))
                out[name] = (
                    {"POINT_PROCESS": "point_process", "ARTIFICIAL_CELL": "artificial_cell"}[
                        kind[1]
                    ]
                    if kind
                    else "density",
                    found,
                )
        return out

    def streams(self) -> dict[str, str]:
        """Mechanism name -> the ASSIGNED that says an instance's BBCOREPOINTER stream is
        Random123's (`usingR123`), for the mechanisms that keep one (compiled: only files
        that call nrnran123 are)."""
        out = {}
        for name, path in self.files.items():
            try:
                if "nrnran123_" not in read_mod_text(path):
                    continue
                stream = self.get(name).stream
            except (OSError, NmodlError):
                continue  # reported where a model uses it
            if stream is not None and stream[1]:
                out[name] = stream[1]
        return out

    def registered(self, name: str) -> int:
        """Where `name` comes in the order NEURON registers mechanisms: the built-ins, then
        each folder's files by name (nrnivmodl's order)."""
        return list(self.files).index(name) if name in self.files else len(self.files)

    def get(self, name: str, where: str = "") -> Mechanism:
        """The compiled mechanism `name`; `where` (a dataset file) goes into the error."""
        if name in self._compiled:
            return self._compiled[name]
        path = self.files.get(name)
        if path is None:
            raise PortneuronError(
                f"{where or 'model'}: mechanism {name!r} has no .mod file; give the folder "
                f"of its .mod (as given to nrnivmodl) with --mechanisms DIR (direct mode: "
                f"mechanisms=[DIR])"
            )
        from portneuron.nmodl import compile_file

        mechanism = compile_file(path)
        self._compiled[name] = mechanism
        return mechanism
