"""The llvm backend: IR kernels JIT-compiled for the host CPU through llvmlite."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from portneuron.ir import Kernel, verify_kernel, walk
from portneuron.ir.passes import fold_constants
from portneuron.ir.types import NUMPY_DTYPES

from portneuron.errors import PortneuronError
from portneuron.interrupts import deferred

from ..base import Backend, Bound, dumping, profiling
from .runtime import Jit, fill_slots, slot_count, slot_plan
from .vmath import MATH, host_math


def emits_per_lane(kernel: Kernel) -> dict[str, int]:
    """Records each lane can write to each stream (Emit inside a Loop is not supported)."""
    counts = walk.emits_per_lane(kernel)
    for stream, n in counts.items():
        if n is None:
            from .render import LowerError

            raise LowerError(f"{kernel.name}: emit to {stream} inside a loop")
    return counts


class CompiledKernel:
    """A kernel, lowered and JIT-compiled when it first runs (a Simulation compiles every
    kernel of the model, and where compiled epochs run the steps, most of them never run on
    their own), or loaded from the cache. `kernel` is the kernel as given: its parameters
    and streams are the verified, folded kernel's."""

    def __init__(
        self, kernel: Kernel, name: str | Callable[[], str], lower: Callable[[str], str]
    ) -> None:
        self.kernel, self.lower = kernel, lower
        self._name = name  # or the function that gives it: named when it first runs
        self.emits: dict[str, int] = emits_per_lane(kernel)
        self._function: Any = None
        self.slots = np.zeros(slot_count(kernel), dtype=np.int64)
        self.slots_address = self.slots.ctypes.data
        # the argument values last passed: an array seen before keeps its address slot
        self.last: list[Any] = [None] * len(kernel.params)
        self.owner: Any = None  # the Bound whose arguments are in the slots
        self.plan = slot_plan(kernel)

    @property
    def name(self) -> str:
        """The function's name, the hash of the kernel (Jit.name): computed once needed,
        as most of a Simulation's kernels never run on their own."""
        if callable(self._name):
            self._name = self._name()
        return self._name

    @property
    def function(self) -> Any:
        """The ctypes function (lo, hi, slots)."""
        if self._function is None:
            address = Jit.get().add_kernel(self.name, self.lower)
            signature = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
            self._function = signature(address)
        return self._function


def _without_streams(compiled: CompiledKernel, caller: str) -> None:
    """Blocks of lanes run on threads of their own write no stream (its records' count is
    one for the whole call)."""
    if compiled.kernel.streams:
        raise ValueError(f"{caller}: kernel {compiled.kernel.name} has streams")


class LlvmBound(Bound):
    """A kernel's bound arguments written into its slots once (again where another run of
    the kernel wrote them since, or a run gave one of them), so that a run writes its own
    arguments only: a compiled epoch's driver has a hundred, of which a run gives twenty."""

    def __init__(self, backend: LlvmBackend, compiled: CompiledKernel, args: Mapping[str, Any]):
        _without_streams(compiled, "bind")
        super().__init__(backend, compiled, args)
        self.bound = slot_plan(compiled.kernel, self.args)
        self.given: dict[tuple[str, ...], tuple[list, bool]] = {}

    def run(self, args: Mapping[str, Any], cuts: list[int], fetch: tuple[str, ...] = ()) -> None:
        compiled = self.compiled
        names = tuple(args)
        if names not in self.given:  # the run's parameters, and whether it overrides one
            which = slot_plan(compiled.kernel, args)
            self.given[names] = which, any(name in self.args for name in names)
        which, overrides = self.given[names]
        if compiled.owner is not self:
            fill_slots(compiled.kernel, self.args, compiled.slots, compiled.last, self.bound)
            compiled.owner = self
        fill_slots(compiled.kernel, args, compiled.slots, compiled.last, which)
        if overrides:
            compiled.owner = None
        self.backend.call(compiled, cuts)


