"""The backend protocol: what every backend package provides.

Capabilities are class attributes that shared code reads instead of checking types.
Compiling and running are separate steps: `compile` turns a verified IR kernel into
something `run` can execute many times.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from portneuron.ir import Kernel


def dumping(stage: str) -> bool:
    """PORTNEURON_DUMP=ir,llvm,asm,cuda: print those stages of every compiled kernel to
    stderr."""
    return stage in os.environ.get("PORTNEURON_DUMP", "").split(",")


def profiling() -> bool:
    """PORTNEURON_PROFILE=1: every launched kernel (an epoch driver's phases) stays a
    function of its own, by its name, for a sampling profiler (perf/profile.py) to tell
    apart; a kernel compiled so is cached apart."""
    return os.environ.get("PORTNEURON_PROFILE", "") not in ("", "0")


class BackendUnavailable(RuntimeError):
    """The backend cannot run here; the message says why."""


class Backend:
    name: ClassVar[str] = ""
    #: "cpu" or "gpu": where the model's arrays live.
    device_kind: ClassVar[str] = "cpu"
    #: Lanes processed together; arrays are padded to a multiple of this.
    simd_width: ClassVar[int] = 1
    #: Byte alignment the backend wants for array starts.
    alignment: ClassVar[int] = 64

    #: Whether adds of several lanes to one element happen in lane order, so that a run
    #: gives the same bits every time (False: atomics, in the order the lanes arrive).
    ordered_sums: ClassVar[bool] = True
    #: Whether the kernels' math functions (exp, pow, ...) are the device's own library
    #: rather than the C library's, as NumPy's are: an ulp apart here and there.
    own_math: ClassVar[bool] = False
    #: Whether the simulation runs whole epochs in one call by default: the epoch driver
    #: written in IR (portneuron.sim.driver), compiled here and run through `bind`.
    compiled_epochs: ClassVar[bool] = False
    #: Whether `run_blocks` runs its ranges at once, on host threads.
    threaded: ClassVar[bool] = False
    #: Cells per block of a compiled epoch (portneuron.sim.epoch.BLOCK_WIDTH).
    epoch_width: int = 8
    #: What `emit` prints of a kernel (`portneuron compile --emit STAGE`), and whether it
    #: does so where the backend cannot run (source for a device this machine lacks).
    stages: ClassVar[tuple[str, ...]] = ()
    emits_anywhere: ClassVar[bool] = False

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(True, description) if this backend can run here, else (False, reason)."""
        raise NotImplementedError

    def emit(self, kernel: Kernel, stage: str) -> str:
        """Stage `stage` (one of `stages`) of a kernel, as text."""
        raise NotImplementedError

    def compile(self, kernel: Kernel, hot: bool = True) -> Any:
        """`hot`: the kernel runs every step; False for those that run once a simulation
        (INITIAL, tables), which a backend may compile for size rather than speed."""
        raise NotImplementedError

    def run(self, compiled: Any, args: Mapping[str, Any], lanes: int) -> dict[str, dict[str, Any]]:
        """Run a compiled kernel over `lanes` lanes; returns its emitted streams."""
        raise NotImplementedError

    def ready(self, compiled: Any) -> None:
        """Finish compiling now (a backend may compile a kernel when it first runs), so
        that what runs next is timed without it."""

    def run_blocks(self, compiled: Any, args: Mapping[str, Any], cuts: list[int]) -> None:
        """Run a kernel without streams over lanes cuts[0] .. cuts[-1] - 1, each range
        cuts[i] .. cuts[i+1] - 1 possibly at once with the others (on threads): its lanes
        must not touch one element except through AddTo. Here: all of them in one run."""
        if cuts[0] != 0:
            raise ValueError("run_blocks: lanes start at 0")
        self.run(compiled, args, cuts[-1])

    def bind(self, compiled: Any, args: Mapping[str, Any]) -> Bound:
        """`compiled` with arguments that stay the same from run to run (see Bound)."""
        return Bound(self, compiled, args)


class Bound:
    """A compiled kernel (without streams) with arguments bound for many runs, each run
    giving the values that change. Here the kernel runs on the host's arrays themselves;
    a device backend keeps the bound arrays in its memory from `load`, which takes the
    host's values, to `store`, which brings back what the kernel wrote, and brings back
    after a run only what `fetch` names."""

    def __init__(self, backend: Backend, compiled: Any, args: Mapping[str, Any]) -> None:
        self.backend, self.compiled, self.args = backend, compiled, dict(args)

    def load(self) -> None:
        """The bound arrays' host values onto the device."""

    def store(self) -> None:
        """What the kernel writes of the bound arrays, back into the host's."""

    def run(self, args: Mapping[str, Any], cuts: list[int], fetch: tuple[str, ...] = ()) -> None:
        """Run lanes cuts[0] .. cuts[-1] - 1 (as `Backend.run_blocks`) with the bound
        arguments and `args`; the arrays named in `fetch` are in their host arrays after."""
        self.backend.run_blocks(self.compiled, {**self.args, **args}, cuts)

    def fetch(self, names: tuple[str, ...]) -> None:
        """Bring arrays of the last run (bound or not) back into their host arrays."""
