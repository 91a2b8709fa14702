"""The llvm backend: IR kernels JIT-compiled for the host CPU through llvmlite."""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from portneuron.ir import F64, Kernel, verify_kernel
from portneuron.ir.interpret import NUMPY_DTYPES
from portneuron.ir.passes import fold_constants

from ..base import Backend

_names = itertools.count()


@dataclass
class CompiledKernel:
    kernel: Kernel
    function: Any  # ctypes function (lanes, slots)
    emits: dict[str, int]
    llvm_ir: str

    def __post_init__(self) -> None:
        kernel = self.kernel
        nslots = len(kernel.params) + sum(len(s.fields) + 1 for s in kernel.streams)
        self.slots = np.zeros(nslots, dtype=np.int64)
        self.float_slots = self.slots.view(np.float64)
        self.slots_address = self.slots.ctypes.data
        # the argument values last passed: an array seen before keeps its address slot
        self.last: list[Any] = [None] * len(kernel.params)


class _Jit:
    """One MCJIT engine for the process, with the host as target."""

    _instance: _Jit | None = None

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.llvm = llvm
        target = llvm.Target.from_triple(llvm.get_process_triple())
        self.machine = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=3, jit=True,
        )  # fmt: skip
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.machine)

    @classmethod
    def get(cls) -> _Jit:
        if cls._instance is None:
            cls._instance = _Jit()
        return cls._instance

    def add(self, text: str, name: str) -> int:
        llvm = self.llvm
        module = llvm.parse_assembly(text)
        module.verify()
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        builder = llvm.create_pass_builder(self.machine, options)
        builder.getModulePassManager().run(module, builder)
        self.engine.add_module(module)
        self.engine.finalize_object()
        return self.engine.get_function_address(name)


class LlvmBackend(Backend):
    name: ClassVar[str] = "llvm"
    device_kind: ClassVar[str] = "cpu"
    simd_width: ClassVar[int] = 1

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import llvmlite
            import llvmlite.binding as llvm
        except ImportError as exc:
            return False, f"llvmlite is not installed ({exc})"
        return True, f"llvmlite {llvmlite.__version__}, {llvm.get_process_triple()}"

    def compile(self, kernel: Kernel) -> CompiledKernel:
        from llvmlite import ir

        from .lower import emits_per_lane, lower_kernel

        kernel = fold_constants(verify_kernel(kernel))
        name = f"pn{next(_names)}_{kernel.name}"
        module = ir.Module(name=name)
        module.triple = _Jit.get().llvm.get_process_triple()
        renamed = Kernel(name, kernel.lanes, kernel.params, kernel.body, kernel.streams, kernel.doc)
        lower_kernel(module, renamed)
        text = str(module)
        address = _Jit.get().add(text, name)
        function = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(address)
        return CompiledKernel(kernel, function, emits_per_lane(kernel), text)

    def run(
        self, compiled: CompiledKernel, args: Mapping[str, Any], lanes: int
    ) -> dict[str, dict[str, Any]]:
        kernel, slots, last = compiled.kernel, compiled.slots, compiled.last
        for k, p in enumerate(kernel.params):
            value = args[p.name]
            if p.is_array:
                if value is last[k]:
                    continue
                if not isinstance(value, np.ndarray) or value.dtype != NUMPY_DTYPES[p.dtype]:
                    raise TypeError(
                        f"{kernel.name}: {p.name!r} needs a NumPy {p.dtype.value} array"
                    )
                if not value.flags.c_contiguous:
                    raise TypeError(f"{kernel.name}: {p.name!r} must be contiguous")
                slots[k] = value.ctypes.data
                last[k] = value  # held, so its address stays valid while cached
            elif p.dtype == F64:
                compiled.float_slots[k] = value
            else:
                slots[k] = int(value)
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
        compiled.function(lanes, compiled.slots_address)
        return {
            name: {f: a[: int(count[0])] for f, a in fields.items()}
            for name, (fields, count) in outputs.items()
        }
