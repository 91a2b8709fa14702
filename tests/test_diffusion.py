"""LONGITUDINAL_DIFFUSION against NEURON 9, to the bit, on a branched cell.

tests/mods/caldif.mod diffuses the three shells of an array STATE (indexed COMPARTMENT and
LONGITUDINAL_DIFFUSION, a nonlinear KINETIC scheme), tests/mods/naldif.mod the ion's own
nai (a concentration STATE). The cell has sections of several nseg, a rallbranch of 2,
children at a section's middle, at its 0 end, at a zero-area 1 end and at the root, and a
section without the mechanisms (so a child's coupling comes from NEURON's fallbacks: the
parent's parent, the parent section's first segment, or none). NEURON runs it; so does
portneuron, from NEURON (direct mode) and built by its own builder. Every voltage, every
shell and both concentrations at every segment must be NEURON's exactly; with the diffusion
step left out they differ (the test can fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("neuron")

from harness import neuron_backends, nrnivmodl_folder, script_result, slow_for  # noqa: E402

pytestmark = pytest.mark.neuron

BACKENDS = neuron_backends()
MODS = [Path(__file__).parent / "mods" / name for name in ("caldif.mod", "naldif.mod")]

RUN = """
import json, sys
import neuron
neuron.load_mechanisms(sys.argv[1])
import numpy as np
from neuron import h
import neuron_cells
import portneuron.direct
from portneuron.build import Cell, Network
from portneuron.library import MechanismLibrary
from portneuron.sim.simulation import Simulation
from portneuron.backends import load_backend

folder, backend = sys.argv[1], sys.argv[2]
# name: (L, diam, nseg, parent, x); rallbranch 2 on d1; ax without the diffusing mechanisms
SHAPE = {
    "soma": (20, 20, 3, None, 0), "d0": (200, 2, 5, "soma", 1), "d1": (100, 1.5, 3, "soma", 0.5),
    "d2": (60, 1, 2, "d0", 1), "d3": (80, 1.2, 4, "soma", 0), "d4": (40, 0.8, 2, "d3", 0),
    "ax": (50, 1, 2, "soma", 1), "ax2": (30, 1, 3, "ax", 0.5),
}
PROBES = [("soma", 0.5), ("d0", 0.9), ("d1", 0.5), ("d2", 0.25), ("d4", 0.75), ("ax2", 0.5)]

def cainit(k, x):
    return 5e-5 * (1 + k + 3 * x)

neuron_cells.clear_neuron()
secs = {}
for k, (name, (L, diam, nseg, parent, x)) in enumerate(SHAPE.items()):
    sec = secs[name] = h.Section(name=name)
    sec.L, sec.diam, sec.nseg, sec.Ra = L, diam, nseg, 100
    if parent is not None:
        sec.connect(secs[parent](x))
    sec.insert("pas")
    sec.insert("hh")
    for seg in sec:
        seg.pas.g = 1e-4
    if name != "ax":
        sec.insert("caldif")
        sec.insert("naldif")
        for seg in sec:
            seg.caldif.cainit = cainit(k, seg.x)
secs["d1"].rallbranch = 2
stim = h.IClamp(secs["soma"](0.5))
stim.delay, stim.dur, stim.amp = 1, 30, 0.8
neuron_cells._register(secs["soma"])
segments = [secs[name](x) for name, x in PROBES]

def values(get):
    return [[get(seg, f"ca[{k}]") for k in range(3)] + [get(seg, "nai"), get(seg, "cai")]
            for seg in segments]

expected = neuron_cells.run_neuron(neuron_cells.Built(segments), 30.0)
theirs = values(lambda seg, name: seg.caldif.ca[int(name[3])] if name.startswith("ca[")
                else getattr(seg, name))
out = {"range": float(np.ptp(expected)), "nai_spread": float(np.ptp([v[3] for v in theirs]))}

