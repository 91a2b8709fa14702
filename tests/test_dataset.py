"""The dataset reader and `portneuron run`: what NEURON writes is read back faithfully, and
damaged or unsupported datasets get one clear line, a nonzero exit and no out.dat."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neuron")

import neuron_cells  # noqa: E402
from neuron import h  # noqa: E402

from portneuron.io.dataset import load_dataset  # noqa: E402
from portneuron.io.spikes import read_spikes  # noqa: E402

pytestmark = pytest.mark.neuron


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A ball-and-sticks cell driven by a noisy NetStim through an Exp2Syn, as NEURON wrote it."""
    built = neuron_cells.ball_and_sticks("exp2syn")
    h.dt = 0.025
    h.finitialize(-65)
    path = tmp_path_factory.mktemp("ds") / "data"
    h.ParallelContext().nrncore_write(str(path))
    stim = next(k for k in built.keep if k.hname().startswith("NetStim"))
    path.joinpath("stim.txt").write_text(f"{stim.interval} {stim.noise}")
    del built
    return path


def portneuron_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portneuron", "run", *args], capture_output=True, text=True
    )


def test_reader_restores_neuron_values(dataset):
    model = load_dataset(dataset)
    assert model.ncell == 1 and model.nodes.count == 1 + 2 + 2 * 6
    assert [m.name for m in model.mechanisms] == [
        "capacitance", "pas", "Exp2Syn", "hh", "NetStim",
    ]  # fmt: skip
    hh = model.mechanism_set("hh")
    assert hh.count == 11 and hh.data["gnabar"][0] == 0.12 and hh.data["gnabar"][1] == 0.02
    np.testing.assert_array_equal(model.nodes.v, -65.0)
    assert (model.nodes.parent_index[1:] < np.arange(1, model.nodes.count)).all()
    stim = model.mechanism_set("NetStim")
    interval, noise = map(float, (dataset / "stim.txt").read_text().split())
    assert stim.data["interval"][0] == interval and stim.data["noise"][0] == noise
    assert (stim.data["ranvar.id1"][0], stim.data["ranvar.id2"][0]) == (3, 5)
    assert stim.data["ranvar.id3"][0] == 7
    assert model.netcons.count == 1 and model.netcons.delay[0] == 1.5
    na = model.ion("na")
    assert na.count == 11 and (na.data["ena"] == 50).all()


