"""Where the opencl backend's kernels run: one OpenCL device through pyopencl.

It is the cuda backend's runtime protocol (backends/cuda/runtime.py), so the cuda
backend's host code (its `run`, a driver's resident arguments) runs unchanged: device
memory is addressed by integers, here byte offsets into one buffer, the arena, which every
kernel gets as its first argument (render.py). OpenCL 1.2 gives no device addresses, and
a driver's table of hundreds of arrays needs them in memory; offsets are what it can hold.
The arena grows by doubling (a copy on the device), and its spans are handed out first-fit.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

#: Byte alignment of every span (at least any device's CL_DEVICE_MEM_BASE_ADDR_ALIGN, 1024 bits).
ALIGN = 128
FIRST_ARENA = 1 << 20
#: Extensions the kernels use: doubles, and 64-bit compare-and-swap and increment.
EXTENSIONS = ("cl_khr_fp64", "cl_khr_int64_base_atomics")


def devices() -> list[Any]:
    """The OpenCL devices with the extensions the kernels use: GPUs first, then others."""
    import pyopencl as cl

    found = [
        d
        for p in cl.get_platforms()
        for d in p.get_devices()
        if all(e in d.extensions.split() for e in EXTENSIONS)
    ]
    return sorted(found, key=lambda d: not d.type & cl.device_type.GPU)


class OpenclRuntime:
    def __init__(self, device: Any = None) -> None:
        import pyopencl as cl

        self.cl = cl
        self.device = device or devices()[0]
        self.context = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.context)
        self.pocl = "Portable Computing Language" in self.device.platform.name
        self.size = FIRST_ARENA
        self.arena = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, self.size)
        self.spans: list[tuple[int, int]] = [(ALIGN, self.size)]  # free, sorted, apart
        self.taken: dict[int, int] = {}  # a span handed out: start -> end

    def compile(self, source: str, name: str, barriers: bool = False) -> Any:
        """Kernel `name` of OpenCL C `source` (pyopencl keeps built programs in its cache).
        PoCL 3.0 (LLVM 14) optimises away code between barriers in a loop (an epoch
        driver's first event delivery of each step, seen as events a step late), so there
        a kernel whose work-items meet at `barriers` is built without optimisation."""
        options = ["-cl-opt-disable"] if self.pocl and barriers else []
        program = self.cl.Program(self.context, source).build(options=options)
        return getattr(program, name)

    def alloc(self, nbytes: int) -> int:
        need = -(-max(int(nbytes), 1) // ALIGN) * ALIGN
        for k, (start, end) in enumerate(self.spans):
            if end - start >= need:
                self.spans[k : k + 1] = [(start + need, end)] if end - start > need else []
                self.taken[start] = start + need
                return start
        self._grow(need)
        return self.alloc(nbytes)

    def _grow(self, need: int) -> None:
        size = max(2 * self.size, self.size + need)
        if size > self.device.max_mem_alloc_size:
            raise MemoryError(
                f"{self.device.name}: the model needs {size} bytes in one OpenCL buffer; the "
                f"device allows {self.device.max_mem_alloc_size}"
            )
        bigger = self.cl.Buffer(self.context, self.cl.mem_flags.READ_WRITE, size)
        self.cl.enqueue_copy(self.queue, bigger, self.arena, byte_count=self.size)
        self.queue.finish()
        self.arena.release()
        self.arena, old = bigger, self.size
        self.size = size
        self._release(old, size)

    def free(self, pointer: int) -> None:
        self._release(pointer, self.taken.pop(pointer))

    def _release(self, start: int, end: int) -> None:
        """Span start .. end back among the free ones, joined to its neighbours."""
        k = bisect.bisect(self.spans, (start, end))
        if k < len(self.spans) and self.spans[k][0] == end:
            end = self.spans.pop(k)[1]
        if k and self.spans[k - 1][1] == start:
            k -= 1
            start = self.spans.pop(k)[0]
        self.spans.insert(k, (start, end))

    def upload(self, pointer: int, host: np.ndarray) -> None:
        if host.nbytes:
            self.cl.enqueue_copy(self.queue, self.arena, host, dst_offset=pointer)

    def download(self, host: np.ndarray, pointer: int) -> None:
        if host.nbytes:
            self.cl.enqueue_copy(self.queue, host, self.arena, src_offset=pointer)

    def launch(self, function: Any, grid: int, block: int, args: list[np.generic]) -> None:
        function(self.queue, (grid * block,), (block,), self.arena, *args)
        self.queue.finish()
