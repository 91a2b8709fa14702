"""Checkpoint and restore (issue 20): a run to T/2, its state written, read by another
simulation of a model built again and continued to T, is the run to T: the same spikes,
the same voltages bit for bit (pending self-events, NetCon events in flight, random
streams and weights included), on numpy and llvm, 1 and 2 ranks, for one network with
self-events and for random ones; a checkpoint of another model, format or rank count is
one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cuda_host import GXX
from harness import synapse_network
from hypothesis import given, settings
from hypothesis import strategies as st
from portneuron.backends import backend_status, load_backend
from test_backend_equivalence import networks

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
    """A run to T/2, saved, restored and continued: the run to T, its spikes, and its
    voltages and membrane currents (i_membrane_) at the recorded nodes bit for bit."""
    folder = tmp_path_factory.mktemp("checkpoint")
    model = noisy_synapses()
    record = list(range(0, model.nodes.count, 7))

    def simulation(model) -> tuple[Simulation, list]:
        sim = Simulation(model, load_backend(backend), fast_imem=True)
        return sim, [(sim.i_membrane, i) for i in record]

    sim, probes = simulation(model)
    whole = sim.run(T, record=record, probes=probes)
    first, probes = simulation(noisy_synapses())
    a = first.run(split * 0.025, record=record, probes=probes)
    save(first, folder)
    second, probes = simulation(noisy_synapses())
    restore(second, folder)
    b = second.run(T, record=record, initialize=False, probes=probes)
    assert a.spikes + b.spikes == whole.spikes and len(whole.spikes) >= 5
    np.testing.assert_array_equal(np.concatenate([a.v, b.v[1:]]), whole.v)
    np.testing.assert_array_equal(np.concatenate([a.values, b.values[1:]]), whole.values)
    assert np.abs(whole.values).max() > 0


@settings(max_examples=6, deadline=None)
@given(net=networks(), backend=st.sampled_from(BACKENDS), part=st.floats(0.05, 0.95))
def test_a_restored_random_network_is_the_run_that_never_stopped(
    tmp_path_factory, net, backend, part
):
    """Random networks (tests/test_backend_equivalence.py's: random trees, hh and pas,
    IClamps, noisy NetStims, NetCons with random delays) run to T, or to a random split,
    checkpointed, restored into the model built again and run on to T: the same spikes,
    the same voltages bit for bit."""
    folder = tmp_path_factory.mktemp("random")
    split = round(part * T / 0.025) * 0.025
    model = net.build()
    record = list(range(0, model.nodes.count, 2))
    whole = Simulation(model, load_backend(backend)).run(T, record=record)
    first = Simulation(net.build(), load_backend(backend))
    a = first.run(split, record=record)
    save(first, folder)
    second = Simulation(net.build(), load_backend(backend))
    restore(second, folder)
    b = second.run(T, record=record, initialize=False)
    assert a.spikes + b.spikes == whole.spikes
    np.testing.assert_array_equal(np.concatenate([a.v, b.v[1:]]), whole.v)


def device_backends() -> list[str]:
    out = ["opencl"] if backend_status("opencl").available else []
    return out + (["cuda stand-in"] if GXX is not None else [])


@pytest.mark.slow  # PoCL compiles every kernel; the stand-in starts a thread a CUDA thread
@pytest.mark.parametrize("name", device_backends())
def test_a_restored_run_on_a_device_is_the_run_that_never_stopped(tmp_path, name):
    """The self-event network checkpointed at three splits on a device backend (the model
    in its memory, read back to save): the run that never stopped, its spikes, and its
    voltages bit for bit on opencl; on cuda's stand-in, whose point processes add with
    atomics in no fixed order (two whole runs differ by about 1e-11 mV), within 1e-9 mV."""
    if name == "opencl":
        backend = load_backend("opencl")
    else:
        from cuda_host import HostRuntime
        from portneuron.backends.cuda.backend import CudaBackend

        (tmp_path / "host").mkdir()
        backend = CudaBackend(HostRuntime(tmp_path / "host"), 8, 64)
    model = noisy_synapses()
    record = list(range(0, model.nodes.count, 7))
    whole = Simulation(model, backend).run(T, record=record)
    for split in (37, 121, 200):
        first = Simulation(noisy_synapses(), backend)
        a = first.run(split * 0.025, record=record)
        save(first, tmp_path / f"ck{split}")
        second = Simulation(noisy_synapses(), backend)
        restore(second, tmp_path / f"ck{split}")
        b = second.run(T, record=record, initialize=False)
        assert second.stepwise_reason == ""
        assert a.spikes + b.spikes == whole.spikes and len(whole.spikes) >= 5
        halves = np.concatenate([a.v, b.v[1:]])
        if name == "opencl":
            np.testing.assert_array_equal(halves, whole.v)
        else:
            assert np.abs(halves - whole.v).max() <= 1e-9


MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))

ON_RANKS = """
import json, pickle, sys
import numpy as np
from portneuron.backends import load_backend
from portneuron.checkpoint import restore, save
from portneuron.parallel import world
from portneuron.sim.simulation import Simulation
ranks = world()
networks, backend, T, folder = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
out = []
for k, (net, split) in enumerate(pickle.load(open(networks, "rb"))):
    def sim():
        return Simulation(net.build(ranks=ranks), load_backend(backend), ranks=ranks, threads=1)
    whole = sim()
    record = list(range(0, whole.model.nodes.count, 2))
    w = whole.run(T, record=record)
    first = sim()
    a = first.run(split, record=record)
    save(first, f"{folder}/{k}")
    second = sim()
    restore(second, f"{folder}/{k}")
    b = second.run(T, record=record, initialize=False)
    same_v = bool(np.array_equal(np.concatenate([a.v, b.v[1:]]), w.v))
    parts = ranks.gather((w.spikes, a.spikes + b.spikes, same_v, whole.model.ncell))
    if parts is not None:
        out.append({"whole": sorted(s for p in parts for s in p[0]),
                    "halves": sorted(s for p in parts for s in p[1]),
                    "same_v": [p[2] for p in parts], "cells": [p[3] for p in parts]})
