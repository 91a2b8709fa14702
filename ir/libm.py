"""The C library's math functions over NumPy arrays: the reference's transcendentals.

NEURON's compiled mechanisms call the C library's `exp`, `log`, `pow`, ... and so does the
llvm backend's generated code. NumPy's own `np.exp`, `np.log`, `np.power` and the
trigonometric ufuncs are not the C library's: depending on NumPy's build and on the CPU it
dispatches to (AVX-512 on one machine, SSE on the next) they return other last bits for a few
percent of arguments. So the reference evaluates these functions element by element with
Python's `math` module, which calls the C library directly: the same bits as NEURON and the
llvm backend on the same machine, whatever NumPy's build and the CPU's features.

Where the C function returns an IEEE special value and signals an error (overflow to inf, a
domain error's NaN, log(0) = -inf), `math` raises instead; those elements are computed by the
C function itself, through ctypes (a NaN's sign differs between C functions).

The exactly rounded operations (sqrt, fabs, floor, ceil, fmod, +, -, *, /) stay NumPy's: IEEE
fixes their bits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable

import numpy as np

from .random123 import random123

_C = ctypes.CDLL(ctypes.util.find_library("m") or "so.6")


def _c_function(name: str, nargs: int):
    """The C library's own `name`, through ctypes: slow, but it is the C result itself."""
    fn = getattr(_C, name)
    fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_double] * nargs
    return fn


def _elementwise(name: str, scalar: Callable[..., float], special: np.ufunc):
    """`scalar` (a `math` function) applied element by element, broadcast as `special` would
    be, with the C function's own value (through ctypes) where `scalar` raises."""
    c_function = _c_function(name, special.nin)

    def safe(*xs: float) -> float:
        try:
            return scalar(*xs)
        except (OverflowError, ValueError):
            return c_function(*xs)  # inf, a signed NaN: the C library's, bit for bit

    def apply(*args):
        arrays = [np.asarray(a, dtype=np.float64) for a in args]
        if all(a.ndim == 0 for a in arrays):
            return np.float64(safe(*(float(a) for a in arrays)))
        arrays = np.broadcast_arrays(*arrays)
        shape, flat = arrays[0].shape, [a.ravel().tolist() for a in arrays]
        count = len(flat[0])
        try:
            out = np.fromiter(map(scalar, *flat), np.float64, count)
        except (OverflowError, ValueError):
            out = np.fromiter(map(safe, *flat), np.float64, count)
        return out.reshape(shape)

    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"The C library's {name}, element by element."
    return apply


exp = _elementwise("exp", math.exp, np.exp)
expm1 = _elementwise("expm1", math.expm1, np.expm1)
log = _elementwise("log", math.log, np.log)
log10 = _elementwise("log10", math.log10, np.log10)
pow = _elementwise("pow", math.pow, np.power)  # noqa: A001 (the C library's name)
sin = _elementwise("sin", math.sin, np.sin)
cos = _elementwise("cos", math.cos, np.cos)
tan = _elementwise("tan", math.tan, np.tan)
asin = _elementwise("asin", math.asin, np.arcsin)
acos = _elementwise("acos", math.acos, np.arccos)
atan = _elementwise("atan", math.atan, np.arctan)
sinh = _elementwise("sinh", math.sinh, np.sinh)
cosh = _elementwise("cosh", math.cosh, np.cosh)
tanh = _elementwise("tanh", math.tanh, np.tanh)
atan2 = _elementwise("atan2", math.atan2, np.arctan2)


#: IR binary operators on NumPy values; pow the C library's.
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": pow, "min": np.minimum, "max": np.maximum,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal, "and": np.logical_and, "or": np.logical_or,
}  # fmt: skip

#: IR intrinsics on NumPy values: the transcendentals the C library's (above), the exactly
#: rounded operations NumPy's; with `random123`, NEURON's streams.
INTRINSICS = {
    "exp": exp, "expm1": expm1, "log": log, "log10": log10, "sqrt": np.sqrt,
    "fabs": np.fabs, "floor": np.floor, "ceil": np.ceil, "sin": sin, "cos": cos,
    "tan": tan, "asin": asin, "acos": acos, "atan": atan,
    "sinh": sinh, "cosh": cosh, "tanh": tanh, "atan2": atan2, "fmod": np.fmod,
}  # fmt: skip
INTRINSICS["random123"] = random123
