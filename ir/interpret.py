"""The reference semantics of the IR: evaluate a kernel with NumPy, vectorised over lanes.

Every lane runs the same statements; control flow that differs between lanes is executed
under a boolean mask (both sides of an `If` run, each for its own lanes), so the result is
that of running the lanes one after another. Values are NumPy scalars (uniform across lanes)
or arrays with one element per lane. Arrays passed in are updated in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .libm import BINARY, INTRINSICS
from .nodes import (
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
    Launch,
    Load,
    Loop,
    Records,
    Select,
    Serial,
    Stmt,
    Store,
    Unary,
    Var,
    View,
    While,
)
from .types import NUMPY_DTYPES


class _Run:
    """The state of one kernel execution: arrays, scalar environment, mask, streams."""

    def __init__(self, kernel: Kernel, args: Mapping[str, Any], lanes: int) -> None:
        self.n = lanes
        self.lane = np.arange(lanes, dtype=np.int32)
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
        self.tag = self.lane  # what a record is ordered by (a launched kernel: its slot)

    def lanes_of(self, value: Any, mask: np.ndarray | None) -> np.ndarray:
        """`value` as one element per active lane."""
        if np.ndim(value) == 0:
            value = np.full(self.n, value)
        return value if mask is None else value[mask]

    def results(self, kernel: Kernel) -> dict[str, dict[str, np.ndarray]]:
        """Each stream's records lane by lane (within a lane, in statement order)."""
        out = {}
        for stream in kernel.streams:
            chunks = self.streams[stream.name]
            if not chunks:
                out[stream.name] = {n: np.empty(0, NUMPY_DTYPES[t]) for n, t in stream.fields}
                continue
            order = np.argsort(np.concatenate([c[0] for c in chunks]), kind="stable")
            out[stream.name] = {
                name: np.concatenate([c[i + 1] for c in chunks]).astype(NUMPY_DTYPES[t])[order]
                for i, (name, t) in enumerate(stream.fields)
            }
        return out


# Kernels are compiled once into nested closures: the tree is walked when compiling, not at
# every execution. An expression becomes f(run) -> value; a statement f(run, mask).


def _expr(e: Expr):
    match e:
        case Const(value=value, dtype=dtype):
            constant = NUMPY_DTYPES[dtype](value)
            return lambda r: constant
        case Var(name=name):
            return lambda r: r.env[name]
        case Lane():
            return lambda r: r.lane
        case Load(array=array, index=index):
            idx = _expr(index)

            def load(r):
                i = idx(r)
                data = r.arrays[array]
                if r.mask is None or np.ndim(i) == 0:
                    return data[i]
                # Inactive lanes may hold indices out of range (a finished loop): they read
                # a clipped element, and whatever they read is never used.
                return data.take(i, mode="clip") if len(data) else np.zeros(r.n, data.dtype)

            return load
        case Unary(op="neg", operand=operand):
            f = _expr(operand)
            return lambda r: np.negative(f(r))
        case Unary(operand=operand):
            f = _expr(operand)
            return lambda r: np.logical_not(f(r))
        case Binary(op=op, lhs=lhs, rhs=rhs):
            fn, a, b = BINARY[op], _expr(lhs), _expr(rhs)
            return lambda r: fn(a(r), b(r))
        case Call(fn=fn, args=args):
            intrinsic, fs = INTRINSICS[fn], [_expr(a) for a in args]
            return lambda r: intrinsic(*(f(r) for f in fs))
        case Select(cond=cond, then=then, otherwise=otherwise):
            c, t, o = _expr(cond), _expr(then), _expr(otherwise)
            return lambda r: np.where(c(r), t(r), o(r))
        case Cast(dtype=DType.I32, operand=operand):
            f = _expr(operand)
            return lambda r: np.trunc(f(r)).astype(np.int32)
        case Cast(dtype=dtype, operand=operand):
            f, target = _expr(operand), NUMPY_DTYPES[dtype]
            return lambda r: np.asarray(f(r)).astype(target)
    raise TypeError(f"not an IR expression: {e!r}")


def _block(body: tuple[Stmt, ...]):
    stmts = [_stmt(s) for s in body]

    def block(r, mask):
        outer, r.mask = r.mask, mask
        for stmt in stmts:
            stmt(r, mask)
        r.mask = outer

    return block


