"""SWC cells built natively against NEURON's Import3d of the same files: identical node
arrays (a, b, area to the bit) and voltages within 1e-9 mV (observed: identical)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neuron")

import neuron_models  # noqa: E402
from neuron import h  # noqa: E402
from portneuron.backends import load_backend  # noqa: E402

from portneuron.build import Network  # noqa: E402
from portneuron.build.swc import load_swc  # noqa: E402
from portneuron.errors import PortneuronError  # noqa: E402
from portneuron.io.dataset import load_dataset  # noqa: E402
from portneuron.sim.simulation import Simulation  # noqa: E402

pytestmark = pytest.mark.neuron

DATA = Path(__file__).parent / "data"
VOLTAGE_TOLERANCE = 1e-9  # mV


def neuron_import(path: Path, tmp_path: Path):
    """Import3d in NEURON, hh soma, passive neurites, nseg 3, an IClamp; dataset and traces."""
    neuron_models.clear_neuron()
    # NEURON's defaults, which the native Network keeps: a ringtest built before in this
    # process may have left usetable_hh at 0 (CI's worker order once did)
    h.usetable_hh, h.celsius = 1, 6.3
    h.load_file("import3d.hoc")
    reader = h.Import3d_SWC_read()
    reader.input(str(path))
    h.Import3d_GUI(reader, False).instantiate(None)
    sections = list(h.allsec())
    soma = h.soma[0]
    for sec in sections:
        sec.Ra, sec.cm, sec.nseg = 100, 1, 3
        sec.insert("hh" if sec.name().startswith("soma") else "pas")
    stim = h.IClamp(soma(0.5))
    stim.delay, stim.dur, stim.amp = 1, 20, 0.6
    pc = neuron_models.pc
    pc.set_gid2node(0, pc.id())
    pc.cell(0, h.NetCon(soma(0.5)._ref_v, None, sec=soma))
    h.finitialize(-65)
    pc.nrncore_write(str(tmp_path))
    probes = [soma(0.5), sections[-1](0.9)]
    vecs = [h.Vector().record(p._ref_v) for p in probes]
    h.finitialize(-65)
    while h.t < 30.0 - 0.0125:
        h.fadvance()
    traces = np.array([v.to_python() for v in vecs]).T
    last = sections[-1].name()
    del stim, vecs, probes, soma, sections
    neuron_models.clear_neuron()
    return load_dataset(tmp_path), traces, last


@pytest.mark.parametrize(
    "name", ["a_single_point_soma", "b_three_point_soma", "c_multi_point_soma"]
)
def test_swc_cell_matches_neurons_import(name, tmp_path):
    expected, traces, last = neuron_import(DATA / f"{name}.swc", tmp_path)
    cell, sections = load_swc(DATA / f"{name}.swc", Ra=100)
    for sec_name, sec in sections.items():
        cell.set_nseg(sec, 3)
        cell.insert(sec, "hh" if sec_name.startswith("soma") else "pas")
    soma = sections["soma[0]"]
    cell.point_process(soma, 0.5, "IClamp", **{"del": 1, "dur": 20, "amp": 0.6})
    cell.spike_detector(soma, 0.5)
    net = Network()
    net.add_cell(cell, 0)
    model = net.build()
    for key in ("parent_index", "a", "b", "area"):
        np.testing.assert_array_equal(getattr(model.nodes, key), getattr(expected.nodes, key))
    record = [net.node(0, soma, 0.5), net.node(0, sections[last], 0.9)]
    result = Simulation(model, load_backend("numpy")).run(30.0, record=record)
    assert np.abs(result.v - traces).max() <= VOLTAGE_TOLERANCE
    assert traces[:, 0].max() > 0


def test_unsorted_swc_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.swc"
    path.write_text("1 1 0 0 0 5 -1\n3 3 0 5 0 1 1\n2 3 0 9 0 1 3\n")
    with pytest.raises(PortneuronError, match="bad.swc: sample id 2 does not follow 3"):
        load_swc(path)
