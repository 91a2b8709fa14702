"""Implicit solvers against NEURON 9, to the bit: KINETIC schemes by `sparse` and DERIVATIVE
blocks by `derivimplicit`.

portneuron emits the arithmetic of nocmodl's generated code and of NEURON's solvers in their
order (portneuron/nmodl/kinetic.py and sparse.py: the matrix and the sparse solver;
newton.py: the residual function and Newton with a difference-quotient Jacobian and Crout
LU), so voltages and states are NEURON's exactly, not only within the corpus's 1e-9:

- tests/mods/kinmix.mod: pasted rates, a second-order reaction, a fixed reactant, `->` and
  `<<`, two CONSERVEs, COMPARTMENT, STEADYSTATE, states numbered by nocmodl's symbol table;
- tests/mods/kinpow.mod: a rate that is a power of one of the scheme's states (NEURON takes
  one Newton iteration, not the converged backward-Euler step);
- the release demo's cabpump.mod (cadifpmp: a 12-state diffusion chain over an array STATE
  with indexed COMPARTMENT);
- tests/mods/cabuf.mod: three coupled nonlinear states by derivimplicit, equations in an
  order other than the states';
- tests/mods/ssgate.mod: STEADYSTATE derivimplicit in INITIAL;

each in one compartment driven by an IClamp step (tests/neuron_cells.one_compartment),
40 ms, on every backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("neuron")

from harness import neuron_backends, nrnivmodl_folder, script_result, slow_for  # noqa: E402

from portneuron.nmodl import compile_file  # noqa: E402
from portneuron.nmodl.parse import neuron_root  # noqa: E402

pytestmark = pytest.mark.neuron

BACKENDS = neuron_backends()
FILES = [
    Path(__file__).parent / "mods" / "kinmix.mod",
    Path(__file__).parent / "mods" / "kinpow.mod",
    neuron_root() / ".data" / "share" / "nrn" / "demo" / "release" / "cabpump.mod",
    Path(__file__).parent / "mods" / "cabuf.mod",
    Path(__file__).parent / "mods" / "ssgate.mod",
]

RUN = """
import json, sys
import neuron
neuron.load_mechanisms(sys.argv[1])
import numpy as np
import neuron_cells
import portneuron.direct
out = {}
for name, states in json.loads(sys.argv[2]):
    built = neuron_cells.one_compartment(name, "density", False)
    expected = neuron_cells.run_neuron(built, 40.0)
    seg = built.segments[0]
    def value(s):
        if s.endswith("]"):
            base, k = s[:-1].split("[")
            return getattr(getattr(seg, name), base)[int(k)]
        return getattr(getattr(seg, name), s)
    theirs = {s: value(s) for s in states}
    result = portneuron.direct.run(40.0, record=built.segments, v_init=-65.0,
                                   mechanisms=[sys.argv[1]], backend=sys.argv[3])
    got = np.array(result.traces).T
    out[name] = {"max_dv": float(np.abs(got - expected).max()), "range": float(np.ptp(expected)),
                 "differ": [s for s in states if result.value(seg, name, s) != theirs[s]]}
    del built
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The files compiled by nrnivmodl, and their mechanisms' (name, states)."""
    folder = nrnivmodl_folder(tmp_path_factory.mktemp("implicit") / "mods", FILES)
    mechanisms = []
    for path in FILES:
        mechanism = compile_file(folder / path.name)
        states = [
            f"{v.name}[{k}]" if v.length else v.name
            for v in mechanism.variables
            if v.kind == "state"
            for k in range(max(v.length, 1))
        ]
        mechanisms.append((mechanism.name, states))
    return folder, mechanisms


@pytest.mark.parametrize("backend", slow_for(BACKENDS, "numpy"))
def test_implicit_solvers_are_neurons_to_the_bit(built, backend):
    folder, mechanisms = built
    results = script_result(RUN, str(folder), json.dumps(mechanisms), backend)
    assert set(results) == {"kinmix", "kinpow", "cadifpmp", "cabuf", "ssgate"}
    for name, r in results.items():
        assert r["range"] > 1.0, name  # the run moved v
        assert r["max_dv"] == 0.0, (name, r)
        assert r["differ"] == [], (name, r)
