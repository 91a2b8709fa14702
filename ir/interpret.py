"""The reference semantics of the IR: evaluate a kernel with NumPy, vectorised over lanes.

Every lane runs the same statements; control flow that differs between lanes is executed
under a boolean mask (both sides of an `If` run, each for its own lanes), so the result is
that of running the lanes one after another. Values are NumPy scalars (uniform across lanes)
or arrays with one element per lane. Arrays passed in are updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .nodes import (
    BOOL,
    F64,
    I32,
    AddTo,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    DType,
    Emit,
    Expr,
    If,
    Kernel,
    Lane,
    Load,
    Loop,
    Select,
    Stmt,
    Store,
    Unary,
    Var,
)

NUMPY_DTYPES: dict[DType, Any] = {F64: np.float64, I32: np.int32, BOOL: np.bool_}

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": np.power, "min": np.minimum, "max": np.maximum,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal, "and": np.logical_and, "or": np.logical_or,
}  # fmt: skip

_INTRINSIC = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log10": np.log10, "sqrt": np.sqrt,
    "fabs": np.fabs, "floor": np.floor, "ceil": np.ceil, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "atan2": np.arctan2, "fmod": np.fmod,
}  # fmt: skip


_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))
_MASK32 = np.uint64(0xFFFFFFFF)


#: nrnran123's scale, a multiplication (not a division) by 1/(2**32 + 1).
SHIFT32 = 1.0 / 4294967297.0


def random123(id1, id2, id3, position):
    """Philox4x32-10 as NEURON's nrnran123 draws it: (word + 1) * (1 / (2**32 + 1)), in (0, 1)."""
    position = np.asarray(position, dtype=np.float64)
    as_u32 = [np.asarray(x, dtype=np.float64).astype(np.uint64) & _MASK32 for x in (id1, id2, id3)]
    seq = (position // 4).astype(np.uint64) & _MASK32
    k0, k1 = np.zeros_like(seq), np.zeros_like(seq)  # NEURON's global index 0
    c = [seq, as_u32[2], as_u32[0], as_u32[1]]
    for _ in range(10):
        p0, p1 = _PHILOX_M[0] * c[0], _PHILOX_M[1] * c[2]
        c = [
            (p1 >> np.uint64(32)) ^ c[1] ^ k0,
            p1 & _MASK32,
            (p0 >> np.uint64(32)) ^ c[3] ^ k1,
            p0 & _MASK32,
        ]
        k0, k1 = (k0 + _PHILOX_W[0]) & _MASK32, (k1 + _PHILOX_W[1]) & _MASK32
    which = (position % 4).astype(np.int64)
    word = np.choose(which, c)
    return (word.astype(np.float64) + 1.0) * SHIFT32


_INTRINSIC["random123"] = random123


class _Run:
    def __init__(self, kernel: Kernel, args: Mapping[str, Any], lanes: int) -> None:
        self.n = lanes
        self.arrays: dict[str, np.ndarray] = {}
        self.env: dict[str, Any] = {}
        for p in kernel.params:
            if p.name not in args:
                raise KeyError(f"kernel {kernel.name!r}: no value for parameter {p.name!r}")
            value = args[p.name]
            if p.is_array:
                if not isinstance(value, np.ndarray) or value.dtype != NUMPY_DTYPES[p.dtype]:
                    raise TypeError(
                        f"kernel {kernel.name!r}: parameter {p.name!r} needs a NumPy "
                        f"{p.dtype.value} array"
                    )
                self.arrays[p.name] = value
            else:
                self.env[p.name] = NUMPY_DTYPES[p.dtype](value)
        self.streams: dict[str, list[list[np.ndarray]]] = {s.name: [] for s in kernel.streams}
        self.mask: np.ndarray | None = None  # lanes executing the current statement

    def eval(self, e: Expr) -> Any:
        match e:
            case Const(value=value, dtype=dtype):
                return NUMPY_DTYPES[dtype](value)
            case Var(name=name):
                return self.env[name]
            case Lane():
                return np.arange(self.n, dtype=np.int32)
            case Load(array=array, index=index):
                idx = self.eval(index)
                data = self.arrays[array]
                if self.mask is None or np.ndim(idx) == 0:
                    return data[idx]
                # Inactive lanes may hold indices out of range (a finished loop): they read
                # a clipped element, and whatever they read is never used.
                return data.take(idx, mode="clip") if len(data) else np.zeros(self.n, data.dtype)
            case Unary(op="neg", operand=operand):
                return np.negative(self.eval(operand))
            case Unary(operand=operand):
                return np.logical_not(self.eval(operand))
            case Binary(op=op, lhs=lhs, rhs=rhs):
                return _BINARY[op](self.eval(lhs), self.eval(rhs))
            case Call(fn=fn, args=args):
                return _INTRINSIC[fn](*(self.eval(a) for a in args))
            case Select(cond=cond, then=then, otherwise=otherwise):
                return np.where(self.eval(cond), self.eval(then), self.eval(otherwise))
            case Cast(dtype=DType.I32, operand=operand):
                return np.trunc(self.eval(operand)).astype(np.int32)
            case Cast(dtype=dtype, operand=operand):
                return np.asarray(self.eval(operand)).astype(NUMPY_DTYPES[dtype])
        raise TypeError(f"not an IR expression: {e!r}")

    def lanes_of(self, value: Any, mask: np.ndarray | None) -> np.ndarray:
        """`value` as one element per active lane."""
        if np.ndim(value) == 0:
            value = np.full(self.n, value)
        return value if mask is None else value[mask]

    def block(self, body: tuple[Stmt, ...], mask: np.ndarray | None) -> None:
        outer, self.mask = self.mask, mask
        for stmt in body:
            self.stmt(stmt, mask)
        self.mask = outer

    def stmt(self, s: Stmt, mask: np.ndarray | None) -> None:
        match s:
            case Assign(name=name, value=value):
                new = self.eval(value)
                if mask is not None and name in self.env:
                    new = np.where(mask, new, self.env[name])
                self.env[name] = new
            case Store(array=array, index=index, value=value):
                idx = self.lanes_of(self.eval(index), mask)
                self.arrays[array][idx] = self.lanes_of(self.eval(value), mask)
            case AddTo(array=array, index=index, value=value):
                idx = self.lanes_of(self.eval(index), mask)
                np.add.at(self.arrays[array], idx, self.lanes_of(self.eval(value), mask))
            case If(cond=cond, then=then, otherwise=otherwise):
                c = self.eval(cond)
                if np.ndim(c) == 0 and mask is None:  # uniform branch: run one side only
                    self.block(then if c else otherwise, None)
                    return
                c = np.broadcast_to(c, (self.n,))
                taken = c if mask is None else mask & c
                skipped = ~c if mask is None else mask & ~c
                if taken.any():
                    self.block(then, taken)
                if otherwise and skipped.any():
                    self.block(otherwise, skipped)
            case Loop(var=var, start=start, stop=stop, body=body, step=step):
                self.loop(var, self.eval(start), self.eval(stop), body, step, mask)
            case Emit(stream=stream, values=values):
                self.streams[stream].append([self.lanes_of(self.eval(v), mask) for v in values])

    def loop(
        self,
        var: str,
        start: Any,
        stop: Any,
        body: tuple[Stmt, ...],
        step: int,
        mask: np.ndarray | None,
    ) -> None:
        if np.ndim(start) == 0 and np.ndim(stop) == 0 and mask is None:
            for k in range(int(start), int(stop), step):
                self.env[var] = np.int32(k)
                self.block(body, None)
            return
        k = np.array(np.broadcast_to(start, (self.n,)), dtype=np.int32)
        stop = np.broadcast_to(stop, (self.n,))
        outer = np.ones(self.n, dtype=bool) if mask is None else mask
        while True:
            active = outer & ((k < stop) if step > 0 else (k > stop))
            if not active.any():
                break
            self.env[var] = k
            self.block(body, active)
            k = k + np.int32(step)

    def results(self, kernel: Kernel) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for stream in kernel.streams:
            chunks = self.streams[stream.name]
            out[stream.name] = {
                name: np.concatenate([c[i] for c in chunks]).astype(NUMPY_DTYPES[t])
                if chunks
                else np.empty(0, NUMPY_DTYPES[t])
                for i, (name, t) in enumerate(stream.fields)
            }
        return out


def run_kernel(
    kernel: Kernel, args: Mapping[str, Any], lanes: int
) -> dict[str, dict[str, np.ndarray]]:
    """Run `kernel` over `lanes` lanes; arrays in `args` are updated in place.

    Returns the emitted streams: for each stream, its fields as arrays of equal length.
    Records appear in statement order, and within one statement in lane order.
    """
    run = _Run(kernel, args, lanes)
    with np.errstate(all="ignore"):  # IEEE results (inf, nan) are the semantics, not errors
        run.block(kernel.body, None)
    return run.results(kernel)
