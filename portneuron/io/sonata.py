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
bounded by one epoch's rows. Where the rows a run will give are known first
(`CompartmentReport.expect`), the data are one contiguous block of the file, which a
thread of its own writes past the page cache (`Rows`): the run's core only copies them
there (compiled epochs record a report's rows as float32); else the data grow in chunks
through HDF5."""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading
from pathlib import Path

import numpy as np

from portneuron.errors import PortneuronError
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


#: The blocks rows go to the disk in, past the page cache (O_DIRECT), where the file system
#: and the data's place in the file allow: file offsets, lengths and buffers all multiples.
BLOCK = 4096
#: The bytes of rows (float32) each of a report's two buffers holds (or one row and a part
#: block, where more): one is filled while the other is written; a compiled epoch call's
#: rows (Simulation's RECORD_BUFFER) and a part block fit, which it can record in place
#: (`Rows.space`). 400 MB of rows to a new file on this project's machine: 1.0 s through
#: the page cache, 0.15-0.2 s past it.
BUFFER_BYTES = 16 * 2**20 + BLOCK


class Rows:
    """Rows of float32 to `path` from `offset`, as a run goes: copied (rounded, where given
    as float64) into one of two buffers, written by a thread of its own, in whole BLOCKs
    past the page cache (O_DIRECT) where the system allows it (else through it), the last
    part block through it at `close`."""

    def __init__(self, path: Path, offset: int, row_bytes: int) -> None:
        self.path, self.at = path, offset
        size = -(-max(BUFFER_BYTES, row_bytes + BLOCK) // BLOCK) * BLOCK
        self.free: queue.Queue = queue.Queue()
        for _ in range(2):
            self.free.put(mmap.mmap(-1, size))  # anonymous: aligned to pages
        self.jobs: queue.Queue = queue.Queue()
        self.fd = os.open(path, os.O_WRONLY)
        self.direct = None  # the descriptor past the page cache, while it serves
        if hasattr(os, "O_DIRECT") and offset % BLOCK == 0:
            try:
                self.direct = os.open(path, os.O_WRONLY | os.O_DIRECT)
            except OSError:  # a file system without (tmpfs)
                pass
        self.buffer, self.fill = self.free.get(), 0
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._drain, name=f"report {path.name}", daemon=True)
        self.thread.start()

    def space(self, rows: int, columns: int) -> np.ndarray | None:
        """Room for the next `rows` rows of `columns` float32 values, after those written:
        a contiguous array in a buffer, which `write` then takes as it is; None where they
        do not fit in one."""
        nbytes = rows * columns * 4
        if nbytes > len(self.buffer) - BLOCK:
            return None
        if nbytes > len(self.buffer) - self.fill:
            self._hand_over()
        return np.frombuffer(self.buffer, np.float32, rows * columns, self.fill)

    def write(self, rows: np.ndarray) -> None:
        """`rows` (2-D, of any float type) after those written, as float32."""
        self._check()
        width = rows.shape[1] * 4
        room = len(self.buffer) - self.fill
        if rows.dtype == np.float32 and rows.nbytes <= room and rows.flags.c_contiguous:
            here = np.frombuffer(self.buffer, np.uint8, 1, self.fill)
            if rows.ctypes.data == here.ctypes.data:  # recorded in place (`space`)
                self.fill += rows.nbytes
                return
        done = 0
        while done < len(rows):
            room = (len(self.buffer) - self.fill) // width
            if not room:
                self._hand_over()
                continue
            take = min(room, len(rows) - done)
            into = np.frombuffer(self.buffer, np.float32, take * rows.shape[1], self.fill)
            np.copyto(into.reshape(take, -1), rows[done : done + take], casting="same_kind")
            self.fill += take * width
            done += take

    def close(self) -> None:
        """Every row in the file; an error writing them raised."""
        self._hand_over()
        self._stop()
        self._check()
        if self.fill:
            os.pwrite(self.fd, memoryview(self.buffer)[: self.fill], self.at)
        self._close_files()

    def abort(self) -> None:
        self._stop()
        self._close_files()

    def _hand_over(self) -> None:
        """The buffer's whole blocks to the thread, the rest to the start of the other."""
        whole = self.fill // BLOCK * BLOCK
        other = self.free.get()  # waits while the thread writes it: two buffers at most
        other[: self.fill - whole] = self.buffer[whole : self.fill]
        self.jobs.put((self.buffer, whole, self.at))
        self.buffer, self.fill, self.at = other, self.fill - whole, self.at + whole

    def _drain(self) -> None:
        while (job := self.jobs.get()) is not None:
            buffer, length, at = job
            if self.error is None:
                try:
                    self._write(memoryview(buffer)[:length], at)
                except OSError as exc:
                    self.error = exc
            self.free.put(buffer)

    def _write(self, view: memoryview, at: int) -> None:
        while len(view):
            fd = self.fd if self.direct is None else self.direct
            try:
                done = os.pwrite(fd, view, at)
            except OSError as exc:
                if fd == self.fd or exc.errno != errno.EINVAL:
                    raise
                os.close(self.direct)  # blocks the device does not take: the page cache
                self.direct = None
                continue
            view, at = view[done:], at + done

    def _stop(self) -> None:
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()

    def _check(self) -> None:
        if self.error is not None:
            why = self.error.strerror or str(self.error)
            raise PortneuronError(f"{self.path}: cannot write the report ({why})")

    def _close_files(self) -> None:
        for fd in (self.fd, self.direct):
            if fd is not None:
                os.close(fd)
        self.fd = self.direct = None


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
        # objects of 64 KiB or more (the data) begin at a BLOCK, for Rows
        self.file = h5py.File(self.part, "w", alignment_threshold=1 << 16, alignment_interval=BLOCK)
        group = self.group = self.file.create_group(f"report/{population}")
        mapping = group.create_group("mapping")
        mapping.create_dataset("node_ids", data=np.asarray(node_ids, dtype=np.uint64))
        pointers = np.zeros(len(counts) + 1, dtype=np.uint64)
        np.cumsum(np.asarray(counts, dtype=np.uint64), out=pointers[1:])
        mapping.create_dataset("index_pointers", data=pointers)
        mapping.create_dataset("element_ids", data=np.asarray(element_ids, dtype=np.uint32))
        self.time = mapping.create_dataset("time", data=np.array([start, start, dt]))
        self.time.attrs["units"] = "ms"
        self.columns, self.units = int(pointers[-1]), units
        self.data = None  # made by `expect`, or by the first `write`: chunked
        self.expected: int | None = None
        self.rows_out: Rows | None = None

    def on(self, times: np.ndarray) -> np.ndarray:
        """Which of `times` [ms] are the report's: start + k dt, up to stop, after the
        rows written already."""
        tolerance = 1e-9 * max(1.0, self.dt)
        k = np.rint((times - self.start) / self.dt)
        on = np.abs(times - (self.start + k * self.dt)) <= tolerance
        on &= (times >= self.start - tolerance) & (times <= self.stop + tolerance)
        if self.last is not None:
            on &= times > self.last + tolerance
        return on

    def expect(self, rows: int) -> None:
        """The run will give `rows` rows (`on` its times): the data laid out whole, one
        contiguous block the file system allocates as it is written, by `Rows`."""
        h5py, n = _h5py(), self.columns
        if self.data is not None or not rows or not n:
            return  # rows written already, or no data: in chunks as they come
        create = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        create.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # its place in the file, now
        create.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # and no pass of zeros over it
        space = h5py.h5s.create_simple((rows, n))
        made = h5py.h5d.create(self.group.id, b"data", h5py.h5t.IEEE_F32LE, space, dcpl=create)
        self.data = h5py.Dataset(made)
        self.data.attrs["units"] = self.units
        self.file.flush()  # HDF5's own writes before any of the rows'
        self.expected = rows
        self.rows_out = Rows(self.part, made.get_offset(), 4 * n)

    def write(self, times: np.ndarray, values: np.ndarray) -> None:
        """Rows (values at `times`, one row a time): those `on` the report's times."""
        times = np.asarray(times, dtype=np.float64)
        on = self.on(times)
        rows = np.asarray(values) if on.all() else np.asarray(values)[on]
        if not len(rows):
            return
        if self.first is None:  # a run restored from a checkpoint starts later
            self.first = float(times[on][0])
        self.last = float(times[on][-1])
        if self.rows_out is not None:
            if self.rows + len(rows) > self.expected:
                self._unexpected(f"more rows than the {self.expected}")
            self.rows_out.write(rows)
        else:
            self._chunked()
            self.data.resize(self.rows + len(rows), axis=0)
            self.data[self.rows :] = rows.astype(np.float32)  # NumPy's cast is HDF5's, faster
        self.rows += len(rows)

    def close(self) -> None:
        """The report complete: at `path`, its time the first row's to after its last."""
        if self.rows_out is not None:
            self.rows_out.close()
            self.rows_out = None
            if self.rows != self.expected:
                self._unexpected(f"{self.rows} rows, not the {self.expected}")
        self._chunked()
        first = self.start if self.first is None else self.first
        self.time[:2] = first, first + self.rows * self.dt
        self.file.close()
        os.replace(self.part, self.path)

    def _unexpected(self, what: str) -> None:
        raise PortneuronError(
            f"{self.path}: the run gave {what} laid out for it; lay a report out (Reports."
            f"expect) from the state the run starts in (after finitialize), to its tstop"
        )

    def _chunked(self) -> None:
        """The data, where not laid out whole: rows added in chunks."""
        if self.data is None:
            n = self.columns
            self.data = self.group.create_dataset(
                "data", shape=(0, n), maxshape=(None, n), dtype=np.float32, chunks=_chunks(n)
            )
            self.data.attrs["units"] = self.units

    def abort(self) -> None:
        """No report: the part written is removed."""
        if self.rows_out is not None:
            self.rows_out.abort()
            self.rows_out = None
        self.file.close()
        self.part.unlink(missing_ok=True)
