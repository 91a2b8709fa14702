"""Reports (issue 20): SONATA compartment reports and spike files that libsonata reads,
holding NEURON's voltages; whole or not at all; report files refused in one line."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neuron")
libsonata = pytest.importorskip("libsonata")

import neuron_models  # noqa: E402
from neuron import h  # noqa: E402
from portneuron.backends import load_backend  # noqa: E402

from portneuron import cli  # noqa: E402
from portneuron.build.ringtest import build_ringtest  # noqa: E402
from portneuron.errors import PortneuronError  # noqa: E402
from portneuron.reports import Reports, ReportSpec, read_report_conf  # noqa: E402
from portneuron.sim.simulation import Simulation  # noqa: E402

pytestmark = pytest.mark.neuron

STEPS = 4  # a report every 0.1 ms at dt 0.025


def report(path) -> tuple[np.ndarray, list, np.ndarray, list]:
    """(times, (gid, element) of each column, data, node ids) as libsonata reads them."""
    population = libsonata.ElementReportReader(str(path))["All"]
    frame = population.get()
    ids = [tuple(x) for x in np.array(frame.ids).tolist()]
    return np.array(frame.times), ids, np.array(frame.data), population.get_node_ids()


def test_reports_are_neurons_voltages(tmp_path, capsys):
    """`portneuron run --report soma@0.1 --report all@0.5 --sonata` on the 2 x 8 ringtest:
    libsonata reads every cell's soma (its first compartment, soma(0.5)) every 0.1 ms,
    NEURON's voltages to float32's last bit, every compartment of every cell every 0.5 ms
    as the run recorded them, and the spikes as out.dat's."""
    ring = neuron_models.build_ringtest(nring=2)
    vecs = [h.Vector().record(cell.soma(0.5)._ref_v) for cell in ring.cells]
    expected_spikes = neuron_models.run_neuron(ring, tstop=20.0)
    expected = np.array([v.to_python() for v in vecs]).T[::STEPS]  # t = 0, 0.1, ...
    del vecs
    neuron_models.clear_neuron()
    argv = ["run", "--nring", "2", "-e", "20", "-o", str(tmp_path), "--sonata"]
    assert cli.main([*argv, "--report", "soma@0.1", "--report", "all@0.5"]) == 0
    times, ids, data, gids = report(tmp_path / "soma.h5")
    assert gids == list(range(16)) and ids == [(g, 0) for g in range(16)]
    np.testing.assert_allclose(times, np.arange(201) * 0.1, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(data, expected.astype(np.float32))
    # every compartment: the voltages a run records at those nodes, every 20 steps
    model = build_ringtest(2, 8, (10, 20), (1, 1))
    membrane = np.sort(model.mechanism_set("capacitance").node_index)
    recorded = Simulation(model, load_backend("numpy")).run(20.0, record=membrane)
    times, ids, data, _ = report(tmp_path / "all.h5")
    assert len(ids) == len(membrane) == model.compartments
    assert ids[:3] == [(0, 0), (0, 1), (0, 2)]
    np.testing.assert_array_equal(data, recorded.v[::20].astype(np.float32))
    spikes = libsonata.SpikeReader(str(tmp_path / "out.h5"))["All"].get()
    assert sorted((t, g) for g, t in spikes) == expected_spikes


def test_reports_of_mechanism_and_ion_variables_are_neurons(tmp_path, capsys):
    """A report file asking for hh's m and the sodium current at every soma, pas's g of
    every compartment of cell 1 and every ExpSyn's g: libsonata reads NEURON's
    soma(0.5).m_hh and .ina and the synapses' g (float32's last bit), with units, and the
    model's g on the compartments that have pas (element ids skip the soma); recorded in
    compiled epochs."""
    import h5py

    ring = neuron_models.build_ringtest(nring=2)
    vecs = [[h.Vector().record(cell.soma(0.5)._ref_m_hh) for cell in ring.cells],
            [h.Vector().record(cell.soma(0.5)._ref_ina) for cell in ring.cells],
            [h.Vector().record(syn._ref_g) for cell in ring.cells
             for syn in (cell.syn_inh, cell.syn)]]  # fmt: skip
    neuron_models.run_neuron(ring, tstop=10.0)
    m, ina, g = (np.array([v.to_python() for v in kind]).T[::STEPS] for kind in vecs)
    del vecs
    neuron_models.clear_neuron()
    conf = tmp_path / "reports.json"
    conf.write_text(json.dumps({"reports": [
        {"name": "m", "target": "soma", "variable": "m_hh", "dt": 0.1},
        {"name": "ina", "target": "soma", "variable": "ina", "dt": 0.1},
        {"name": "g", "target": "all", "variable": "g_pas", "cells": [1], "dt": 5.0},
        {"name": "syn", "target": "all", "variable": "ExpSyn.g", "dt": 0.1},
    ]}))  # fmt: skip
    argv = ["run", "--nring", "2", "-e", "10", "-o", str(tmp_path), "--report-conf", str(conf)]
    assert cli.main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["loop"] == "compiled epochs"  # they record every array of values
    for name, expected, units in (("m", m, ""), ("ina", ina, "mA/cm2")):
        times, ids, data, _ = report(tmp_path / f"{name}.h5")
        assert ids == [(g, 0) for g in range(16)]
        np.testing.assert_array_equal(data, expected.astype(np.float32))
        with h5py.File(tmp_path / f"{name}.h5") as f:
            assert f["report/All/data"].attrs["units"] == units
    # each cell's two ExpSyns, on one node: NEURON's order there, the newer first
    times, ids, data, _ = report(tmp_path / "syn.h5")
    assert ids == [(gid, k) for gid in range(16) for k in (0, 1)] and g.max() > 0
    np.testing.assert_array_equal(data, g.astype(np.float32))
    times, ids, data, gids = report(tmp_path / "g.h5")
    model = build_ringtest(2, 8, (10, 20), (1, 1))
    pas = model.mechanism_set("pas")
    first, last = model.nodes.first[1], model.nodes.first[2]
    mine = (pas.node_index >= first) & (pas.node_index < last)
    assert gids == [1] and len(ids) == mine.sum() and ids[0] == (1, 1)
    np.testing.assert_array_equal(data, np.tile(pas.data["g"][mine], (3, 1)).astype(np.float32))


def test_reports_of_the_membrane_current_are_neurons(tmp_path, capsys):
    """CoreNEURON's i_membrane report (NEURON's i_membrane_, nA): every soma's, NEURON's
    own with cvode.use_fast_imem(1) to float32's last bit, and every compartment of cell
    1, as the step-by-step loop on numpy computes it; recorded in compiled epochs."""
    ring = neuron_models.build_ringtest(nring=2)
    h.CVode().use_fast_imem(1)
    vecs = [h.Vector().record(cell.soma(0.5)._ref_i_membrane_) for cell in ring.cells]
    try:
        neuron_models.run_neuron(ring, tstop=10.0)
    finally:
        h.CVode().use_fast_imem(0)
    expected = np.array([v.to_python() for v in vecs]).T[::STEPS]
    del vecs
    neuron_models.clear_neuron()
    conf = tmp_path / "reports.json"
    conf.write_text(json.dumps({"reports": [
        {"name": "soma", "target": "soma", "variable": "i_membrane", "dt": 0.1},
        {"name": "one", "target": "all", "variable": "i_membrane_", "cells": [1], "dt": 0.1},
    ]}))  # fmt: skip
    argv = ["run", "--nring", "2", "-e", "10", "-o", str(tmp_path), "--report-conf", str(conf)]
    assert cli.main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["loop"] == "compiled epochs"
    times, ids, data, gids = report(tmp_path / "soma.h5")
    assert ids == [(g, 0) for g in range(16)] and np.abs(expected).max() > 0.1
    np.testing.assert_array_equal(data, expected.astype(np.float32))
    model = build_ringtest(2, 8, (10, 20), (1, 1))
    sim = Simulation(model, load_backend("numpy"), fast_imem=True)
    membrane = np.sort(model.mechanism_set("capacitance").node_index)
    mine = membrane[(membrane >= model.nodes.first[1]) & (membrane < model.nodes.first[2])]
    recorded = sim.run(10.0, probes=[(sim.i_membrane, int(i)) for i in mine])
    times, ids, data, gids = report(tmp_path / "one.h5")
    assert gids == [1] and ids == [(1, k) for k in range(len(mine))]
    np.testing.assert_array_equal(data, recorded.values[::STEPS].astype(np.float32))
    import h5py

    with h5py.File(tmp_path / "one.h5") as f:
        assert f["report/All/data"].attrs["units"] == "nA"


def test_reports_of_a_section_type(tmp_path):
    """`--report dend@0.5` on the native ringtest: every compartment of every cell's
    dend[...] sections (all but the soma's, numbered as in "all"), the voltages a run
    records there; a report file's "dend" target of g_pas gives the model's values on
    them. A model that does not name its sections (a dataset's) refuses it in one line."""
    conf = tmp_path / "reports.json"
    conf.write_text(json.dumps({"reports": [
        {"name": "g", "target": "dend", "variable": "g_pas", "cells": [3], "dt": 5.0},
    ]}))  # fmt: skip
    argv = ["run", "--nring", "1", "-e", "10", "-o", str(tmp_path), "--report", "dend@0.5"]
    assert cli.main([*argv, "--report-conf", str(conf)]) == 0
    model = build_ringtest(1, 8, (10, 20), (1, 1))
    membrane = np.sort(model.mechanism_set("capacitance").node_index)
    first = model.nodes.first
    numbers = [np.arange(np.sum((membrane >= lo) & (membrane < hi)))[1:]
               for lo, hi in zip(first, first[1:])]  # fmt: skip
    soma = np.searchsorted(membrane, first[:-1])
    dends = np.setdiff1d(np.arange(len(membrane)), soma)
    recorded = Simulation(model, load_backend("numpy")).run(10.0, record=membrane[dends])
    times, ids, data, gids = report(tmp_path / "dend.h5")
    assert gids == list(range(8)) and len(ids) == len(dends) < len(membrane)
    assert ids == [(gid, int(k)) for gid in range(8) for k in numbers[gid]]
    np.testing.assert_array_equal(data, recorded.v[::20].astype(np.float32))
    times, ids, data, gids = report(tmp_path / "g.h5")
    pas = model.mechanism_set("pas")
    mine = (pas.node_index >= first[3]) & (pas.node_index < first[4])
    assert gids == [3] and ids == [(3, int(k)) for k in numbers[3]]
    np.testing.assert_array_equal(data, np.tile(pas.data["g"][mine], (3, 1)).astype(np.float32))
    model.section_types = None  # as a dataset's
    sim = Simulation(model, load_backend("numpy"))
    with pytest.raises(PortneuronError, match=r"^x: target 'apic' needs the sections' names"):
        Reports(sim, [ReportSpec("x", "apic")], tmp_path / "not")
    assert not (tmp_path / "not").exists()


def test_direct_mode_writes_reports_of_neurons_model(tmp_path):
    """portneuron.direct.run(..., reports=...) on the 2 x 8 ringtest built in NEURON: the
    soma voltages and hh's m every 0.1 ms, and the voltages of cell 5's dend sections, as
    libsonata reads them, are NEURON's own recordings to float32's last bit; reports and
    record together are refused in one line."""
    import portneuron.direct

    ring = neuron_models.build_ringtest(nring=2)
    dends = [seg for sec in ring.cells[5].dend for seg in sec]
    vecs = [[h.Vector().record(cell.soma(0.5)._ref_v) for cell in ring.cells],
            [h.Vector().record(cell.soma(0.5)._ref_m_hh) for cell in ring.cells],
            [h.Vector().record(seg._ref_v) for seg in dends]]  # fmt: skip
    neuron_models.run_neuron(ring, tstop=10.0)
    v, m, dend = (np.array([x.to_python() for x in kind]).T[::STEPS] for kind in vecs)
    for vector in (x for kind in vecs for x in kind):
        vector.play_remove()
    specs = [ReportSpec("soma", "soma", 0.1), ReportSpec("m", "soma", 0.1, variable="m_hh"),
             ReportSpec("dend", "dend", 0.1, cells=[5])]  # fmt: skip
    try:
        result = portneuron.direct.run(10.0, v_init=-65.0, reports=specs, outdir=tmp_path)
        nodes = [result.node_of(seg) for seg in dends]
        with pytest.raises(PortneuronError, match="give reports or record and record_values"):
            portneuron.direct.run(1.0, record=[ring.cells[0].soma(0.5)], reports=specs,
                                  outdir=tmp_path / "not")  # fmt: skip
    finally:
        del vecs
        neuron_models.clear_neuron()
    assert len(result.spikes) > 0 and not (tmp_path / "not").exists()
    for name, expected in (("soma", v), ("m", m)):
        times, ids, data, gids = report(tmp_path / f"{name}.h5")
        assert gids == list(range(16)) and ids == [(g, 0) for g in range(16)]
        np.testing.assert_allclose(times, np.arange(101) * 0.1, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(data, expected.astype(np.float32))
    times, ids, data, gids = report(tmp_path / "dend.h5")  # its sections named dend[...]
    assert gids == [5] and ids == [(5, k) for k in range(1, len(dends) + 1)]
    order = np.argsort(nodes)  # the segments as the cell's compartments follow one another
    np.testing.assert_array_equal(data, dend[:, order].astype(np.float32))


def test_a_report_file_picks_cells_and_a_window(tmp_path):
    """A report file: cells 3 and 9's every compartment from 5 to 10 ms every 1 ms."""
    conf = tmp_path / "reports.json"
    conf.write_text(json.dumps({"reports": [
        {"name": "two", "target": "all", "cells": [9, 3], "dt": 1.0, "start": 5, "end": 10},
    ]}))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "portneuron", "run", "--nring", "2", "-e", "20",
         "--report-conf", str(conf), "-o", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    times, ids, data, gids = report(tmp_path / "two.h5")
    assert gids == [3, 9] and {g for g, _ in ids} == {3, 9}
    np.testing.assert_allclose(times, [5.0, 6.0, 7.0, 8.0, 9.0, 10.0], rtol=0, atol=1e-12)
    assert data.shape == (6, len(ids)) and np.isfinite(data).all()


def test_a_wide_report_is_written_in_chunks_the_cache_holds(tmp_path):
    """More compartments than a 1 MiB chunk holds (300,000): the data in chunks of at
    most sonata.CHUNK_BYTES, the rows given in blocks read back whole."""
    import h5py

    from portneuron.io import sonata

    n = 300_000
    rng = np.random.default_rng(3)
    values = rng.normal(-65, 10, (7, n))
    writer = sonata.CompartmentReport(tmp_path / "wide.h5", np.array([0]), np.array([n]),
                                      np.arange(n), 0.0, 1.0, 0.1)  # fmt: skip
    for lo, hi in ((0, 3), (3, 4), (4, 7)):
        writer.write(0.1 * np.arange(lo, hi), values[lo:hi])
    writer.close()
    with h5py.File(tmp_path / "wide.h5") as f:
        data = f["report/All/data"]
        assert np.prod(data.chunks) * 4 <= sonata.CHUNK_BYTES and data.chunks[1] < n
        np.testing.assert_array_equal(data[:], values.astype(np.float32))


def test_rows_laid_out_first_are_written_past_the_page_cache(tmp_path, monkeypatch):
    """A report told its rows first (`expect`): one contiguous block of the file, the rows
    given in blocks of a row or more written from buffers of 3 rows (each row 7,001 values,
    a part block left over each time) read back whole; a row more than expected, or fewer,
    is an error, not a report."""
    import h5py

    from portneuron.io import sonata

    monkeypatch.setattr(sonata, "BUFFER_BYTES", 3 * 7001 * 4)
    n, rng = 7001, np.random.default_rng(5)
    values = rng.normal(-65, 10, (11, n))
    writer = sonata.CompartmentReport(tmp_path / "rows.h5", np.array([0, 1]),
                                      np.array([1, n - 1]), np.arange(n), 0.0, 1.0, 0.1)  # fmt: skip
    writer.expect(11)
    for lo, hi in ((0, 1), (1, 5), (5, 6), (6, 11)):
        writer.write(0.1 * np.arange(lo, hi), values[lo:hi])
    writer.write(np.array([0.75, 1.1]), values[:2])  # off the report's times, after stop
    writer.close()
    with h5py.File(tmp_path / "rows.h5") as f:
        data = f["report/All/data"]
        assert data.chunks is None and data.id.get_offset() % sonata.BLOCK == 0
        np.testing.assert_array_equal(data[:], values.astype(np.float32))
        np.testing.assert_allclose(f["report/All/mapping/time"][:], [0.0, 1.1, 0.1])
    short = sonata.CompartmentReport(tmp_path / "short.h5", np.array([0]), np.array([n]),
                                     np.arange(n), 0.0, 1.0, 0.1)  # fmt: skip
    short.expect(11)
    short.write(0.1 * np.arange(10), values[:10])
    with pytest.raises(PortneuronError, match="gave 10 rows, not the 11 laid out"):
        short.close()
    short.abort()
    over = sonata.CompartmentReport(tmp_path / "over.h5", np.array([0]), np.array([n]),
                                    np.arange(n), 0.0, 1.0, 0.1)  # fmt: skip
    over.expect(10)
    with pytest.raises(PortneuronError, match="gave more rows than the 10 laid out"):
        over.write(0.1 * np.arange(11), values)
    over.abort()
    assert not list(tmp_path.glob("short.h5*")) and not list(tmp_path.glob("over.h5*"))


def test_one_report_is_recorded_straight_into_its_file_buffers(tmp_path, monkeypatch):
    """One report of every compartment on llvm: each compiled epoch call records its rows
    in the report's own buffer (sonata.Rows.space), nothing copied, and they are the numpy
    run's voltages every 0.1 ms rounded to float32; rows that do not fit a buffer are not
    given room there."""
    import h5py

    from portneuron.io import sonata

    given = []
    space = sonata.Rows.space

    def counted(self, rows, columns):
        out = space(self, rows, columns)
        given.append(out is not None)
        return out

    monkeypatch.setattr(sonata.Rows, "space", counted)
    argv = ["run", "--nring", "2", "-e", "20", "--backend", "llvm", "-o", str(tmp_path)]
    assert cli.main([*argv, "--report", "all@0.1"]) == 0
    assert len(given) >= 10 and all(given)
    model = build_ringtest(2, 8, (10, 20), (1, 1))
    membrane = np.sort(model.mechanism_set("capacitance").node_index)
    recorded = Simulation(model, load_backend("numpy")).run(20.0, record=membrane)
    with h5py.File(tmp_path / "all.h5") as f:
        data = f["report/All/data"][:]
    np.testing.assert_array_equal(data, recorded.v[::STEPS].astype(np.float32))
    (tmp_path / "x").touch()
    rows = sonata.Rows(tmp_path / "x", 0, 4 * 1000)
    assert rows.space(len(rows.buffer) // 4000, 1000) is None  # no room for a part block
    assert rows.space(3, 1000).shape == (3000,)
    rows.abort()


def test_rows_the_disk_refuses_past_its_cache_go_through_it(tmp_path, monkeypatch):
    """Where a write past the page cache is refused (EINVAL: blocks the device does not
    take), that write and the rest go through the cache: the report is whole."""
    import fcntl

    from portneuron.io import sonata

    pwrite, refused = sonata.os.pwrite, []

    def picky(fd, data, at):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(sonata.os, "O_DIRECT", 0):
            refused.append(at)
            raise OSError(errno.EINVAL, "Invalid argument")
        return pwrite(fd, data, at)

    monkeypatch.setattr(sonata.os, "pwrite", picky)
    monkeypatch.setattr(sonata, "BUFFER_BYTES", 2 * 5000 * 4)
    n, values = 5000, np.random.default_rng(6).normal(-65, 10, (9, 5000))
    writer = sonata.CompartmentReport(tmp_path / "r.h5", np.array([0]), np.array([n]),
                                      np.arange(n), 0.0, 0.8, 0.1)  # fmt: skip
    writer.expect(9)
    writer.write(0.1 * np.arange(9), values)
    writer.close()
    if hasattr(sonata.os, "O_DIRECT") and not refused:
        pytest.skip("this file system refuses O_DIRECT at open: nothing to fall back from")
    times, _, data, _ = report(tmp_path / "r.h5")
    np.testing.assert_array_equal(data, values.astype(np.float32))
    assert len(refused) <= 1  # refused once, then through the cache


def test_a_report_the_disk_cannot_take_is_one_line(tmp_path, monkeypatch, capsys):
    """A disk that fills while a report is written: the run stops with one line naming
    the report, and leaves neither it nor its part."""
    from portneuron.io import sonata

    def full(fd, data, at):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sonata.os, "pwrite", full)
    code = cli.main(["run", "--nring", "1", "-e", "5", "--report", "all@0.025",
                     "-o", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "all.h5.part: cannot write the report (No space left on device)" in err
    assert not list(tmp_path.glob("all.h5*"))


def test_the_times_a_run_will_record_are_the_times_it_records():
    """Simulation.recorded_times, which a report's rows are laid out by: the times a run
    from here records, from t = 0 and from a state between recorded steps."""
    sim = Simulation(build_ringtest(1, 8, (10, 20), (1, 1)), load_backend("numpy"))
    sim.finitialize()
    for tstop, every in ((0.35, 3), (1.0, 3), (1.3, 1)):
        expected = np.concatenate(list(sim.recorded_times(tstop, every, block=4)))
        recorded = sim.run(tstop, record=[0], initialize=False, record_every=every)
        np.testing.assert_array_equal(expected, recorded.t)
        assert len(recorded.t)


def test_a_failed_run_leaves_no_report(tmp_path, monkeypatch):
    """A run that stops after writing some rows leaves no report file (nor its part)."""
    original = Simulation.run

    def failing(self, *args, **kwargs):
        original(self, *args, **kwargs)  # every row written
        raise PortneuronError("stopped after the run wrote its rows")

    monkeypatch.setattr(Simulation, "run", failing)
    code = cli.main(["run", "--nring", "1", "-e", "2", "--report", "soma", "-o", str(tmp_path)])
    assert code == 1
    assert not list(tmp_path.glob("soma.h5*"))


MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_ranks_write_one_report(tmp_path):
    """On 2 ranks (each its own cells) rank 0 writes one report: every compartment's
    column the one a single process writes, for v and for every ExpSyn's g."""
    conf = tmp_path / "reports.json"
    conf.write_text(json.dumps({"reports": [
        {"name": "all", "target": "all", "dt": 0.5},
        {"name": "syn", "target": "all", "variable": "ExpSyn.g", "dt": 0.5},
    ]}))  # fmt: skip
    columns = []
    for ranks in (0, 2):
        out = tmp_path / str(ranks)
        command = [sys.executable, "-m", "portneuron", "run", "--nring", "2", "-e", "10",
                   "--report-conf", str(conf), "--threads", "1", "-o", str(out)]  # fmt: skip
        if ranks:
            command = [MPIEXEC, "-n", str(ranks), *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        for name in ("all", "syn"):
            times, ids, data, _ = report(out / f"{name}.h5")
            columns.append((times, dict(zip(ids, data.T.tolist()))))
    (t1, one), (t2, syn), (t3, two), (t4, syn2) = columns
    np.testing.assert_array_equal(t1, t3)
    assert one == two and len(one) == 304
    assert syn == syn2 and len(syn) == 32 and max(max(c) for c in syn.values()) > 0


@pytest.mark.parametrize(
    "text, says",
    [
        ("{", r"reports.json:1:2: not JSON"),
        ('{"report": []}', r'no "reports" list'),
        ('{"reports": [{"name": "a", "targets": "all"}]}', r"report 0: unknown key 'targets'"),
        (
            '{"reports": [{"name": "a", "target": "node"}]}',
            r"target 'node' is not one of soma, all, axon, dend, apic",
        ),
        ('{"reports": [{"name": "a", "variable": "m-hh"}]}', r"variable 'm-hh' is no NEURON name"),
        ('{"reports": [{"name": "a", "dt": 0}]}', r"dt must be a positive number of ms"),
        ('{"reports": [{"name": "a", "start": 5, "end": 1}]}', r"needs 0 <= start <= end"),
        ('{"reports": [{"name": "../a"}]}', r"cannot name a file"),
        ('{"reports": [{"name": "a"}, {"name": "a"}]}', r"two reports named 'a'"),
    ],
)
def test_a_bad_report_file_is_one_line(tmp_path, text, says):
    conf = tmp_path / "reports.json"
    conf.write_text(text)
    with pytest.raises(PortneuronError, match=says):
        read_report_conf(conf)


def test_a_report_interval_must_be_steps(tmp_path):
    model = build_ringtest(1, 8, (10, 20), (1, 1))
    sim = Simulation(model, load_backend("numpy"))
    with pytest.raises(PortneuronError, match=r"dt 0.03 ms is not a multiple of the run's dt"):
        Reports(sim, [ReportSpec("x", dt=0.03)], tmp_path)


@pytest.mark.parametrize("variable", ["q_hh", "m_pas", "ica", "m", "ExpSyn.q", "hh.m", "g_ExpSyn"])
def test_a_variable_the_model_lacks_is_one_line(tmp_path, variable):
    """hh has no q, pas no m, the ringtest no calcium; a bare name names no mechanism;
    ExpSyn has no q; hh is no point process, ExpSyn no density mechanism."""
    sim = Simulation(build_ringtest(1, 8, (10, 20), (1, 1)), load_backend("numpy"))
    with pytest.raises(PortneuronError, match=rf"x: no variable '{variable}' in this model"):
        Reports(sim, [ReportSpec("x", variable=variable)], tmp_path)
    assert not list(tmp_path.iterdir())
    conf = tmp_path.parent / f"{variable}.json"  # from the command: one line, exit 1
    conf.write_text(json.dumps({"reports": [{"name": "x", "variable": variable}]}))
    done = subprocess.run(
        [sys.executable, "-m", "portneuron", "run", "--nring", "1", "-e", "1",
         "--report-conf", str(conf), "-o", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"no variable '{variable}'" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "out.dat").exists()


def test_the_membrane_current_of_a_simulation_without_it_is_one_line(tmp_path):
    sim = Simulation(build_ringtest(1, 8, (10, 20), (1, 1)), load_backend("numpy"))
    with pytest.raises(PortneuronError, match=r"x: i_membrane_ is not computed in this "):
        Reports(sim, [ReportSpec("x", variable="i_membrane_")], tmp_path)
    assert not list(tmp_path.iterdir())
