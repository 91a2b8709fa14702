"""The wheel holds portneuron/ir and portneuron/backends, and no top-level ir or backends."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_the_mapped_subpackages(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("portneuron-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in (
        "portneuron/ir/__init__.py",
        "portneuron/ir/passes/fold_constants.py",
        "portneuron/backends/__init__.py",
        "portneuron/backends/numpy/backend.py",
        "portneuron/backends/llvm/render.py",
        "portneuron/backends/cuda/render.py",
        "portneuron/nmodl/mechanism.py",
        "portneuron/io/dataset.py",
        "portneuron/sim/simulation.py",
        "portneuron/build/network.py",
        "portneuron/build/swc.py",
    ):
        assert module in names, module
    top = {n.split("/")[0] for n in names}
    assert "ir" not in top and "backends" not in top
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "[portneuron.backends]" in text and "numpy = portneuron.backends.numpy:NumpyBackend" in text
    )


def test_numpy_backend_imports_neither_llvmlite_nor_pycuda():
    code = (
        "import sys; from portneuron.backends import load_backend; load_backend('numpy'); "
        "print(sorted(m for m in ('llvmlite', 'pycuda') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
