"""The wheel holds portneuron/ir and portneuron/backends, and no top-level ir or backends."""

from __future__ import annotations

import os
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
    assert "[console_scripts]" in text and "portneuron = portneuron.__main__:main" in text


def test_another_packages_backend_is_found_through_its_entry_point(tmp_path):
    """A backend outside portneuron registers itself in the `portneuron.backends` group; one
    that names one of portneuron's own is ignored; one that names no class is unavailable,
    with the reason."""
    (tmp_path / "toy_backend.py").write_text(
        "from portneuron.backends.base import Backend\n"
        "class ToyBackend(Backend):\n"
        "    name = 'toy'\n"
        "    @classmethod\n"
        "    def availability(cls):\n"
        "        return False, 'a toy: it runs nothing'\n"
    )
    info = tmp_path / "toy_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[portneuron.backends]\ntoy = toy_backend:ToyBackend\nnumpy = toy_backend:ToyBackend\n"
        "broken = toy_backend:Missing\n"
    )
    code = (
        "from portneuron.backends import backend_names, backend_status, load_backend\n"
        "print(backend_names())\n"
        "print(backend_status('toy').reason)\n"
        "print(type(load_backend('numpy')).__name__)\n"
        "print(backend_status('broken').reason)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.splitlines() == [
        "['broken', 'cuda', 'llvm', 'numpy', 'opencl', 'toy']",
        "a toy: it runs nothing",
        "NumpyBackend",
        "cannot import: toy_backend has no 'Missing'",
    ]


def test_a_run_on_portneurons_own_backend_reads_no_package_metadata():
    """Loading llvm or numpy looks in no installed package's metadata (importlib.metadata
    and its scan of every package cost a start-up 40 to 80 ms)."""
    code = (
        "import sys; from portneuron.backends import best_backend, load_backend; "
        "load_backend(best_backend()); load_backend('numpy'); "
        "print('importlib.metadata' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_numpy_backend_imports_neither_llvmlite_nor_pycuda():
    code = (
        "import sys; from portneuron.backends import load_backend; load_backend('numpy'); "
        "print(sorted(m for m in ('llvmlite', 'pycuda') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
