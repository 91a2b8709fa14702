"""Parsing `.mod` files with NEURON's own NMODL parser, and finding places in the source.

The parser is the `_nmodl` extension shipped in the `neuron` wheel. It is loaded directly, so
parsing never starts NEURON's interpreter. Its AST does not expose source positions to Python,
so `SourceMap` finds blocks and tokens in the text for error messages.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from ..errors import NmodlError
from ..interrupts import deferred


@cache
def neuron_root() -> Path:
    spec = importlib.util.find_spec("neuron")
    if spec is None or spec.origin is None:
        raise NmodlError("the 'neuron' package is not installed; run: pip install neuron", "neuron")
    return Path(spec.origin).parent


@cache
def nmodl_module() -> ModuleType:
    """NEURON's NMODL parser bindings (`neuron.nmodl._nmodl`), loaded on their own."""
    root = neuron_root()
    so = next((root / "nmodl").glob("_nmodl*"), None)
    if so is None:
        raise NmodlError("this neuron wheel has no NMODL parser; install neuron>=9", str(root))
    os.environ.setdefault("NMODLHOME", str(root / ".data" / "share" / "nrn"))
    loader = importlib.machinery.ExtensionFileLoader("_nmodl", str(so))
    spec = importlib.util.spec_from_file_location("_nmodl", so, loader=loader)
    with deferred():  # pybind11 makes a stop raised in its start-up an ImportError
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        loader.exec_module(module)
    return module


def builtin_mod_dir() -> Path:
    """The folder of NEURON's built-in mechanisms (hh, pas, ExpSyn, ...) as `.mod` sources."""
    return neuron_root() / ".data" / "share" / "modfile"


def read_mod_text(path: Path) -> str:
    """A `.mod` file's text as NEURON reads it: bytes, so UTF-8 or Latin-1 (in comments,
    typically) are both fine; a file with NUL bytes is not NMODL at all."""
    data = path.read_bytes()
    if b"\0" in data:
        raise NmodlError("not a text file (it has NUL bytes); give a .mod source", str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_LOCATION = re.compile(r"\[Location\s*:\s*(\d+)\.(\d+)")


_INCLUDE = re.compile(r'^(\s*INCLUDE\s*")([^"]+)(")', re.MULTILINE)


def resolve_includes(source: str, filename: str) -> str:
    """The source with every INCLUDE's file name made absolute, where nocmodl would find it:
    beside the including file, then in the current folder, then in the folders of
    MODL_INCLUDE (colon-separated). Lines stay where they were."""
    folders = [Path(filename).parent, Path.cwd()]
    folders += [Path(p) for p in os.environ.get("MODL_INCLUDE", "").split(":") if p]
    blanked = SourceMap._blank_comments(source)

    def resolve(match: re.Match) -> str:
        if not blanked[match.start() : match.end()].strip():
            return match.group(0)  # inside a comment
        name = match.group(2)
        for folder in folders:
            path = folder / name
            if path.is_file():
                return f"{match.group(1)}{path.resolve()}{match.group(3)}"
        line = source.count("\n", 0, match.start()) + 1
        raise NmodlError(
            f'INCLUDE "{name}": no such file beside this one, in {Path.cwd()} or in '
            f"MODL_INCLUDE; put it beside the .mod file",
            filename,
            line,
        )

    return _INCLUDE.sub(resolve, source)


def parse(source: str, filename: str = "<string>"):
    """Parse NMODL text; a syntax error becomes one `NmodlError` line with file:line:col."""
    driver = nmodl_module().NmodlDriver()
    if "INCLUDE" in source:
        source = resolve_includes(source, filename)
    try:
        return driver.parse_string(source)
    except Exception as exc:  # the C++ parser raises RuntimeError, and others on odd input
        text = str(exc).strip()
        if not isinstance(exc, RuntimeError):
            raise NmodlError(
                f"the NMODL parser failed ({text}); check for unbalanced braces or VERBATIM",
                filename,
            ) from None
        match = _LOCATION.search(text)
        message = text.split("[Location")[0].strip().splitlines()[0] if text else "parse error"
        message = message.removeprefix("NMODL Parser Error :").strip() or "syntax error"
        if match:
            raise NmodlError(message, filename, int(match[1]), int(match[2])) from None
        raise NmodlError(message, filename) from None


@dataclass(frozen=True)
class _Header:
    keyword: str
    name: str
    line: int
    end: int


_BLOCK = re.compile(
    r"\b(NEURON|UNITS|PARAMETER|STATE|ASSIGNED|CONSTANT|INITIAL|BREAKPOINT|DERIVATIVE|KINETIC|"
    r"LINEAR|NONLINEAR|PROCEDURE|FUNCTION|FUNCTION_TABLE|NET_RECEIVE|DISCRETE|PARTIAL|"
    r"BEFORE|AFTER|CONSTRUCTOR|DESTRUCTOR|INDEPENDENT|VERBATIM)\b\s*(\w*)"
)


class SourceMap:
    """Line numbers of top-level blocks and of words inside them, for error messages."""

    def __init__(self, source: str, filename: str) -> None:
        self.filename = filename
        self.lines = self._blank_comments(source).splitlines()
        self.headers = self._scan()

    @staticmethod
    def _blank_comments(source: str) -> str:
        """The source with comments replaced by spaces, so positions stay where they were."""
        out = re.sub(
            r"(?s)\bCOMMENT\b.*?\bENDCOMMENT\b", lambda m: re.sub(r"[^\n]", " ", m[0]), source
        )
        blank = lambda m: " " * len(m[0])  # noqa: E731
        return "\n".join(re.sub(r"[:?].*", blank, line) for line in out.splitlines())

    def _scan(self) -> list[_Header]:
        headers: list[_Header] = []
        depth, open_header = 0, None
        for number, line in enumerate(self.lines, start=1):
            if depth == 0:
                match = _BLOCK.search(line)
                if match:
                    open_header = (match[1], match[2], number)
                    if match[1] == "VERBATIM":
                        headers.append(_Header("VERBATIM", "", number, number))
                        open_header = None
            depth += line.count("{") - line.count("}")
            if depth <= 0 and open_header and "}" in line:
                headers.append(_Header(*open_header, end=number))
                open_header, depth = None, 0
        return headers

    def block(self, keyword: str, name: str = "", nth: int = 0) -> tuple[int, int] | None:
        """(first line, last line) of a top-level block, e.g. ("PROCEDURE", "rates")."""
        found = [h for h in self.headers if h.keyword == keyword and (not name or h.name == name)]
        return (found[nth].line, found[nth].end) if nth < len(found) else None

    def find(self, word: str, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """(line, column) of the first whole-word `word` within a line range."""
        lo, hi = within or (1, len(self.lines))
        pattern = re.compile(rf"(?<![\w]){re.escape(word)}(?![\w])")
        for number in range(lo, min(hi, len(self.lines)) + 1):
            match = pattern.search(self.lines[number - 1])
            if match:
                return number, match.start() + 1
        return None

    def error(
        self, message: str, block: tuple[str, str] | None = None, word: str | None = None
    ) -> NmodlError:
        """An `NmodlError` placed at `word` inside `block` (keyword, name), as well as known."""
        span = self.block(*block) if block else None
        place = None
        if word and span:  # the body first: the header repeats the block's own name
            place = self.find(word, (span[0] + 1, span[1])) or self.find(word, span)
        if place is None and word:
            place = self.find(word)
        if place is None and span:
            place = (span[0], None)
        line, col = place if place else (None, None)
        return NmodlError(message, self.filename, line, col)
