"""The native builder against NEURON: the same models built both ways have bit-identical
node arrays, voltages within 1e-9 mV (observed: identical) and identical spikes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("neuron")

import neuron_models  # noqa: E402
from neuron import h  # noqa: E402
from portneuron.backends import load_backend  # noqa: E402

from portneuron.build import Cell, Network  # noqa: E402
from portneuron.build.ringtest import build_ringtest, cell_shape, cell_types  # noqa: E402
from portneuron.io.dataset import load_dataset  # noqa: E402
from portneuron.io.spikes import format_spikes  # noqa: E402
from portneuron.sim.simulation import Simulation  # noqa: E402

pytestmark = pytest.mark.neuron

VOLTAGE_TOLERANCE = 1e-9  # mV


@pytest.mark.parametrize(
    "ncells, nbranch, ncompart", [(128, (10, 20), (1, 1)), (40, (2, 9), (1, 6))]
)
def test_ringtest_shapes_are_neurons(ncells, nbranch, ncompart):
    assert cell_types(ncells) == neuron_models.cell_types(ncells)
    for t in range((ncells - 1) // 8 + 1):
        assert cell_shape(t, nbranch, ncompart) == neuron_models.cell_shape(t, nbranch, ncompart)


@pytest.mark.parametrize("nring, ncompart", [(16, (1, 1)), (3, (2, 5))])
def test_native_ringtest_arrays_are_neurons(tmp_path, nring, ncompart):
    ring = neuron_models.build_ringtest(nring=nring, ncompart=ncompart)
    neuron_models.write_dataset(ring, tmp_path)
    neuron_models.clear_neuron()
    expected = load_dataset(tmp_path)
    model = build_ringtest(nring=nring, ncompart=ncompart)
    for name in ("parent_index", "a", "b", "area", "first"):
        np.testing.assert_array_equal(getattr(model.nodes, name), getattr(expected.nodes, name))
    assert [(m.name, m.count) for m in model.mechanisms] == [
        (m.name, m.count) for m in expected.mechanisms
    ]
    for ours, theirs in zip(model.mechanisms, expected.mechanisms):
        np.testing.assert_array_equal(ours.node_index, theirs.node_index)
    for name in ("source", "target_set", "target_instance", "delay", "weights"):
        np.testing.assert_array_equal(getattr(model.netcons, name), getattr(expected.netcons, name))
    np.testing.assert_array_equal(model.presyns.node, expected.presyns.node)


def ball_and_stick_native(net: Network, gid: int) -> tuple[Cell, list]:
    cell = Cell()
    soma = cell.section("soma", L=20, diam=20, Ra=120, cm=1.1)
    dend = cell.section("dend", L=200, diam=1, nseg=5, Ra=120, cm=1.1, parent=soma)
    cell.insert(soma, "hh")
    cell.insert(dend, "pas", g=2e-4, e=-65)
    cell.insert(dend, "hh", gnabar=np.linspace(0.01, 0.03, 5))
    cell.point_process(dend, 0.7, "ExpSyn", tau=3.0)
    cell.spike_detector(soma, 0.5, 10.0)
    net.add_cell(cell, gid)
    return cell, [soma, dend]


def ball_and_stick_neuron(gid: int):
    soma = h.Section(name=f"soma{gid}")
    soma.L = soma.diam = 20
    dend = h.Section(name=f"dend{gid}")
    dend.L, dend.diam, dend.nseg = 200, 1, 5
    dend.connect(soma(1))
    for sec in (soma, dend):
        sec.Ra, sec.cm = 120, 1.1
    soma.insert("hh")
    dend.insert("pas")
    dend.insert("hh")
    for seg, g in zip(dend, np.linspace(0.01, 0.03, 5)):
        seg.pas.g, seg.pas.e, seg.hh.gnabar = 2e-4, -65, g
    syn = h.ExpSyn(dend(0.7))
    syn.tau = 3.0
    pc = neuron_models.pc
    pc.set_gid2node(gid, pc.id())
    nc = h.NetCon(soma(0.5)._ref_v, None, sec=soma)
    nc.threshold = 10
    pc.cell(gid, nc)
    return soma, dend, syn


def test_small_network_matches_neuron():
    """Two ball-and-sticks, a NetStim driving cell 0, cell 0 driving cell 1."""
    neuron_models.clear_neuron()
    pc = neuron_models.pc
    cells = [ball_and_stick_neuron(gid) for gid in (0, 1)]
    stim = h.NetStim()
    stim.start, stim.interval, stim.number = 2, 8, 5
    ncs = [h.NetCon(stim, cells[0][2]), pc.gid_connect(0, cells[1][2])]
    for nc, (w, d) in zip(ncs, ((0.02, 1.0), (0.03, 2.0))):
        nc.weight[0], nc.delay = w, d
    probes = [cells[0][0](0.5), cells[1][1](0.7), cells[1][0](0.5)]
    vecs = [h.Vector().record(p._ref_v) for p in probes]
    tvec, idvec = h.Vector(), h.Vector()
    pc.spike_record(-1, tvec, idvec)
    h.dt = 0.025
    h.finitialize(-65)
    pc.psolve(40.0)
    expected_v = np.array([v.to_python() for v in vecs]).T
    expected_spikes = sorted(zip(tvec.to_python(), (int(g) for g in idvec)))
    del ncs, cells, stim, vecs
    neuron_models.clear_neuron()

    net = Network()
    sections = [ball_and_stick_native(net, gid)[1] for gid in (0, 1)]
    s = net.artificial_cell("NetStim", start=2, interval=8, number=5)
    net.connect(0, 0, 0.02, 1.0, source_stim=s)
    net.connect(1, 0, 0.03, 2.0, source_gid=0)
    model = net.build()
    record = [
        net.node(0, sections[0][0], 0.5),
        net.node(1, sections[1][1], 0.7),
        net.node(1, sections[1][0], 0.5),
    ]
    result = Simulation(model, load_backend("numpy")).run(40.0, record=record)
    assert np.abs(result.v - expected_v).max() <= VOLTAGE_TOLERANCE
    assert format_spikes(result.spikes) == format_spikes(expected_spikes)
    assert {gid for _, gid in expected_spikes} == {0, 1}


def test_ringtest_without_hh_tables_matches_neuron():
    """usetable_hh = 0, as the original benchmark's reference raster was made."""
    ring = neuron_models.build_ringtest(nring=4, hh_tables=False)
    expected = neuron_models.run_neuron(ring, tstop=40.0)
    neuron_models.clear_neuron()
    model = build_ringtest(nring=4, hh_tables=False)
    assert model.mechanism_set("hh").globals["usetable"] == 0.0
    spikes = Simulation(model, load_backend("numpy")).run(40.0).spikes
    assert format_spikes(spikes) == format_spikes(expected) and len(expected) > 40


