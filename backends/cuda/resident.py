"""A compiled driver's arguments kept in device memory from run to run (backends.base.Bound).

Every bound array has one device allocation, shared by every parameter that names the same
host memory; `load` uploads them, `store` brings back those the kernel writes. A run's own
arrays (an epoch's events, its record and spike buffers) go up into buffers kept by name
and grown as needed; after the launch only what `fetch` names comes back. The kernel reads
its parameters from a table of 8-byte words in device memory (render.py, `_Driver`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
from portneuron.ir import BOOL, F64
from portneuron.ir.types import NUMPY_DTYPES

from ..base import Bound
from .runtime import Runtime


def _key(array: np.ndarray) -> tuple[int, int]:
    return array.__array_interface__["data"][0], array.nbytes


def _free(runtime: Runtime, allocations: set[int]) -> None:
    for pointer in allocations:
        runtime.free(pointer)
    allocations.clear()


class Resident(Bound):
    def __init__(self, backend, compiled, args: Mapping[str, Any]) -> None:
        super().__init__(backend, compiled, args)
        self.runtime: Runtime = backend.runtime
        self.block = backend.epoch_threads
        self.params = compiled.kernel.params
        # every device allocation, freed when this is dropped
        self.allocations: set[int] = set()
        self.release = weakref.finalize(self, _free, self.runtime, self.allocations)
        self.release.atexit = False  # the driver may be gone by then
        self.device: dict[tuple[int, int], tuple[np.ndarray, int]] = {}  # _key: host, pointer
        self.pointers: dict[str, int] = {}  # bound array: its device copy
        for p in self.params:
            value = self.args.get(p.name)
            if p.is_array and value is not None:
                self.pointers[p.name] = self._resident(self._checked(p, value))
        spans = sorted((a, a + size) for a, size in self.device if size)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError(f"{compiled.kernel.name}: two array arguments share memory")
        self.written = {
            _key(self.args[name]): name for name in compiled.written if name in self.pointers
        }
        self.buffers: dict[str, tuple[int, int]] = {}  # a run's array: pointer, bytes
        # the table: the bound arguments' words now, a run's own at the run
        self.table = np.zeros(max(1, len(self.params)), dtype=np.uint64)
        self.word = {p.name: k for k, p in enumerate(self.params)}
        for name, value in self.args.items():
            if name in self.word:
                self._set(name, value)
        self.per_run = self.word.keys() - self.args.keys()
        self.table_device = self._alloc(self.table.nbytes)
        self.last: Mapping[str, Any] = {}

    def _alloc(self, nbytes: int) -> int:
        pointer = self.runtime.alloc(nbytes)
        self.allocations.add(pointer)
        return pointer

    def _checked(self, param, value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray) or value.dtype != NUMPY_DTYPES[param.dtype]:
            raise TypeError(f"{param.name!r} needs a NumPy {param.dtype.value} array")
        if not value.flags.c_contiguous:
            raise TypeError(f"{param.name!r} must be contiguous")
        return value

    def _resident(self, array: np.ndarray) -> int:
        key = _key(array)
        if key not in self.device:
            self.device[key] = (array, self._alloc(array.nbytes))
        return self.device[key][1]

    def _buffer(self, name: str, host: np.ndarray) -> int:
        """A run's array `name` on the device, in a buffer grown as needed."""
        pointer, size = self.buffers.get(name, (0, -1))
        if size < host.nbytes:
            if size >= 0:
                self.allocations.remove(pointer)
                self.runtime.free(pointer)
            pointer = self._alloc(host.nbytes)
            self.buffers[name] = (pointer, host.nbytes)
        self.runtime.upload(pointer, host)
        return pointer

    def load(self) -> None:
        for host, pointer in self.device.values():
            self.runtime.upload(pointer, host)

    def store(self) -> None:
        for key in self.written:
            host, pointer = self.device[key]
            self.runtime.download(host, pointer)

    def _set(self, name: str, value: Any) -> None:
        """Argument `name`'s table word: an array's device pointer (a bound array's own
        copy, a run's in its buffer), a scalar's bits."""
        k = self.word[name]
        p = self.params[k]
        if p.is_array:
            pointer = self.pointers.get(name) if value is self.args.get(name) else None
            self.table[k] = pointer or self._buffer(name, self._checked(p, value))
        elif p.dtype == F64:
            self.table[k] = np.float64(value).view(np.uint64)
        elif p.dtype == BOOL:
            self.table[k] = int(bool(value))
        else:
            self.table[k] = np.int64(value).view(np.uint64)

    def run(self, args: Mapping[str, Any], cuts: list[int], fetch: tuple[str, ...] = ()) -> None:
        missing = self.per_run - args.keys()
        if missing:
            raise KeyError(f"{self.compiled.kernel.name}: no value for {sorted(missing)}")
        for name, value in args.items():
            self._set(name, value)
        self.runtime.upload(self.table_device, self.table)
        lo, hi = cuts[0], cuts[-1]
        if hi > lo:
            launch = [np.uintp(self.table_device), np.int64(lo), np.int64(hi)]
            self.runtime.launch(self.compiled.function, hi - lo, self.block, launch)
        self.last = args
        self.fetch(fetch)

    def fetch(self, names: tuple[str, ...]) -> None:
        for name in names:
            if name in self.last:
                host = self.last[name]
                self.runtime.download(host, self.buffers[name][0])
            elif name in self.pointers:
                host, pointer = self.device[_key(self.args[name])]
                self.runtime.download(host, pointer)
