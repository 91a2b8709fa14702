"""SONATA output, with h5py, in the layout libsonata reads: spike files and compartment
reports (the SONATA data format's "spikes" and "report" groups).

A spike file holds `/spikes/<population>/timestamps` [ms] and `node_ids` (a cell's gid),
sorted by time. A compartment report holds, for each of its cells (`mapping/node_ids`),
the elements `index_pointers[k]:index_pointers[k + 1]` of every row of `data` (one row a
time, float32 as the format has it), each named by `mapping/element_ids` (the
compartment's number in its cell); `mapping/time` is (start, stop, dt) [ms], stop
exclusive as libsonata reads it (the time after the last row).

Both are written whole or not at all: into `<path>.part`, which becomes `path` when
complete and is removed when not (a report of a failed run never looks complete). A report
is written as the run goes (`CompartmentReport.write` after each epoch), so memory stays
bounded by one epoch's rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from portneuron.io.spikes import written_whole

#: The population the cells of a portneuron run are in (CoreNEURON's default).
POPULATION = "All"
#: The SONATA "sorting" attribute of a spike population: an HDF5 enum.
SORTING = {"none": 0, "by_id": 1, "by_time": 2}


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # a dependency: only a broken install lacks it
        raise RuntimeError(f"SONATA output needs h5py ({exc}); pip install h5py") from None
    return h5py


def write_spikes(path: str | Path, spikes, population: str = POPULATION) -> None:
    """(time [ms], gid) pairs, as sorted by time, to a SONATA spike file at `path`."""
    h5py, path = _h5py(), Path(path)
    t = np.array([s[0] for s in spikes], dtype=np.float64)
    gid = np.array([s[1] for s in spikes], dtype=np.uint64)
    order = np.lexsort((gid, t))
    with written_whole(path) as part, h5py.File(part, "w") as f:
        group = f.create_group(f"spikes/{population}")
        sorting = h5py.enum_dtype(SORTING, basetype="u1")
        group.attrs.create("sorting", SORTING["by_time"], dtype=sorting)
        times = group.create_dataset("timestamps", data=t[order])
        times.attrs["units"] = "ms"
        group.create_dataset("node_ids", data=gid[order])


#: The largest chunk of a report's data: HDF5's chunk cache (1 MiB by default) holds it
#: whole. Rows of a million compartments, written alone: 550 MB/s in chunks of a row
#: (4 MB), 3 GB/s in chunks of 1 MiB.
CHUNK_BYTES = 1 << 20


def _chunks(n: int) -> tuple[int, int]:
    """The data's chunks for `n` columns: rows of at most CHUNK_BYTES, up to 64 rows."""
    columns = max(1, min(n, CHUNK_BYTES // 4))
    return max(1, min(64, CHUNK_BYTES // 4 // columns)), columns


class CompartmentReport:
    """A SONATA compartment report at `path`, written row by row as a run goes.

    `node_ids` are the cells (gids) in the report's order, `counts` how many elements
    each has, `element_ids` every element's number in its cell; rows are the times
    start, start + dt, ... up to `stop` (what `write` is given outside them is left
    out)."""

    def __init__(
        self,
        path: str | Path,
        node_ids: np.ndarray,
        counts: np.ndarray,
        element_ids: np.ndarray,
        start: float,
        stop: float,
        dt: float,
        units: str = "mV",
        population: str = POPULATION,
    ) -> None:
        h5py = _h5py()
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.start, self.stop, self.dt = float(start), float(stop), float(dt)
        self.rows = 0
        self.first: float | None = None  # the times of the first and last rows written
        self.last: float | None = None
        self.file = h5py.File(self.part, "w")
        group = self.file.create_group(f"report/{population}")
        mapping = group.create_group("mapping")
        mapping.create_dataset("node_ids", data=np.asarray(node_ids, dtype=np.uint64))
        pointers = np.zeros(len(counts) + 1, dtype=np.uint64)
        np.cumsum(np.asarray(counts, dtype=np.uint64), out=pointers[1:])
        mapping.create_dataset("index_pointers", data=pointers)
        mapping.create_dataset("element_ids", data=np.asarray(element_ids, dtype=np.uint32))
        self.time = mapping.create_dataset("time", data=np.array([start, start, dt]))
        self.time.attrs["units"] = "ms"
        n = int(pointers[-1])
        self.data = group.create_dataset(
            "data", shape=(0, n), maxshape=(None, n), dtype=np.float32, chunks=_chunks(n)
        )
        self.data.attrs["units"] = units

    def write(self, times: np.ndarray, values: np.ndarray) -> None:
        """Rows (values at `times`, one row a time) on the report's times (start + k dt,
        up to stop) and after the rows written already."""
        times = np.asarray(times, dtype=np.float64)
        tolerance = 1e-9 * max(1.0, self.dt)
        k = np.rint((times - self.start) / self.dt)
        on = np.abs(times - (self.start + k * self.dt)) <= tolerance
        on &= (times >= self.start - tolerance) & (times <= self.stop + tolerance)
        if self.last is not None:
            on &= times > self.last + tolerance
        rows = np.asarray(values) if on.all() else np.asarray(values)[on]
        if not len(rows):
            return
        if self.first is None:  # a run restored from a checkpoint starts later
            self.first = float(times[on][0])
        self.last = float(times[on][-1])
        self.data.resize(self.rows + len(rows), axis=0)
        self.data[self.rows :] = rows.astype(np.float32)  # NumPy's cast is HDF5's, faster
        self.rows += len(rows)

    def close(self) -> None:
        """The report complete: at `path`, its time the first row's to after its last."""
        first = self.start if self.first is None else self.first
        self.time[:2] = first, first + self.rows * self.dt
        self.file.close()
        os.replace(self.part, self.path)

    def abort(self) -> None:
        """No report: the part written is removed."""
        self.file.close()
        self.part.unlink(missing_ok=True)
