"""The compiled epochs' self-event queue keeps NEURON's order on every backend (issue 18):
events of random networks of OrderLog synapses (tests/mods_epoch/orderlog.mod, which
fingerprints the order its events arrive in), with self-event delays of zero and of the
external events' spacing so that many fall due at one time, against the numpy stepwise
loop's queue: every instance's fingerprint and count, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_host import GXX, HostRuntime
from harness import EPOCH_MODS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portneuron.backends import backend_status, load_backend
from portneuron.backends.cuda.backend import CudaBackend

from portneuron.build import Cell, Network
from portneuron.library import MechanismLibrary
from portneuron.sim.simulation import Simulation

CELLS, SYNAPSES, STIMS = 3, 2, 3
DT = 0.025
#: Delays that put self-events at the times of other events: none, a step, the stimuli's
#: spacings.
DELAYS = st.sampled_from([0.0, DT, 2 * DT, 0.5, 1.0, 1.5])

synapse = st.fixed_dictionaries(
    {"d1": DELAYS, "d2": DELAYS, "d3": DELAYS, "limit": st.integers(5, 40).map(float)}
)
stim = st.fixed_dictionaries(
    {
        "start": st.integers(0, 8).map(lambda k: 0.5 * k),
        "interval": st.sampled_from([0.5, 1.0, 1.5]),
        "number": st.integers(1, 6).map(float),
    }
)
targets = st.lists(st.tuples(st.integers(0, STIMS - 1), st.integers(1, 3)), min_size=1, max_size=3)


def network(synapses, stims, wiring) -> Network:
    """CELLS cells of SYNAPSES OrderLogs each; stimulus s drives synapse k through each of
    wiring[k]'s (s, delay in ms) connections."""
    net = Network(library=MechanismLibrary([EPOCH_MODS]))
    for gid in range(CELLS):
        cell = Cell()
        soma = cell.section("soma", L=15.0 + gid, diam=15.0)
        cell.insert(soma, "hh")
        for k in range(SYNAPSES):
            cell.point_process(soma, 0.5, "OrderLog", **synapses[gid * SYNAPSES + k])
        cell.spike_detector(soma, 0.5, 0.0)
        net.add_cell(cell, gid)
    sources = [net.artificial_cell("NetStim", **values) for values in stims]
    for k, connections in enumerate(wiring):
        for s, delay in connections:
            net.connect(k // SYNAPSES, k % SYNAPSES, 0.0, float(delay), source_stim=sources[s])
    return net


def fingerprints(net: Network, backend, epochs) -> tuple[np.ndarray, np.ndarray]:
    model = net.build()
    sim = Simulation(model, backend, threads=2, compiled_epochs=epochs)
    sim.run(12.0)
    assert (sim.stepwise_reason == "") == bool(epochs), sim.stepwise_reason
    log = next(m for m in model.mechanisms if m.name == "OrderLog").data
    return log["h"].copy(), log["n"].copy()


def backends() -> list[str]:
    out = ["numpy"]
    if backend_status("llvm").available:
        out.append("llvm")
    if GXX is not None:
        out.append("cuda stand-in")
    if backend_status("opencl").available:
        out.append("opencl")
    return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> CudaBackend | None:
    """The cuda backend on its CPU stand-in (tests/cuda_host.py), where g++ is."""
    if GXX is None:
        return None
    return CudaBackend(HostRuntime(tmp_path_factory.mktemp("queue")), 8, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", backends())
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    synapses=st.lists(synapse, min_size=CELLS * SYNAPSES, max_size=CELLS * SYNAPSES),
    stims=st.lists(stim, min_size=STIMS, max_size=STIMS),
    wiring=st.lists(targets, min_size=CELLS * SYNAPSES, max_size=CELLS * SYNAPSES),
)
def test_self_events_come_in_neurons_order(name, stand_in, synapses, stims, wiring):
    net = network(synapses, stims, wiring)
    h, n = fingerprints(net, load_backend("numpy"), False)
    backend = stand_in if name == "cuda stand-in" else load_backend(name)
    epochs = "ir" if name == "numpy" else True
    h_epochs, n_epochs = fingerprints(net, backend, epochs)
    assert n.sum() > 0
    np.testing.assert_array_equal(n_epochs, n)
    np.testing.assert_array_equal(h_epochs, h)
