"""C identifiers for IR names: deterministic, distinct, and clear of what C++, CUDA and
OpenCL C own.

IR names contain dots (`node.v`, `mech.m`, `ion.na.ena`, `pn.instance`); each becomes the
name with every character that C does not allow replaced by `_` (`node_v`). A name that
would collide with a name already given, a C++ keyword, a CUDA built-in, a function the
generated code calls or one of the kernel's own variables (`lane`, `slot`, ...) gets the
first free suffix `_1`, `_2`, ... Names are given in a fixed order (parameters, streams,
locals in order of appearance), so the same kernel always gets the same source.
"""

from __future__ import annotations

import re
from collections.abc import Hashable

from portneuron.ir.nodes import INTRINSICS

_CXX_KEYWORDS = """
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue
co_await co_return co_yield decltype default delete do double dynamic_cast else enum
explicit export extern false float for friend goto if inline int long mutable namespace new
noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast requires restrict return short signed sizeof static static_assert
static_cast struct switch template this thread_local throw true try typedef typeid typename
union unsigned using virtual void volatile wchar_t while xor xor_eq
"""
_CUDA = """
threadIdx blockIdx blockDim gridDim warpSize atomicAdd __syncwarp __syncthreads
__global__ __device__ __host__ __restrict__ __forceinline__ INFINITY NAN min max pow
"""
_OPENCL = """
kernel global local constant private generic uchar ushort uint ulong half size_t restrict
barrier get_global_id get_local_id get_group_id get_local_size as_double as_long
atomic_inc atom_inc atom_cmpxchg CLK_GLOBAL_MEM_FENCE
"""
#: The variables and helpers every generated kernel may define itself.
INTERNAL = ("lo", "hi", "thread", "threads", "index", "lane", "iteration", "group", "slot", "table")

RESERVED = frozenset(
    _CXX_KEYWORDS.split() + _CUDA.split() + _OPENCL.split() + list(INTRINSICS) + list(INTERNAL)
) | {"pn_fmin", "pn_fmax", "pn_random123", "pn_atomic_add", "pn_arena"}


def sanitize(name: str) -> str:
    """`name` with C's identifier characters only; never empty, never starting with a
    digit or an underscore (C++ reserves `_X` and `__x`)."""
    text = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", name))
    if not text or text[0].isdigit() or text[0] == "_":
        text = "v" + text
    return text


class Names:
    """Gives each key (an IR name, or any other hashable) one C identifier."""

    def __init__(self) -> None:
        self.taken: set[str] = set(RESERVED)
        self.given: dict[Hashable, str] = {}

    def __call__(self, key: Hashable, proposal: str | None = None) -> str:
        """The identifier of `key`, made from `proposal` (default: the key itself)."""
        if key in self.given:
            return self.given[key]
        base = sanitize(proposal if proposal is not None else str(key))
        name, n = base, 0
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        self.given[key] = name
        return name
