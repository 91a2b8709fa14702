"""Real-world inputs from PyPI, downloaded by pip at test time (nothing is copied into the
repository): pinned distributions, so that what the tests run does not move under CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: PyPI distributions with `.mod` files.
PYPI = {"bmtk": "bmtk==1.2.0", "hnn-core": "hnn-core==0.6.1", "LFPy": "LFPy==2.3.7"}


def download(name: str, into: Path) -> Path | str:
    """The archive pip downloads for PYPI[name] (a wheel, or an sdist where there is none),
    or why pip could not (offline)."""
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), PYPI[name]],
        capture_output=True, text=True,
    )  # fmt: skip
    if got.returncode != 0:
        return got.stderr.strip()[-300:]
    (archive,) = into.iterdir()
    return archive
