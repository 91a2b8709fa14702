"""Real-world NMODL from PyPI: the `.mod` files the neuron wheel ships (its release demo), each
compiled to verified IR or refused in one line naming the construct, and each that compiles
run in one compartment against NEURON itself (tests/neuron_cells.one_compartment: a leak, an
IClamp step and, for a synapse, a NetStim burst): v within 1e-9 mV at every step, and every
STATE and written concentration within 1e-9 relative at the end, on numpy and llvm. Nothing is copied into the repository: the files are read from the installed wheel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("neuron")

from portneuron.errors import NmodlError  # noqa: E402
from portneuron.nmodl import compile_file  # noqa: E402
from portneuron.nmodl.parse import neuron_root  # noqa: E402

pytestmark = pytest.mark.neuron

VOLTAGE_TOLERANCE = 1e-9  # mV
STATE_TOLERANCE = 1e-9  # relative, for STATEs and concentrations at the end of the run
RELEASE_DEMO = neuron_root() / ".data" / "share" / "nrn" / "demo" / "release"
CORPUS = sorted(RELEASE_DEMO.glob("*.mod"))
ONE_LINE = re.compile(r"^\S+\.mod(:\d+(:\d+)?)?: [^\n]+$")


def compiled_or_refused(path: Path):
    try:
        return compile_file(path)
    except NmodlError as exc:
        return str(exc)


def test_the_corpus_is_there():
    assert len(CORPUS) >= 10, f"the neuron wheel's release demo has {len(CORPUS)} .mod files"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_every_file_compiles_or_is_refused_in_one_line(path):
    result = compiled_or_refused(path)
    if isinstance(result, str):
        assert ONE_LINE.match(result), result
        assert "Traceback" not in result


@pytest.fixture(scope="module")
def compiled_corpus(tmp_path_factory):
    """The corpus files portneuron compiles, built for NEURON by nrnivmodl."""
    folder = tmp_path_factory.mktemp("corpus") / "mods"
    folder.mkdir()
    mechanisms = []
    for path in CORPUS:
        result = compiled_or_refused(path)
        if not isinstance(result, str):
            shutil.copy(path, folder / path.name)
            states = [v.name for v in result.variables if v.kind == "state"]
            ions = [(i.name, w) for i in result.ions for w in i.write if not w.startswith("i")]
            mechanisms.append(
                (result.name, result.kind, bool(result.net_receive_args), states, ions)
            )
    nrnivmodl = shutil.which("nrnivmodl", path=str(Path(sys.executable).parent))
    if nrnivmodl is None:
        pytest.skip("nrnivmodl is not installed")
    built = subprocess.run([nrnivmodl, "."], cwd=folder, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"nrnivmodl cannot build here: {built.stderr.strip()[-200:]}")
    return folder, mechanisms


RUN = """
import json, sys
import neuron
neuron.load_mechanisms(sys.argv[1])
import numpy as np
import neuron_cells
import portneuron.direct
out = {}
for name, kind, receives, states, ions in json.loads(sys.argv[2]):
    built = neuron_cells.one_compartment(name, kind, receives)
    expected = neuron_cells.run_neuron(built, 40.0)
    seg = built.segments[0]
    target = built.keep[1] if kind == "point_process" else None
    theirs = {s: getattr(target, s) if target else getattr(seg, f"{s}_{name}") for s in states}
    theirs.update({f"{ion}:{var}": getattr(seg, var) for ion, var in ions})
    result = portneuron.direct.run(40.0, record=built.segments, v_init=-65.0,
                                   mechanisms=[sys.argv[1]], backend=sys.argv[3])
    ours = {s: result.value(seg, name, s) for s in states}
    ours.update({f"{ion}:{var}": result.value(seg, f"{ion}_ion", var) for ion, var in ions})
    got = np.array(result.traces).T
    relative = {k: abs(ours[k] - theirs[k]) / max(abs(theirs[k]), 1e-300) for k in theirs}
    out[name] = {"max_dv": float(np.abs(got - expected).max()), "range": float(np.ptp(expected)),
                 "worst_state": max(relative.items(), key=lambda kv: kv[1], default=("", 0.0)),
                 "states": len(relative)}
    del built
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_compiled_files_match_neuron_in_one_compartment(compiled_corpus, backend):
    folder, mechanisms = compiled_corpus
    run = subprocess.run(
        [sys.executable, "-c", RUN, str(folder), json.dumps(mechanisms), backend],
        capture_output=True, text=True, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(results) == {m[0] for m in mechanisms}
    worst = {name: r["max_dv"] for name, r in results.items() if r["max_dv"] > VOLTAGE_TOLERANCE}
    assert not worst, worst
    assert all(r["range"] > 1.0 for r in results.values())  # every run moved v
    # every STATE and every written concentration at the end, relative to NEURON's
    states = {
        n: r["worst_state"] for n, r in results.items() if r["worst_state"][1] > STATE_TOLERANCE
    }
    assert not states, states
    assert sum(r["states"] for r in results.values()) >= 10
