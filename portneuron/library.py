"""Finding mechanisms by name: NEURON's built-ins and the user's `.mod` folders.

A dataset names its mechanisms (hh, ExpSyn, ...); each name is resolved to a `.mod` file
the way nrnivmodl would see it: the user's folders first, then NEURON's built-in sources from
the neuron wheel. Files are compiled on first use and kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from portneuron.errors import PortneuronError
from portneuron.ir import Mechanism

_NAME = re.compile(
    r"^\s*(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE
)
_COMMENT = re.compile(r"COMMENT.*?ENDCOMMENT|:[^\n]*|\?[^\n]*", re.DOTALL)


def declared_name(source: str) -> str | None:
    """The mechanism name a `.mod` source declares in its NEURON block."""
    match = _NAME.search(_COMMENT.sub("", source))
    return match.group(1) if match else None


class MechanismLibrary:
    """Mechanisms by NEURON name, compiled on demand."""

    def __init__(self, folders: Iterable[str | Path] = ()) -> None:
        self.files: dict[str, Path] = {}
        self._compiled: dict[str, Mechanism] = {}
        from portneuron.nmodl import builtin_mod_files

        self._index(builtin_mod_files().values())
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise PortneuronError(f"{folder}: --mechanisms needs a folder of .mod files")
            self._index(sorted(folder.glob("*.mod")))  # the user's files win over built-ins

    def _index(self, paths: Iterable[Path]) -> None:
        for path in paths:
            try:
                name = declared_name(path.read_text(errors="replace"))
            except OSError:
                continue
            if name is not None:
                self.files[name] = path

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