def _stmt(s: Stmt):
    match s:
        case Assign(name=name, value=value):
            f = _expr(value)

            def assign(r, mask):
                new = f(r)
                if mask is not None and name in r.env:
                    new = np.where(mask, new, r.env[name])
                r.env[name] = new

            return assign
        case Store(array=array, index=index, value=value):
            idx, val = _expr(index), _expr(value)

            def store(r, mask):
                r.arrays[array][r.lanes_of(idx(r), mask)] = r.lanes_of(val(r), mask)

            return store
        case AddTo(array=array, index=index, value=value):
            idx, val = _expr(index), _expr(value)

            def add_to(r, mask):
                np.add.at(r.arrays[array], r.lanes_of(idx(r), mask), r.lanes_of(val(r), mask))

            return add_to
        case If(cond=cond, then=then, otherwise=otherwise):
            c, then_block = _expr(cond), _block(then)
            else_block = _block(otherwise) if otherwise else None

            def if_(r, mask):
                taken = c(r)
                if np.ndim(taken) == 0 and mask is None:  # uniform branch: run one side only
                    if taken:
                        then_block(r, None)
                    elif else_block is not None:
                        else_block(r, None)
                    return
                taken = np.broadcast_to(taken, (r.n,))
                on = taken if mask is None else mask & taken
                if on.any():
                    then_block(r, on)
                if else_block is not None:
                    off = ~taken if mask is None else mask & ~taken
                    if off.any():
                        else_block(r, off)

            return if_
        case Loop(var=var, start=start, stop=stop, body=body, step=step):
            lo, hi, inner = _expr(start), _expr(stop), _block(body)

            def loop(r, mask):
                first, last = lo(r), hi(r)
                if np.ndim(first) == 0 and np.ndim(last) == 0 and mask is None:
                    for k in range(int(first), int(last), step):
                        r.env[var] = np.int32(k)
                        inner(r, None)
                    return
                k = np.array(np.broadcast_to(first, (r.n,)), dtype=np.int32)
                last = np.broadcast_to(last, (r.n,))
                outer = np.ones(r.n, dtype=bool) if mask is None else mask
                while True:
                    active = outer & ((k < last) if step > 0 else (k > last))
                    if not active.any():
                        break
                    r.env[var] = k
                    inner(r, None if mask is None and active.all() else active)
                    k = k + np.int32(step)

            return loop
        case While(cond=cond, body=body):
            test, inner = _expr(cond), _block(body)

            def while_(r, mask):
                active = mask  # None: every lane, while the test is uniform
                while True:
                    taken = test(r)
                    if active is None and np.ndim(taken) == 0:
                        if not taken:
                            break
                        inner(r, None)
                        continue
                    active = np.broadcast_to(taken, (r.n,)) & (True if active is None else active)
                    if not active.any():
                        break
                    inner(r, None if mask is None and active.all() else active)

            return while_
        case Serial(body=body):
            return _block(body)  # one thread a lane here: the body as it is
        case Launch():
            return _launch(s)
        case Emit(stream=stream, values=values):
            fs = [_expr(v) for v in values]

            def emit(r, mask):
                lanes = r.tag if mask is None else r.tag[mask]
                r.streams[stream].append([lanes, *(r.lanes_of(f(r), mask) for f in fs)])

            return emit
    raise TypeError(f"not an IR statement: {s!r}")


def _launch(s: Launch):
    """Every active caller lane's callee lanes, in one run of the callee over their slots
    (caller lane by caller lane, each's lanes in order), which the lanes' independence
    makes the same as running them one after another. A View is the caller's array with
    each slot's offset added to the callee's indices; records are the caller lane's, in
    slot order, or go to the caller's arrays (Records) in that order."""
    callee = s.kernel
    views = {name: v for name, v in s.bind if isinstance(v, View)}
    records = {name: v for name, v in s.bind if isinstance(v, Records)}
    scalars = {name: _expr(v) for name, v in s.bind if not isinstance(v, (View, Records))}
    offsets = {name: _expr(v.offset) for name, v in views.items()}
    places = {
        name: [_expr(view.offset) for view in (*v.fields, v.count)] for name, v in records.items()
    }
    body = _block(_viewed(callee.body, set(views)))
    lo, hi = _expr(s.lo), _expr(s.hi)

    def launch(r, mask):
        first = np.broadcast_to(lo(r), (r.n,)).astype(np.int64)
        count = np.maximum(np.broadcast_to(hi(r), (r.n,)).astype(np.int64) - first, 0)
        if mask is not None:
            count = np.where(mask, count, 0)
        caller = np.repeat(np.arange(r.n), count)  # each slot's caller lane (position)
        if not len(caller):
            return
        starts = np.cumsum(count) - count
        lane = first[caller] + np.arange(len(caller)) - starts[caller]
        sub = _Run.__new__(_Run)
        sub.n, sub.lane, sub.mask = len(caller), lane.astype(np.int32), None
        sub.tag = np.arange(len(caller))
        sub.arrays = {name: r.arrays[v.array] for name, v in views.items()}
        sub.env = {}
        for name, f in scalars.items():
            value = f(r)
            sub.env[name] = value[caller] if np.ndim(value) else value
        for name, f in offsets.items():
            value = f(r)
            sub.env[_VIEW + name] = value[caller] if np.ndim(value) else value
        sub.streams = {stream.name: [] for stream in callee.streams}
        body(sub, None)
        for stream in callee.streams:
            chunks = sub.streams[stream.name]
            if chunks:
                slots = np.concatenate([c[0] for c in chunks])
                order = np.argsort(slots, kind="stable")
                fields = [
                    np.concatenate([c[i] for c in chunks])[order] for i in range(1, len(chunks[0]))
                ]
                if stream.name in records:
                    at = [np.broadcast_to(f(r), (r.n,)) for f in places[stream.name]]
                    _append(r, records[stream.name], at, caller[slots[order]], fields)
                else:
                    r.streams[stream.name].append([r.tag[caller[slots[order]]], *fields])

    return launch


