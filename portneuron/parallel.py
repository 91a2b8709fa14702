"""The ranks of a run: one process, or several started by `mpiexec` (mpi4py, the `mpi` extra).

Ranks meet at three places, as CoreNEURON's do: the min-delay (the smallest over every
rank's NetCons, so that every rank's epochs end together), the spike exchange that ends
every epoch (an allgather of each rank's spike count, then an allgatherv of the (t, gid)
pairs), and the spikes gathered to rank 0, which alone writes out.dat. A run under mpiexec
with one rank is a run of one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from portneuron.errors import PortneuronError

#: What MPI launchers put in each rank's environment: the number of ranks (MPICH's Hydra,
#: Open MPI, PMIx, Slurm's srun).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's ranks; `comm` is mpi4py's COMM_WORLD, or None
    for a run of one process."""

    rank: int = 0
    size: int = 1
    comm: Any = None
    #: Each rank's measured throughput (operations a second) where ranks drive different
    #: backends (`--backend numpy,llvm`): the scheduler loads each in proportion. None:
    #: every rank alike.
    speeds: tuple[float, ...] | None = None

    def min(self, value: float) -> float:
        """The smallest of every rank's `value`."""
        if self.comm is None:
            return value
        from mpi4py import MPI

        return float(self.comm.allreduce(value, op=MPI.MIN))

    def allgather_spikes(self, t: np.ndarray, gid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's spikes (t [ms], gid), rank after rank, on every rank."""
        if self.comm is None:
            return t, gid
        from mpi4py import MPI

        counts = np.array(self.comm.allgather(len(t)), dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        all_t, all_gid = np.empty(int(counts.sum())), np.empty(int(counts.sum()), np.int64)
        self.comm.Allgatherv(
            np.ascontiguousarray(t, np.float64), [all_t, counts, offsets, MPI.DOUBLE]
        )
        self.comm.Allgatherv(
            np.ascontiguousarray(gid, np.int64), [all_gid, counts, offsets, MPI.INT64_T]
        )
        return all_t, all_gid

    def allgather_values(self, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Every rank's float64 `values` (rank i's has counts[i] of them), rank after rank,
        on every rank: gap junctions' sources each step."""
        if self.comm is None:
            return values
        from mpi4py import MPI

        out = np.empty(int(counts.sum()))
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        self.comm.Allgatherv(
            np.ascontiguousarray(values, np.float64), [out, counts, offsets, MPI.DOUBLE]
        )
        return out

    def gather(self, value: Any) -> list | None:
        """Every rank's `value`, in rank order, on rank 0; None on the others."""
        if self.comm is None:
            return [value]
        return self.comm.gather(value, root=0)

    def allgather(self, value: Any) -> list:
        """Every rank's `value`, in rank order, on every rank."""
        if self.comm is None:
            return [value]
        return self.comm.allgather(value)

    def sum(self, value: float) -> float:
        if self.comm is None:
            return value
        return float(self.comm.allreduce(value))

    def abort(self, code: int) -> None:
        """End every rank now (after this one has said why)."""
        if self.comm is not None:
            self.comm.Abort(code)


def world_size() -> int:
    """How many ranks a launcher started (1 without one), before MPI is touched."""
    return max((int(os.environ.get(v, "1") or 1) for v in SIZE_VARIABLES), default=1)


def world() -> Ranks:
    """This process's ranks: mpi4py's COMM_WORLD where a launcher started several, else one."""
    size = world_size()
    if size <= 1:
        return Ranks()
    try:
        from mpi4py import MPI
    except ImportError:
        raise PortneuronError(
            f"started by an MPI launcher with {size} ranks, but mpi4py is not installed: "
            f"pip install 'portneuron[mpi]'"
        ) from None
    comm = MPI.COMM_WORLD
    return Ranks(comm.Get_rank(), comm.Get_size(), comm)
