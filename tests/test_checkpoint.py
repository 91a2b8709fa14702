"""Checkpoint and restore (issue 20): a run to T/2, its state written, read by another
simulation of a model built again and continued to T, is the run to T: the same spikes,
the same voltages bit for bit (pending self-events, NetCon events in flight, random
streams and weights included), on numpy and llvm, 1 and 2 ranks; a checkpoint of another
model, format or rank count is one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import synapse_network
from hypothesis import given, settings
from hypothesis import strategies as st
from portneuron.backends import backend_status, load_backend

from portneuron import cli
from portneuron.build.ringtest import build_ringtest
from portneuron.checkpoint import restore, save
from portneuron.errors import PortneuronError
from portneuron.sim.simulation import Simulation

BACKENDS = ["numpy"] + (["llvm"] if backend_status("llvm").available else [])
T = 6.0


def noisy_synapses():
    """tests/harness's PulseSyn network (NET_RECEIVE self-events: pending at any split)
    with its NetStims firing at random (Random123 streams)."""
    net = synapse_network("PulseSyn")
    for stim in net.stims:
        stim.values.update(noise=0.5, number=8)
    return net.build()


@settings(max_examples=4, deadline=None)
@given(backend=st.sampled_from(BACKENDS), split=st.integers(1, int(T / 0.025) - 1))
def test_a_restored_run_is_the_run_that_never_stopped(tmp_path_factory, backend, split):
    folder = tmp_path_factory.mktemp("checkpoint")
    model = noisy_synapses()
    record = list(range(0, model.nodes.count, 7))
    whole = Simulation(model, load_backend(backend)).run(T, record=record)
    first = Simulation(noisy_synapses(), load_backend(backend))
    a = first.run(split * 0.025, record=record)
    save(first, folder)
    second = Simulation(noisy_synapses(), load_backend(backend))
    restore(second, folder)
    b = second.run(T, record=record, initialize=False)
    assert a.spikes + b.spikes == whole.spikes and len(whole.spikes) >= 5
    np.testing.assert_array_equal(np.concatenate([a.v, b.v[1:]]), whole.v)


MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


@pytest.mark.parametrize("ranks", [0, 2])
def test_the_command_checkpoints_and_restores(tmp_path, ranks):
    """`portneuron run -e 20 --checkpoint`, then `-e 40 --restore`: the two out.dat are the
    40 ms run's, and its report's rows (reported on both halves) too; on 1 process and
    under mpiexec on 2 ranks."""
    if ranks and MPIEXEC is None:
        pytest.skip("no mpiexec (pip install mpich)")

    def run(*argv: str) -> None:
        command = [sys.executable, "-m", "portneuron", "run", "--nring", "2", "--threads", "1",
                   "--report", "soma@0.5", *argv]  # fmt: skip
        if ranks:
            command = [MPIEXEC, "-n", str(ranks), *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    run("-e", "40", "-o", str(tmp_path / "whole"))
    run("-e", "20", "--checkpoint", str(tmp_path / "ck"), "-o", str(tmp_path / "a"))
    run("-e", "40", "--restore", str(tmp_path / "ck"), "-o", str(tmp_path / "b"))
    halves = (tmp_path / "a" / "out.dat").read_text() + (tmp_path / "b" / "out.dat").read_text()
    assert halves == (tmp_path / "whole" / "out.dat").read_text() and halves
    import h5py

    def rows(name: str) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(tmp_path / name / "soma.h5") as f:
            return f["report/All/data"][:], f["report/All/mapping/time"][:]

    (a, time_a), (b, time_b), (whole, time_whole) = rows("a"), rows("b"), rows("whole")
    np.testing.assert_array_equal(np.concatenate([a, b[1:]]), whole)
    np.testing.assert_allclose([time_a, time_b, time_whole],
                               [[0, 20.5, 0.5], [20, 40.5, 0.5], [0, 40.5, 0.5]], atol=1e-9)  # fmt: skip


def test_a_checkpoint_of_something_else_is_one_line(tmp_path, capsys):
    model = build_ringtest(1, 8, (10, 20), (1, 1))
    sim = Simulation(model, load_backend("numpy"))
    sim.run(2.0)
    save(sim, tmp_path / "ck")
    other = Simulation(build_ringtest(2, 8, (10, 20), (1, 1)), load_backend("numpy"))
    with pytest.raises(PortneuronError, match=r"ck: a checkpoint of another model"):
        restore(other, tmp_path / "ck")
    manifest = tmp_path / "ck" / "checkpoint.json"
    written = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**written, "format": 99}))
    with pytest.raises(PortneuronError, match=r"a checkpoint of format 99 .*reads format 1"):
        restore(sim, tmp_path / "ck")
    manifest.write_text(json.dumps({**written, "ranks": 3}))
    with pytest.raises(PortneuronError, match=r"written by 3 rank\(s\); continue it on as many"):
        restore(sim, tmp_path / "ck")
    manifest.unlink()
    with pytest.raises(PortneuronError, match=r"no checkpoint here \(checkpoint.json"):
        restore(sim, tmp_path / "ck")
    manifest.write_text(json.dumps(written))
    argv = ["run", "--nring", "1", "-e", "1", "--restore", str(tmp_path / "ck")]
    assert cli.main([*argv, "-o", str(tmp_path / "out")]) == 1
    assert "the checkpoint is at t = 2 ms, not before -e 1 ms" in capsys.readouterr().err
