"""The cuda backend: IR kernels as CUDA C (render.py), compiled and launched through a
runtime (runtime.py: PyCUDA on a GPU).

`run` is the simple path: it copies the kernel's arrays to the device, launches, and
copies back the arrays the kernel writes and the records it emits; the simulation uses it
for what runs once (INITIAL, tables) and for artificial cells. The steps themselves run
in epochs of the driver written in IR (portneuron.sim.driver), rendered as one kernel
(render.py, `_Driver`) whose arguments stay in device memory (resident.py): the model
stays on the GPU, and only events and spikes cross. PyCUDA is imported only by `availability` and the runtime, so generating
source (`emit`, `portneuron compile --emit cuda`) needs neither PyCUDA nor a GPU.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from portneuron.ir import BOOL, F64, I32, Kernel, Launch, verify_kernel, walk
from portneuron.ir.passes import fold_constants
from portneuron.ir.types import NUMPY_DTYPES

from ..base import Backend, dumping
from .mapping import ThreadMapping, emits_per_lane, thread_mapping, written_arrays
from .render import CUDA, Dialect, kernel_source
from .resident import Resident
from .runtime import NVCC_OPTIONS, PycudaRuntime, Runtime, find_nvcc

__all__ = ["NVCC_OPTIONS", "CudaBackend"]
#: Doubles are added atomically (atomicAdd on double) from compute capability 6.0, and a
#: block's threads wait at a barrier each on its own, as the kernels that give a warp's
#: threads a lane each need, from 7.0 (Volta's independent thread scheduling).
MIN_COMPUTE_CAPABILITY = (7, 0)
#: How each scalar type is passed to a kernel (PyCUDA packs NumPy scalars).
SCALARS = {F64: np.float64, I32: np.int32, BOOL: np.uint8}
FUNCTION = "pn_kernel"


@dataclass
class CompiledKernel:
    kernel: Kernel
    mapping: ThreadMapping
    function: Any  # pycuda.driver.Function
    source: str
    written: frozenset[str]
    emits: dict[str, int]
    driver: bool  # it launches others: one CUDA block a lane, run through `bind`


class CudaBackend(Backend):
    name: ClassVar[str] = "cuda"
    device_kind: ClassVar[str] = "gpu"
    simd_width: ClassVar[int] = 1
    compiled_epochs: ClassVar[bool] = True
    ordered_sums: ClassVar[bool] = False  # atomicAdd where lanes share an element
    own_math: ClassVar[bool] = True  # libdevice on a GPU
    #: How the kernels' C is spelled (render.py); `emit` names it as its stage.
    dialect: ClassVar[Dialect] = CUDA
    stages: ClassVar[tuple[str, ...]] = ("cuda",)
    emits_anywhere: ClassVar[bool] = True  # source needs no GPU
    #: The runtime made on first use where none was given.
    default_runtime: ClassVar[type] = PycudaRuntime

    def __init__(
        self, runtime: Runtime | None = None, epoch_width: int = 32, epoch_threads: int = 256
    ) -> None:
        """`runtime`: where kernels run (default: `default_runtime`, started on first use);
        `epoch_width`: cells per block of a compiled epoch, one per thread of a warp's
        (a divisor of 32); `epoch_threads`: threads per CUDA block there, one block a cell
        block (a multiple of 32)."""
        if 32 % epoch_width or epoch_threads % 32 or not 0 < epoch_threads <= 1024:
            raise ValueError(
                f"epoch_width must divide 32 ({epoch_width}) and epoch_threads be a multiple "
                f"of 32 up to 1024 ({epoch_threads})"
            )
        self._runtime = runtime
        self.epoch_width, self.epoch_threads = epoch_width, epoch_threads

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self.default_runtime()
        return self._runtime

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("pycuda") is None:
            return False, (
                'PyCUDA is not installed (in the portneuron checkout: pip install -e ".[cuda]"; '
                "PyCUDA builds against a CUDA toolkit)"
            )
        try:
            with warnings.catch_warnings():  # PyCUDA warns before it raises: one line here
                warnings.simplefilter("ignore")
                import pycuda.driver as driver
        except ImportError as exc:  # its extension links libcuda, the driver's library
            return False, f"PyCUDA cannot load the CUDA driver: {exc}"
        try:
            driver.init()
            count = driver.Device.count()
        except driver.Error as exc:
            return False, f"the CUDA driver does not start (cuInit: {exc})"
        if count == 0:
            return False, "the CUDA driver finds no GPU"
        device = driver.Device(0)
        major, minor = device.compute_capability()
        if (major, minor) < MIN_COMPUTE_CAPABILITY:
            return False, (
                f"{device.name()} has compute capability {major}.{minor}; the cuda backend "
                "needs 7.0 or later (atomicAdd on doubles, independent thread scheduling)"
            )
        if find_nvcc() is None:
            return False, (
                "nvcc, the CUDA compiler, is not on PATH, in $CUDA_HOME/bin or in "
                "/usr/local/cuda/bin (PyCUDA compiles the generated CUDA C with it)"
            )
        return True, f"{device.name()}, compute capability {major}.{minor}"

    def emit(self, kernel: Kernel, stage: str) -> str:
        """The CUDA C source ("cuda") of a kernel, as `compile` builds it."""
        if stage != self.dialect.name:
            raise ValueError(f"the {self.name} backend emits {self.dialect.name}, not {stage!r}")
        return kernel_source(fold_constants(verify_kernel(kernel)), dialect=self.dialect)

    def compile(self, kernel: Kernel, hot: bool = True) -> CompiledKernel:
        """`hot` is accepted for the protocol; every kernel is compiled the same way."""
        kernel = fold_constants(verify_kernel(kernel))
        source = kernel_source(kernel, FUNCTION, self.epoch_threads, self.dialect)
        if dumping("cuda"):
            print(source, file=sys.stderr)
        mapping = thread_mapping(kernel, self.dialect.warp)
        driver = any(isinstance(s, Launch) for s in walk.statements(kernel.body))
        return CompiledKernel(
            kernel,
            mapping,
            # a driver's phases and a split kernel's parallel loops meet at barriers
            self.runtime.compile(source, FUNCTION, barriers=driver or bool(mapping.barrier)),
            source,
            frozenset(written_arrays(kernel)),
            emits_per_lane(kernel),
            driver,
        )

    def bind(self, compiled: CompiledKernel, args: Mapping[str, Any]) -> Resident:
        """A driver's arguments in device memory from run to run (resident.py)."""
        if not compiled.driver:
            raise ValueError(f"bind: {compiled.kernel.name} launches no kernel")
        return Resident(self, compiled, args)

    def run_blocks(
        self, compiled: CompiledKernel, args: Mapping[str, Any], cuts: list[int]
    ) -> None:
        if not compiled.driver:
            super().run_blocks(compiled, args, cuts)
            return
        resident = self.bind(compiled, args)
        resident.load()
        resident.run({}, cuts)
        resident.store()

    def run(
        self, compiled: CompiledKernel, args: Mapping[str, Any], lanes: int
    ) -> dict[str, dict[str, Any]]:
        kernel, runtime = compiled.kernel, self.runtime
        if compiled.driver:
            self.run_blocks(compiled, args, [0, lanes])
            return {}
        arrays = _checked_arrays(kernel, args, compiled.written)
        if lanes <= 0:
            return {
                s.name: {f: np.empty(0, NUMPY_DTYPES[t]) for f, t in s.fields}
                for s in kernel.streams
            }
        allocations: list[int] = []

        def to_device(host: np.ndarray) -> int:
            pointer = runtime.alloc(host.nbytes)
            allocations.append(pointer)
            runtime.upload(pointer, host)
            return pointer

        try:
            values = [
                to_device(arrays[p.name]) if p.is_array else SCALARS[p.dtype](args[p.name])
                for p in kernel.params
            ]
            streams = {}
            for s in kernel.streams:
                capacity = lanes * compiled.emits[s.name]
                fields = {f: np.empty(capacity, NUMPY_DTYPES[t]) for f, t in s.fields}
                order, count = np.empty(capacity, np.int64), np.zeros(1, np.uint64)
                buffers = [to_device(a) for a in (*fields.values(), order, count)]
                values += buffers
                streams[s.name] = (fields, order, count, buffers)
            mapping = compiled.mapping
            launch = [np.int64(0), np.int64(lanes)]
            launch += [np.uintp(v) if isinstance(v, int) else v for v in values]
            runtime.launch(compiled.function, mapping.grid(lanes), mapping.block, launch)
            for p, value in zip(kernel.params, values):
                if p.name in compiled.written:
                    runtime.download(arrays[p.name], value)
            return {name: _records(runtime, *stream) for name, stream in streams.items()}
        finally:
            for pointer in allocations:
                runtime.free(pointer)


