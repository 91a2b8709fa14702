"""`portneuron run`'s options with CoreNEURON's meanings (issue 20): --celsius and --seed
against NEURON run at that temperature and Random123 key, --mindelay (the longest epoch)
leaving the spikes as they are, --model-stats."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("neuron")

import neuron_models  # noqa: E402
from neuron import h  # noqa: E402

from portneuron import cli  # noqa: E402
from portneuron.io.spikes import format_spikes  # noqa: E402

pytestmark = pytest.mark.neuron


def run(capsys, *argv: str) -> dict:
    """`portneuron run ... --json`: its summary."""
    capsys.readouterr()
    assert cli.main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_celsius_is_neurons_at_that_temperature(capsys, tmp_path):
    """The built-in ringtest at 16.3 degC (-l): NEURON's spikes at h.celsius = 16.3 (hh's
    rates and its TABLE follow the temperature), not those at the model's 6.3."""
    ring = neuron_models.build_ringtest(nring=4)
    h.celsius = 16.3
    expected = neuron_models.run_neuron(ring, tstop=40.0)
    neuron_models.clear_neuron()
    summary = run(capsys, "--nring", "4", "-e", "40", "--celsius", "16.3", "-o", str(tmp_path))
    assert summary["celsius"] == 16.3
    assert (tmp_path / "out.dat").read_text() == format_spikes(expected)
    run(capsys, "--nring", "4", "-e", "40", "-o", str(tmp_path / "default"))
    assert (tmp_path / "default" / "out.dat").read_text() != format_spikes(expected)


def noisy_ring(index: int):
    """A ringtest of 2 rings whose NetStims fire at random (noise 1, Random123 streams),
    under Random123 global index `index`."""
    ring = neuron_models.build_ringtest(nring=2)
    h.Random().Random123_globalindex(index)
    for stim in ring.stims:
        stim.number, stim.interval, stim.noise = 20, 4.0, 1.0
    return ring


def test_seed_is_neurons_random123_global_index(capsys, tmp_path):
    """A dataset NEURON wrote under global index 0, run with --seed 7: NEURON's spikes
    under index 7 (every stream's key), which differ from index 0's."""
    expected = neuron_models.run_neuron(noisy_ring(7), tstop=40.0)
    unseeded = neuron_models.run_neuron(noisy_ring(0), tstop=40.0)
    assert expected != unseeded
    neuron_models.write_dataset(noisy_ring(0), tmp_path / "data")
    neuron_models.clear_neuron()
    data = str(tmp_path / "data")
    summary = run(capsys, "-d", data, "-e", "40", "--seed", "7", "-o", str(tmp_path / "7"))
    assert summary["seed"] == 7
    assert (tmp_path / "7" / "out.dat").read_text() == format_spikes(expected)
    run(capsys, "-d", data, "-e", "40", "-o", str(tmp_path / "0"))
    assert (tmp_path / "0" / "out.dat").read_text() == format_spikes(unseeded)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_mindelay_shortens_epochs_not_spikes(capsys, tmp_path, backend):
    """--mindelay 0.3: epochs of 0.3 ms (12 steps), not the min-delay's 1 ms; the same
    spikes."""
    args = ["--nring", "2", "-e", "8" if backend == "numpy" else "30", "--backend", backend]
    whole = run(capsys, *args, "-o", str(tmp_path / "whole"))
    short = run(capsys, *args, "--mindelay", "0.3", "-o", str(tmp_path / "short"))
    assert whole["epoch_ms"] == 1.0 and short["epoch_ms"] == pytest.approx(0.3)
    assert whole["spikes"] > 0
    assert (tmp_path / "short" / "out.dat").read_text() == (
        tmp_path / "whole" / "out.dat"
    ).read_text()


def test_model_stats(capsys, tmp_path):
    """--model-stats: cells, compartments, instances of each mechanism and the arrays'
    memory by part, printed before the run and in the --json summary."""
    assert cli.main(["run", "--nring", "1", "-e", "1", "--model-stats", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model: 8 cells, ")
    assert "instances of each mechanism:" in out and "the model's arrays [MiB]" in out
    stats = run(capsys, "--nring", "1", "-e", "1", "--model-stats", "-o", str(tmp_path))[
        "model_stats"
    ]
    assert stats["cells"] == 8
    assert stats["instances"]["hh"] == 8 and stats["instances"]["NetStim"] == 1
    assert stats["instances"]["ExpSyn"] == 16
    assert set(stats["memory_mib"]) >= {"nodes", "hh", "pas", "ions", "netcons"}
    assert all(v >= 0 for v in stats["memory_mib"].values())
