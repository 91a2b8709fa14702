"""Binding a mechanism's kernels to arrays for tests: n instances on n nodes, one ion
instance per node. The engine does the real binding; this is the minimum to call kernels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from portneuron.ir import Mechanism, run_kernel

from portneuron.build import Cell, Network
from portneuron.library import MechanismLibrary
from portneuron.nmodl import builtin_mod_files, compile_file
from portneuron.nmodl.tabulated import bounds, grid

EPOCH_MODS = Path(__file__).parent / "mods_epoch"


def script_result(script: str, *args: str) -> dict:
    """`script` run by this Python in the tests folder: the JSON its last stdout line holds
    (the test fails with the script's stderr if it did not end well)."""
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return last_json(run.stdout)


def last_json(stdout: str) -> dict:
    """A script's last JSON line: a mechanism's printf may come after it where Python's
    stdout is a buffered pipe (PYTHONUNBUFFERED unset), as C's is flushed apart."""
    return json.loads(next(x for x in reversed(stdout.splitlines()) if x.startswith("{")))


def nrnivmodl_folder(folder: Path, files: list[Path]) -> Path:
    """`files` copied into a new `folder` and built there by NEURON's nrnivmodl (the test
    is skipped where it cannot build)."""
    nrnivmodl = shutil.which("nrnivmodl", path=str(Path(sys.executable).parent))
    if nrnivmodl is None:
        pytest.skip("nrnivmodl is not installed")
    folder.mkdir()
    for path in files:
        shutil.copy(path, folder / path.name)
    made = subprocess.run([nrnivmodl, "."], cwd=folder, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"nrnivmodl cannot build here: {made.stderr.strip()[-300:]}")
    return folder


def slow_for(values, *slow) -> list:
    """`values` to parametrize a test with, those in `slow` marked slow: the suite runs
    without them (pyproject's addopts: -m 'not slow'); `pytest -m slow` runs them."""
    return [pytest.param(v, marks=pytest.mark.slow) if v in slow else v for v in values]


def neuron_backends() -> list[str]:
    """The backends held to NEURON's bits: numpy and those that compute as it does, with the
    C library's math and sums in lane order. One with its device's own math or atomics
    (cuda, opencl) is held to numpy's results instead (test_backend_equivalence.py)."""
    from portneuron.backends import backend_names, backend_status, load_backend

    out = ["numpy"]
    for name in backend_names():
        if name != "numpy" and backend_status(name).available:
            backend = load_backend(name)
            if backend.ordered_sums and not backend.own_math:
                out.append(name)
    return out


def builtin(name: str) -> Mechanism:
    return compile_file(builtin_mod_files()[name])


class Instances:
    """Arrays for `n` instances of `mechanism`: `values` maps parameter names to arrays."""

    def __init__(self, mechanism: Mechanism, n: int, **uniform: float) -> None:
        self.mechanism, self.n = mechanism, n
        self.uniform = {
            "t": 0.0, "dt": 0.025, "celsius": 6.3, "usetable": 1.0,
            "random123_index": 3141592653.0,  # a Random123 global index past 2**31: the key
            **uniform,
        }  # fmt: skip
        self.values: dict[str, np.ndarray] = {"node_index": np.arange(n, dtype=np.int32)}
        for v in mechanism.variables:
            if v.per_instance:
                self.values[f"mech.{v.name}"] = np.full(n, v.default)
            else:
                self.uniform.setdefault(f"global.{v.name}", v.default)
        for name in ("node.v", "node.area", "node.diam", "node.rhs", "node.d"):
            self.values[name] = np.zeros(n)
        self.values["node.area"][:] = 100.0
        for ion in mechanism.ions:
            self.values[f"ion.{ion.name}.index"] = np.arange(n, dtype=np.int32)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def __setitem__(self, name: str, value) -> None:
        self.values[name] = np.array(np.broadcast_to(value, (self.n,)), dtype=np.float64)

    def build_tables(self) -> None:
        for table in self.mechanism.tables:
            kernel = self.mechanism.kernel(f"table_{table.name}")
            self.values[f"table.{table.name}.x"] = grid(table, *bounds(table, self.uniform))
            for out in table.outputs:
                self.values[f"table.{table.name}.{out}"] = np.zeros(table.points)
            self.run_kernel(kernel, table.points)

    def args(self, kernel, lanes: int) -> dict:
        args = {}
        for p in kernel.params:
            if not p.is_array:
                args[p.name] = self.uniform[p.name]
            else:
                if p.name not in self.values and p.space.startswith("ion:"):
                    self.values[p.name] = np.zeros(self.n)
                args[p.name] = self.values[p.name]
        return args

    def run_kernel(self, kernel, lanes: int) -> dict:
        return run_kernel(kernel, self.args(kernel, lanes), lanes)

    def run(self, name: str, **events: np.ndarray) -> dict:
        """Run kernel `name` over all instances (or over the given events)."""
        kernel = self.mechanism.kernel(name)
        assert kernel is not None, f"{self.mechanism.name} has no {name} kernel"
        lanes = self.n
        for key, value in events.items():
            self.values[key] = value
            lanes = len(value)
        return self.run_kernel(kernel, lanes)


def randomised(inst: Instances, rng: np.random.Generator) -> Instances:
    """`inst` with random voltages and its parameters and states scaled at random."""
    for name in list(inst.values):
        if name == "node.v":
            inst.values[name] = rng.uniform(-100, 60, inst.n)
        elif name.startswith("mech.") and not name.startswith("mech.ranvar"):
            base = inst.values[name]
            inst.values[name] = base * rng.uniform(0.5, 1.5, inst.n) + rng.uniform(0, 1e-3, inst.n)
    return inst


def kernel_inputs(inst: Instances, rng: np.random.Generator):
    """(kernel, arguments, lanes) for each kernel of the mechanism: instance kernels over
    every instance, NET_RECEIVE over 5 random events, tables over their points."""
    mechanism = inst.mechanism
    for kernel in mechanism.kernels:
        lanes = inst.n
        if kernel.lanes == "event":
            lanes = 5
            inst.values["event.instance"] = np.array([0, 3, 5, 7, 11], np.int32)
            inst.values["event.t"] = rng.uniform(0, 10, lanes)
            inst.values["event.flag"] = rng.choice([0.0, 1.0, 3.0], lanes)
            inst.values["event.netcon"] = np.arange(lanes, dtype=np.int32)
            for arg in mechanism.net_receive_args:
                inst.values[f"netcon.{arg}"] = rng.uniform(0, 0.1, lanes)
        elif kernel.name.startswith("table_"):
            lanes = next(t.points for t in mechanism.tables if kernel.name == f"table_{t.name}")
        yield kernel, inst.args(kernel, lanes), lanes


def synapse_network(synapse: str) -> Network:
    """Ten cells (a full block of 8 and a partial one, three shapes), three synapses on one
    node and two elsewhere, NetStims and a ring. PulseSyn's NET_RECEIVE sends self-events
    (a pulse's end after `dur`, then a zero-delay count); with interval == dur, pulses end
    just as the next event arrives, and which comes first changes the conductance."""
    net = Network(library=MechanismLibrary([EPOCH_MODS]))
    for gid in range(10):
        cell = Cell()
        soma = cell.section("soma", L=15.0 + gid, diam=15.0)
        cell.insert(soma, "hh")
        dends = []
        for k in range(1 + gid % 3):
            parent = soma if k == 0 else dends[-1]
            dend = cell.section(f"d{k}", L=100.0, diam=1.0 + 0.1 * k, nseg=3 + k, parent=parent)
            cell.insert(dend, "pas", g=1e-4, e=-65.0)
            dends.append(dend)
        for k in range(3):  # three synapses on one node
            values = {"tau": 1.0 + k} if synapse == "ExpSyn" else {"dur": 1.0 + k}
            cell.point_process(soma, 0.5, synapse, **values)
        cell.point_process(dends[-1], 0.5, synapse)
        cell.point_process(dends[0], 0.9, synapse)
        cell.spike_detector(soma, 0.5, 0.0)
        net.add_cell(cell, gid)
    for gid in range(10):
        interval = 5.0 if synapse == "ExpSyn" else 2.0
        stim = net.artificial_cell("NetStim", start=1.0 + gid % 4, number=5, interval=interval)
        for point in range(5):
            net.connect(gid, point, 0.001 * (1 + point), 1.0, source_stim=stim)
        net.connect((gid + 1) % 10, gid % 5, 0.03, 2.0, source_gid=gid)
    return net
