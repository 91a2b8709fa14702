"""Low-level reading of NEURON's dataset files: text lines and `chkpnt`-prefixed arrays.

Every problem is a `DatasetError` naming the file and the line, with what was expected. Each
binary array read leaves a `Record` of where it lies, so that checks made later (when the
arrays of several files are put together) still name the file, the array and the element.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portneuron.errors import PortneuronError

VERSION = "1.8"


class DatasetError(PortneuronError):
    """A dataset file that is damaged, truncated or of a format portneuron does not read."""


@dataclass(frozen=True)
class Record:
    """Where one binary array lies in its file: `start` is the byte offset of its `chkpnt`
    line, `offset` that of its first value."""

    path: Path
    what: str
    start: int
    offset: int
    dtype: str
    count: int

    def __str__(self) -> str:
        return f"{self.path}@{self.start}"

    def error(self, index: int, value: object, why: str) -> DatasetError:
        """Element `index` of the array (counted as the file stores it) is impossible."""
        if isinstance(value, np.generic):
            value = value.item()
        return DatasetError(
            f"{self}: {self.what}[{index}] = {value}, but {why}; the file is damaged"
        )

    def check(self, values: np.ndarray, bad: np.ndarray, why: str | Callable[[int], str]) -> None:
        """Refuse the first element of `values` (the array, flat) where `bad` holds; `why` says
        what it should be, or makes that from the element's index."""
        if bad.any():
            k = int(np.argmax(bad))
            raise self.error(k, values[k], why(k) if callable(why) else why)

    def check_range(self, values: np.ndarray, lo: int, hi: int, why: str) -> None:
        """Every value is an index in lo <= value < hi."""
        self.check(values, (values < lo) | (values >= hi), why)


class DatFile:
    """A cursor over one file: text lines and binary arrays, in order; `records` says where
    each array was, by name."""

    def __init__(self, path: Path, checkpoint: int = 0) -> None:
        self.path = path
        try:
            self.file = path.open("rb")
            self.size = os.fstat(self.file.fileno()).st_size
        except FileNotFoundError:
            raise DatasetError(
                f"{path}: missing; the dataset is incomplete (rewrite it with nrncore_write)"
            ) from None
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read: {exc.strerror}") from None
        self.pos, self.lineno, self.checkpoint = 0, 0, checkpoint
        self.binary_seen, self.record_start = False, 0
        self.records: dict[str, Record] = {}

    def __enter__(self) -> DatFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def where(self, next_line: bool = False) -> str:
        """file:line while the file is all text so far, else file@byte-offset of the record."""
        if self.binary_seen:
            return f"{self.path}@{self.record_start}"
        return f"{self.path}:{self.lineno + next_line}"

    def error(self, message: str) -> DatasetError:
        return DatasetError(f"{self.where()}: {message}")

    def truncated(self, what: str) -> DatasetError:
        return DatasetError(
            f"{self.where(next_line=True)}: file ends before {what}; the file is truncated "
            f"(rewrite the dataset with nrncore_write)"
        )

    def line(self, what: str) -> str:
        self.record_start = self.pos
        raw = self.file.readline()
        if not raw.endswith(b"\n"):
            raise self.truncated(what)
        self.pos, self.lineno = self.pos + len(raw), self.lineno + 1
        raw = raw[:-1]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"expected {what}, found binary data; the file is damaged") from None

    def version(self) -> None:
        found = self.line("the version line").strip()
        if found != VERSION:
            raise self.error(
                f"dataset format {found!r}, but portneuron reads format {VERSION} "
                f"(NEURON 9's nrncore_write); rewrite the dataset with NEURON 9"
            )

    def integer(self, what: str) -> int:
        text = self.line(what)
        words = text.split()
        try:
            return int(words[0])
        except (IndexError, ValueError):
            raise self.error(f"expected {what} (an integer), found {text[:40]!r}") from None

    def count(self, what: str) -> int:
        """An integer that counts something, so is at least 0."""
        n = self.integer(what)
        if n < 0:
            raise self.error(f"{what} is {n}, but a count is at least 0; the file is damaged")
        return n

    def integers(self, what: str, count: int) -> list[int]:
        return [self.integer(what) for _ in range(count)]

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        """A binary array of `count` items after its `chkpnt N` line."""
        dt = self._binary(dtype, count, what)
        self.records[what] = Record(self.path, what, self.record_start, self.pos, dtype, count)
        out = np.empty(count, dt)  # read straight into its own array: no copy of the file
        self._read(out, what, count)
        return out if dt.isnative else out.astype(dt.newbyteorder("="))

    def columns(self, rows: int, width: int, what: str) -> list[np.ndarray]:
        """A binary float64 array of `rows` rows of `width` values, row after row, as its
        `width` columns: read a few rows at a time, so that no copy of it is ever whole."""
        dt = self._binary("f8", rows * width, what)
        columns = [np.empty(rows) for _ in range(width)]
        step = max(1, (1 << 16) // max(width, 1))
        self.records[what] = Record(
            self.path, what, self.record_start, self.pos, "f8", rows * width
        )
        buffer = np.empty((min(step, rows), width), dt)
        for first in range(0, rows, step):
            part = buffer[: min(step, rows - first)]
            self._read(part, what, rows * width)
            for column, values in zip(columns, part.T):
                column[first : first + len(part)] = values
        return columns

    def _binary(self, dtype: str, count: int, what: str) -> np.dtype:
        """The `chkpnt N` line of an array of `count` items, which the file holds whole;
        the items' (little-endian) type."""
        if count < 0:
            raise self.error(f"negative length {count} for {what}; the file is damaged")
        mark = self.line(f"'chkpnt {self.checkpoint}' before {what}")
        if mark.split() != ["chkpnt", str(self.checkpoint)]:
            raise self.error(
                f"expected 'chkpnt {self.checkpoint}' before {what}, found {mark[:40]!r}; "
                f"the file is damaged or was not written by NEURON 9"
            )
        self.checkpoint += 1
        self.binary_seen = True
        dt = np.dtype(dtype).newbyteorder("<")
        if self.pos + dt.itemsize * count > self.size:
            raise self.truncated(f"the end of {what} ({count} values)")
        return dt

    def _read(self, out: np.ndarray, what: str, count: int) -> None:
        """The file's next bytes into `out` (contiguous), of an array of `count` items."""
        if self.file.readinto(out.view(np.uint8).reshape(-1)) != out.nbytes:
            raise self.truncated(f"the end of {what} ({count} values)")
        self.pos += out.nbytes

    def end(self) -> None:
        if self.pos != self.size:
            raise self.error(
                f"{self.size - self.pos} unexpected bytes after the last record; "
                f"the file is damaged"
            )
