"""A published network end to end: hnn-core's default network (tests/hnn_network.py), built
by hnn-core in NEURON and run by NEURON and by portneuron's direct mode. Its dipole is summed
by POINTER mechanisms into a NEURON Vector's element per cell (hnn-core's `dpl_ref`), which
NEURON's writer cannot hand over: direct mode keeps those values itself. Spikes identical,
every cell's somatic v within 1e-9 mV at every step, every cell's dipole and their sum within
1e-9 relative to the trace's largest magnitude, on numpy and llvm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("neuron")
for needed in ("matplotlib", "scipy", "h5io"):  # what hnn-core imports
    pytest.importorskip(needed)

import hnn_network  # noqa: E402
from harness import last_json  # noqa: E402

pytestmark = [pytest.mark.neuron, pytest.mark.slow]

VOLTAGE_TOLERANCE = 1e-9  # mV
DIPOLE_TOLERANCE = 1e-9  # relative to the largest |dipole| of the trace
TSTOP = 170.0  # ms: hnn-core's default, its three evoked drives and the rhythmic ones
NUMPY_TSTOP = 40.0  # ms: numpy runs the first proximal drive (it is ~60x slower than llvm)


@pytest.fixture(scope="module")
def hnn(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hnn")
    unpacked = hnn_network.prepare(root)
    if isinstance(unpacked, str):
        pytest.skip(unpacked)
    return unpacked


def run(hnn: Path, tstop: float, *engines: str) -> dict:
    got = subprocess.run(
        [sys.executable, hnn_network.__file__, str(hnn), str(tstop), *engines],
        capture_output=True, text=True, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr[-3000:]
    return last_json(got.stdout)


@pytest.mark.parametrize(
    ("backend", "tstop"),
    [("llvm", TSTOP), pytest.param("numpy", NUMPY_TSTOP, marks=pytest.mark.slow)],
)
def test_hnn_core_default_network_matches_neuron(hnn, backend, tstop):
    r = run(hnn, tstop, backend, "neuron")
    assert r["cells"] == 270 and r["drives"] > 100, r
    assert r[f"{backend}_same_spikes"], r
    assert r["neuron_spikes"] >= (1000 if tstop == TSTOP else 1), r
    assert r[f"{backend}_max_dv"] <= VOLTAGE_TOLERANCE, r
    assert r[f"{backend}_dipole_rel"] <= DIPOLE_TOLERANCE, r
    assert r[f"{backend}_total_dipole_rel"] <= DIPOLE_TOLERANCE, r