def _checked_arrays(
    kernel: Kernel, args: Mapping[str, Any], written: frozenset[str]
) -> dict[str, np.ndarray]:
    """The kernel's array arguments, checked: NumPy arrays of the parameter's type, in one
    piece, and no array the kernel writes overlapping another argument (each goes to the
    GPU as its own copy, and the kernel's pointers are `__restrict__`)."""
    arrays = {}
    for p in kernel.params:
        if not p.is_array:
            continue
        value = args[p.name]
        if not isinstance(value, np.ndarray) or value.dtype != NUMPY_DTYPES[p.dtype]:
            raise TypeError(f"{kernel.name}: {p.name!r} needs a NumPy {p.dtype.value} array")
        if not value.flags.c_contiguous:
            raise TypeError(f"{kernel.name}: {p.name!r} must be contiguous")
        arrays[p.name] = value
    for name in written:
        for other, value in arrays.items():
            if other != name and np.may_share_memory(arrays[name], value):
                raise ValueError(
                    f"{kernel.name}: {name!r} and {other!r} share memory, which the cuda "
                    "backend does not allow for an array the kernel writes"
                )
    return arrays


def _records(runtime: Runtime, fields, order, count, buffers) -> dict[str, np.ndarray]:
    """A stream's records brought back in the interpreter's order (lane by lane)."""
    runtime.download(count, buffers[-1])
    n = int(count[0])
    for host, device in zip((*fields.values(), order), buffers):
        runtime.download(host[:n], device)
    ranks = np.argsort(order[:n], kind="stable")
    return {name: values[:n][ranks] for name, values in fields.items()}
