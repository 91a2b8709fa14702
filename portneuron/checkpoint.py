"""Checkpoint and restore: a simulation's complete state at the end of a run, written to a
folder, from which another process continues as if the run had not stopped.

The state is what a run changes: the time and the steps since finitialize, every node's
voltage, every mechanism set's variables (Random123 stream positions among them), its
WATCH conditions and the NetCon weights its NET_RECEIVE sees, every ion's variables, the
spike detectors' states, the values outside the cells that POINTERs reach, the players'
places in their Vectors and the event queue (NetCon events in flight, pending self-events
and their order). A continued run gives the spikes and voltages of one that never
stopped, bit for bit.

The folder holds `state.<rank>.npz` for each rank and `checkpoint.json` (the format, the
portneuron version, the time, the number of ranks and each rank's model's fingerprint),
written last: a folder without it is no checkpoint. A checkpoint of another model, another
number of ranks or another format is refused in one line."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np

from portneuron import __version__
from portneuron.errors import PortneuronError
from portneuron.io.spikes import written_whole

FORMAT = 1
MANIFEST = "checkpoint.json"
#: The arguments of a bound mechanism a run changes: its variables, WATCH conditions and
#: the NetCon weights its NET_RECEIVE reads (and may write).
STATE_ARGS = ("mech.", "watch.", "netcon.")
#: The membrane current's array: in a checkpoint of a run that computed it (fast_imem).
MEMBRANE_CURRENT = "node.i_membrane_"


def fingerprint(sim) -> str:
    """What a checkpoint must come from: the model's shape (nodes, cells and their gids,
    mechanism sets and their sizes, ions) and the time step."""
    model = sim.model
    parts = [
        model.nodes.count, model.ncell, sim.dt, sim.cell_gid.tolist(),
        [(m.name, m.count) for m in model.mechanisms], [(i.name, i.count) for i in model.ions],
    ]  # fmt: skip
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _arrays(sim) -> dict[str, np.ndarray]:
    """The state's arrays, by a name of their own (assigned in place on restore)."""
    model = sim.model
    out = {"node.v": model.nodes.v, "presyn.flag": sim.threshold_args["presyn.flag"]}
    if sim.fast_imem:  # the last step's, which a continued run's first report row holds
        out[MEMBRANE_CURRENT] = sim.i_membrane
    if len(model.outside):
        out["outside"] = model.outside
    for bound in sim.mechanisms:
        for name, value in bound.args.items():
            if name.startswith(STATE_ARGS) and isinstance(value, np.ndarray):
                out[f"set{bound.index}.{name}"] = value
    for k, ion in enumerate(model.ions):
        for name, value in ion.data.items():
            out[f"ion{k}.{name}"] = value
    for k, rank in sim.watches.rank.items():
        out[f"watch{k}.rank"] = rank
    return out


def save(sim, folder: str | Path) -> None:
    """`sim`'s state into `folder` (every rank its own file; rank 0 the manifest, last)."""
    folder, ranks = Path(folder), sim.ranks
    if ranks.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until written again
    ranks.allgather(None)  # the folder is there for every rank (a barrier)
    state = {name: np.asarray(value) for name, value in _arrays(sim).items()}
    rest = {
        "t": sim.t, "steps_done": sim.steps_done, "queue": sim.queue.__dict__,
        "counter": sim.watches.counter,
        "players": [(p.ubound, p.last, p.pending) for p in sim.players],
    }  # fmt: skip
    state["pickled"] = np.frombuffer(pickle.dumps(rest), dtype=np.uint8)
    with written_whole(folder / f"state.{ranks.rank}.npz") as part, open(part, "wb") as f:
        np.savez(f, **state)
    prints = ranks.gather(fingerprint(sim))
    if prints is None:
        return
    manifest = {"format": FORMAT, "portneuron": __version__, "t": sim.t,
                "ranks": ranks.size, "models": prints}  # fmt: skip
    with written_whole(folder / MANIFEST) as part:
        part.write_text(json.dumps(manifest, indent=1) + "\n")


def read_manifest(folder: Path) -> dict:
    """The checkpoint's manifest, of a format this portneuron reads; one line otherwise."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        raise PortneuronError(
            f"{folder}: no checkpoint here ({MANIFEST} is missing or damaged: was the run "
            f"that wrote it stopped?)"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        version = manifest.get("portneuron") if isinstance(manifest, dict) else None
        raise PortneuronError(
            f"{folder}: a checkpoint of format {found} (portneuron {version}); this "
            f"portneuron {__version__} reads format {FORMAT}"
        )
    return manifest


def restore(sim, folder: str | Path) -> float:
    """`sim` in the state `folder` holds (in place of finitialize); the time it was at."""
    folder, ranks = Path(folder), sim.ranks
    manifest = read_manifest(folder)
    if manifest["ranks"] != ranks.size:
        raise PortneuronError(
            f"{folder}: written by {manifest['ranks']} rank(s); continue it on as many "
            f"(mpiexec -n {manifest['ranks']})"
        )
    if manifest["models"][ranks.rank] != fingerprint(sim):
        raise PortneuronError(
            f"{folder}: a checkpoint of another model (or another dt, or another placement "
            f"of its cells); give the model and options it was written with"
        )
    with np.load(folder / f"state.{ranks.rank}.npz") as saved:
        arrays, names = _arrays(sim), set(saved.files) - {"pickled"}
        if MEMBRANE_CURRENT not in arrays:
            names.discard(MEMBRANE_CURRENT)  # a run that does not compute it
        elif MEMBRANE_CURRENT not in names:
            raise PortneuronError(
                f"{folder}: the run that wrote it did not compute the membrane current, which "
                f"a report of i_membrane_ starts from; continue it without that report"
            )
        if names != set(arrays):
            raise PortneuronError(f"{folder}: the state of rank {ranks.rank} is not this model's")
        for name, value in arrays.items():
            value[...] = saved[name]
        rest = pickle.loads(saved["pickled"].tobytes())
    for bound in sim.mechanisms:
        bound.check_tables(sim.dt)
    sim.t, sim.steps_done = rest["t"], rest["steps_done"]
    sim.queue.__dict__.update(rest["queue"])
    sim.watches.counter = rest["counter"]
    for player, (ubound, last, pending) in zip(sim.players, rest["players"]):
        player.ubound, player.last, player.pending = ubound, last, pending
    sim.spikes.clear()
    sim._outbox.clear()
    return sim.t
