"""The epoch driver written once, as an IR kernel: one lane a block of cells, taken through
an epoch's steps in Simulation.step's order (design: shared/design/EPOCH-IR.md); for a
model with gap junctions, one lane that takes every block through a step, then copies the
junctions' values, then goes on (step-major).

For each step, at time t: the spike detectors (at t), the block's events due by t + dt/2,
then at t + dt/2 the first half of the step (matrix, currents, capacitance, the Hines
solve, the voltage update), at t + dt the second (the states), the events due by t + dt,
the recorded voltages and the blow-up check. The state is the model's own arrays, laid
out in place for a whole run (EpochPlan.lay_out). Each phase is a `Launch` of its kernel
over the block's lanes (`Phase.ranges`), as is the recording; an event is a Launch of its
NET_RECEIVE over the one lane that holds it. A block whose root voltage stops being finite
stops there (`blowup[block]` = t).
The detectors' spikes go to the block's region of the spike arrays (Records: a detector
fires at most once a step), so the driver has no output stream and needs nothing of a
backend beyond running a kernel.

Events are delivered in a Serial (one thread of a block's, where a backend gives a block
many): the epoch's, in time order per block (`EpochEvents`), merged with the self-events
(net_send) sent during the epoch, which wait in the block's queue (queue_capacity) in
NEURON's order. The Serial keeps its place between steps in memory (`cursor`).

`IrEpoch` runs it on any backend with the protocol the simulation runs epochs with: numpy's
interpreter, llvm (a Launch is a call; the blocks split over threads), cuda and opencl (one
device block a cell block, the model resident on the device). The step-major driver is
one lane: one thread on llvm, one device block on cuda and opencl."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from portneuron.ir import BOOL, F64, I32, DType, Kernel, Records, Var, View, walk
from portneuron.ir import builder as b
from portneuron.ir.builder import ArrayRef, KernelBuilder
from portneuron.ir.types import NUMPY_DTYPES

from .plan import EpochEvents, EpochPlan, Phase, memory_key


class Unsupported(Exception):
    """The plan needs something the IR driver does not do yet; the message says what."""


class _ModelArrays:
    """The driver's parameters for the plan's own arrays: one a distinct array, however
    many phases use it, so that a backend sees which launches touch the same
    memory (cuda reads an array no launch writes through its read-only cache)."""

    def __init__(self, plan: EpochPlan) -> None:
        self.arrays: dict[str, np.ndarray] = {}  # driver name: array
        self.names: dict[tuple, str] = {}  # memory_key: driver name
        self.of: dict[tuple[int, str], str] = {}  # (phase, parameter): driver name
        for k, phase in enumerate(plan.phases()):
            for p in phase.kernel.params:
                if p.is_array and not p.name.startswith("event."):
                    self.of[k, p.name] = self.name(phase.args[p.name], p.name)
        self.v = self.name(plan.v, "v")
        #: the blocks' scratch (EpochPlan.scratch), by driver name
        self.scratch = {self.names[key] for key in map(memory_key, plan.scratch)
                        if key in self.names}  # fmt: skip

    def name(self, array: np.ndarray, hint: str) -> str:
        key = memory_key(array)
        if key not in self.names:
            name, n = f"m.{hint}", 0
            while name in self.arrays:
                n += 1
                name = f"m.{hint}.{n}"
            self.names[key] = name
            self.arrays[name] = array
        return self.names[key]


#: The driver's array of each lane's nodes (its block's: layout.base) where the lanes are
#: blocks: the regions of their scratch.
LANE_NODES = "lane.nodes"


def _phase_binds(
    kb: KernelBuilder, arrays: _ModelArrays, k: int, phase: Phase, t, lanes_are_blocks: bool
) -> dict:
    """Phase k's kernel parameters: its arrays the driver's (one a distinct array; its
    events' `k<k>.event.*`; the blocks' scratch each lane's own where the lanes are
    blocks), `t` the driver's time, its other scalars `k<k>.<name>`."""
    bind = {}
    for p in phase.kernel.params:
        if p.is_array:
            name = arrays.of.get((k, p.name))
            if name is None:  # this epoch's events
                name = f"k{k}.{p.name}"
                kb.param(name, p.dtype, p.space)
            elif name in arrays.scratch and lanes_are_blocks:
                kb.param(name, p.dtype, f"lane:{kb.array(LANE_NODES, I32, 'blocks').name}")
            else:
                kb.param(name, p.dtype, "model")
            bind[p.name] = View(name)
        elif p.name == "t":
            bind[p.name] = t
        else:
            bind[p.name] = kb.scalar(f"k{k}.{p.name}", p.dtype)
    return bind