class LlvmBackend(Backend):
    name: ClassVar[str] = "llvm"
    device_kind: ClassVar[str] = "cpu"
    simd_width: ClassVar[int] = 1
    compiled_epochs: ClassVar[bool] = True
    threaded: ClassVar[bool] = True
    stages: ClassVar[tuple[str, ...]] = ("llvm", "asm")

    def __init__(self, math: str | None = None) -> None:
        """`math` (vmath.MATH), how kernels compute exp: by default the C library's bits,
        as the reference's: where the host's exp is glibc's (vmath.host_math), its
        algorithm written in vector IR ("libc-fused" or "libc-plain", the build the host
        runs), else a call to it for each lane ("libm"); "vector" is vmath.exp, within 2
        ulp. PORTNEURON_MATH sets it."""
        self.math = math or os.environ.get("PORTNEURON_MATH") or host_math()
        if self.math not in MATH:
            raise PortneuronError(
                f"PORTNEURON_MATH must be one of {', '.join(MATH)}, not {self.math!r}; unset it "
                f"for the C library's bits"
            )
        self.pool: ThreadPoolExecutor | None = None
        self.pool_threads = 0

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether llvmlite is there, with its library: loading that library is left to the
        first kernel that is not in the cache."""
        try:
            import llvmlite
        except ImportError as exc:
            return False, f"llvmlite is not installed ({exc})"
        binding = Path(llvmlite.__file__).parent / "binding"
        if not any(binding.glob("*llvmlite*")):
            return False, f"llvmlite {llvmlite.__version__} has no library in {binding}"
        return True, f"llvmlite {llvmlite.__version__}, {Jit.get().triple}"

    def compile(self, kernel: Kernel, hot: bool = True) -> CompiledKernel:
        """`kernel`, to be verified, folded and lowered when it first runs, where its
        function is not in the cache (where it went verified), or never, where it never runs
        (PORTNEURON_DUMP=ir: verified and printed now)."""
        math = self.math
        options = f"{math} {hot}" + (" profiled" if profiling() else "")
        name = functools.partial(Jit.get().name, kernel, options)
        if dumping("ir"):
            from portneuron.ir import format_kernel

            folded = fold_constants(verify_kernel(kernel))
            print(format_kernel(folded), file=sys.stderr)
            return CompiledKernel(kernel, name, lambda name: self.lower(folded, name, math, hot))
        return CompiledKernel(
            kernel,
            name,
            lambda name: self.lower(fold_constants(verify_kernel(kernel)), name, math, hot),
        )

    @staticmethod
    def lower(kernel: Kernel, name: str, math: str = "libm", vectorise: bool = True) -> str:
        """LLVM IR text of `kernel` as function `name` (its lanes as vectors where they
        can be, with `vectorise`)."""
        from llvmlite import ir

        from .render import lower_kernel

        module = ir.Module(name=name)
        module.triple = Jit.get().triple
        kernel = Kernel(name, kernel.lanes, kernel.params, kernel.body, kernel.streams)
        lower_kernel(module, kernel, math, vectorise)
        return str(module)

    @staticmethod
    def jit_seconds() -> float:
        """Seconds this process spent JIT-compiling (or loading cached objects)."""
        return Jit.get().seconds if Jit._instance is not None else 0.0

    def ready(self, compiled: CompiledKernel) -> None:
        compiled.function  # noqa: B018 (JIT-compiles it)

    def run_blocks(
        self, compiled: CompiledKernel, args: Mapping[str, Any], cuts: list[int]
    ) -> None:
        """Each range of lanes on a thread of its own (this one takes the first); the
        kernel's arguments are shared, as its lanes write disjoint elements."""
        _without_streams(compiled, "run_blocks")
        fill_slots(compiled.kernel, args, compiled.slots, compiled.last, compiled.plan)
        compiled.owner = None
        self.call(compiled, cuts)

    def bind(self, compiled: CompiledKernel, args: Mapping[str, Any]) -> LlvmBound:
        return LlvmBound(self, compiled, args)

    def call(self, compiled: CompiledKernel, cuts: list[int]) -> None:
        """`compiled` over lanes cuts[0] .. cuts[-1] - 1 with the arguments in its slots,
        each range of lanes on a thread of its own (this one takes the first)."""
        function, slots = compiled.function, compiled.slots_address
        ranges = list(zip(cuts, cuts[1:]))
        if len(ranges) == 1:
            function(ranges[0][0], ranges[0][1], slots)
            return
        if self.pool is None or self.pool_threads < len(ranges) - 1:
            self.pool = ThreadPoolExecutor(len(ranges) - 1)
            self.pool_threads = len(ranges) - 1
        # every call returns before a Ctrl-C or SIGTERM is raised here: the threads run
        # compiled code on the model's arrays, and an exception inside `wait` can leave a
        # future's lock held, which hangs the thread that finishes it
        with deferred():
            calls = [self.pool.submit(function, lo, hi, slots) for lo, hi in ranges[1:]]
            function(ranges[0][0], ranges[0][1], slots)
            wait(calls)
            for call in calls:
                call.result()

    def emit(self, kernel: Kernel, stage: str) -> str:
        """The optimised LLVM IR ("llvm") or the assembly ("asm") of a kernel."""
        text = self.lower(fold_constants(verify_kernel(kernel)), kernel.name, self.math)
        optimised, assembly = Jit.get().assembly(text)
        return optimised if stage == "llvm" else assembly

    def run(
        self, compiled: CompiledKernel, args: Mapping[str, Any], lanes: int
    ) -> dict[str, dict[str, Any]]:
        fill_slots(compiled.kernel, args, compiled.slots, compiled.last, compiled.plan)
        compiled.owner = None
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