def _append(r, records: Records, at: list, caller: np.ndarray, fields: list) -> None:
    """Records in order into the caller's arrays: each at its caller's count, which moves
    on (`at`: each field's and the count's offset per caller lane)."""
    count = r.arrays[records.count.array]
    key = at[-1][caller].astype(np.int64)  # each record's count element
    by_key = np.argsort(key, kind="stable")
    ranked = key[by_key]
    rank = np.empty(len(key), dtype=np.int64)
    rank[by_key] = np.arange(len(key)) - np.searchsorted(ranked, ranked, side="left")
    place = count[key] + rank
    for view, offset, values in zip(records.fields, at, fields):
        r.arrays[view.array][offset[caller] + place] = values
    np.add.at(count, key, 1)


#: A view's offset, as the launched kernel's run sees it (no IR name has this prefix).
_VIEW = "@view."


def _viewed(body: tuple[Stmt, ...], views: set[str]) -> tuple[Stmt, ...]:
    """`body` with every index into a viewed array moved by the view's offset."""

    def at(array: str, index: Expr) -> Expr:
        if array not in views:
            return index
        return Binary("add", Var(_VIEW + array, DType.I32), index)

    def expr(e: Expr) -> Expr:
        match e:
            case Load(array=array, index=index, dtype=dtype):
                return Load(array, at(array, expr(index)), dtype)
            case Unary(op=op, operand=x):
                return Unary(op, expr(x))
            case Cast(dtype=dtype, operand=x):
                return Cast(dtype, expr(x))
            case Binary(op=op, lhs=x, rhs=y):
                return Binary(op, expr(x), expr(y))
            case Select(cond=c, then=t, otherwise=o):
                return Select(expr(c), expr(t), expr(o))
            case Call(fn=fn, args=args):
                return Call(fn, tuple(expr(a) for a in args))
            case Const() | Var() | Lane():
                return e
        raise TypeError(f"not an IR expression: {e!r}")

    def stmt(s: Stmt) -> Stmt:
        match s:
            case Assign(name=name, value=value):
                return Assign(name, expr(value))
            case Store(array=array, index=index, value=value):
                return Store(array, at(array, expr(index)), expr(value))
            case AddTo(array=array, index=index, value=value):
                return AddTo(array, at(array, expr(index)), expr(value))
            case If(cond=cond, then=then, otherwise=otherwise):
                return If(expr(cond), block(then), block(otherwise))
            case Loop(start=start, stop=stop, body=inner):
                return dataclasses.replace(s, start=expr(start), stop=expr(stop), body=block(inner))
            case While(cond=cond, body=inner):
                return While(expr(cond), block(inner))
            case Serial(body=inner):
                return Serial(block(inner))
            case Emit(stream=stream, values=values):
                return Emit(stream, tuple(expr(v) for v in values))
        raise TypeError(f"not an IR statement in a launched kernel: {s!r}")

    def block(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        return tuple(stmt(x) for x in stmts)

    return block(body)


class Program:
    """A kernel compiled for the interpreter: run it many times with different arguments."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.body = _block(kernel.body)

    def run(self, args: Mapping[str, Any], lanes: int) -> dict[str, dict[str, np.ndarray]]:
        for p in self.kernel.params:
            if p.regions is not None:  # what the lanes' scratch holds is not theirs
                args[p.name].fill(np.nan if p.dtype == DType.F64 else -1)
        run = _Run(self.kernel, args, lanes)
        with np.errstate(all="ignore"):  # IEEE results (inf, nan) are the semantics, not errors
            self.body(run, None)
        return run.results(self.kernel)


def run_kernel(
    kernel: Kernel, args: Mapping[str, Any], lanes: int
) -> dict[str, dict[str, np.ndarray]]:
    """Run `kernel` over `lanes` lanes; arrays in `args` are updated in place.

    Returns the emitted streams: for each stream, its fields as arrays of equal length.
    Records appear lane by lane, and within a lane in the order they were emitted (the order
    of running the lanes one after another, which every backend reproduces).
    """
    return Program(kernel).run(args, lanes)
