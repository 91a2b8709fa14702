"""`portneuron plot`: a run's spike raster (out.dat) and, where it wrote a report, the
voltage traces of some of its cells, drawn to a PNG with matplotlib (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portneuron.errors import PortneuronError
from portneuron.io.spikes import read_spikes, written_whole

#: The figure's size [inches] and resolution: 1200 x 720 pixels.
SIZE, DPI = (10.0, 6.0), 120


def read_report(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A SONATA compartment report's times, cells (gids), each cell's first column, and
    data (times x columns)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            (population,) = list(f["report"])
            group = f[f"report/{population}"]
            start, stop, dt = group["mapping/time"][:]
            data = group["data"][:]
            gids = group["mapping/node_ids"][:].astype(np.int64)
            first = group["mapping/index_pointers"][:-1].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise PortneuronError(f"{path}: not a SONATA compartment report ({exc})") from None
    return start + dt * np.arange(len(data)), gids, first, data


def plot(
    out_dat: Path, output: Path, report: Path | None = None, cells: list[int] | int = 5
) -> Path:
    """The raster of `out_dat` and, with `report`, the traces of `cells` (gids, or a count:
    the report's first cells) to the PNG `output`, whole or not at all."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PortneuronError(
            f"portneuron plot needs matplotlib ({exc}); pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spikes = read_spikes(out_dat)
    t = np.array([s[0] for s in spikes])
    gid = np.array([s[1] for s in spikes], dtype=np.int64)
    traces = read_report(report) if report is not None else None
    rows = 2 if traces is not None else 1
    figure, axes = plt.subplots(rows, 1, figsize=SIZE, dpi=DPI, sharex=True, squeeze=False)
    raster = axes[0, 0]
    raster.scatter(t, gid, s=6, marker="|", color="black", linewidths=0.8)
    raster.set_ylabel("cell (gid)")
    raster.set_title(f"{len(t)} spikes of {len(np.unique(gid))} cells ({out_dat.name})")
    if traces is not None:
        times, gids, first, data = traces
        chosen = [int(g) for g in gids[:cells]] if isinstance(cells, int) else cells
        missing = sorted(set(chosen) - set(gids.tolist()))
        if missing:
            raise PortneuronError(f"{report}: no cell {missing[0]} in the report")
        ax = axes[1, 0]
        for g in chosen:
            k = int(np.flatnonzero(gids == g)[0])
            ax.plot(times, data[:, first[k]], linewidth=0.9, label=f"gid {g}")
        ax.set_ylabel("v (mV)")
        ax.set_title(f"the first compartment of {len(chosen)} cells ({report.name})")
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("time (ms)")
    figure.tight_layout()
    try:
        with written_whole(output) as part:
            figure.savefig(part, format="png")
    finally:
        plt.close(figure)
    return output
