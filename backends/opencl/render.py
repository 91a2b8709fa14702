"""OpenCL C: the cuda backend's renderer (backends/cuda/render.py) in OpenCL's spelling.

What differs from CUDA C:

- memory is a buffer, not an address space the host can point into: each kernel gets the
  runtime's one buffer (`pn_arena`, runtime.py) and an array as its byte offset there
  (`ulong NAME_at`), from which the kernel derives a `__global` pointer; a driver's table
  holds offsets too;
- a bool in memory or passed by the host is a `uchar` (OpenCL leaves bool's size open);
- there is no warp: a split lane is a work-group of its own (mapping.py, `warp` 1), and a
  driver's callee splits its lanes over the work-group, every work-item at every barrier;
- doubles are added atomically by compare-and-swap on their 64 bits
  (cl_khr_int64_base_atomics), and a stream's slots are taken with atomic_inc / atom_inc;
- `#pragma OPENCL FP_CONTRACT OFF`: no a*b + c fused into one rounding (nvcc's
  `--fmad=false`).
"""

from __future__ import annotations

from portneuron.ir import BOOL, DType

from ..cuda.helpers import HELPERS
from ..cuda.names import Names
from ..cuda.render import Dialect

ATOMIC_ADD = """\
// *at += x, atomically: compare-and-swap its 64 bits until no other work-item came between.
{inline} void pn_atomic_add(volatile __global double* at, double x)
{{
    volatile __global long* word = (volatile __global long*)at;
    long seen = *word;
    long expected;
    do {{
        expected = seen;
        seen = atom_cmpxchg(word, expected, as_long(as_double(expected) + x));
    }} while (seen != expected);
}}
"""


class OpenclDialect(Dialect):
    name = "opencl"
    prelude = (
        "#pragma OPENCL FP_CONTRACT OFF\n"
        "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
        "#pragma OPENCL EXTENSION cl_khr_int64_base_atomics : enable\n",
    )
    entry, function, inline = "__kernel void", "static void", "static inline"
    i64, u64, ull, restrict = "long", "ulong", "UL", "restrict"
    warp = 1
    global_id = "(long)get_global_id(0)"
    local_id, group_id, group_size = "get_local_id(0)", "get_group_id(0)", "get_local_size(0)"
    block_barrier = "barrier(CLK_GLOBAL_MEM_FENCE);"
    entry_params = ("__global char* pn_arena",)
    atomic_helper = "pn_atomic_add"
    helpers = {**HELPERS, "pn_atomic_add": ATOMIC_ADD}

    def element(self, dtype: DType) -> str:
        return "uchar" if dtype == BOOL else super().element(dtype)

    def pointer(self, c_type: str, const: bool = False, restrict: bool = False) -> str:
        return "__global " + super().pointer(c_type, const, restrict)

    def entry_array(self, names: Names, c_name: str, pointer: str) -> tuple[str, str | None]:
        offset = names(("offset", c_name), f"{c_name}_at")
        return f"ulong {offset}", f"{pointer}{c_name} = {self.address(pointer, offset)};"

    def address(self, pointer: str, word: str) -> str:
        return f"({pointer.replace(' restrict', '').strip()})(pn_arena + {word})"

    def as_double(self, word: str) -> str:
        return f"as_double({word})"

    def atomic_add(self, at: str, x: str) -> str:
        return f"pn_atomic_add(&{at}, {x});"

    def take_slot(self, count: str, wide: bool) -> str:
        return f"atom_inc({count})" if wide else f"atomic_inc({count})"

    def bounds(self, threads: int) -> str:
        return f"__attribute__((reqd_work_group_size({threads}, 1, 1))) "


OPENCL = OpenclDialect()
