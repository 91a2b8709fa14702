"""The llvm backend: IR kernels JIT-compiled for the host CPU through llvmlite."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from portneuron.ir import F64, Kernel, verify_kernel
from portneuron.ir.interpret import NUMPY_DTYPES
from portneuron.ir.passes import fold_constants

from ..base import Backend, dumping


def cache_dir() -> Path:
    """Where compiled kernels are kept between runs (PORTNEURON_CACHE, else ~/.cache)."""
    root = os.environ.get("PORTNEURON_CACHE") or Path.home() / ".cache" / "portneuron"
    return Path(root) / "llvm"


def slot_count(kernel: Kernel) -> int:
    """Argument slots of a kernel: one per parameter, one per stream field and count."""
    return len(kernel.params) + sum(len(s.fields) + 1 for s in kernel.streams)


class CompiledKernel:
    """A verified kernel, lowered and JIT-compiled when it first runs: a Simulation
    compiles every kernel of the model, and where compiled epochs run the steps, most of
    them never run on their own."""

    def __init__(self, kernel: Kernel, math: str, hot: bool = True) -> None:
        from .lower import emits_per_lane

        self.kernel, self.math, self.hot = kernel, math, hot
        self.emits: dict[str, int] = emits_per_lane(kernel)
        self._function: Any = None
        self.slots = np.zeros(slot_count(kernel), dtype=np.int64)
        self.slots_address = self.slots.ctypes.data
        # the argument values last passed: an array seen before keeps its address slot
        self.last: list[Any] = [None] * len(kernel.params)

    @property
    def function(self) -> Any:
        """The ctypes function (lo, hi, slots)."""
        if self._function is None:
            text = LlvmBackend.lower(self.kernel, "pn_kernel", self.math, self.hot)
            address = _Jit.get().add_unique(text, "pn_kernel", "v2")
            signature = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
            self._function = signature(address)
        return self._function


class _Jit:
    """One MCJIT engine for the process, targeting the host; compiled objects are cached on
    disk by the hash of their LLVM IR and target, and functions in memory by name."""

    _instance: _Jit | None = None

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
        from .lower import OPAQUE_LIBM, libm_symbol

        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        for name in OPAQUE_LIBM:  # the C library's own functions, under names LLVM cannot know
            llvm.add_symbol(
                libm_symbol(name), ctypes.cast(getattr(libm, name), ctypes.c_void_p).value
            )
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.machine)
        self.engine.set_object_cache(self._store, self._fetch)
        self.addresses: dict[str, int] = {}
        self.hits = 0
        self.seconds = 0.0  # spent compiling (or loading from the cache)

    @classmethod
    def get(cls) -> _Jit:
        if cls._instance is None:
            cls._instance = _Jit()
        return cls._instance

    def _path(self, module) -> Path:
        return cache_dir() / f"{module.name}.o"

    def _store(self, module, buffer: bytes) -> None:
        path = self._path(module)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(buffer)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _fetch(self, module) -> bytes | None:
        try:
            data = self._path(module).read_bytes()
        except OSError:
            return None
        self.hits += 1
        return data

    def add(self, text: str, name: str) -> int:
        """The address of function `name` defined by module `text` (named `name` too)."""
        if name in self.addresses:
            return self.addresses[name]
        start = time.perf_counter()
        try:
            return self._add(text, name)
        finally:
            self.seconds += time.perf_counter() - start

    def add_unique(self, text: str, placeholder: str, version: str) -> int:
        """`add` for a module whose function is called `placeholder`: the function is
        renamed after the hash of the text, the target and `version`, which is also the key
        of the disk cache."""
        key = "\0".join((text, self.triple, self.cpu, self.features, version))
        name = f"pn_{hashlib.sha256(key.encode()).hexdigest()[:24]}"
        text = text.replace(f'@"{placeholder}"', f'@"{name}"').replace(
            f"@{placeholder}", f"@{name}"
        )
        return self.add(text, name)

    def _add(self, text: str, name: str) -> int:
        llvm = self.llvm
        module = llvm.parse_assembly(text)
        module.name = name
        module.verify()
        if not self._path(module).exists() or dumping("llvm") or dumping("asm"):
            options = llvm.create_pipeline_tuning_options(speed_level=3)
            builder = llvm.create_pass_builder(self.machine, options)
            builder.getModulePassManager().run(module, builder)  # else: the cached object
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


class LlvmBackend(Backend):
    name: ClassVar[str] = "llvm"
    device_kind: ClassVar[str] = "cpu"
    simd_width: ClassVar[int] = 1
    compiled_epochs: ClassVar[bool] = True

    def __init__(self, math: str | None = None) -> None:
        """`math`: "libm" (the default) calls the C library's exp, which NumPy also uses
        here, so kernels agree with the reference to the last bit; "vector" uses
        vmath.exp, within 2 ulp of libm. PORTNEURON_MATH sets it."""
        self.math = math or os.environ.get("PORTNEURON_MATH", "libm")
        if self.math not in ("libm", "vector"):
            raise ValueError(f"PORTNEURON_MATH must be libm or vector, not {self.math!r}")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import llvmlite
            import llvmlite.binding as llvm
        except ImportError as exc:
            return False, f"llvmlite is not installed ({exc})"
        return True, f"llvmlite {llvmlite.__version__}, {llvm.get_process_triple()}"

    def compile(self, kernel: Kernel, hot: bool = True) -> CompiledKernel:
        kernel = fold_constants(verify_kernel(kernel))
        if dumping("ir"):
            from portneuron.ir import format_kernel

            print(format_kernel(kernel), file=sys.stderr)
        return CompiledKernel(kernel, self.math, hot)

    @staticmethod
    def lower(kernel: Kernel, name: str, math: str = "libm", vectorise: bool = True) -> str:
        """LLVM IR text of `kernel` as function `name` (its lanes as vectors where they
        can be, with `vectorise`)."""
        from llvmlite import ir

        from .lower import lower_kernel

        module = ir.Module(name=name)
        module.triple = _Jit.get().triple
        kernel = Kernel(name, kernel.lanes, kernel.params, kernel.body, kernel.streams)
        lower_kernel(module, kernel, math, vectorise)
        return str(module)

    @staticmethod
    def jit_seconds() -> float:
        """Seconds this process spent JIT-compiling (or loading cached objects)."""
        return _Jit.get().seconds if _Jit._instance is not None else 0.0

    def compile_epoch(self, plan: Any, threads: int | None) -> Any:
        from .epoch import compile_epoch, default_threads

        return compile_epoch(plan, threads or default_threads(), self.math)

    def emit(self, kernel: Kernel, stage: str) -> str:
        """The optimised LLVM IR ("llvm") or the assembly ("asm") of a kernel."""
        text = self.lower(fold_constants(verify_kernel(kernel)), kernel.name, self.math)
        optimised, assembly = _Jit.get().assembly(text)
        return optimised if stage == "llvm" else assembly

    def run(
        self, compiled: CompiledKernel, args: Mapping[str, Any], lanes: int
    ) -> dict[str, dict[str, Any]]:
        fill_slots(compiled.kernel, args, compiled.slots, compiled.last)
        kernel, slots = compiled.kernel, compiled.slots
        k = len(kernel.params)
        outputs = {}
        for s in kernel.streams:
            capacity = max(lanes * compiled.emits[s.name], 1)
            fields = {name: np.empty(capacity, NUMPY_DTYPES[t]) for name, t in s.fields}
            count = np.zeros(1, np.int64)
            for array in fields.values():
                slots[k] = array.ctypes.data
                k += 1
            slots[k] = count.ctypes.data
            k += 1
            outputs[s.name] = (fields, count)
        compiled.function(0, lanes, compiled.slots_address)
        return {
            name: {f: a[: int(count[0])] for f, a in fields.items()}
            for name, (fields, count) in outputs.items()
        }


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