def compare(v, mine):
    return {"max_dv": float(np.abs(v - expected).max()),
            "max_rel": max(abs(a - b) / abs(b) for r, s in zip(mine, theirs) for a, b in zip(r, s))}

def direct():
    result = portneuron.direct.run(30.0, record=segments, v_init=-65.0, mechanisms=[folder],
                                   backend=backend)
    def get(seg, name):
        where = ("caldif", name) if name.startswith("ca[") else (f"{name[:-1]}_ion", name)
        return result.value(seg, *where)
    return compare(np.array(result.traces).T, values(get))

out["direct"] = direct()
# NEURON's writer leaves the sections out: the dataset is refused in one line
import subprocess, tempfile
with tempfile.TemporaryDirectory() as dataset:
    h.finitialize(-65)
    neuron_cells.pc.nrncore_write(dataset)
    refused = subprocess.run([sys.executable, "-m", "portneuron", "run", "-d", dataset,
                              "--mechanisms", folder, "-e", "1"], capture_output=True, text=True)
    out["dataset"] = [refused.returncode, refused.stderr.strip().splitlines(), dataset]
from portneuron.sim.simulation import Simulation as S
step, S._diffuse = S._diffuse, lambda self: None
out["direct_without_diffusion"] = direct()
S._diffuse = step

# the same cell from portneuron's builder
net = Network(library=MechanismLibrary([folder]), celsius=h.celsius)
cell = Cell()
native = {}
for k, (name, (L, diam, nseg, parent, x)) in enumerate(SHAPE.items()):
    sec = native[name] = cell.section(name, L=L, diam=diam, nseg=nseg, Ra=100,
                                      parent=native.get(parent), x=x)
    cell.insert(sec, "pas", g=1e-4)
    cell.insert(sec, "hh")
    if name != "ax":
        cell.insert(sec, "caldif", cainit=np.array([cainit(k, (i + 0.5) / nseg) for i in range(nseg)]))
        cell.insert(sec, "naldif")
native["d1"].rallbranch = 2
cell.point_process(native["soma"], 0.5, "IClamp", **{"del": 1, "dur": 30, "amp": 0.8})
cell.spike_detector(native["soma"], 0.5)
net.add_cell(cell, 0)
model = net.build()
nodes = [net.node(0, native[name], x) for name, x in PROBES]
sim = Simulation(model, load_backend(backend))
run = sim.run(30.0, record=nodes)
def get(node, name):
    if name.startswith("ca["):
        mset = model.mechanism_set("caldif")
        i = int(np.flatnonzero(mset.node_index == node)[0])
        return float(mset.data["ca"][i, int(name[3])])
    ion = model.ion(name[:-1])
    return float(ion.data[name][int(np.flatnonzero(ion.node_index == node)[0])])
out["native"] = compare(run.v, [[get(n, f"ca[{k}]") for k in range(3)] + [get(n, "nai"), get(n, "cai")]
                                for n in nodes])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return nrnivmodl_folder(tmp_path_factory.mktemp("diffusion") / "mods", MODS)


@pytest.mark.parametrize("backend", slow_for(BACKENDS, "numpy"))  # numpy: 3 minutes
def test_longitudinal_diffusion_is_neurons_to_the_bit(built, backend):
    out = script_result(RUN, str(built), backend)
    assert out["range"] > 100.0  # the cell fires
    assert out["nai_spread"] > 0.5  # concentrations differ along the cell
    assert out["direct"] == {"max_dv": 0.0, "max_rel": 0.0}, out
    assert out["native"] == {"max_dv": 0.0, "max_rel": 0.0}, out
    code, lines, dataset = out["dataset"]
    assert code != 0 and len(lines) == 1, out["dataset"]
    assert lines[0].startswith(f"portneuron: error: {dataset}: naldif has LONGITUDINAL_DIFFUSION")
    assert "run the model in direct mode" in lines[0]
    without = out["direct_without_diffusion"]
    assert without["max_dv"] > 0.1 and without["max_rel"] > 1e-3, out