#: Self-events a block's queue holds at once per self-event its NET_RECEIVE calls may send
#: in one delivery (queue_capacity), and the least a queue holds.
QUEUE_PER_SEND = 16
QUEUE_MIN = 64
#: A self-event's fields in the queue, and their types.
QUEUE_FIELDS = (("t", F64), ("flag", F64), ("inst", I32), ("row", I32), ("phase", I32))
#: A block's delivery state between the driver's Serial sections, in `cursor[3 * block + k]`:
#: its next epoch event, and its queue's first and past-the-last pending entries.
EVENT, HEAD, END = range(3)


def _sends(plan: EpochPlan) -> list[int]:
    """Per receive phase, the self-events one NET_RECEIVE call may send (0: none)."""
    out = []
    for phase in plan.receive:
        n = walk.emits_per_lane(phase.kernel).get("net_send", 0)
        if n is None:
            raise Unsupported(f"{phase.kernel.name} sends self-events in a loop")
        out.append(n)
    return out


def queue_capacity(plan: EpochPlan) -> int:
    """Self-events each block's queue holds at once: for the block with the most, QUEUE_PER_SEND
    for each self-event one delivery to each of its instances may send (every instance of
    a sending NET_RECEIVE can have that many deliveries' worth pending), at least
    QUEUE_MIN; 0 where no NET_RECEIVE sends. A queue that fills stops the run with one
    line, so the rule trades memory (blocks x capacity x 28 bytes) against models that
    keep more pending."""
    sends = _sends(plan)
    if not any(sends):
        return 0
    per_block = sum(
        np.diff(plan.instances[s].ranges.astype(np.int64)) * n  # the block's instances
        for s, n in zip(plan.receive_sets, sends)
        if n
    )
    return max(QUEUE_MIN, QUEUE_PER_SEND * int(np.max(per_block)))


def _record_kernel(rows: DType = F64) -> Kernel:
    """One step's recorded voltages into their columns of the step's row, from `base`
    (rows of `rows`: F32 rounds them, for a report)."""
    kb = KernelBuilder("record", "recorded node")
    base, v = kb.scalar("base", I32), kb.array("v", F64, "node")
    node, column = kb.array("node", I32), kb.array("column", I32)
    kb.array("out", rows, "out")
    kb.store("out", b.add(base, column[kb.lane]), v[node[kb.lane]])
    return kb.build()


def epoch_driver(plan: EpochPlan) -> Kernel:
    """The driver of `plan`'s epochs: one lane a block. Everything that writes memory is a
    Launch (the block's lanes of a phase or of the recorded nodes) or inside a
    Serial (event delivery and the queue, the blow-up time), so that a backend that gives a
    lane many threads runs the rest on all of them alike."""
    return _build(plan, _ModelArrays(plan), queue_capacity(plan))


def _transfer_kernel() -> Kernel:
    """Gap junctions' copies: each lane's target takes its source's value."""
    kb = KernelBuilder("transfer", "junction")
    kb.array("into", F64, "model")
    at, values, of = (
        kb.array("at", I32, "junction"),
        kb.array("values", F64, "model"),
        kb.array("of", I32, "junction"),
    )
    kb.store("into", at[kb.lane], values[of[kb.lane]])
    return kb.build()


