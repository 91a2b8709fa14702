"""The simulation loop: NEURON's staggered fixed step, events, spikes, in min-delay epochs.

One step from t to t + dt, as NEURON's fadvance does it:

1. threshold check on v(t), then WATCH conditions; deliver events due by t + dt/2;
   t += dt/2;
2. currents at the old v (clear rhs and d, BEFORE BREAKPOINT blocks, ion currents from
   zero, every mechanism's current kernel in model order, capacitance, axial terms), Hines
   solve, v += dv;
3. t += dt/2; every mechanism's state kernel at the new v; AFTER SOLVE blocks; recorded
   values sampled (where NEURON's Vector.record samples); deliver events due by t.

finitialize runs BEFORE INITIAL blocks, the ions' and mechanisms' INITIAL, AFTER INITIAL
blocks, NET_RECEIVE INITIAL, the events due at 0 and the currents, in that order.

The loop runs in epochs of min-delay length: every NetCon delay is at least the min-delay,
so the spikes of an epoch cannot affect it, and they are exchanged (turned into NetCon events)
when it ends. This is where spikes will cross ranks; it is also what lets a compiled backend
run a whole epoch without coming back to Python.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from portneuron import units
from portneuron.arrays import distinct
from portneuron.backends.base import Backend
from portneuron.errors import PortneuronError, SimulationError
from portneuron.ir import F32, F64, Kernel
from portneuron.memory import forget, give_back, scratch
from portneuron.model import Model
from portneuron.parallel import Ranks

from . import cable, diffusion
from .binding import BoundMechanism, place_array
from .events import EventQueue
from .plan import memory_key, probe_groups
from .play import Player
from .watch import Watches

#: Steps per epoch at most, where the min-delay allows more (a model without NetCons has no
#: min-delay): bounds what a compiled epoch holds for one call (recorded voltages, spikes)
#: and how long a call runs, the same on every rank (`longest_epoch`): MAX_EPOCH_STEPS,
#: or for a small model more, up to EPOCH_NODE_STEPS node-steps and EPOCH_SPIKES spike
#: places a call and LONGEST_EPOCH steps (a single cell: 40 calls a second simulated
#: took 18 ms of Python, 3 take 1).
MAX_EPOCH_STEPS = 1024
LONGEST_EPOCH = 16384
EPOCH_NODE_STEPS = 1 << 24
EPOCH_SPIKES = 1 << 22


@dataclass
class Result:
    spikes: list[tuple[float, int]]  # (t [ms], gid), sorted by time then gid
    t: np.ndarray  # recording times [ms]
    v: np.ndarray  # recorded voltages [mV], one column per recorded node
    steps: int
    values: np.ndarray | None = None  # recorded probes, one column per probe


#: The recorded rows one compiled epoch call holds at most [bytes] (where they go to a
#: sink after every call, a report of a million compartments stays in this much memory
#: however long an epoch is).
RECORD_BUFFER = 16 * 2**20


def record_steps(nrecord: int, every: int, size: int = 8) -> int:
    """Steps of a call whose rows (one every `every` steps, `nrecord` values of `size`
    bytes each) fit in RECORD_BUFFER."""
    return max(1, RECORD_BUFFER // (size * max(nrecord, 1))) * every


#: Why a run with probes goes step by step where the model's compiled epochs do not.
PROBED = "a probe is of no array the compiled epochs lay out: probes are sampled step by step"


class _Probes:
    """The values of `probes` ((array, index) pairs) as one row, an array at a time."""

    def __init__(self, probes: Sequence[tuple[np.ndarray, int]]) -> None:
        self.n, self.groups = len(probes), probe_groups(probes)

    def __call__(self) -> np.ndarray:
        row = np.empty(self.n)
        for array, index, columns in self.groups:
            row[columns] = array[index]
        return row


class Simulation:
    """Runs a Model on a backend."""

    def __init__(
        self,
        model: Model,
        backend: Backend,
        dt: float = 0.025,
        threads: int | None = None,
        compiled_epochs: bool | str = True,
        ranks: Ranks | None = None,
        max_epoch: float | None = None,
        fast_imem: bool = False,
    ) -> None:
        """`ranks`: the run's ranks (portneuron.parallel), `model` being this rank's part.
        `fast_imem`: every step computes each node's membrane current, NEURON's
        i_membrane_ [nA] (cvode.use_fast_imem(1)), into `i_membrane`.
        `compiled_epochs`: whole epochs in one backend call where the backend and the model
        allow it; "ir": through the epoch driver written in IR (portneuron.sim.driver), on
        any backend (the numpy backend's interpreter included). `max_epoch` [ms]: the
        longest epoch (between spike exchanges), where shorter than the min-delay
        (CoreNEURON's --mindelay)."""
        if not dt > 0:
            raise PortneuronError(f"dt must be positive, not {dt}")
        if threads is not None and threads < 1:
            raise PortneuronError(f"threads must be at least 1, not {threads}")
        if max_epoch is not None and not max_epoch > 0:
            raise PortneuronError(f"max_epoch must be positive, not {max_epoch}")
        self.model, self.backend, self.dt = model, backend, dt
        self.max_epoch = max_epoch
        self.ranks = ranks or Ranks()
        #: Seconds in the spike exchange (waiting for the other ranks, and the transfer):
        #: what is left of a run's time is this rank's own work.
        self.exchange_s = 0.0
        self.threads = threads
        #: Whole epochs in one backend call where the backend and the model allow it;
        #: `stepwise_reason` says why not otherwise.
        self.ir_driver = compiled_epochs == "ir"
        self.compiled_epochs = self.ir_driver or (compiled_epochs and backend.compiled_epochs)
        self.stepwise_reason = ""
        if not (self.ir_driver or backend.compiled_epochs):
            self.stepwise_reason = f"the {backend.name} backend runs step by step"
        elif not compiled_epochs:
            self.stepwise_reason = "compiled epochs are switched off"
        self.threads_used = 1
        self.layout = self._layout()
        nodes = model.nodes
        n = nodes.count
        size = self.layout.size if self.layout is not None else n
        self.rhs, self.d = scratch(size)[:n], scratch(size)[:n]  # the matrix
        self.node_arrays = {
            "node.v": nodes.v,
            "node.area": nodes.area,
            "node.diam": nodes.diam,
            "node.rhs": self.rhs,
            "node.d": self.d,
        }
        self.fast_imem = fast_imem
        #: Each node's i_membrane_ [nA] after each step (with `fast_imem`; else empty).
        self.i_membrane = np.zeros(0)
        if fast_imem:  # its sums (portneuron.sim.cable): sav_rhs ends as i_membrane_
            self.i_membrane = scratch(size)[:n]
            sums = (self.i_membrane, scratch(size)[:n])
            self.node_arrays.update(zip(cable.FAST_IMEM, sums))
        self.cable_args = {
            **self.node_arrays,
            "node.a": nodes.a,
            "node.b": nodes.b,
            "node.parent": nodes.parent_index,
            "cell.first": nodes.first,
            "factor": 2.0 if model.secondorder == 2 else 1.0,
            "cj": (2.0 if model.secondorder == 2 else 1.0) / dt,
        }
        self.ir: dict[str, Kernel] = {}  # the engine's own kernels, by name, as IR
        step = [cable.clear_matrix(fast_imem), cable.axial(), cable.hines()]
        step.append(cable.update_voltage(fast_imem))
        if fast_imem:
            step += [cable.membrane_sums(), cable.membrane_current_init()]
        self.kernels = {k.name: self._compile(k) for k in step}
        self.mechanisms = [
            BoundMechanism(i, m, model, self.node_arrays, backend)
            for i, m in enumerate(model.mechanisms)
        ]
        for bound in self.mechanisms:
            bound.bind_pointers(model, self.node_arrays)
            bound.bind_vectors()
        self._bind_capacitance()
        self._bind_diffusion()
        self._bind_ions()
        self._bind_netcons()
        self._bind_presyns()
        self.transfers = self._bind_transfers()
        #: Whether this rank copies gap junction values each step (its targets', or its
        #: sources' for another rank's).
        self.coupled = bool(self.transfers) or self._exchanged is not None
        #: Whether junction values cross ranks each step (a compiled epoch is then a step
        #: a call, the host copying between them).
        self.crosses_ranks = self._exchanged is not None
        self._laid_out_transfers: tuple | None = None  # the copies, where a program runs
        self.players = [
            Player(p, model.mechanisms[p.target_set].data[p.variable]) for p in model.vecplay
        ]
        self.queue = EventQueue()
        self.watches = Watches(self.mechanisms)
        self.t = 0.0
        self.steps_done = 0  # steps since finitialize
        self.spikes: list[tuple[float, int]] = []
        self._outbox: list[tuple[float, int]] = []  # (t, presyn) of this epoch's spikes
        self._program = None  # the compiled epoch, made on first use
        self._programs: dict[tuple, object] = {}  # by the arrays they record besides v
        self._program_copies: list = []
        self._record_hook: Callable[[], None] | None = None
        self._events = None  # its event buffers
        self._clock = np.zeros(0)

    # ------------------------------------------------------------------ setup
    def _layout(self):
        """Where compiled epochs may run: the cells' interleaved layout (portneuron.sim.epoch),
        with room for its padding after the model's node arrays, so that a run lays them out
        in place."""
        if not self.compiled_epochs:
            return None
        from . import epoch

        try:
            epoch.check(self.model)
        except epoch.Unsupported:
            return None  # the plan says why
        layout = epoch.layout(self.model, epoch.block_width(self.model, self.backend))
        epoch.pad_nodes(self.model, layout)
        give_back()  # the layout's temporaries and the node arrays before their padding
        return layout

    def _compile(self, kernel: Kernel):
        self.ir[kernel.name] = kernel
        return self.backend.compile(kernel)

    def _bind_capacitance(self) -> None:
        self.capacitance, self.capacitance_sets = [], []
        for bound in self.mechanisms:
            if bound.set.name == "capacitance":
                self.capacitance_sets.append(bound.index)
                self.capacitance.append(
                    {
                        "node_index": bound.set.node_index,
                        "mech.cm": bound.set.data["cm"],
                        "node.d": self.d,
                        "cj": self.cable_args["cj"],
                    }
                )
        self.kernels["capacitance"] = self._compile(cable.capacitance())

    def _bind_diffusion(self) -> None:
        """Each LONGITUDINAL_DIFFUSION step's arguments (portneuron.sim.diffusion): the
        state's array and each instance's place in it, with its mechanism's coupling."""
        self.diffusion: list[tuple[BoundMechanism, str, dict]] = []
        for bound in self.mechanisms:
            mset = bound.set
            if not mset.mechanism.diffusion or not mset.count:
                continue
            coupling = diffusion.neighbours(self.model, mset)
            order = coupling["diffusion.instance"].astype(np.int64)
            work = {f"diffusion.{n}": np.zeros(len(order)) for n in ("a", "b", "d", "rhs")}
            for step in mset.mechanism.diffusion:
                if step.ion:
                    state = self.model.ion(step.ion).data[step.state]
                    slot = mset.ion_index[step.ion][order]
                else:
                    state = bound.args[f"mech.{step.state}"]
                    slot = order * (len(state) // mset.count) + step.index
                args = {**coupling, **work, "dt": self.dt}
                args["diffusion.dc"] = bound.args["diffusion.dc"]
                args["diffusion.vol"] = bound.args["diffusion.vol"]
                args["diffusion.state"], args["diffusion.slot"] = state, slot.astype(np.int32)
                self.diffusion.append((bound, step.kernel, args))
        if self.diffusion:
            self.kernels["diffusion"] = self._compile(diffusion.solve())

    def _diffuse(self) -> None:
        """NEURON's long_difus_solve after the states: each step's coefficients, then its
        solve along every cell."""
        for bound, kernel, args in self.diffusion:
            bound.run(kernel, self.t, self.dt)
            self.backend.run(self.kernels["diffusion"], args, self.model.ncell)

    def _bind_ions(self) -> None:
        """Ion kernels; the style bits (eion.cpp) say which instances initialise their
        concentrations (04), their reversal potential (040) or advance it each step (0100)."""
        self.ion_kernels = []
        self.ion_inits = []
        for ion in self.model.ions:
            x = ion.name
            args: dict = {f"ion.{x}.{k}": v for k, v in ion.data.items()}
            args[f"ion.{x}.node_index"] = ion.node_index
            args["node.rhs"] = self.rhs
            args[f"ion.{x}.cinit"] = ((ion.style & 0o4) != 0).astype(np.float64)
            args[f"ion.{x}.einit"] = ((ion.style & 0o40) != 0).astype(np.float64)
            args[f"ion.{x}.eadvance"] = ((ion.style & 0o100) != 0).astype(np.float64)
            args["conc_inside0"], args["conc_outside0"] = ion.init_inside, ion.init_outside
            ktf = 1000.0 * units.GAS_CONSTANT * (self.model.celsius + 273.15) / units.FARADAY
            args["ktf_over_z"] = ktf / ion.charge if ion.charge != 0 else 0.0
            nernst = bool((ion.style & 0o100).any())
            reset = self._compile(cable.ion_reset(x, nernst))
            second = self._compile(cable.second_order_current(x))
            self.ion_kernels.append((ion, args, reset, second))
            if (ion.style & 0o44).any():
                init = self.backend.compile(cable.ion_init(x), hot=False)
                wrote = self.backend.compile(cable.ion_init(x, concentrations=False), hot=False)
                self.ion_inits.append((ion, args, init, wrote))

    def _bind_netcons(self) -> None:
        nc = self.model.netcons
        self.netcon_row = np.zeros(nc.count, dtype=np.int64)
        for bound in self.mechanisms:
            args = bound.set.mechanism.net_receive_args
            targets = np.flatnonzero(nc.target_set == bound.index)
            self.netcon_row[targets] = np.arange(len(targets))
            columns = {}
            for k, arg in enumerate(args):
                column = np.zeros(len(targets) + 1)  # the last row: self-events from INITIAL
                column[: len(targets)] = nc.weights[nc.weight_offset[targets] + k]
                columns[arg] = column
            bound.set_weights(columns, len(targets), nc.target_instance[targets])
        # NetCons by source presyn, in NetCon order. One shorter than a step (NEURON allows it
        # on one rank) is due within the step that fired it: its events are queued at once,
        # as NEURON and CoreNEURON queue every event, and the model runs step by step.
        order = np.argsort(nc.source, kind="stable")
        active = order[nc.source[order] >= 0]
        short = nc.delay[active] < self.dt
        self.netcons_by_source = active[~short]
        self.short_netcons: dict[int, list[int]] = {}
        for k in active[short].tolist():
            self.short_netcons.setdefault(int(nc.source[k]), []).append(k)
        if self.short_netcons and self.ranks.size > 1:
            raise PortneuronError(
                f"a NetCon delay ({self.model.min_delay():g} ms) is shorter than dt "
                f"({self.dt:g} ms): its events would be due before the spike exchange that "
                f"brings them to other ranks; run on one rank or with a smaller --dt"
            )
        if self.short_netcons and self.compiled_epochs:
            self.compiled_epochs = False
            self.stepwise_reason = (
                f"a NetCon delay ({self.model.min_delay():g} ms) is shorter than dt, so its "
                f"events are due within the step that sent them"
            )
        counts = np.bincount(nc.source[self.netcons_by_source], minlength=self.model.presyns.count)
        self.source_start = np.zeros(self.model.presyns.count + 1, dtype=np.int64)
        np.cumsum(counts, out=self.source_start[1:])

    def _bind_transfers(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Each gap junction target's copy from its source (Model.transfers), as (target
        array, its indices, source array, its indices) by kind of place; a source on
        another rank is read from the values the ranks exchange each step (`_exchanged`)."""
        transfers, copies = self.model.transfers, []
        sources = [
            (given, place_array(self.model, self.node_arrays, where.space), where.index)
            for given, where in transfers.sources
        ]
        remote = []
        for sids, target in transfers.targets:
            into = place_array(self.model, self.node_arrays, target.space)
            local = np.zeros(len(sids), bool)
            for given, values, index in sources:
                hit, of = _find(given, sids)
                local |= hit
                if hit.any():
                    copies.append((into, target.index[hit], values, index[of]))
            if not local.all():
                remote.append((into, target.index[~local], sids[~local]))
        self._exchanged = self._bind_exchange(sources, remote)
        return copies

    def _bind_exchange(self, sources, remote) -> tuple | None:
        """The sources other ranks' targets take, and where this rank's remote targets find
        theirs among every rank's: (this rank's (values, index) to send, each rank's count,
        the targets' (array, indices, positions in the exchanged values)); None where no
        target takes a source of another rank, on any rank (the ranks agree)."""
        wanted = distinct(np.concatenate([s for _, _, s in remote] or [np.zeros(0, np.int64)]))
        if self.ranks.size == 1:
            if len(wanted):
                raise PortneuronError(
                    f"a gap junction's target takes sid {wanted[0]}, which no source gives"
                )
            return None
        everyone = self.ranks.allgather(wanted)
        needed = np.unique(np.concatenate(everyone))
        if not len(needed):
            return None
        send, mine = [], []
        for given, values, index in sources:
            hit = np.isin(given, needed)
            send.append((values, index[hit]))
            mine.append(given[hit])
        mine = np.concatenate(mine) if mine else np.zeros(0, np.int64)
        offered = self.ranks.allgather(mine)
        counts = np.array([len(o) for o in offered], dtype=np.int64)
        layout = np.concatenate(offered)
        targets = []
        for into, at, sids in remote:
            found, pos = _find(layout, sids)
            if not found.all():
                raise PortneuronError(
                    f"a gap junction's target takes sid {sids[~found][0]}, which no rank's "
                    f"source gives"
                )
            targets.append((into, at, pos))
        return send, counts, targets

    def _transfer(self, laid_out: bool = False) -> None:
        """The gap junctions' values, from their sources to their targets (NEURON's
        nrnthread_v_transfer; between ranks, its nrnmpi_v_transfer: every source another
        rank takes, to every rank); `laid_out`: in the compiled epochs' layout, between
        them."""
        copies, exchanged = self.transfers, self._exchanged
        if laid_out:
            copies, exchanged = self._laid_out_transfers
        for into, at, values, of in copies:
            into[at] = values[of]
        if exchanged is not None:
            send, counts, targets = exchanged
            start = time.perf_counter()
            mine = np.concatenate([values[of] for values, of in send] or [np.zeros(0)])
            every = self.ranks.allgather_values(mine, counts)
            self.exchange_s += time.perf_counter() - start
            for into, at, pos in targets:
                into[at] = every[pos]

    def _lay_out_transfers(self, plan) -> None:
        """The copies of `_transfer` where `plan` puts their elements, for the compiled
        epochs: the driver's own where every junction is on this rank, else made between
        calls a step each, with the exchange (portneuron.sim.epoch)."""

        def places(array: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            laid, at = plan.places(array, index)
            return laid, at.astype(np.intp)  # what indexing takes, converted once

        copies = [
            (*places(into, at), *places(values, of)) for into, at, values, of in self.transfers
        ]
        exchanged = None
        if self._exchanged is not None:
            send, counts, targets = self._exchanged
            send = [places(values, of) for values, of in send]
            targets = [(*places(into, at), pos.astype(np.intp)) for into, at, pos in targets]
            exchanged = send, counts, targets
        self._laid_out_transfers = copies, exchanged

    def _bind_presyns(self) -> None:
        ps = self.model.presyns
        self.voltage_presyn = np.flatnonzero(ps.node >= 0)
        self.threshold_args = {
            "presyn.node": ps.node[self.voltage_presyn].astype(np.int32),
            "presyn.threshold": ps.threshold[self.voltage_presyn].astype(np.float64),
            "presyn.flag": np.zeros(len(self.voltage_presyn)),
            "node.v": self.model.nodes.v,
            "t": 0.0,
        }
        self.kernels["threshold"] = self._compile(cable.threshold())
        self.cell_gid = np.full(self.model.ncell, -1, dtype=np.int64)
        for p in self.voltage_presyn:  # a cell is named by the gid of its spike source
            cell = np.searchsorted(self.model.nodes.first, ps.node[p], side="right") - 1
            if ps.gid[p] >= 0:
                self.cell_gid[cell] = ps.gid[p]
        # (mechanism set, instance) -> presyn, for artificial cells' net_event
        self.artificial_presyn = {
            (int(s), int(i)): p
            for p, (s, i) in enumerate(zip(ps.source_set, ps.source_instance))
            if ps.node[p] < 0 and s >= 0
        }
        self.presyn_of_gid = {int(g): p for p, g in enumerate(ps.gid) if g >= 0}

    # ------------------------------------------------------------------ events
    def _spike(self, presyn: int, t: float) -> None:
        """Record a spike; its NetCon events are queued when the epoch ends, those of NetCons
        shorter than a step now."""
        gid = int(self.model.presyns.gid[presyn])
        if gid >= 0:
            self.spikes.append((t, gid))
        self._outbox.append((t, presyn))
        for k in self.short_netcons.get(presyn, ()):
            self._send(k, t)

    def exchange(self) -> None:
        """The epoch's spikes become NetCon events (with several ranks: after an allgather).

        Every delay is at least the min-delay, so an event is due no earlier than the end of
        the epoch that produced it. One due exactly then (a spike stamped on the epoch's
        first instant) is delivered at the start of the next step instead of the end of this
        one; nothing runs in between, so the result is the same."""
        nc = self.model.netcons
        self._outbox.sort()  # by time, then presyn: the same order for any backend or loop
        spikes = self._outbox if self.ranks.size == 1 else self._gathered()
        for t, presyn in spikes:
            lo, hi = self.source_start[presyn], self.source_start[presyn + 1]
            for k in self.netcons_by_source[lo:hi]:
                due = t + nc.delay[k]
                if due <= self.t - self.dt:
                    raise AssertionError(f"NetCon {k}: event due at {due} ms, now {self.t} ms")
                self._send(k, t)
        self._outbox.clear()

    def _gathered(self) -> list[tuple[float, int]]:
        """Every rank's spikes of the epoch that reach this rank, as (t, presyn): those with
        a gid by (t, gid), whichever rank sent them, then this rank's sources without a gid
        (which connect only here), by (t, presyn); the same order for any rank count."""
        gid = self.model.presyns.gid
        sent = [(t, int(gid[p])) for t, p in self._outbox if gid[p] >= 0]
        start = time.perf_counter()
        times, gids = self.ranks.allgather_spikes(
            np.array([t for t, _ in sent]), np.array([g for _, g in sent], dtype=np.int64)
        )
        self.exchange_s += time.perf_counter() - start
        arrived = sorted(
            (float(t), int(g)) for t, g in zip(times, gids) if int(g) in self.presyn_of_gid
        )
        spikes = [(t, self.presyn_of_gid[g]) for t, g in arrived]
        merged = [(t, 0, k, p) for k, (t, p) in enumerate(spikes)]
        merged += [(t, 1, p, p) for t, p in self._outbox if gid[p] < 0]
        return [(t, p) for t, _, _, p in sorted(merged)]

    def _send(self, k: int, t: float) -> None:
        """Queue the event of NetCon k for a spike at t [ms]."""
        nc = self.model.netcons
        target, instance = int(nc.target_set[k]), int(nc.target_instance[k])
        self.queue.push(t + nc.delay[k], target, instance, 0.0, int(self.netcon_row[k]))

    def _streams(self, bound: BoundMechanism, streams: dict, row: int, now: float) -> None:
        """Queue the self-events and spikes a kernel emitted, then move self-events
        (net_move, after any net_send of the same call)."""
        sends = streams.get("net_send")
        if sends is not None:
            for inst, td, flag in zip(sends["instance"], sends["t"], sends["flag"]):
                self.queue.push(float(td), bound.index, int(inst), float(flag), row, True)
        moves = streams.get("net_move")
        if moves is not None:
            for inst, tm in zip(moves["instance"], moves["t"]):
                if float(tm) < now:
                    raise SimulationError(
                        f"{bound.set.name} {int(inst)}: net_move at t = {now!r} ms to "
                        f"{float(tm)!r} ms, into the past (NEURON refuses it too)"
                    )
                if not self.queue.move(bound.index, int(inst), float(tm)):
                    raise SimulationError(
                        f"{bound.set.name} {int(inst)}: net_move at t = {now!r} ms with no "
                        f"self-event (net_send) pending (NEURON refuses it too)"
                    )
        activations = streams.get("watch")
        if activations is not None:
            self.watches.activate(bound, activations, self.queue)
        events = streams.get("net_event")
        if events is not None:
            for inst, te in zip(events["instance"], events["t"]):
                presyn = self.artificial_presyn.get((bound.index, int(inst)))
                if presyn is not None:
                    self._spike(presyn, float(te))

    def deliver(self, until: float) -> None:
        """Deliver every queued event due by `until`, each at its own time."""
        for player in self.players:
            player.deliver(until)
        while (event := self.queue.pop_due(until)) is not None:
            bound = self.mechanisms[event.target_set]
            out = bound.deliver(event.instance, event.t, event.flag, event.row, self.dt)
            self._streams(bound, out, event.row, event.t)

    def check_thresholds(self) -> None:
        if not len(self.voltage_presyn):
            return
        self.threshold_args["t"] = self.t
        out = self.backend.run(
            self.kernels["threshold"], self.threshold_args, len(self.voltage_presyn)
        )
        for lane, t in zip(out["spike"]["presyn"], out["spike"]["t"]):
            self._spike(int(self.voltage_presyn[lane]), float(t))

    # ------------------------------------------------------------------ the step
    def _before_after(self, name: str) -> None:
        """The mechanisms' BEFORE or AFTER blocks of one kind, set by set (NEURON's nrn_ba)."""
        for bound in self.mechanisms:
            if bound.has(name):
                bound.run(name, self.t, self.dt)

    def _currents(self) -> None:
        n = self.model.nodes.count
        run = self.backend.run
        run(self.kernels["clear_matrix"], self.cable_args, n)
        self._before_after("before_breakpoint")
        for ion, args, reset, _ in self.ion_kernels:
            run(reset, args, ion.count)
        for bound in self.mechanisms:
            if bound.has("current"):
                bound.run("current", self.t, self.dt)
        for args in self.capacitance:
            run(self.kernels["capacitance"], args, len(args["node_index"]))
        if self.fast_imem:
            run(self.kernels["membrane_sums"], self.cable_args, n)

    def step(self) -> None:
        dt, run, ncell = self.dt, self.backend.run, self.model.ncell
        self.check_thresholds()
        if self.watches.sets:  # after the thresholds, as NEURON's check_thresh
            self.watches.check(self.t, dt, self.queue)
        self.deliver(self.t + 0.5 * dt)
        self.t += 0.5 * dt
        self._play()
        self._currents()
        run(self.kernels["axial"], self.cable_args, ncell)
        run(self.kernels["hines"], self.cable_args, ncell)
        if self.model.secondorder == 2:
            for ion, args, _, second in self.ion_kernels:
                run(second, args, ion.count)
        run(self.kernels["update_voltage"], self.cable_args, self.model.nodes.count)
        self.t += 0.5 * dt
        self._play()
        self._transfer()  # the new v, before the SOLVE blocks (NEURON's nonvint)
        for bound in self.mechanisms:
            if bound.has("state"):
                bound.run("state", self.t, dt)
        self._diffuse()
        self._before_after("after_solve")
        self._before_after("before_step")  # NEURON's fixed_record_continuous runs it
        if self._record_hook is not None:
            self._record_hook()  # where NEURON's Vector.record samples: before the events
        self.deliver(self.t)

    def _play(self) -> None:
        for player in self.players:
            player.play(self.t)

    # ------------------------------------------------------------------ driving
    def finitialize(self, v_init: float | None = None) -> None:
        """NEURON's finitialize: t = 0, tables, v, INITIAL blocks, events due at 0, currents."""
        self.t = 0.0
        self.steps_done = 0  # since this finitialize
        self.queue.clear()
        self.watches.reset()
        self.spikes.clear()
        self._outbox.clear()
        if v_init is not None:
            self.model.nodes.v[:] = v_init
        for bound in self.mechanisms:
            bound.check_tables(self.dt)
        for player in self.players:
            player.reset()
            player.deliver(self.t)
        self._transfer()  # after v is set, before BEFORE_INITIAL and INITIAL
        self._before_after("before_initial")
        for ion, args, kernel, _ in self.ion_inits:  # ions come before their users
            self.backend.run(kernel, args, ion.count)
        order = [b for b in self.mechanisms if not b.set.is_artificial]
        order += [b for b in self.mechanisms if b.set.is_artificial]
        for bound in order:
            if bound.has("init"):
                out = bound.run("init", self.t, self.dt)
                self._streams(bound, out, bound.spare_row, self.t)
                self._wrote_concentrations(bound)
        self._before_after("after_initial")
        self._init_netcons()
        self.threshold_args["presyn.flag"][:] = 0.0
        self.deliver(self.t)
        with self._one_matrix_array():
            self._currents()
        if self.fast_imem:  # the axial terms too (NEURON's setup_tree_matrix), then i_membrane_
            self.backend.run(self.kernels["axial"], self.cable_args, self.model.ncell)
            n = self.model.nodes.count
            self.backend.run(self.kernels["membrane_current_init"], self.cable_args, n)
        forget(self.rhs)  # the matrix: the next step clears it first
        self._before_after("before_step")  # and at finitialize, after the currents
        self.exchange()
        self.epoch_program()  # compiled here, so that run() times only the simulation

    @contextlib.contextmanager
    def _one_matrix_array(self):
        """d as rhs's array: finitialize's currents add into both, and neither sum is read
        (the first step clears them), so the model-sized matrix touches half the pages (on
        the host: a device backend keeps its own copies, and refuses arrays that alias)."""
        users = [self.cable_args, *(bound.args for bound in self.mechanisms), *self.capacitance]
        users = [args for args in users if args.get("node.d") is self.d]
        if self.backend.device_kind != "cpu" or self.fast_imem:  # fast_imem: d is read
            users = []
        for args in users:
            args["node.d"] = self.rhs
        try:
            yield
        finally:
            for args in users:
                args["node.d"] = self.d

    def _wrote_concentrations(self, bound: BoundMechanism) -> None:
        """After an INITIAL that wrote a concentration, NEURON recomputes erev (einit ions)."""
        for ion_decl in bound.set.mechanism.ions:
            x = ion_decl.name
            if f"{x}i" not in ion_decl.write and f"{x}o" not in ion_decl.write:
                continue
            for ion, args, _, wrote in self.ion_inits:
                if ion.name == x:
                    self.backend.run(wrote, args, ion.count)

    def _init_netcons(self) -> None:
        """NET_RECEIVE INITIAL once per NetCon; without one, weights after the first are 0."""
        nc = self.model.netcons
        for bound in self.mechanisms:
            if not bound.has("net_init"):
                for arg in bound.set.mechanism.net_receive_args[1:]:
                    bound.weight_columns[arg][:] = 0.0
                continue
            targets = np.flatnonzero(nc.target_set == bound.index)
            bound.args["event.instance"] = nc.target_instance[targets].astype(np.int32)
            bound.args["event.netcon"] = self.netcon_row[targets].astype(np.int32)
            bound.args["event.t"] = np.full(len(targets), self.t)
            bound.args["event.flag"] = np.zeros(len(targets))
            out = bound.run("net_init", self.t, self.dt, lanes=len(targets))
            self._streams(bound, out, bound.spare_row, self.t)

    def run(
        self,
        tstop: float,
        record: Sequence[int] = (),
        v_init: float | None = None,
        initialize: bool = True,
        progress: Callable[[float], None] | None = None,
        probes: Sequence[tuple[np.ndarray, int]] = (),
        record_every: int = 1,
        sink: Callable[[np.ndarray, np.ndarray], None] | None = None,
        rows_dtype=np.float64,
        rows_into: Callable[[int, int], np.ndarray | None] | None = None,
    ) -> Result:
        """Simulate to `tstop` [ms], recording v at the model nodes `record` at t = 0 and
        every `record_every` steps (at the steps since finitialize that it divides), and
        `probes` ((array, index): any value of the model, a mechanism's, an ion's), which
        runs step by step; `progress(t)` is called after every epoch with the time reached
        [ms]. With `sink`, the recorded rows go to sink(times, values) after every epoch,
        or more often where they would fill RECORD_BUFFER (bounded memory: the result keeps
        none of them; `values` may be the compiled epoch's buffer, valid during the call);
        `rows_dtype` np.float32: compiled epochs record them rounded to float32 (a SONATA
        report's), twice the rows in that buffer; `rows_into(rows, columns)`: where a
        compiled epoch call records its rows instead of that buffer (the sink's own memory,
        which it is then given), or None."""
        if record_every < 1:
            raise PortneuronError(f"record_every must be at least 1, not {record_every}")
        if self.node_arrays["node.v"] is not self.model.nodes.v:
            raise PortneuronError(
                "the model's node arrays were replaced after this Simulation was made (by "
                "another Simulation of it with other blocks of cells?): make this one again"
            )
        if initialize:
            self.finitialize(v_init)
        record = np.asarray(record, dtype=np.int64)
        nsteps = self.steps_to(tstop)
        epoch = self.epoch_steps()
        program = self.epoch_program(record, probes, rows_dtype) if nsteps else None
        if probes and program is None and self.compiled_epochs and not self.stepwise_reason:
            self.stepwise_reason = PROBED  # this run's
        elif self.stepwise_reason == PROBED and (program is not None or not probes):
            self.stepwise_reason = ""
        #: whether the probes are sampled here, step by step, or recorded by the program
        #: after the voltages' columns
        stepwise_probes = bool(probes) and program is None
        every = record_every
        times, trace, sampled = [], [], []  # trace: blocks of rows (times x record)
        probe = _Probes(probes)
        if self.steps_done % every == 0:
            times.append(self.t)
            row = self.model.nodes.v[record]
            if stepwise_probes:
                sampled.append(probe())
            elif probes:  # as the program records them: after the voltages
                row = np.concatenate([row, probe()])
            trace.append(row[None, :])

        def sample() -> None:  # in the step, before its events (NEURON's Vector.record)
            if (self.steps_done + 1) % every == 0:
                sampled.append(probe())

        columns = len(record) + (0 if stepwise_probes else len(probes))

        def rows(blocks: list) -> np.ndarray:
            if len(blocks) == 1:
                return blocks[0]
            return np.concatenate(blocks) if blocks else np.zeros((0, columns))

        def flush() -> None:  # on every rank alike: a sink may gather
            if sink is not None:
                values = rows(trace)
                if stepwise_probes:  # their columns after the voltages'
                    values = np.hstack([values, np.reshape(sampled, (len(times), len(probes)))])
                    sampled.clear()
                sink(np.array(times), values)
                times.clear()
                trace.clear()

        self._record_hook = sample if stepwise_probes else None
        keep = bool(len(record) or probes or sink)  # the recorded times
        flush()  # t = 0's row on its own: an epoch's rows then go as they are
        done = 0
        if program is not None:
            program.load()  # the state is the program's until it is stored
        try:
            while done < nsteps:
                n = min(epoch, nsteps - done)
                if program is not None and self.coupled and not program.step_major:
                    for _ in range(n):  # values cross ranks: a call a step, copies after
                        self._advance(program, 1, record, times, trace, every, keep)
                        self._transfer(laid_out=True)
                elif program is not None:
                    # a call holds RECORD_BUFFER bytes of rows at most; with a sink, they go
                    # to it after every call (taken before the next)
                    most = record_steps(columns, every, np.dtype(rows_dtype).itemsize)
                    for at in range(0, n, most):
                        if at:
                            flush()
                        step = min(most, n - at)
                        self._advance(
                            program, step, record, times, trace, every, keep, not sink, rows_into
                        )
                else:
                    for _ in range(n):
                        self.step()
                        self._check_finite()
                        self.steps_done += 1
                        if keep and self.steps_done % every == 0:
                            times.append(self.t)
                            trace.append(self.model.nodes.v[record][None, :])
                done += n
                self.exchange()
                flush()
                if progress is not None:
                    progress(self.t)
        finally:
            self._record_hook = None
            if program is not None:
                program.store()
                program.plan.set_record(np.zeros(0, dtype=np.int64))
        spikes = sorted(self.spikes)
        t = np.array(times)
        if not probes:
            return Result(spikes, t, rows(trace), nsteps)
        if stepwise_probes:
            return Result(spikes, t, rows(trace), nsteps, np.reshape(sampled, (len(t), -1)))
        recorded = rows(trace)
        return Result(spikes, t, recorded[:, : len(record)], nsteps, recorded[:, len(record) :])

    def steps_to(self, tstop: float) -> int:
        """The steps `run(tstop)` takes from here."""
        return max(0, int((tstop - self.t) / self.dt + 0.5))

    def recorded_times(self, tstop: float, every: int = 1, block: int = 1 << 20):
        """The times [ms] `run(tstop, record_every=every)` records from here, as its clock
        has them (t += dt/2 twice a step), in arrays of at most `block` steps' own."""
        t, done, left = self.t, self.steps_done, self.steps_to(tstop)
        if done % every == 0:
            yield np.array([t])
        while left:
            n = min(left, block)
            clock = np.full(2 * n + 1, 0.5 * self.dt)
            clock[0] = t
            after = np.add.accumulate(clock)[2::2]  # after each step
            yield after[(done + 1 + np.arange(n)) % every == 0]
            t, done, left = float(after[-1]), done + n, left - n

    # ------------------------------------------------------------------ compiled epochs
    def epoch_program(self, record: np.ndarray | None = None, probes=(), rows_dtype=np.float64):
        """The backend's compiled epoch for this model (compiled once, then kept), set to
        record v at the nodes `record` and `probes` ((array, element) pairs, after them:
        another driver is compiled for each set of arrays and for float32 rows,
        `rows_dtype`); None where the model needs the
        stepwise loop (`stepwise_reason` says why) or a probe is not of a laid-out array of
        values (a run then samples them step by step)."""
        if not self.compiled_epochs:
            return None
        from .driver import IrEpoch, Unsupported

        if self._program is None:
            from . import epoch

            try:
                plan = epoch.plan(self, epoch.block_width(self.model, self.backend))
            except epoch.Unsupported as why:
                self.stepwise_reason = str(why)
                self.compiled_epochs = False
                return None
            copies = []
            if self.coupled:
                self._lay_out_transfers(plan)
                if self._exchanged is None:  # every junction here: copied by the driver
                    copies = self._laid_out_transfers[0]
            try:
                self._program = IrEpoch(plan, self.backend, self.threads, copies)
            except Unsupported as why:
                self.stepwise_reason = f"the IR epoch driver: {why}"
                self.compiled_epochs = False
                return None
            self._programs = {(): self._program}
            self._program_copies = copies
            self.threads_used = self._program.threads
            give_back()  # the plan's and the compiler's temporaries
        plan, values = self._program.plan, []
        if len(probes):
            try:
                values = plan.recorded_values(probes, 0 if record is None else len(record))
            except LookupError:
                return None
        single = np.dtype(rows_dtype) == np.float32
        key = tuple(memory_key(v.array) for v in values) + (("float32",) if single else ())
        if key not in self._programs:  # a driver that records these arrays too
            arrays = tuple(v.array for v in values)
            try:
                self._programs[key] = IrEpoch(
                    plan, self.backend, self.threads, self._program_copies, arrays,
                    F32 if single else F64,
                )  # fmt: skip
            except Unsupported:
                return None
        self._program = self._programs[key]
        if record is not None:
            plan.set_record(record, values)
        return self._program

    def _advance(
        self,
        program,
        nsteps: int,
        record: np.ndarray,
        times: list,
        trace: list,
        every: int = 1,
        keep: bool = True,
        copy: bool = True,
        rows_into: Callable[[int, int], np.ndarray | None] | None = None,
    ) -> None:
        """`nsteps` steps (an epoch, or a coupled model's one step of it) in one backend
        call, recording at the steps since finitialize that `every` divides (`keep`: their
        times too; `copy`: the rows copied out of the program's buffer, which its next call
        fills again)."""
        from . import epoch

        if len(self._clock) < 2 * nsteps + 1:
            self._clock = np.full(2 * nsteps + 1, 0.5 * self.dt)
        clock = self._clock[: 2 * nsteps + 1]
        clock[0] = self.t
        clock = np.add.accumulate(clock)  # t += dt/2, twice a step, as the backend does
        if self._events is None or self._events.plan is not program.plan:
            self._events = epoch.EpochEvents(program.plan)
        self._collect_events(self._events, float(clock[-1]))
        first = every - self.steps_done % every  # the first recorded step, from 1
        out = None
        if rows_into is not None and first <= nsteps:
            out = rows_into((nsteps - first) // every + 1, program.columns())
        result = program.advance(self.t, nsteps, self._events, first, every, out)
        self.t = float(clock[-1])
        self.steps_done += nsteps
        if result.overflow:
            raise SimulationError(
                f"more than {program.queue_capacity} self-events (net_send) pending at once in one "
                "block of cells; run with compiled epochs off"
            )
        if result.pending:
            self._queue_pending(program.plan, *result.pending)
        lanes, t, blowup = result.spike_lanes, result.spike_t, result.blowup
        if blowup is not None:
            block = int(np.argmin(blowup))
            cells = program.plan.layout.block_cells(block)
            roots = self.model.nodes.v[self.model.nodes.first[list(cells)]]
            cell = cells[int(np.flatnonzero(~np.isfinite(roots))[0])]
            raise self._blowup(cell, float(blowup[block]))
        if len(lanes):
            presyn = program.plan.threshold_presyn[lanes]
            for k in np.lexsort((presyn, t)):
                self._spike(int(presyn[k]), float(t[k]))
        if keep:
            times.extend(clock[2 * first :: 2 * every].tolist())
            trace.append(result.record.copy() if copy else result.record)

    def _queue_pending(self, plan, t, flag, instance, row, phase) -> None:
        """Queue the self-events still pending at an epoch's end (given per block in time
        order, sent-order among equal times), with the model's instance numbers."""
        for k in range(len(t)):
            target = plan.receive_sets[int(phase[k])]
            model_instance = int(plan.instances[target].order[int(instance[k])])
            self.queue.push(float(t[k]), target, model_instance, float(flag[k]), int(row[k]), True)

    def _collect_events(self, events, until: float) -> None:
        """Take every queued event due by `until` (the epoch's end) into `events`: artificial
        cells' events are delivered now, in time order; real cells' events sorted into
        blocks."""
        picked: list[tuple[int, int, float, int, float, int]] = []  # (block, phase, t, ...)
        plan_instances = events.plan.instances  # the NET_RECEIVE kernels see sorted instances
        while (event := self.queue.pop_due(until)) is not None:
            bound = self.mechanisms[event.target_set]
            if bound.set.is_artificial:
                out = bound.deliver(event.instance, event.t, event.flag, event.row, self.dt)
                self._streams(bound, out, event.row, event.t)
                continue
            block = int(events.instance_block[event.target_set][event.instance])
            phase = events.phase_of_set[event.target_set]
            instance = int(plan_instances[event.target_set].perm[event.instance])
            picked.append((block, phase, event.t, instance, event.flag, event.row))
        events.pack(picked)

    def epoch_steps(self) -> int:
        """Steps per epoch: as many as fit in the min-delay (and in `max_epoch`), at most
        MAX_EPOCH_STEPS."""
        md = self.ranks.min(self.model.min_delay())  # every rank's epochs end together
        if self.max_epoch is not None:
            md = min(md, self.max_epoch)
        if math.isinf(md):
            return self.longest_epoch
        return min(self.longest_epoch, max(1, int(md / self.dt + 1e-9)))

    @functools.cached_property
    def longest_epoch(self) -> int:
        """Steps an epoch takes at most (MAX_EPOCH_STEPS: more for a small model), the
        same on every rank."""
        nodes, detectors = max(1, self.model.nodes.count), max(1, len(self.voltage_presyn))
        steps = min(LONGEST_EPOCH, EPOCH_NODE_STEPS // nodes, EPOCH_SPIKES // detectors)
        return int(self.ranks.min(max(MAX_EPOCH_STEPS, steps)))

    def _check_finite(self) -> None:
        v = self.model.nodes.v
        if np.isfinite(v).all():
            return
        node = int(np.flatnonzero(~np.isfinite(v))[0])
        cell = int(np.searchsorted(self.model.nodes.first, node, side="right") - 1)
        raise self._blowup(cell, self.t)

    def _blowup(self, cell: int, t: float) -> SimulationError:
        gid = self.cell_gid[cell]
        name = f"cell gid {gid}" if gid >= 0 else f"cell {cell} (no gid)"
        return SimulationError(
            f"{self.model.source or 'model'}: {name}: voltage is not finite at "
            f"t = {t:.6g} ms; reduce dt or check the cell's mechanisms"
        )


def _find(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of `wanted` are among `keys` (unique), and where each found one is in `keys`."""
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys, wanted, sorter=order), max(len(keys) - 1, 0))
    found = (keys[order[pos]] == wanted) if len(keys) else np.zeros(len(wanted), bool)
    return found, order[pos][found]