if ranks.rank == 0:
    print(json.dumps(out))
"""


@pytest.mark.mpi
@settings(max_examples=2, deadline=None)
@given(
    nets=st.lists(networks(), min_size=3, max_size=3),
    parts=st.lists(st.floats(0.05, 0.95), min_size=3, max_size=3),
    backend=st.sampled_from(BACKENDS),
)
def test_a_restored_random_network_on_two_ranks_is_the_run_that_never_stopped(
    tmp_path_factory, nets, parts, backend
):
    """The same on 2 ranks (mpiexec; the cells spread over both, NetCons crossing between
    them): three random networks a process, each checkpointed at its own split."""
    if MPIEXEC is None:
        pytest.skip("no mpiexec (pip install mpich)")
    import pickle

    folder = tmp_path_factory.mktemp("ranks")
    cases = [(net, round(p * T / 0.025) * 0.025) for net, p in zip(nets, parts)]
    (folder / "nets.pickle").write_bytes(pickle.dumps(cases))
    done = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-c", ON_RANKS, str(folder / "nets.pickle"),
         backend, str(T), str(folder)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out) == len(cases) and sum(len(case["whole"]) for case in out) > 0
    for case in out:
        assert case["halves"] == case["whole"] and case["same_v"] == [True, True]
        assert min(case["cells"]) >= 1


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
    manifest.write_text(json.dumps(written))
    computes = Simulation(build_ringtest(1, 8, (10, 20), (1, 1)), load_backend("numpy"),
                          fast_imem=True)  # fmt: skip
    with pytest.raises(PortneuronError, match=r"did not compute the membrane current"):
        restore(computes, tmp_path / "ck")
    manifest.unlink()
    with pytest.raises(PortneuronError, match=r"no checkpoint here \(checkpoint.json"):
        restore(sim, tmp_path / "ck")
    manifest.write_text(json.dumps(written))
    argv = ["run", "--nring", "1", "-e", "1", "--restore", str(tmp_path / "ck")]
    assert cli.main([*argv, "-o", str(tmp_path / "out")]) == 1
    assert "the checkpoint is at t = 2 ms, not before -e 1 ms" in capsys.readouterr().err