def test_run_writes_out_dat(dataset, tmp_path):
    run = portneuron_run("-d", str(dataset), "-e", "30", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    spikes = read_spikes(tmp_path / "out.dat")
    assert spikes and all(gid == 0 for _, gid in spikes)
    assert "1 cells" in run.stdout and "spikes" in run.stdout


def damaged(dataset: Path, tmp_path: Path, name: str, change) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(dataset, copy)
    path = copy / name
    path.write_bytes(change(path.read_bytes()))
    return copy


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("0_2.dat", lambda b: b[: len(b) // 2], "0_2.dat@[0-9]+: .* truncated"),
        ("0_1.dat", lambda b: b.replace(b"1.8", b"1.7", 1), "0_1.dat:1: dataset format '1.7'"),
        ("bbcore_mech.dat", lambda b: b.replace(b"Exp2Syn", b"MySyn"), "'MySyn' has no .mod"),
        ("files.dat", lambda b: b"", "files.dat:1: file ends before the version line"),
        ("files.dat", lambda b: b"1.8\n-1\n", "files.dat:3: file ends before the number of cell"),
        ("0_2.dat", lambda b: b.replace(b"chkpnt 9\n", b"chkpnt 7\n"), "expected 'chkpnt 9'"),
    ],
    ids=["truncated", "version", "missing-mod", "empty", "gap-flag-alone", "checkpoint"],
)
def test_bad_dataset_one_line_no_out_dat(dataset, tmp_path, name, change, message):
    import re

    bad = damaged(dataset, tmp_path, name, change)
    out = tmp_path / "out"
    run = portneuron_run("-d", str(bad), "-o", str(out))
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (out / "out.dat").exists()


def test_mechanisms_folder_supplies_a_missing_mod(dataset, tmp_path):
    """A renamed synapse resolves through --mechanisms, and runs as the original did."""
    bad = damaged(dataset, tmp_path, "bbcore_mech.dat", lambda b: b.replace(b"Exp2Syn", b"MySyn"))
    mods = tmp_path / "mods"
    mods.mkdir()
    from portneuron.nmodl import builtin_mod_files

    source = builtin_mod_files()["exp2syn"].read_text()
    (mods / "mysyn.mod").write_text(source.replace("POINT_PROCESS Exp2Syn", "POINT_PROCESS MySyn"))
    for folder, args in (
        ("a", ["-d", str(dataset)]),
        ("b", ["-d", str(bad), "--mechanisms", str(mods)]),
    ):
        run = portneuron_run(*args, "-e", "30", "-o", str(tmp_path / folder))
        assert run.returncode == 0, run.stderr
    assert (tmp_path / "a" / "out.dat").read_text() == (tmp_path / "b" / "out.dat").read_text()


def test_impossible_options_are_one_line(dataset, tmp_path):
    for args, message in (
        (["-d", str(tmp_path / "nowhere")], "no such folder"),
        (["-d", str(dataset), "--dt", "0"], "dt must be positive"),
        (["-d", str(dataset), "--backend", "vulkan"], "unknown backend 'vulkan'"),
    ):
        run = portneuron_run(*args, "-o", str(tmp_path / "o"))
        assert run.returncode != 0 and message in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_damaged_bbcore_stream_words_are_one_line():
    """A BBCOREPOINTER stream's words (tests/mods/probsyn.mod: 7 ints an instance, the
    stream's ids, sequence and index first, then the delay Vectors' sizes): a count that is
    not 7 an instance is a damaged file, a nonzero size or any double is a set delay Vector
    (which portneuron does not run), and usingR123 not 1 a hoc Random; one line each."""
    from types import SimpleNamespace

    from portneuron.io.dataset import _bbcore_stream
    from portneuron.io.datfile import DatasetError
    from portneuron.model import MechanismSet
    from portneuron.nmodl import compile_file

    mech = compile_file(Path(__file__).parent / "mods" / "probsyn.mod")
    mt = SimpleNamespace(type_id=30)

    def refusal(ints, doubles=(), using=1.0) -> str:
        data = {"usingR123": np.full(2, using)}
        mset = MechanismSet(mech, 30, np.zeros(2, np.int32), data, count=2)
        group = SimpleNamespace(
            mechs=[(mt, None, np.zeros((2, 1)), None, None)],
            bbcore={30: (np.array(ints, np.int32), np.array(doubles, np.float64))},
        )
        try:
            _bbcore_stream(mset, [group], "ds")
        except DatasetError as exc:
            assert "\n" not in str(exc)
            return str(exc)
        return ""

    good = [7, 8, 9, 3, 1, 0, 0] * 2
    assert refusal(good) == ""
    assert refusal(good[:-1]) == (
        "ds: ProbSyn: its bbcorepointer data are 13 ints for 2 instances, not the 7 per "
        "instance its bbcore_write writes; the dataset is damaged"
    )
    delays = "its BBCOREPOINTER carries Vectors (delayed-connection weights, setup_delay_vecs)"
    assert refusal(good[:12] + [1, 1]) == f"ds: ProbSyn 1: {delays}, which portneuron does not run"
    assert refusal(good, [0.5]).startswith("ds: ProbSyn 0: its BBCOREPOINTER carries Vectors")
    assert refusal(good, using=0.0).startswith("ds: ProbSyn 0: its stream is not Random123's")


def test_cells_contiguous_labels_each_node_with_its_root():
    """A dataset's nodes, cell by cell (model.cells_contiguous, by jumping to parents'
    parents): the order and cell starts of labelling each node with its parent's cell, one
    node after another, on random forests (roots first, parents before children) and a
    long chain."""
    from portneuron.model import cells_contiguous

    def one_by_one(parent, ncell):
        cell = np.arange(len(parent))
        for i in range(ncell, len(parent)):
            cell[i] = cell[parent[i]]
        first = np.zeros(ncell + 1, np.int64)
        np.cumsum(np.bincount(cell, minlength=ncell), out=first[1:])
        return np.argsort(cell, kind="stable"), first

    rng = np.random.default_rng(18)
    forests = []
    for _ in range(100):
        ncell = int(rng.integers(1, 6))
        n = ncell + int(rng.integers(0, 200))
        parent = np.array([-1] * ncell + [int(rng.integers(0, i)) for i in range(ncell, n)])
        forests.append((parent.astype(np.int32), ncell))
    forests.append((np.arange(-1, 5000, dtype=np.int32), 1))
    for parent, ncell in forests:
        order, first = cells_contiguous(parent, ncell)
        expected_order, expected_first = one_by_one(parent, ncell)
        np.testing.assert_array_equal(order, expected_order)
        np.testing.assert_array_equal(first, expected_first)
