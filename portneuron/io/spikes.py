"""Spike output: CoreNEURON's out.dat, written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from portneuron.errors import PortneuronError


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
    """out.dat's (time, gid) pairs; one line naming the file and line where a line is not
    `time<TAB>gid`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PortneuronError(f"{path}: cannot read the spikes ({exc.strerror})") from None
    out = []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            t, gid = line.split()
            out.append((float(t), int(gid)))
        except ValueError:
            raise PortneuronError(
                f"{path}:{k}: {line.strip()[:40]!r} is not 'time<TAB>gid'; give the out.dat a "
                f"run wrote"
            ) from None
    return out


@contextlib.contextmanager
def written_whole(path: Path):
    """A path beside `path` to write a file to, which becomes `path` when the block ends
    and is removed where it raises: a reader sees the old file or the whole new one."""
    part = path.with_name(path.name + ".part")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
