"""Progress on stderr for the long phases of a run: building the model, compiling, simulating.

A bar (tqdm) appears only where stderr is a terminal, and only for a phase that lasts longer
than `DELAY` seconds, so short runs, `--json`, pipes and log files stay as they were. The
simulation's bar counts simulated milliseconds and shows the ETA, as `nrniv-core`'s does.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any

#: Seconds a phase runs before its bar appears.
DELAY = 1.0


class Progress:
    """The bars of one run; `enabled=False` (or stderr not a terminal) makes every call a no-op."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None

    @contextmanager
    def phase(self, description: str, total: float | None = None, unit: str = "it"):
        """A bar for one phase: the body calls `update_to(n)` with how far it has come (of
        `total`; without a total the bar counts and shows the time taken)."""
        if not self.enabled:
            yield _ignore
            return
        from tqdm import tqdm

        fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.6g}/{total:.6g} " + unit
        fmt += " [{elapsed}<{remaining}]"
        with tqdm(
            total=total,
            desc=description,
            unit=unit,
            delay=DELAY,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format=fmt if total else None,
        ) as bar:
            self._bar = bar

            def update_to(n: float) -> None:
                bar.update(n - bar.n)

            try:
                yield update_to
            finally:
                self._bar = None

    def clear(self) -> None:
        """Take the bar off the screen before a message is printed."""
        if self._bar is not None:
            self._bar.clear()


def _ignore(n: float) -> None:
    pass
