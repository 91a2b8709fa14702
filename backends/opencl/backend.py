"""The opencl backend: the cuda backend (backends/cuda) with OpenCL C for its kernels
(render.py) and an OpenCL device to run them (runtime.py); everything between, the host
code that runs a kernel and keeps a driver's arguments on the device, is the cuda backend's.

Any OpenCL 1.2 device with doubles and 64-bit atomics runs it: a GPU, or the CPU through
PoCL (`pip install "pyopencl[pocl]"`), which is how it runs in CI. As with cuda, lanes
that add to one element do so atomically, in the order they arrive.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import ClassVar

from ..cuda.backend import CudaBackend
from .render import OPENCL
from .runtime import EXTENSIONS, OpenclRuntime, devices

PROBE = "__kernel void pn_probe(__global double* x) { x[get_global_id(0)] += 1.0; }"


class OpenclBackend(CudaBackend):
    name: ClassVar[str] = "opencl"
    dialect = OPENCL
    stages = ("opencl",)
    default_runtime = OpenclRuntime

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return _availability()


@functools.cache
def _availability() -> tuple[bool, str]:
    """Whether a device builds a kernel (asked once a process: it compiles one)."""
    if importlib.util.find_spec("pyopencl") is None:
        return False, ('pyopencl is not installed (pip install "pyopencl[pocl]" adds a CPU device)')
    import pyopencl as cl

    try:
        found = devices()
    except cl.Error as exc:
        return False, f"no OpenCL platform starts ({exc})"
    if not found:
        return False, f"no OpenCL device has {' and '.join(EXTENSIONS)}"
    device = found[0]
    try:
        context = cl.Context([device])
        cl.Program(context, PROBE).build()
    except cl.Error as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        return False, f"{device.name} cannot build a kernel: {first.strip()}"
    return True, f"{device.name.strip()} ({device.platform.name.strip()})"
