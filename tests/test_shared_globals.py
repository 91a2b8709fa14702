"""GLOBALs and file-scope LOCALs that every instance shares, against NEURON 9, to the bit.

NEURON keeps one value of a GLOBAL (or file-scope LOCAL) that a mechanism assigns (one a
thread, for a THREADSAFE file): each instance reads what the instance before it left.
portneuron keeps one value per instance where that gives NEURON's results, and shares it,
taking the instances in NEURON's order, where a block reads the value before assigning it
and its assignments differ between instances (portneuron/nmodl/mechanism.py, SharedUse).
tests/mods/gshare.mod has all three kinds on a cell of three diameters: a rate set at each
instance's v in the states and read by BREAKPOINT, a GLOBAL and a file-scope LOCAL set from
each instance's diameter in INITIAL, and a PROTECTed counter every BREAKPOINT call updates.
Every voltage must be NEURON's exactly; with one value per instance instead, they differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("neuron")

from harness import neuron_backends, nrnivmodl_folder, script_result  # noqa: E402

from portneuron.nmodl import compile_file  # noqa: E402

pytestmark = pytest.mark.neuron

BACKENDS = neuron_backends()
MOD = Path(__file__).parent / "mods" / "gshare.mod"

RUN = """
import json, sys
import neuron
neuron.load_mechanisms(sys.argv[1])
import numpy as np
from neuron import h
import neuron_cells
import portneuron.direct

neuron_cells.clear_neuron()
soma = h.Section(name="soma")
soma.L = soma.diam = 20
soma.insert("hh")
secs = [soma]
for k, (diam, nseg) in enumerate(((2, 3), (1, 2))):
    dend = h.Section(name=f"dend{k}")
    dend.L, dend.diam, dend.nseg = 150, diam, nseg
    dend.connect(soma(1))
    secs.append(dend)
for sec in secs:
    sec.insert("gshare")
stim = h.IClamp(soma(0.5))
stim.delay, stim.dur, stim.amp = 2, 20, 0.3
neuron_cells._register(soma)
segments = [seg for sec in secs for seg in sec]
h.calls_gshare = 0
expected = neuron_cells.run_neuron(neuron_cells.Built(segments), 25.0)
calls = h.calls_gshare

def run():
    h.finitialize(-65.0)
    h.calls_gshare = 0  # NEURON's run started from 0; portneuron's INITIAL and currents count
    result = portneuron.direct.run(25.0, record=segments, mechanisms=[sys.argv[1]],
                                   backend=sys.argv[2])
    return float(np.abs(np.array(result.traces).T - expected).max())

out = {"range": float(np.ptp(expected)), "calls": calls, "max_dv": run()}
from portneuron.nmodl import cache
from portneuron.nmodl.mechanism import SharedUse
SharedUse.needed = property(lambda self: set())  # one value per instance instead
cache.load = lambda source, filename: None  # the front end changed: neither what it stored
cache.save = lambda source, filename, mechanism: None  # nor a result to store
out["max_dv_per_instance"] = run()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return nrnivmodl_folder(tmp_path_factory.mktemp("shared") / "mods", [MOD])


def test_what_is_shared():
    """The three values read before they are assigned, with assignments that differ between
    instances, are shared; INITIAL, BREAKPOINT and the states, which assign them, take the
    instances in turn."""
    mechanism = compile_file(MOD)
    assert mechanism.shared == ("calls", "minf", "scale", "width")
    assert set(mechanism.sequential) == {"init", "current", "state"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_globals_are_neurons_to_the_bit(built, backend):
    out = script_result(RUN, str(built), backend)
    assert out["range"] > 50.0  # the soma fires
    assert out["calls"] > 2000  # 6 instances, twice a step, 1000 steps
    assert out["max_dv"] == 0.0, out
    assert out["max_dv_per_instance"] > 1e-6, out
