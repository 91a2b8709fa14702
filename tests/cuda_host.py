"""A CPU stand-in for the cuda backend's runtime (portneuron.backends.cuda.runtime), for
machines without a GPU: the generated CUDA C is built by g++ with a few lines standing in
for CUDA's built-ins, and a launch runs each CUDA thread of a block as a thread of its
own, concurrently (blocks one after another): barriers are real barriers (std::barrier;
a thread that returns leaves them, as on a GPU), atomics are real atomics, and a missing
barrier shows as a race. Device memory is host memory, addressed by its address.

The math is the C library's, as NumPy's, or with `gpu_math` a GPU's: CUDA's libdevice
compiled for the CPU (libdevice_host.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from libdevice_host import header as libdevice_header
from libdevice_host import libdevice_object

GXX = shutil.which("g++")

#: What every build includes: CUDA's built-ins as declarations and inline functions
#: (light, so that a build takes a fraction of a second).
HEADER = r"""
// CUDA's built-ins for running a launch on the CPU, a thread per CUDA thread.
#include <math.h>
#include <string.h>
struct pn_dim { unsigned x, y, z; };
extern thread_local pn_dim threadIdx;
extern pn_dim blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
template <class T> static inline T atomicAdd(T* at, T x)
{
    return __atomic_fetch_add(at, x, __ATOMIC_SEQ_CST);
}
static inline double atomicAdd(double* at, double x)
{
    double old, sum;
    __atomic_load(at, &old, __ATOMIC_SEQ_CST);
    do {
        sum = old + x;
    } while (!__atomic_compare_exchange(at, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return old;
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline double __longlong_as_double(long long x) { double d; memcpy(&d, &x, 8); return d; }
extern "C" void __syncthreads();
extern "C" void __syncwarp(unsigned mask);
extern "C" int __syncthreads_or(int p);
extern "C" void pn_launch(unsigned grid, unsigned block, void (*body)(const unsigned long long*),
                          const unsigned long long* w);
"""

#: The launch and the barriers, built once per runtime.
LAUNCHER = r"""
#include <atomic>
#include <barrier>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>
struct pn_dim { unsigned x, y, z; };
thread_local pn_dim threadIdx;
pn_dim blockIdx, blockDim, gridDim;
static std::barrier<>* pn_block;
static std::mutex pn_lock;
static std::map<std::pair<unsigned, unsigned>, std::barrier<>*> pn_warps;
static std::atomic<int> pn_any;

extern "C" void __syncthreads() { pn_block->arrive_and_wait(); }

extern "C" void __syncwarp(unsigned mask)
{
    std::barrier<>* warp;
    {
        std::lock_guard<std::mutex> hold(pn_lock);
        std::barrier<>*& slot = pn_warps[std::make_pair(threadIdx.x / 32, mask)];
        if (!slot) {
            slot = new std::barrier<>(__builtin_popcount(mask));
        }
        warp = slot;
    }
    warp->arrive_and_wait();
}

extern "C" int __syncthreads_or(int p)
{
    __syncthreads();
    if (p) {
        pn_any.store(1);
    }
    __syncthreads();
    const int out = pn_any.load();
    __syncthreads();
    if (threadIdx.x == 0) {
        pn_any.store(0);  // before thread 0 reaches the next call's first barrier
    }
    return out;
}

extern "C" void pn_launch(unsigned grid, unsigned block, void (*body)(const unsigned long long*),
                          const unsigned long long* w)
{
    blockDim.x = block;
    gridDim.x = grid;
    for (unsigned b = 0; b < grid; b++) {
        blockIdx.x = b;
        std::barrier<> barrier(block);
        pn_block = &barrier;
        std::vector<std::thread> threads;
        for (unsigned i = 0; i < block; i++) {
            threads.emplace_back([body, w, i] {
                threadIdx.x = i;
                body(w);
                pn_block->arrive_and_drop();  // a thread that returned leaves the barrier
            });
        }
        for (std::thread& t : threads) {
            t.join();
        }
        for (auto& entry : pn_warps) {
            delete entry.second;
        }
        pn_warps.clear();
    }
}
"""

_ENTRY = re.compile(
    r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(\n(.*?)\)\n\{', re.S
)


def _cast(declaration: str, k: int) -> str:
    """Argument k of a launch (an 8-byte word) as the parameter `declaration`."""
    c_type = declaration.rsplit(None, 1)[0].replace("__restrict__", "").strip()
    word = f"w[{k}]"
    if "*" in c_type:
        return f"({c_type}){word}"
    return {
        "double": f"__longlong_as_double((long long){word})",
        "bool": f"({word} != 0ull)",
        "int": f"(int)(long long){word}",
        "long long": f"(long long){word}",
        "unsigned": f"(unsigned){word}",
    }[c_type]


def _wrappers(source: str) -> str:
    out = []
    for name, params in _ENTRY.findall(source):
        declarations = [p.strip() for p in params.split(",\n")]
        args = ", ".join(_cast(d, k) for k, d in enumerate(declarations))
        out.append(
            f"static void body_{name}(const unsigned long long* w)\n{{\n    {name}({args});\n}}\n"
            f'extern "C" void host_{name}(unsigned grid, unsigned block, '
            "const unsigned long long* w)\n{\n"
            f"    pn_launch(grid, block, body_{name}, w);\n}}\n"
        )
    return "\n".join(out)


def _build(source: Path, library: Path, *extra: str) -> None:
    command = [GXX, "-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-pthread"]
    command += ["-Wall", "-Wno-unused-function", "-o", str(library), str(source), *extra]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"g++ failed on {source}:\n{run.stderr}")


class HostRuntime:
    """The runtime protocol on the CPU (module docstring); `folder` holds the builds."""

    def __init__(self, folder: Path, gpu_math: bool = False) -> None:
        self.folder = folder
        self.math: tuple[str, list[str]] = ("", [])  # header lines, objects to link
        if gpu_math:
            libdevice = libdevice_object(folder)
            if libdevice is None:
                raise RuntimeError("no CUDA toolkit's libdevice for the GPU's math")
            self.math = (libdevice_header(), [str(libdevice)])
        self.libraries: dict[str, ctypes.CDLL] = {}
        self.memory: dict[int, np.ndarray] = {}
        self.launcher = folder / "libpnlaunch.so"
        (folder / "launch.cpp").write_text(LAUNCHER)
        _build(folder / "launch.cpp", self.launcher)

    def compile(self, source: str, name: str, barriers: bool = False) -> Any:
        digest = hashlib.sha1(source.encode()).hexdigest()[:16]
        if digest not in self.libraries:
            cpp, library = self.folder / f"{digest}.cpp", self.folder / f"{digest}.so"
            cpp.write_text(HEADER + self.math[0] + source + "\n" + _wrappers(source))
            _build(cpp, library, str(self.launcher), *self.math[1], f"-Wl,-rpath,{self.folder}")
            self.libraries[digest] = ctypes.CDLL(str(library))
        return getattr(self.libraries[digest], f"host_{name}")

    def alloc(self, nbytes: int) -> int:
        memory = np.zeros(max(int(nbytes), 1) + 8, dtype=np.uint8)
        self.memory[memory.ctypes.data] = memory
        return memory.ctypes.data

    def free(self, pointer: int) -> None:
        del self.memory[pointer]

    def upload(self, pointer: int, host: np.ndarray) -> None:
        self._check(pointer, host)
        ctypes.memmove(pointer, host.ctypes.data, host.nbytes)

    def download(self, host: np.ndarray, pointer: int) -> None:
        self._check(pointer, host)
        ctypes.memmove(host.ctypes.data, pointer, host.nbytes)

    def _check(self, pointer: int, host: np.ndarray) -> None:
        """A copy within one live allocation, as the driver would insist."""
        assert host.flags.c_contiguous
        assert host.nbytes <= self.memory[pointer].size - 8, "copy past an allocation's end"

    def launch(self, function: Any, grid: int, block: int, args: list[np.generic]) -> None:
        words = np.array([_word(a) for a in args], dtype=np.uint64)
        function(ctypes.c_uint(grid), ctypes.c_uint(block), words.ctypes.data_as(ctypes.c_void_p))


def _word(value: np.generic) -> int:
    if isinstance(value, np.floating):
        return int(np.float64(value).view(np.uint64))
    return int(np.int64(int(value)).view(np.uint64))