def _build(
    plan: EpochPlan,
    arrays: _ModelArrays,
    cap: int,
    copies: list[tuple[str, str]] = (),
    values: tuple[str, ...] = (),
    rows: DType = F64,
) -> Kernel:
    """The driver; with `copies` (a coupled model's junctions: each a target array's and a
    source array's driver names, the places in `x<i>.at`, `x<i>.of`), step-major: one lane
    takes every block through a step, then the copies, then the next step (NEURON copies
    after the voltage update; a copy at the step's end gives the same values where the
    sources are voltages and only the junctions' currents read the targets, which
    portneuron.sim.epoch checks). `values`: the arrays other than v recorded too (driver
    names; their places, blocks and columns in `val<i>.*`); `rows`: the recorded rows'
    type."""
    step_major = bool(copies)
    kb = KernelBuilder(
        "epoch", "epoch" if step_major else "block", "a block of cells through an epoch's steps"
    )
    phases = plan.phases()
    blk = Var("blk", I32) if step_major else kb.lane
    nxt = b.add(blk, 1)
    nblocks = kb.scalar("nblocks", I32) if step_major else None

    @contextlib.contextmanager
    def every_block():
        """The block's code, or in a step-major driver the code of each block in turn."""
        if step_major:
            with kb.loop("blk", 0, nblocks):
                yield
        else:
            yield

    dt, t0, nsteps = kb.scalar("dt"), kb.scalar("t0"), kb.scalar("nsteps", I32)
    half = kb.assign("half", b.mul(0.5, dt))
    t = Var("t", F64)

    sends = _sends(plan)
    first_receive = len(phases) - len(plan.receive)
    head, end = Var("q.head", I32), Var("q.end", I32)
    cursor = kb.array("cursor", I32, "blocks") if plan.receive else None

    def launch(k: int, lo, hi, at, event: dict | None = None) -> None:
        phase = phases[k]
        bind = _phase_binds(kb, arrays, k, phase, at, not step_major)
        j = k - first_receive
        if j >= 0 and sends[j]:  # its self-events to the block's record region
            region = b.mul(blk, sends[j])
            fields = []
            for name, dtype in phase.kernel.streams[0].fields:
                kb.array(f"send{j}.{name}", dtype, "send")
                fields.append(View(f"send{j}.{name}", region))
            kb.array(f"send{j}.count", I32, "blocks")
            bind["net_send"] = Records(tuple(fields), View(f"send{j}.count", blk))
        bind.update(event or {})
        if k == 0 and plan.threshold is not None:  # into the block's region of the spikes
            kb.array("spike.presyn", I32, "spike")
            kb.array("spike.t", F64, "spike")
            kb.array("spike.count", I32, "blocks")
            region = kb.array("spike.base", I32, "blocks")[blk]
            fields = (View("spike.presyn", region), View("spike.t", region))
            bind["spike"] = Records(fields, View("spike.count", blk))
        kb.launch(phase.kernel, lo, hi, **bind)

    def over_block(k: int, at) -> None:
        ranges = kb.array(f"k{k}.ranges", I32, "blocks")
        launch(k, ranges[blk], ranges[nxt], at)

    ev_t, ev_phase = kb.array("ev.t", F64, "event"), kb.array("ev.phase", I32, "event")
    ev_lane, ev_start = kb.array("ev.lane", I32, "event"), kb.array("ev.start", I32, "blocks")
    ev_row = kb.array("ev.row", I32, "event")
    e, e_end = Var("e", I32), Var("e_end", I32)
    queue = {name: ArrayRef(f"q.{name}", dtype) for name, dtype in QUEUE_FIELDS}
    if any(sends):
        for name, dtype in QUEUE_FIELDS:
            kb.array(f"q.{name}", dtype, "queue")

    def qat(k):
        """Place k of the block's queue region."""
        return b.add(b.mul(blk, cap), k)

    def move(src, dst) -> None:
        for name, _ in QUEUE_FIELDS:
            kb.store(f"q.{name}", qat(dst), queue[name][qat(src)])

    def compact() -> None:
        """The pending entries down to the start of the region."""
        shift = kb.assign("q.shift", head)
        with kb.loop("q.i", head, end) as i:
            move(i, b.sub(i, shift))
        kb.assign("q.end", b.sub(end, shift))
        kb.assign("q.head", 0)

    def insert(values: dict) -> None:
        """A self-event into the queue after every entry not later than it (entries of one
        time stay in the order they were sent). A full queue compacts; still full, it sets
        q.full[block] and drops the event (the simulation then stops with one line)."""
        new_t = values["t"]
        with kb.if_(b.ge(end, cap)):
            compact()
        with kb.if_(b.lt(end, cap)):
            k = kb.assign("q.k", end)
            later = b.gt(queue["t"][qat(b.select(b.gt(k, head), b.sub(k, 1), head))], new_t)
            with kb.while_(b.and_(b.gt(k, head), later)):
                move(b.sub(k, 1), k)
                kb.assign("q.k", b.sub(k, 1))
            for name, _ in QUEUE_FIELDS:
                kb.store(f"q.{name}", qat(k), values[name])
            kb.assign("q.end", b.add(end, 1))
        with kb.else_():
            kb.store("q.full", blk, 1)

    def drain(j: int, row) -> None:
        """Into the queue, the self-events receive phase j's last call sent, each carrying
        the delivered event's weight row."""
        count = kb.array(f"send{j}.count", I32, "blocks")
        with kb.loop(f"send{j}.r", 0, count[blk]) as r:
            at = b.add(b.mul(blk, sends[j]), r)
            values = {
                "t": kb.assign("q.nt", kb.array(f"send{j}.t", F64, "send")[at]),
                "flag": kb.assign("q.nflag", kb.array(f"send{j}.flag", F64, "send")[at]),
                "inst": kb.assign("q.ninst", kb.array(f"send{j}.instance", I32, "send")[at]),
                "row": row,
                "phase": j,
            }
            insert({name: b.as_expr(v) for name, v in values.items()})
        kb.store(f"send{j}.count", blk, 0)

    def state(load: bool) -> None:
        """The block's delivery state in (load) or out of its cursor entries."""
        for local, k in ((e, EVENT), (head, HEAD), (end, END)):
            if k != EVENT and not any(sends):
                continue
            at = b.add(b.mul(blk, 3), k)
            if load:
                kb.assign(local.name, cursor[at])
            else:
                kb.store("cursor", at, local)

    def deliver(until) -> None:
        """The block's events due by `until`, in order: the epoch's and the self-events
        sent during it merged by time, the epoch's first at equal times (they were queued
        first). One thread of the block delivers them (Serial)."""
        if not plan.receive:
            return

        def heads() -> None:
            has_e = kb.assign("has_e", b.lt(e, e_end))
            te = kb.assign("te", b.select(has_e, ev_t[b.select(has_e, e, 0)], math.inf))
            if not any(sends):
                kb.assign("take_e", has_e)
                kb.assign("due", b.and_(has_e, b.le(te, until)))
                return
            has_q = kb.assign("has_q", b.lt(head, end))
            tq = queue["t"][qat(b.select(has_q, head, 0))]
            tq = kb.assign("tq", b.select(has_q, tq, math.inf))
            take = kb.assign("take_e", b.and_(has_e, b.le(te, tq)))
            next_t = b.select(take, te, tq)
            kb.assign("due", b.and_(b.or_(has_e, has_q), b.le(next_t, until)))

        with kb.serial():
            state(load=True)
            kb.assign("e_end", ev_start[nxt])
            heads()
            with kb.while_(Var("due", BOOL)):
                with kb.if_(Var("take_e", BOOL)):
                    which, lane = kb.assign("which", ev_phase[e]), kb.assign("lane", ev_lane[e])
                    row = kb.assign("row", ev_row[e])
                    kb.assign("e", b.add(e, 1))
                    for j in range(len(plan.receive)):
                        with kb.if_(b.eq(which, j)):
                            launch(first_receive + j, lane, b.add(lane, 1), Var("te", F64))
                            if sends[j]:
                                drain(j, row)
                if any(sends):
                    with kb.else_():  # the earliest self-event, through views of the queue
                        at = kb.assign("q.at", qat(head))
                        which = kb.assign("which", queue["phase"][at])
                        row = kb.assign("row", queue["row"][at])
                        kb.assign("q.head", b.add(head, 1))
                        for j in range(len(plan.receive)):
                            if not sends[j]:
                                continue
                            event = {"event.instance": View("q.inst", at), "event.t": View("q.t", at),
                                     "event.flag": View("q.flag", at), "event.netcon": View("q.row", at)}  # fmt: skip
                            with kb.if_(b.eq(which, j)):
                                launch(first_receive + j, 0, 1, Var("tq", F64), event)
                                drain(j, row)
                heads()
            state(load=False)

    kb.assign("t", t0)
    if plan.receive:
        with every_block(), kb.serial():
            kb.assign("e", ev_start[blk])
            kb.assign("q.head", 0)
            kb.assign("q.end", 0)
            state(load=False)
    if any(sends):
        kb.array("q.full", I32, "blocks")
    step, bad = kb.assign("step", 0), kb.assign("bad", False)
    v, slot_root = kb.array(arrays.v, F64, "model"), kb.array("slot.root", I32, "slot")
    rec_start = kb.array("rec.start", I32, "blocks")
    for name in ("rec.node", "rec.column"):
        kb.array(name, I32, "rec")
    kb.array("rec.out", rows, "out")
    kb.array("blowup", F64, "block")
    nrec, record = kb.scalar("nrec", I32), _record_kernel(rows)
    val_start = [kb.array(f"val{i}.start", I32, "blocks") for i in range(len(values))]
    for i, name in enumerate(values):
        kb.array(name, F64, "model")
        for field_name in ("node", "column"):
            kb.array(f"val{i}.{field_name}", I32, "rec")
    # every `rec.every` steps a row of the recorded voltages, the first after `rec.first`
    every, wait = kb.scalar("rec.every", I32), kb.assign("rec.wait", kb.scalar("rec.first", I32))
    row, now = kb.assign("rec.row", 0), Var("rec.now", BOOL)

    def one_step() -> None:
        k = 0
        if plan.threshold is not None:
            over_block(0, t)
            k = 1
        deliver(b.add(t, half))
        kb.assign("t", b.add(t, half))
        for _ in plan.first_half:
            over_block(k, t)
            k += 1
        kb.assign("t", b.add(t, half))
        for _ in plan.second_half:
            over_block(k, t)
            k += 1
        with kb.if_(now):  # where NEURON's Vector.record samples: before the events
            kb.launch(record, rec_start[blk], rec_start[nxt], base=b.mul(row, nrec),
                      v=View(arrays.v), node=View("rec.node"), column=View("rec.column"),
                      out=View("rec.out"))  # fmt: skip
            for i, name in enumerate(values):
                kb.launch(record, val_start[i][blk], val_start[i][nxt], base=b.mul(row, nrec),
                          v=View(name), node=View(f"val{i}.node"),
                          column=View(f"val{i}.column"), out=View("rec.out"))  # fmt: skip
        deliver(t)
        here = kb.assign("bad.here", False)  # this block's root voltages
        with kb.loop("cell", b.mul(blk, plan.width), b.mul(nxt, plan.width)) as c:
            root = kb.assign("root", v[slot_root[c]])
            with kb.if_(b.ne(b.sub(root, root), 0.0)):  # NaN or infinite
                kb.assign("bad.here", True)
        with kb.if_(here), kb.serial():
            kb.store("blowup", blk, t)
        kb.assign("bad", b.or_(bad, here))

    with kb.while_(b.and_(b.lt(step, nsteps), b.not_(bad))):
        kb.assign("rec.wait", b.sub(wait, 1))
        kb.assign("rec.now", b.eq(wait, 0))
        if step_major:
            transfer = _transfer_kernel()
            start = kb.assign("t.step", t)
            with every_block():
                kb.assign("t", start)  # each block's t as the block-major driver's
                one_step()
            for i, (into, values) in enumerate(copies):
                kb.array(into, F64, "model")
                kb.array(values, F64, "model")
                kb.array(f"x{i}.at", I32, "junction")
                kb.array(f"x{i}.of", I32, "junction")
                kb.launch(transfer, 0, kb.scalar(f"x{i}.n", I32), into=View(into),
                          at=View(f"x{i}.at"), values=View(values), of=View(f"x{i}.of"))  # fmt: skip
        else:
            one_step()
        with kb.if_(now):
            kb.assign("rec.row", b.add(row, 1))
            kb.assign("rec.wait", every)
        kb.assign("step", b.add(step, 1))
    if any(sends):
        with every_block(), kb.serial():  # what is pending, at the start of its region
            state(load=True)
            compact()
            kb.array("q.left", I32, "blocks")
            kb.store("q.left", blk, end)
    return kb.build()  # verified and folded, with the kernels it launches, by the backend


