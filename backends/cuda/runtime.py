"""Where the cuda backend's code runs. A runtime compiles CUDA C, holds device memory and
launches kernels; the backend (backend.py) and a driver's resident arguments (resident.py)
use nothing else of CUDA, so another runtime runs the same host code: the tests' CPU stand-in
(tests/cuda_host.py) builds the source with g++ and runs each CUDA thread as a thread.

Device memory is addressed by plain integers (a kernel receives them as `np.uintp`
arguments); scalars are passed as NumPy scalars of the parameter's type.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: nvcc options: no fused multiply-add, which would round a*b + c once where the
#: interpreter rounds twice.
NVCC_OPTIONS = ("--fmad=false",)


def toolkit_roots() -> list[Path]:
    """Where a CUDA toolkit may be: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda."""
    roots = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")] + ["/usr/local/cuda"]
    return [Path(r) for r in roots if r]


def find_nvcc() -> str | None:
    """The CUDA compiler: on PATH, else in a toolkit root (toolkits install there, and
    PATH often does not look)."""
    places = [r / "bin" / "nvcc" for r in toolkit_roots()]
    return shutil.which("nvcc") or next((str(p) for p in places if p.is_file()), None)


class Runtime(Protocol):
    def compile(self, source: str, name: str, barriers: bool = False) -> Any:
        """The `extern "C" __global__` function `name` of CUDA C `source` (`barriers`:
        whether its threads meet at barriers, which a device's compiler may mishandle)."""

    def alloc(self, nbytes: int) -> int:
        """A device allocation of at least max(nbytes, 1) bytes."""

    def free(self, pointer: int) -> None: ...

    def upload(self, pointer: int, host: np.ndarray) -> None:
        """host (contiguous) -> device memory at `pointer`."""

    def download(self, host: np.ndarray, pointer: int) -> None:
        """Device memory at `pointer` -> host (contiguous), host.nbytes bytes."""

    def launch(self, function: Any, grid: int, block: int, args: list[np.generic]) -> None:
        """Run `function` on `grid` blocks of `block` threads; returns when it is done."""


class PycudaRuntime:
    """The device's primary context through PyCUDA (imported here, not before)."""

    def __init__(self) -> None:
        import pycuda.autoprimaryctx  # noqa: F401  (the primary context, made current)
        import pycuda.driver as driver

        self.driver = driver
        self.nvcc = find_nvcc() or "nvcc"
        self.allocations: dict[int, Any] = {}

    def compile(self, source: str, name: str, barriers: bool = False) -> Any:
        from pycuda.compiler import SourceModule

        options = list(NVCC_OPTIONS)
        module = SourceModule(source, nvcc=self.nvcc, options=options, no_extern_c=True)
        return module.get_function(name)

    def alloc(self, nbytes: int) -> int:
        allocation = self.driver.mem_alloc(max(int(nbytes), 1))
        self.allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self.allocations.pop(pointer).free()

    def upload(self, pointer: int, host: np.ndarray) -> None:
        if host.nbytes:
            self.driver.memcpy_htod(pointer, host)

    def download(self, host: np.ndarray, pointer: int) -> None:
        if host.nbytes:
            self.driver.memcpy_dtoh(host, pointer)

    def launch(self, function: Any, grid: int, block: int, args: list[np.generic]) -> None:
        function(*args, block=(block, 1, 1), grid=(grid, 1))
        self.driver.Context.synchronize()
