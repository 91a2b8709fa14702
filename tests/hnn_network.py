"""hnn-core's default network (`jones_2009_model` with the drives of its default parameters:
layer 2/5 pyramidal and basket cells, the drives' VecStims, the dipole summed by POINTER
mechanisms), built by hnn-core itself in NEURON, for tests/test_hnn.py and perf/hnn.py.

hnn-core comes from PyPI (pinned in tests/pypi.py); its sdist is unpacked and its `.mod`
files are built with the neuron wheel's nrnivmodl. hnn-core 0.6.1 asks NEURON for legacy
units (`h.nrnunit_use_legacy(1)`), which NEURON 9 no longer has and refuses with an error:
that one call is taken out of the unpacked copy, so the model is NEURON 9's (modern units),
the same in NEURON and in portneuron.

As a script it runs the network in NEURON and in portneuron's direct mode and prints one
JSON object:

    python hnn_network.py <unpacked hnn-core> <tstop> <engine>...   (neuron, numpy, llvm)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

LEGACY = "    h.nrnunit_use_legacy(1)\n"


def unpack(archive: Path, into: Path) -> Path | str:
    """Unpack hnn-core's sdist under `into` and build its mechanisms; the folder holding the
    package, or why it cannot be used here."""
    with tarfile.open(archive) as t:  # extraction filters: Python 3.11.4 and later
        t.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (root,) = [p for p in into.iterdir() if (p / "hnn_core").is_dir()]
    builder = root / "hnn_core" / "network_builder.py"
    text = builder.read_text()
    if LEGACY not in text:
        return f"{builder} no longer asks for legacy units: look at this module again"
    builder.write_text(text.replace(LEGACY, "    pass  # NEURON 9: modern units only\n"))
    nrnivmodl = shutil.which("nrnivmodl", path=str(Path(sys.executable).parent))
    if nrnivmodl is None:
        return "nrnivmodl is not installed"
    built = subprocess.run(
        [nrnivmodl], cwd=root / "hnn_core" / "mod", capture_output=True, text=True
    )
    if built.returncode != 0:
        return f"nrnivmodl cannot build hnn-core's mechanisms: {built.stderr.strip()[-300:]}"
    return root


def prepare(into: Path) -> Path | str:
    """hnn-core's sdist from PyPI (tests/pypi.py), unpacked under `into` with its
    mechanisms built: the folder holding the package, or why it cannot be used here."""
    from pypi import download

    archive = download("hnn-core", into / "sdist")
    if isinstance(archive, str):
        return f"pip cannot download hnn-core: {archive}"
    return unpack(archive, into / "src")


def build(root: Path, tstop: float):
    """hnn-core's default network in NEURON, initialised as hnn-core's simulate_dipole
    initialises it: (its NetworkBuilder, the ParallelContext)."""
    sys.path.insert(0, str(root))
    from hnn_core import jones_2009_model
    from hnn_core import network_builder as nb
    from neuron import h

    net = jones_2009_model(add_drives_from_params=True)
    net._verbose = False
    net._instantiate_drives(n_trials=1, tstop=tstop)
    builder = nb.NetworkBuilder(net, trial_idx=0)
    h.load_file("stdrun.hoc")
    h.tstop, h.dt, h.celsius = tstop, 0.025, net._params["celsius"]
    nb._PC.set_maxstep(10)
    return builder, nb._PC


def main() -> None:
    import numpy as np
    from neuron import h

    import portneuron.direct

    root, tstop = Path(sys.argv[1]), float(sys.argv[2])
    # NEURON last: h.finitialize() leaves v as it is (hnn-core sets each section's v0), so
    # a run after NEURON's would start from where NEURON's ended
    engines = sorted(sys.argv[3:], key=lambda engine: engine == "neuron")
    t0 = time.perf_counter()
    builder, pc = build(root, tstop)
    setup = time.perf_counter() - t0
    cells = builder._cells
    somas = [c._nrn_sections["soma"](0.5) for c in cells]
    dipoles = [c for c in cells if hasattr(c, "dpl_ref")]
    out = {"cells": len(cells), "drives": len(builder._drive_cells), "setup_s": setup,
           "compartments": sum(sec.nseg for sec in h.allsec())}  # fmt: skip
    runs = {}
    for engine in engines:
        if engine == "neuron":
            vs = [h.Vector().record(s._ref_v) for s in somas]
            h.finitialize()
            h.fcurrent()
            t0 = time.perf_counter()
            pc.psolve(tstop)
            simulate = time.perf_counter() - t0
            times, gids = builder._spike_times.to_python(), builder._spike_gids.to_python()
            spikes = sorted((t, int(g)) for t, g in zip(times, gids))
            v = np.array([vec.to_python() for vec in vs])
            dpl = np.array([c.dipole.to_python() for c in dipoles])
        else:
            h.finitialize()
            t0 = time.perf_counter()
            result = portneuron.direct.run(
                tstop, record=somas, backend=engine, mechanisms=[root / "hnn_core" / "mod"],
                record_values=[c.dpl_ref for c in dipoles], threads=1,  # as NEURON here
            )  # fmt: skip
            simulate = result.simulate_s
            out[f"{engine}_total_s"] = time.perf_counter() - t0
            out[f"{engine}_stepwise"] = result.stepwise_reason
            spikes = sorted((float(t), int(g)) for t, g in result.spikes)
            v = np.array(result.traces)
            dpl = np.array([result.trace(c.dpl_ref) for c in dipoles])
        runs[engine] = (spikes, v, dpl)
        out[f"{engine}_simulate_s"] = simulate
        out[f"{engine}_spikes"] = len(spikes)
    if "neuron" in runs:
        spikes, v, dpl = runs["neuron"]
        total = dpl.sum(axis=0)  # the network's dipole, before hnn-core scales and smooths it
        for engine, (s, w, d) in runs.items():
            if engine == "neuron":
                continue
            out[f"{engine}_same_spikes"] = s == spikes
            out[f"{engine}_max_dv"] = float(np.abs(w - v).max())
            scale = np.abs(dpl).max(axis=1, keepdims=True)
            out[f"{engine}_dipole_rel"] = float((np.abs(d - dpl) / scale).max())
            out[f"{engine}_total_dipole_rel"] = float(
                np.abs(d.sum(axis=0) - total).max() / np.abs(total).max()
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
