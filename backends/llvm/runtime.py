"""The process's one MCJIT engine, its cache of compiled objects on disk, and how kernels
take their arguments: how the llvm backend compiles and runs what it renders."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import portneuron.ir
from portneuron.ir import F64, Kernel
from portneuron.ir.types import NUMPY_DTYPES

from ..base import dumping


def cache_dir() -> Path:
    """Where compiled kernels are kept between runs (PORTNEURON_CACHE, else ~/.cache)."""
    root = os.environ.get("PORTNEURON_CACHE") or Path.home() / ".cache" / "portneuron"
    return Path(root) / "llvm"


@cache
def _lowering() -> str:
    """A digest of the code that turns IR into machine code: this backend's, the IR's,
    llvmlite's version."""
    import llvmlite

    digest = hashlib.sha256(llvmlite.__version__.encode())
    for package in (Path(__file__).parent, Path(portneuron.ir.__file__).parent):
        for path in sorted(package.rglob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def slot_count(kernel: Kernel) -> int:
    """Argument slots of a kernel: one per parameter, one per stream field and count."""
    return len(kernel.params) + sum(len(s.fields) + 1 for s in kernel.streams)


class Jit:
    """One MCJIT engine for the process, targeting the host; compiled objects are cached on
    disk by the hash of their LLVM IR and target, and functions in memory by name."""

    _instance: Jit | None = None

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.llvm = llvm
        self.triple = llvm.get_process_triple()
        self.cpu, self.features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        target = llvm.Target.from_triple(self.triple)
        self.machine = target.create_target_machine(
            cpu=self.cpu, features=self.features, opt=3, jit=True
        )
        from .render import OPAQUE_LIBM, libm_symbol

        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        for name in OPAQUE_LIBM:  # the C library's own functions, under names LLVM cannot know
            llvm.add_symbol(
                libm_symbol(name), ctypes.cast(getattr(libm, name), ctypes.c_void_p).value
            )
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.machine)
        self.engine.set_object_cache(self._store)  # written here, read by _load
        self.addresses: dict[str, int] = {}
        self.hits = 0
        self.seconds = 0.0  # spent compiling (or loading from the cache)

    @classmethod
    def get(cls) -> Jit:
        if cls._instance is None:
            cls._instance = Jit()
        return cls._instance

    def _store(self, module, buffer: bytes) -> None:
        """A compiled module's object into the cache, its digest after it (a damaged or
        cut file must not reach the JIT's loader, which crashes on one)."""
        if not module.name.startswith("pn_"):
            return  # the engine's own empty module
        path = cache_dir() / f"{module.name}.o"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(buffer + hashlib.sha256(buffer).digest())
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _cached(self, name: str) -> bytes | None:
        """The object of function `name` from the cache, if it is there whole."""
        try:
            data = (cache_dir() / f"{name}.o").read_bytes()
        except OSError:
            return None
        body, digest = data[:-32], data[-32:]
        return body if len(data) > 32 and hashlib.sha256(body).digest() == digest else None

    def add_kernel(self, kernel: Kernel, options: str, lower: Callable[[str], str]) -> int:
        """The address of `kernel`'s function, `lower(name)` giving its module's text. The
        function is named after the hash of the kernel, `options`, the lowering's own code
        and the target, which is also the key of the disk cache: a kernel compiled before,
        by any process, is loaded from there without being lowered again."""
        key = "\0".join((repr(kernel), options, _lowering(), self.triple, self.cpu, self.features))
        name = f"pn_{hashlib.sha256(key.encode()).hexdigest()[:24]}"
        if name in self.addresses:
            return self.addresses[name]
        start = time.perf_counter()
        try:
            if not (dumping("llvm") or dumping("asm")):
                address = self._load(name)
                if address:
                    return address
            return self._add(lower(name), name)
        finally:
            self.seconds += time.perf_counter() - start

    def _load(self, name: str) -> int:
        """Function `name` from its cached object, 0 where there is none."""
        data = self._cached(name)
        if data is None:
            return 0
        self.engine.add_object_file(self.llvm.ObjectFileRef.from_data(data))
        self.engine.finalize_object()
        self.addresses[name] = self.engine.get_function_address(name)
        self.hits += 1
        return self.addresses[name]

    def _add(self, text: str, name: str) -> int:
        llvm = self.llvm
        module = llvm.parse_assembly(text)
        module.name = name
        module.verify()
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        builder = llvm.create_pass_builder(self.machine, options)
        builder.getModulePassManager().run(module, builder)
        if dumping("llvm"):
            print(f"; ---- {name} (optimised)\n{module}", file=sys.stderr)
        if dumping("asm"):
            print(self.machine.emit_assembly(module), file=sys.stderr)
        self.engine.add_module(module)
        self.engine.finalize_object()
        self.addresses[name] = self.engine.get_function_address(name)
        return self.addresses[name]

    def assembly(self, text: str) -> str:
        module = self.llvm.parse_assembly(text)
        options = self.llvm.create_pipeline_tuning_options(speed_level=3)
        builder = self.llvm.create_pass_builder(self.machine, options)
        builder.getModulePassManager().run(module, builder)
        return str(module), self.machine.emit_assembly(module)


def fill_slots(
    kernel: Kernel, args: Mapping[str, Any], slots: np.ndarray, last: list[Any] | None = None
) -> None:
    """Write the kernel's parameters into its argument slots: an array's address, a
    scalar's value. With `last` (the values passed before), an array seen before keeps its
    slot; the arrays are held there, so their addresses stay valid while cached."""
    float_slots = slots.view(np.float64)
    for k, p in enumerate(kernel.params):
        value = args[p.name]
        if p.is_array:
            if last is not None and value is last[k]:
                continue
            if not isinstance(value, np.ndarray) or value.dtype != NUMPY_DTYPES[p.dtype]:
                raise TypeError(f"{kernel.name}: {p.name!r} needs a NumPy {p.dtype.value} array")
            if not value.flags.c_contiguous:
                raise TypeError(f"{kernel.name}: {p.name!r} must be contiguous")
            slots[k] = value.ctypes.data
            if last is not None:
                last[k] = value
        elif p.dtype == F64:
            float_slots[k] = value
        else:
            slots[k] = int(value)
