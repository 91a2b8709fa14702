"""What every refusal of bad input looks like, for the bad-input tests: one line on stderr, no
traceback, and an out.dat from an earlier run left as it was."""

from __future__ import annotations

from pathlib import Path

SENTINEL = "0.5\t7\n"  # an out.dat from an earlier run, which a refused run must not touch


def with_earlier_out_dat(folder: Path) -> Path:
    """`folder`, made, holding an earlier run's out.dat."""
    folder.mkdir()
    (folder / "out.dat").write_text(SENTINEL)
    return folder


def one_line(err: str) -> str:
    """The one line on stderr (no traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]
