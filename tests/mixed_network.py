"""A network of very different cells, built by portneuron's native builder, for placement.

Gids are in population order, as NetPyNE, bmtk and hnn-core number them: 16 "pyramidal"
cells (gids 0-15: a soma and 40 dendrites of 8 segments, hh everywhere), then 112
"interneurons" (gids 16-127: a soma with hh and two one-segment passive dendrites). One step
of a pyramidal cell computes about 45 times an interneuron's, so a split by cell count (the
first half of the gids on rank 0) loads rank 0 far more than rank 1; the scheduler's
placement by cost does not.

Every cell excites the next one in gid order (the last the first), and a NetStim starts
the chain and drives every eighth cell.

Run under mpiexec, `python mixed_network.py {cost,count} TSTOP BACKEND[,BACKEND...]` builds
this rank's part (rank r driving the r-th backend, modulo the list: each loaded by its
measured speed), placed by the scheduler (cost) or by count, runs it and prints, on rank 0, one JSON
object: the spikes (sorted), each rank's cells and predicted load, and each rank's measured
work (its simulate time less its time in the spike exchange).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from portneuron import cost, scheduler
from portneuron.build.cell import Cell
from portneuron.build.network import Network

NPYRAMIDAL, NINTERNEURON = 16, 112
WEIGHT, DELAY = 0.02, 1.0  # uS, ms


def pyramidal() -> Cell:
    cell = Cell("pyramidal")
    soma = cell.section("soma", L=20, diam=20, Ra=100)
    dend = [cell.section("dend[0]", L=200, diam=2, Ra=100, nseg=8, parent=soma, x=1.0)]
    for i in range(1, 40):
        parent = dend[(i - 1) // 2]
        dend.append(cell.section(f"dend[{i}]", L=100, diam=1, Ra=100, nseg=8, parent=parent))
    for sec in (soma, *dend):
        cell.insert(sec, "hh", gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3)
    cell.point_process(soma, 0.5, "ExpSyn", tau=2.0, e=0.0)
    cell.spike_detector(soma, 0.5, -20.0)
    return cell


def interneuron() -> Cell:
    cell = Cell("interneuron")
    soma = cell.section("soma", L=15, diam=15, Ra=100)
    cell.insert(soma, "hh", gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3)
    for i in range(2):
        dend = cell.section(f"dend[{i}]", L=100, diam=1, Ra=100, parent=soma, x=1.0)
        cell.insert(dend, "pas", g=0.001, e=-65.0)
    cell.point_process(soma, 0.5, "ExpSyn", tau=2.0, e=0.0)
    cell.spike_detector(soma, 0.5, -20.0)
    return cell


def mixed_network() -> Network:
    net = Network(celsius=6.3, dt=0.025, v_init=-65.0)
    big, small = pyramidal(), interneuron()
    ncells = NPYRAMIDAL + NINTERNEURON
    for gid in range(ncells):
        net.add_cell(big if gid < NPYRAMIDAL else small, gid)
    for gid in range(ncells):
        net.connect((gid + 1) % ncells, 0, WEIGHT, DELAY, source_gid=gid)
    stim = net.artificial_cell("NetStim", gid=ncells, number=4, start=1.0, interval=10.0)
    for gid in range(0, ncells, 8):
        net.connect(gid, 0, WEIGHT, DELAY, source_stim=stim)
    return net


def by_count(net: Network, nranks: int) -> dict[int, int]:
    """Equal numbers of gids per rank in gid order (as Arbor splits by cell count)."""
    gids = sorted([gid for _, gid in net.cells] + [s.gid for s in net.stims if s.gid >= 0])
    return {gid: k * nranks // len(gids) for k, gid in enumerate(gids)}


def predicted(net: Network, where: dict[int, int], nranks: int) -> np.ndarray:
    """Each rank's summed cost (portneuron.cost) under placement `where`."""
    ops = {id(c): cost.cell_ops(c.compile(), net.library) for c, _ in net.cells}
    costs = [ops[id(cell)] for cell, _ in net.cells]
    rank = np.array([where[gid] for _, gid in net.cells])
    return scheduler.loads(costs, rank, nranks)


def backend_named(name: str):
    """A backend by name; "cuda-host" is the cuda backend on its CPU stand-in runtime
    (tests/cuda_host.py: the generated CUDA C built by g++, a thread a CUDA thread)."""
    if name != "cuda-host":
        from portneuron.backends import load_backend

        return load_backend(name)
    import tempfile

    from cuda_host import HostRuntime
    from portneuron.backends.cuda import CudaBackend

    return CudaBackend(HostRuntime(Path(tempfile.mkdtemp())), epoch_width=8, epoch_threads=64)


def main() -> None:
    import dataclasses

    from portneuron.cost import throughput
    from portneuron.parallel import world
    from portneuron.sim.simulation import Simulation

    policy, tstop, names = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
    ranks = world()
    backend = backend_named(names[ranks.rank % len(names)])
    if len(set(names)) > 1:  # devices in one run: each rank loaded by its backend's speed
        speeds = ranks.allgather(throughput(backend, 1))
        ranks = dataclasses.replace(ranks, speeds=tuple(speeds))
    net = mixed_network()
    where = (
        net.placement(ranks.size, speeds=ranks.speeds)
        if policy == "cost"
        else by_count(net, ranks.size)
    )
    if policy == "cost":
        model = net.build(ranks=ranks)  # the scheduler's placement, as `where`
    else:
        model = net.build(local={gid for gid, r in where.items() if r == ranks.rank})
    sim = Simulation(model, backend, dt=0.025, threads=1, ranks=ranks)
    sim.epoch_program()
    sim.finitialize(-65.0)
    start, exchanged = time.perf_counter(), sim.exchange_s  # (finitialize's exchange waits)
    result = sim.run(tstop, initialize=False)
    simulate_s = time.perf_counter() - start
    busy = ranks.gather(simulate_s - (sim.exchange_s - exchanged))
    spikes = ranks.gather(result.spikes)
    compartments = int(ranks.sum(model.compartments))
    if ranks.rank == 0:
        loads = predicted(net, where, ranks.size)
        cells = np.bincount([where[gid] for _, gid in net.cells], minlength=ranks.size)
        print(json.dumps({
            "policy": policy, "ranks": ranks.size, "cells": cells.tolist(),
            "predicted_load": loads.tolist(), "predicted_imbalance": scheduler.imbalance(loads),
            "rank_busy_s": busy, "imbalance": scheduler.imbalance(busy),
            "simulate_s": simulate_s, "compartments": compartments,
            "spikes": sorted(s for part in spikes for s in part),
        }))  # fmt: skip


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # end every rank, not only this one
        import traceback

        from portneuron.parallel import world

        traceback.print_exc()
        world().abort(1)
        raise