def _int32(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if len(values) and (values.max() >= 2**31 or values.min() < -(2**31)):
        raise Unsupported("more than 2**31 elements in one array space")
    return values.astype(np.int32)


def default_threads() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def partition(plan: EpochPlan, threads: int) -> list[int]:
    """Cuts of the blocks into contiguous ranges of about equal node counts, one a thread
    (at most one thread a block)."""
    nblocks = plan.nblocks
    threads = max(1, min(threads, nblocks))
    nodes = plan.layout.base
    total = nodes[-1] - nodes[0]
    cuts = [0]
    for k in range(1, threads):
        cut = int(np.searchsorted(nodes, nodes[0] + total * k / threads))
        cuts.append(min(max(cut, cuts[-1] + 1), nblocks - (threads - k)))
    cuts.append(nblocks)
    return cuts


def _regions(base: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The indices of each block's filled region, block by block: base[b] .. base[b] +
    count[b] - 1."""
    count = np.asarray(count, dtype=np.int64)
    starts = np.repeat(np.asarray(base, dtype=np.int64) - (np.cumsum(count) - count), count)
    return starts + np.arange(int(count.sum()))


@dataclass
class EpochResult:
    """What an epoch gives back."""

    spike_lanes: np.ndarray  # the threshold lanes that fired ...
    spike_t: np.ndarray  # ... and when, block by block
    record: np.ndarray  # the recorded voltages: steps x recorded nodes
    #: per block, when a root voltage stopped being finite (inf where none did); None: none
    blowup: np.ndarray | None = None
    #: the self-events sent and due after the epoch, (t, flag, instance, row, phase) with
    #: instances in the plan's sorted order, block by block in delivery order
    pending: tuple[np.ndarray, ...] = ()
    #: a block's queue filled (IrEpoch.queue_capacity pending at once): events were lost
    overflow: bool = False


class IrEpoch:
    """The IR driver of a plan, compiled by a backend and run over every block in one call
    (its lanes; on `threads` threads, each a range of blocks, where the backend has them);
    the protocol the simulation runs epochs with (`load`, `advance`, `store`).
    From `load` to `store` the model's arrays are in the layout's order; a device
    backend keeps them in its memory then, and only the epoch's events go to it, and
    its spikes, records and pending self-events come back. `values`: arrays other than v
    it records too; `rows`: the type of the recorded rows (F32 for a report's)."""

    def __init__(
        self,
        plan: EpochPlan,
        backend,
        threads: int | None = None,
        copies: list[tuple] = (),
        values: tuple[np.ndarray, ...] = (),
        rows: DType = F64,
    ) -> None:
        self.plan, self.backend = plan, backend
        arrays = _ModelArrays(plan)
        recorded = []  # the arrays other than v it records, by driver name
        for array in values:
            if memory_key(array) not in arrays.names:
                raise Unsupported("a recorded array that no phase of the step uses")
            recorded.append(arrays.names[memory_key(array)])
        self.queue_capacity = queue_capacity(plan)
        #: a coupled model's junctions, copied in the driver after each step (`copies`:
        #: target array, places, source array, places, all in the layout): one lane, a
        #: whole epoch a call
        self.step_major = bool(copies)
        named = [(arrays.name(into, "gap"), arrays.name(values, "gap.source"))
                 for into, _, values, _ in copies]  # fmt: skip
        self.kernel = _build(plan, arrays, self.queue_capacity, named, tuple(recorded), rows)
        self.compiled = backend.compile(self.kernel)
        backend.ready(self.compiled)  # compiled now: a run then times only the simulation
        threads = (threads or default_threads()) if backend.threaded else 1
        self.cuts = [0, 1] if self.step_major else partition(plan, threads)
        self.threads = len(self.cuts) - 1
        phases = plan.phases()
        self.first_receive = len(phases) - len(plan.receive)
        args: dict = {"dt": plan.dt, "slot.root": plan.layout.slot_root, **arrays.arrays}
        args[LANE_NODES] = _int32(plan.layout.base)
        args["nblocks"] = plan.nblocks
        for i, (_, at, _, of) in enumerate(copies):
            args[f"x{i}.at"], args[f"x{i}.of"], args[f"x{i}.n"] = _int32(at), _int32(of), len(at)
        for k, phase in enumerate(phases):
            args[f"k{k}.ranges"] = _int32(phase.ranges)
            for name, value in phase.args.items():
                if (k, name) not in arrays.of:  # scalars
                    args[f"k{k}.{name}"] = value
        nblocks = plan.nblocks
        for name, dtype in QUEUE_FIELDS:
            args[f"q.{name}"] = np.zeros(nblocks * self.queue_capacity, NUMPY_DTYPES[dtype])
        args["q.full"] = np.zeros(nblocks, np.int32)
        args["q.left"] = np.zeros(nblocks, np.int32)
        args["cursor"] = np.zeros(3 * nblocks, np.int32)
        for j, (phase, records) in enumerate(zip(plan.receive, _sends(plan))):
            if records:
                for name, dtype in phase.kernel.streams[0].fields:
                    args[f"send{j}.{name}"] = np.zeros(nblocks * records, NUMPY_DTYPES[dtype])
                args[f"send{j}.count"] = np.zeros(nblocks, np.int32)
        self.names = {p.name for p in self.kernel.params}
        self.bound = backend.bind(
            self.compiled, {name: value for name, value in args.items() if name in self.names}
        )
        self._kept: tuple | None = None  # a call's arguments, and what they were made for
        #: the recorded rows' buffer, kept while large enough
        self._rows = np.zeros(0, NUMPY_DTYPES[rows])
        self.outputs = ("rec.out", "blowup")
        if plan.threshold is not None:
            self.outputs += ("spike.count", "spike.presyn", "spike.t")
        if self.queue_capacity:
            self.outputs += ("q.full", "q.left")

    def _args(self, t0: float, nsteps: int, events: EpochEvents, every: int) -> dict:
        """A call's own arguments: `nsteps` steps from `t0` with `events`, recording
        every `every` steps; its arrays kept from call to call while the steps, the
        recorded nodes and the events' buffers are the same (the epochs of a model whose
        junctions cross ranks are all one step)."""
        plan = self.plan
        key = (nsteps, every, events.generation, plan.record_node, events, plan.values)
        kept = self._kept[0] if self._kept is not None else None
        if (
            kept is None
            or kept[:3] != key[:3]
            or any(a is not b for a, b in zip(kept[3:], key[3:]))
        ):
            nrec = self.columns()
            rows = nsteps // every + 1
            if len(self._rows) < rows * nrec:  # new memory is faulted in page by page
                self._rows = np.zeros(rows * nrec, self._rows.dtype)
            args = {"nrec": nrec, "rec.out": self._rows,
                    "rec.start": _int32(plan.record_start), "rec.node": plan.record_node,
                    "rec.column": plan.record_column, "blowup": np.full(plan.nblocks, np.inf),
                    "ev.start": events.start}  # fmt: skip
            for i, values in enumerate(plan.values):
                args[f"val{i}.start"] = _int32(values.start)
                args[f"val{i}.node"], args[f"val{i}.column"] = values.places, values.column
            if plan.threshold is not None:  # a detector fires at most once a step
                detectors = plan.threshold.ranges
                args["spike.base"] = _int32(detectors[:-1] * nsteps)
                args["spike.count"] = np.zeros(plan.nblocks, np.int32)
                args["spike.presyn"] = np.zeros(max(1, int(detectors[-1]) * nsteps), np.int32)
                args["spike.t"] = np.zeros(max(1, int(detectors[-1]) * nsteps))
            for name in ("t", "phase", "lane", "row"):
                args[f"ev.{name}"] = getattr(events, name)
            for j, receive in enumerate(events.receive_args):
                k = self.first_receive + j
                for name in ("event.instance", "event.netcon", "event.t", "event.flag"):
                    args[f"k{k}.{name}"] = receive[name]
            self._kept = key, {n: a for n, a in args.items() if n in self.names}
        args = self._kept[1]
        args["t0"], args["nsteps"] = t0, nsteps
        args["blowup"].fill(np.inf)
        if "spike.count" in args:
            args["spike.count"].fill(0)
        return args

    def advance(
        self,
        t0: float,
        nsteps: int,
        events: EpochEvents,
        first: int = 1,
        every: int = 1,
        out: np.ndarray | None = None,
    ) -> EpochResult:
        """Every block through `nsteps` steps from `t0` with the epoch's `events`,
        recording after step `first` (1-based) and every `every` steps after it (the
        result's arrays are this call's until the next), into `out` where given (a
        contiguous array of the rows' type, room for them: a host backend records
        straight into it, a device's rows are copied there)."""
        plan = self.plan
        args = self._args(t0, nsteps, events, every)
        args["rec.first"], args["rec.every"] = first, every
        nrec = self.columns()
        rows = (nsteps - first) // every + 1 if first <= nsteps else 0
        buffer = args["rec.out"]
        if out is not None and self.backend.device_kind == "cpu":
            args["rec.out"] = out
        try:
            self.bound.run(args, self.cuts, self.outputs)
        finally:
            args["rec.out"] = buffer
        recorded = buffer[: rows * nrec]
        if out is not None:
            if self.backend.device_kind != "cpu":
                out[: rows * nrec] = recorded
            recorded = out[: rows * nrec]
        result = EpochResult(np.zeros(0, np.int32), np.zeros(0), recorded.reshape(rows, nrec))
        if plan.threshold is not None and args["spike.count"].any():  # each block's spikes
            at = _regions(args["spike.base"], args["spike.count"])
            result.spike_lanes, result.spike_t = args["spike.presyn"][at], args["spike.t"][at]
        if self.queue_capacity:
            self._pending(result)
        if args["blowup"].min() < np.inf:
            result.blowup = args["blowup"].copy()
            self.store()  # the model's state as it was when the block stopped
        return result

    def columns(self) -> int:
        """A recorded row's columns: the voltages', then the other values'."""
        return len(self.plan.record_node) + sum(len(v.places) for v in self.plan.values)

    def _pending(self, result: EpochResult) -> None:
        """The self-events sent in the epoch and due after it, block by block in delivery
        order, or that a block's queue filled (and lost some)."""
        args = self.bound.args
        if args["q.full"].any():
            args["q.full"][:] = 0  # a device's copy is reset by the next run's load
            result.overflow = True
            return
        left = args["q.left"]
        if left.any():
            self.bound.fetch(tuple(f"q.{name}" for name, _ in QUEUE_FIELDS))
        at = _regions(np.arange(len(left)) * self.queue_capacity, left)
        result.pending = tuple(args[f"q.{name}"][at].copy() for name, _ in QUEUE_FIELDS)

    def load(self) -> None:
        """The model's state into the layout, where it stays until `store`: the model's
        arrays laid out in place (and where the backend has a device, copied there)."""
        if not self.plan.laid_out:
            self.plan.lay_out()
            self.bound.load()

    def store(self) -> None:
        """The state back in the model's arrays, in the model's order."""
        if self.plan.laid_out:
            self.bound.store()
            self.plan.restore()
