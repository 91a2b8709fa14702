"""Spike output: CoreNEURON's out.dat, written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def format_spikes(spikes: Iterable[tuple[float, int]]) -> str:
    """One `time<TAB>gid` line per spike (`%.8g`), sorted by time, then gid."""
    return "".join(f"{t:.8g}\t{gid}\n" for t, gid in sorted(spikes))


def write_spikes(path: str | Path, spikes: Iterable[tuple[float, int]]) -> None:
    """Write out.dat atomically: a reader sees the old file, or the whole new one. Its mode is
    an ordinary new file's (0644 under the usual umask), not the temporary file's 0600."""
    path = Path(path)
    text = format_spikes(spikes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def read_spikes(path: str | Path) -> list[tuple[float, int]]:
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            t, gid = line.split()
            out.append((float(t), int(gid)))
    return out