@pytest.mark.slow
def test_builtin_ringtest_run_gives_the_original_spikes(tmp_path):
    """`portneuron run` with no model: the 16 x 8 ringtest for 100 ms, as NEURON runs it."""
    ring = neuron_models.build_ringtest()
    expected = neuron_models.run_neuron(ring, tstop=100.0)
    neuron_models.clear_neuron()
    run = subprocess.run(
        [sys.executable, "-m", "portneuron", "run", "-o", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.dat").read_text() == format_spikes(expected)
    assert len(expected) == 592


@pytest.mark.slow
def test_saved_dataset_reads_back_and_runs_in_coreneuron(tmp_path):
    """save_dataset writes what NEURON would: it reads back to the same model, and
    CoreNEURON (nrniv-core from the neuron wheel) runs it to the same spikes."""
    import shutil
    from pathlib import Path

    from portneuron.io.write import save_dataset

    model = build_ringtest(nring=2, ncompart=(1, 3))
    save_dataset(model, tmp_path / "data")
    back = load_dataset(tmp_path / "data")
    for name in ("parent_index", "a", "b", "area", "v", "first"):
        np.testing.assert_array_equal(getattr(back.nodes, name), getattr(model.nodes, name))
    for ours, theirs in zip(model.mechanisms, back.mechanisms):
        assert ours.name == theirs.name
        np.testing.assert_array_equal(ours.node_index, theirs.node_index)
        for key, values in ours.data.items():
            np.testing.assert_array_equal(theirs.data[key], values)
    for name in ("source", "target_set", "target_instance", "delay", "weights"):
        np.testing.assert_array_equal(getattr(back.netcons, name), getattr(model.netcons, name))
    spikes = Simulation(back, load_backend("numpy")).run(30.0).spikes
    assert spikes == Simulation(model, load_backend("numpy")).run(30.0).spikes and spikes

    core = shutil.which("nrniv-core", path=str(Path(sys.executable).parent))
    if core is None:
        pytest.skip("nrniv-core is not installed")
    run = subprocess.run(
        [core, "-d", str(tmp_path / "data"), "-e", "30", "-o", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert (tmp_path / "out.dat").read_text() == format_spikes(spikes)
    # the summary's `nodes` is what nrniv-core calls its number of compartments
    assert f"Number of compartments: {model.nodes.count}\n" in run.stdout


def test_a_mechanism_with_a_constructor_is_refused_by_the_native_builder(tmp_path):
    """NEURON runs a CONSTRUCTOR where it makes an instance (ctorsyn's sets tau = 3); a
    native build makes its instances itself, so it refuses the mechanism in one line."""
    from pathlib import Path

    from portneuron.errors import PortneuronError
    from portneuron.library import MechanismLibrary

    (tmp_path / "ctorsyn.mod").write_text((Path(__file__).parent / "mods/ctorsyn.mod").read_text())
    net = Network(library=MechanismLibrary([tmp_path]))
    cell = Cell()
    soma = cell.section("soma", L=20, diam=20)
    cell.point_process(soma, 0.5, "CtorSyn")
    net.add_cell(cell, 0)
    with pytest.raises(PortneuronError, match=r"ctorsyn\.mod: CtorSyn has a CONSTRUCTOR"):
        net.build()


def test_gap_junctions_in_the_builder_refuse_in_one_line():
    """Network.point_process and transfer name what is wrong."""
    from pathlib import Path

    from portneuron.build import Place
    from portneuron.errors import PortneuronError
    from portneuron.library import MechanismLibrary

    net = Network(MechanismLibrary([Path(__file__).parent / "mods"]))
    cell, other = Cell("a"), Cell("b")
    soma, osoma = cell.section("soma", L=10, diam=10), other.section("soma", L=10, diam=10)
    for gid in range(4):
        net.add_cell(cell if gid < 3 else other, gid)
    with pytest.raises(PortneuronError, match="no cell with gid 7"):
        net.point_process(7, soma, 0.5, "HalfGap")
    with pytest.raises(PortneuronError, match="'soma' is not one of gid 3's cell"):
        net.point_process(3, soma, 0.5, "HalfGap")
    with pytest.raises(PortneuronError, match="the target must be a point process"):
        net.transfer(Place(0, soma), Place(3, osoma))
    assert net.gap_junction(Place(0, soma), Place(3, osoma), "HalfGap", g=0.01) == (0, 0)
    assert net.point_process(0, soma, 0.5, "IClamp") == 1  # after the junction's half


def test_a_compiled_template_builds_the_model_its_cell_builds():
    """Network.add_cell takes a template's compile() as it takes the Cell (the ringtest
    keeps compiled templates only, so the Cells' objects go as it builds): the same
    arrays, nodes for recording and point processes added to one cell."""
    from portneuron.errors import PortneuronError

    models, nodes = [], []
    for compiled in (False, True):
        net = Network()
        shapes = []
        for gid in (0, 1):
            cell, sections = ball_and_stick_native(Network(), gid)
            net.add_cell(cell.compile() if compiled else cell, gid)
            shapes.append(sections)
        net.point_process(1, shapes[1][1], 0.3, "ExpSyn", tau=4.0)
        net.connect(1, 1, 0.01, 1.0, source_gid=0)
        models.append(net.build())
        nodes.append([net.node(g, sec, 0.7) for g in (0, 1) for sec in shapes[g]])
    cell, model = models
    assert nodes[0] == nodes[1]
    for name in ("parent_index", "a", "b", "area", "diam", "v", "first"):
        np.testing.assert_array_equal(getattr(cell.nodes, name), getattr(model.nodes, name))
    for ours, theirs in zip(cell.mechanisms, model.mechanisms, strict=True):
        assert ours.name == theirs.name
        np.testing.assert_array_equal(ours.node_index, theirs.node_index)
        for key in ours.data:
            np.testing.assert_array_equal(ours.data[key], theirs.data[key])
    for name in ("source", "target_set", "target_instance", "delay", "weights"):
        np.testing.assert_array_equal(getattr(cell.netcons, name), getattr(model.netcons, name))
    other = Cell()
    stranger = other.section("soma", nseg=3)
    net = Network()
    net.add_cell(ball_and_stick_native(Network(), 0)[0].compile(), 0)
    with pytest.raises(PortneuronError, match="is not one of gid 0's cell"):
        net.point_process(0, stranger, 0.5, "ExpSyn")
