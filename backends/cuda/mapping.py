"""How a kernel's lanes become CUDA threads, and what its memory accesses need.

A kernel runs one thread per lane (one mechanism instance, one event, one cell), except
where its parallel loops can be spread over threads: then each lane gets one thread per
iteration, as for the interleaved axial and Hines kernels (portneuron.sim.cable), whose
lane is a block of `width` cells and whose parallel loops go over the block's cells, so
that the Hines solve runs one thread per cell, as CoreNEURON's cell_permute=1 does.

A kernel is split that way when

- its outermost parallel loops (those not inside another parallel loop) all have constant
  bounds with one trip count `w` >= 2 (at most `MAX_THREADS_PER_LANE`);
- nothing outside them writes memory or emits (every thread of the lane runs the code
  outside the parallel loops, redundantly: the uniform part of the lane, such as a block's
  base and row count, and the sequential loops around the parallel ones);
- their loop variables are not read outside them;
- it has no while loop.

Each thread runs the lane's statements with each outermost parallel loop reduced to its
own iteration, followed by a barrier of the lane's `w` threads, so that what one
parallel loop writes is seen by every thread in the next, as running the iterations one
after another does. Where the code outside the parallel loops reads an array that the
kernel writes, a barrier also comes before each parallel loop, so that no thread writes
before all have read. The lane's threads are adjacent: with `w` dividing 32 they lie
within one warp and the barrier is `__syncwarp` on their bits; otherwise one CUDA block
holds exactly one lane and the barrier is `__syncthreads`.

Any other kernel runs its parallel loops sequentially inside one thread per lane, which the
IR allows ("run one after another, they give the same result"); `ThreadMapping.reason`
says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from portneuron.ir import (
    AddTo,
    Assign,
    Const,
    Emit,
    Expr,
    Kernel,
    Lane,
    Load,
    Loop,
    Stmt,
    Store,
    Var,
    While,
    walk,
)
from portneuron.ir.walk import own_expressions, subexpressions, written

#: CUDA's limit on threads per block, so the most threads one lane may have.
MAX_THREADS_PER_LANE = 1024
#: Threads per CUDA block for kernels whose lanes fit in a warp (a multiple of 32).
BLOCK_THREADS = 128


class UnsupportedKernel(NotImplementedError):
    """A kernel the cuda backend cannot generate code for; the message names it."""


@dataclass(frozen=True)
class ThreadMapping:
    """Threads per lane, and the barrier between a split kernel's parallel loops."""

    threads_per_lane: int = 1
    #: "", "__syncwarp" (a lane's threads are within one warp) or "__syncthreads".
    barrier: str = ""
    #: Whether a barrier also comes before each parallel loop (see the module docstring).
    barrier_before: bool = False
    #: Why the kernel's parallel loops, if it has any, run inside one thread.
    reason: str = ""

    @property
    def block(self) -> int:
        """Threads per CUDA block: whole lanes, kept within warps where they fit one."""
        if self.barrier == "__syncthreads":
            return self.threads_per_lane
        return BLOCK_THREADS

    def grid(self, lanes: int) -> int:
        """CUDA blocks for `lanes` lanes."""
        return -(-lanes * self.threads_per_lane // self.block)


def written_arrays(kernel: Kernel) -> set[str]:
    """The arrays the kernel stores or adds to."""
    return written(kernel.body)


def lane_private_arrays(kernel: Kernel) -> set[str]:
    """Arrays that every lane writes only at its own element (`array[lane]`, or at a
    variable assigned `lane` once, at the top of the kernel): no two lanes write one
    element, so adding to them needs no atomics."""
    assigned: dict[str, int] = {}

    def count(body: tuple[Stmt, ...]) -> None:
        for s in body:
            match s:
                case Assign(name=name):
                    assigned[name] = assigned.get(name, 0) + 1
                case Loop(var=var):
                    assigned[var] = assigned.get(var, 0) + 2  # never the lane's own
            for inner in walk.nested(s):
                count(inner)

    count(kernel.body)
    own: set[str] = set()
    for s in kernel.body:
        if isinstance(s, Assign) and assigned[s.name] == 1 and _is_own(s.value, own):
            own.add(s.name)
    private: dict[str, bool] = {}

    def block(body: tuple[Stmt, ...]) -> None:
        for s in body:
            match s:
                case Store(array=array, index=index) | AddTo(array=array, index=index):
                    private[array] = private.get(array, True) and _is_own(index, own)
            for inner in walk.nested(s):
                block(inner)

    block(kernel.body)
    return {array for array, ok in private.items() if ok}


def _is_own(index: Expr, own: set[str]) -> bool:
    return isinstance(index, Lane) or (isinstance(index, Var) and index.name in own)


def emits_per_lane(kernel: Kernel) -> dict[str, int]:
    """The Emit statements of each stream; each runs at most once per lane, so this
    bounds the records a lane writes. An Emit inside a loop is not supported."""
    counts = walk.emits_per_lane(kernel)
    for stream, n in counts.items():
        if n is None:
            raise UnsupportedKernel(
                f"kernel {kernel.name!r}: emit to {stream!r} inside a loop is not supported "
                "by the cuda backend (records per lane must be bounded)"
            )
    return counts


def outer_parallel_loops(body: tuple[Stmt, ...]) -> list[Loop]:
    """The parallel loops not inside another parallel loop."""
    out: list[Loop] = []
    for s in body:
        if isinstance(s, Loop) and s.parallel:
            out.append(s)
            continue
        for inner in walk.nested(s):
            out.extend(outer_parallel_loops(inner))
    return out


def _outside(body: tuple[Stmt, ...]):
    """The statements outside every parallel loop (parallel loops themselves excluded)."""
    for s in body:
        if isinstance(s, Loop) and s.parallel:
            continue
        yield s
        for inner in walk.nested(s):
            yield from _outside(inner)


def thread_mapping(kernel: Kernel, warp: int = 32) -> ThreadMapping:
    """One thread per lane, or one per lane and parallel-loop iteration (module docstring);
    `warp`: the threads that can wait for some of their own alone (1: none can, as in
    OpenCL, where a split lane is a block of its own)."""
    loops = outer_parallel_loops(kernel.body)
    if not loops:
        return ThreadMapping()
    trips = set()
    for loop in loops:
        if not (isinstance(loop.start, Const) and isinstance(loop.stop, Const)):
            return ThreadMapping(reason=f"parallel loop {loop.var!r} has bounds that vary")
        trips.add(int(loop.stop.value) - int(loop.start.value))
    if len(trips) != 1:
        return ThreadMapping(reason="the parallel loops have different trip counts")
    (width,) = trips
    if width == 1:  # one iteration: the lane's thread is the iteration's
        return ThreadMapping()
    if not 2 <= width <= MAX_THREADS_PER_LANE:
        return ThreadMapping(reason=f"the parallel loops have {width} iterations")
    if any(isinstance(s, While) for s in walk.statements(kernel.body)):
        return ThreadMapping(reason="a while loop: its iterations depend on each other")
    outside = list(_outside(kernel.body))
    if any(isinstance(s, (Store, AddTo, Emit)) for s in outside):
        return ThreadMapping(reason="a statement outside the parallel loops writes memory")
    used = [e for s in outside for x in own_expressions(s) for e in subexpressions(x)]
    if {e.name for e in used if isinstance(e, Var)} & {loop.var for loop in loops}:
        return ThreadMapping(reason="a parallel loop's variable is read outside the loop")
    loaded = {e.array for e in used if isinstance(e, Load)}
    return ThreadMapping(
        threads_per_lane=width,
        barrier="__syncwarp" if warp % width == 0 else "__syncthreads",
        barrier_before=bool(loaded & written_arrays(kernel)),
    )
