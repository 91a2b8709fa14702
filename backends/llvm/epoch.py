"""Compiled epochs for the llvm backend: one module holds every kernel of the step and a
driver that takes a range of cell blocks through a whole epoch (portneuron.sim.epoch).

The driver is `i64 @<name>(ptr ctx)`, returning how many blocks blew up; `ctx` is an array
of 8-byte fields (`Ctx` below names them), then two per phase: the phase's argument slots
and its block ranges. Kernels
are internal functions with the `(lo, hi, slots)` signature of lower.py, so LLVM inlines
them into the step loop. Threads each get their own context and slot copies (the `t` slot
and the spike stream are written while running); arrays are shared, and blocks are
disjoint, so no two threads write the same element.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from llvmlite import ir
from portneuron.ir import Kernel

from ..base import QueueOverflow
from ..plan import EpochEvents, EpochPlan, Phase
from .jit import Jit, fill_slots, slot_count
from .llvm_types import F64_T, I32_T, I64_T, PTR
from .lower import emits_per_lane, lower_kernel


class Ctx:
    """Fields of the driver's context array."""

    BLOCK_LO, BLOCK_HI, NSTEPS, T0, DT = 0, 1, 2, 3, 4
    EV_START, EV_T, EV_PHASE, EV_LANE = 5, 6, 7, 8
    REC_START, REC_NODE, REC_COLUMN, NREC, REC_OUT, V = 9, 10, 11, 12, 13, 14
    SLOT_ROOT, BLOWUP = 15, 16
    COPIES = 17  # per plan.copies entry: model array, layout array, dst, src, ranges
    # the self-event queue: time, flag, instance, weight row, receive phase; its capacity,
    # the entries pending from the blocks done (a prefix), and 1 if it ever overflowed
    Q_T, Q_FLAG, Q_INST, Q_ROW, Q_PHASE, Q_CAP, Q_LEFT, Q_FULL = range(18, 26)
    # a self-event being delivered (one-element event arrays), each receive phase's slots
    # that point at them, and its net_send record buffer: instance, t, flag, count
    EVS_INST, EVS_T, EVS_FLAG, EVS_ROW, SCRATCH, SENDS = range(26, 32)
    EV_ROW = 32  # the weight row of each of the epoch's events
    PHASES = 33


def _slot_of(kernel: Kernel, name: str) -> int | None:
    return next((k for k, p in enumerate(kernel.params) if p.name == name), None)


class _Driver:
    """Builds the driver function; `self.b` is the builder."""

    def __init__(
        self, module: ir.Module, plan: EpochPlan, phases: list[Phase], name: str, math: str
    ):
        self.module, self.plan, self.phases = module, plan, phases
        self.fn = ir.Function(module, ir.FunctionType(I64_T, [PTR]), name)
        self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.ctx = self.fn.args[0]
        self.kernels = []
        self.t_slots = [_slot_of(phase.kernel, "t") for phase in phases]
        self.sends = [any(s.name == "net_send" for s in p.kernel.streams) for p in plan.receive]
        for k, phase in enumerate(phases):
            k_ir = phase.kernel
            kernel = Kernel(f"k{k}", k_ir.lanes, k_ir.params, k_ir.body, k_ir.streams)
            lower_kernel(module, kernel, math)
            function = module.globals[f"k{k}"]
            function.linkage = "internal"
            self.kernels.append(function)

    # ------------------------------------------------------------------ helpers
    def field(self, index: int, typ=I64_T) -> ir.Value:
        at = self.b.gep(self.ctx, [ir.Constant(I64_T, index)], source_etype=I64_T)
        return self.b.load(at, typ=typ)

    def at(self, base: ir.Value, index: ir.Value, typ) -> ir.Value:
        return self.b.gep(base, [index], source_etype=typ)

    def load(self, base: ir.Value, index: ir.Value, typ) -> ir.Value:
        return self.b.load(self.at(base, index, typ), typ=typ)

    def variable(self, typ, value: ir.Value, name: str) -> ir.AllocaInstr:
        with self.b.goto_entry_block():
            slot = self.b.alloca(typ, name=name)
        self.b.store(value, slot)
        return slot

    def loop(self, lo: ir.Value, hi: ir.Value, name: str, body) -> None:
        """for i in range(lo, hi): body(i, done), with i64 counters; body may branch to
        the block `done` to leave the loop."""
        b = self.b
        counter = self.variable(I64_T, lo, name)
        head = self.fn.append_basic_block(f"{name}.head")
        inner = self.fn.append_basic_block(f"{name}.body")
        step = self.fn.append_basic_block(f"{name}.step")
        done = self.fn.append_basic_block(f"{name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.load(counter, typ=I64_T)
        b.cbranch(b.icmp_signed("<", i, hi), inner, done)
        b.position_at_end(inner)
        body(b.load(counter, typ=I64_T), done)
        if not b.block.is_terminated:
            b.branch(step)
        b.position_at_end(step)
        b.store(b.add(b.load(counter, typ=I64_T), ir.Constant(I64_T, 1)), counter)
        b.branch(head)
        b.position_at_end(done)

    # ------------------------------------------------------------------ the driver
    def build(self) -> None:
        b = self.b
        self.slots = [self.field(Ctx.PHASES + 2 * k, PTR) for k in range(len(self.phases))]
        self.ranges = [self.field(Ctx.PHASES + 2 * k + 1, PTR) for k in range(len(self.phases))]
        self.half = b.fmul(ir.Constant(F64_T, 0.5), self.field(Ctx.DT, F64_T))
        # the context's arrays, read once here rather than in the loops
        self.array = {
            index: self.field(index, PTR)
            for index in (Ctx.EV_START, Ctx.EV_T, Ctx.EV_PHASE, Ctx.EV_LANE, Ctx.REC_START,
                          Ctx.REC_NODE, Ctx.REC_COLUMN, Ctx.REC_OUT, Ctx.V, Ctx.SLOT_ROOT,
                          Ctx.BLOWUP, Ctx.COPIES, Ctx.Q_T, Ctx.Q_FLAG, Ctx.Q_INST, Ctx.Q_ROW,
                          Ctx.Q_PHASE, Ctx.EVS_INST, Ctx.EVS_T, Ctx.EVS_FLAG, Ctx.EVS_ROW,
                          Ctx.SCRATCH, Ctx.SENDS, Ctx.EV_ROW)
        }  # fmt: skip
        self.v = self.array[Ctx.V]
        self.nsteps, self.nrec = self.field(Ctx.NSTEPS), self.field(Ctx.NREC)
        self.t0 = self.field(Ctx.T0, F64_T)
        self.blown = self.variable(I64_T, ir.Constant(I64_T, 0), "blown")
        self.loop(self.field(Ctx.BLOCK_LO), self.field(Ctx.BLOCK_HI), "block", self.block)
        b.ret(b.load(self.blown, typ=I64_T))

    def invoke(self, k: int, lo: ir.Value, hi: ir.Value, t: ir.Value, slots=None) -> None:
        """Phase k's kernel over lanes lo .. hi-1 at time t (with its own argument slots,
        or `slots`)."""
        slots = self.slots[k] if slots is None else slots
        if self.t_slots[k] is not None:
            self.b.store(t, self.at(slots, ir.Constant(I64_T, self.t_slots[k]), F64_T))
        self.b.call(self.kernels[k], [lo, hi, slots])

    def call(self, k: int, block: ir.Value, t: ir.Value) -> None:
        """Phase k over the block's range."""
        lo = self.load(self.ranges[k], block, I64_T)
        hi = self.load(self.ranges[k], self.b.add(block, ir.Constant(I64_T, 1)), I64_T)
        self.invoke(k, lo, hi, t)

    def block(self, block: ir.Value, _exit) -> None:
        b = self.b
        self.t = self.variable(F64_T, self.t0, "t")
        ev_start = self.array[Ctx.EV_START]
        self.event = self.variable(I64_T, self.load(ev_start, block, I64_T), "event")
        self.event_end = self.load(ev_start, b.add(block, ir.Constant(I64_T, 1)), I64_T)
        self.block_index = block
        if any(self.sends):  # the block's queue starts after the pending entries
            base = self.field(Ctx.Q_LEFT)
            self.q_base = self.variable(I64_T, base, "q.base")
            self.q_head = self.variable(I64_T, base, "q.head")
            self.q_end = self.variable(I64_T, base, "q.end")
        self.copy(block, into_layout=True)
        self.loop(ir.Constant(I64_T, 0), self.nsteps, "step", self.step)
        self.copy(block, into_layout=False)
        if any(self.sends):  # what is still pending stays, after the earlier blocks'
            self.compact()
            at = self.b.gep(self.ctx, [ir.Constant(I64_T, Ctx.Q_LEFT)], source_etype=I64_T)
            self.b.store(self.b.load(self.q_end, typ=I64_T), at)

    def copy(self, block: ir.Value, into_layout: bool) -> None:
        """The block's share of each of the plan's copies from the model's order into the
        layout, or back (those marked `back`)."""
        b, table = self.b, self.array[Ctx.COPIES]
        for c, copy in enumerate(self.plan.copies):
            if not (into_layout or copy.back):
                continue
            model, layout, dst, src, ranges = (
                self.load(table, ir.Constant(I64_T, 5 * c + k), PTR) for k in range(5)
            )
            lo = self.load(ranges, block, I64_T)
            hi = self.load(ranges, b.add(block, ir.Constant(I64_T, 1)), I64_T)

            def body(k, _exit, model=model, layout=layout, dst=dst, src=src, typ=F64_T):
                at = self.at(layout, b.sext(self.load(dst, k, I32_T), I64_T), typ)
                source = self.at(model, b.sext(self.load(src, k, I32_T), I64_T), typ)
                if into_layout:
                    b.store(b.load(source, typ=typ), at)
                else:
                    b.store(b.load(at, typ=typ), source)

            self.loop(lo, hi, "copy_in" if into_layout else "copy_out", body)

    def step(self, step: ir.Value, leave) -> None:
        b, plan = self.b, self.plan
        block = self.block_index
        k = 0
        t = b.load(self.t, typ=F64_T)
        if plan.threshold is not None:
            self.call(0, block, t)
            k = 1
        self.deliver(b.fadd(t, self.half))
        t = b.fadd(t, self.half)
        for _ in plan.first_half:
            self.call(k, block, t)
            k += 1
        t = b.fadd(t, self.half)
        for _ in plan.second_half:
            self.call(k, block, t)
            k += 1
        b.store(t, self.t)
        self.deliver(t)
        self.record(step, block)
        self.check(block, t, leave)

    def deliver(self, until: ir.Value) -> None:
        """Run NET_RECEIVE for this block's events due by `until`, in order: the epoch's
        events and the self-events sent during it merged by time, the former first at
        equal times (they were queued first)."""
        b, plan = self.b, self.plan
        if not plan.receive:
            return
        first = (1 if plan.threshold is not None else 0) + len(plan.first_half)
        first += len(plan.second_half)
        queue = any(self.sends)
        inf, zero = ir.Constant(F64_T, float("inf")), ir.Constant(I64_T, 0)
        head = self.fn.append_basic_block("deliver.head")
        run = self.fn.append_basic_block("deliver.run")
        external = self.fn.append_basic_block("deliver.external")
        done = self.fn.append_basic_block("deliver.done")
        b.branch(head)
        b.position_at_end(head)
        e = b.load(self.event, typ=I64_T)
        has_event = b.icmp_signed("<", e, self.event_end)
        te = self.load(self.array[Ctx.EV_T], b.select(has_event, e, zero), F64_T)
        te = b.select(has_event, te, inf)
        if queue:
            q = b.load(self.q_head, typ=I64_T)
            has_self = b.icmp_signed("<", q, b.load(self.q_end, typ=I64_T))
            tq = self.load(self.array[Ctx.Q_T], b.select(has_self, q, zero), F64_T)
            tq = b.select(has_self, tq, inf)
            take_event = b.and_(has_event, b.fcmp_ordered("<=", te, tq))
            t_next = b.select(take_event, te, tq)
            due = b.and_(b.or_(has_event, has_self), b.fcmp_ordered("<=", t_next, until))
        else:
            take_event, due = has_event, b.and_(has_event, b.fcmp_ordered("<=", te, until))
        b.cbranch(due, run, done)
        b.position_at_end(run)
        if queue:
            own = self.fn.append_basic_block("deliver.self")
            b.cbranch(take_event, external, own)
        else:
            b.branch(external)

        b.position_at_end(external)
        which = self.load(self.array[Ctx.EV_PHASE], e, I32_T)
        lane = b.sext(self.load(self.array[Ctx.EV_LANE], e, I32_T), I64_T)
        b.store(b.add(e, ir.Constant(I64_T, 1)), self.event)
        switch = b.switch(which, head)
        for j in range(len(plan.receive)):
            case = self.fn.append_basic_block(f"deliver.case{j}")
            switch.add_case(ir.Constant(I32_T, j), case)
            b.position_at_end(case)
            k = first + j
            self.invoke(k, lane, b.add(lane, ir.Constant(I64_T, 1)), te)
            if self.sends[j]:
                self.drain(j, self.load(self.array[Ctx.EV_ROW], e, I32_T))
            b.branch(head)

        if queue:  # the earliest self-event, through the scratch event arrays
            b.position_at_end(own)
            row = self.load(self.array[Ctx.Q_ROW], q, I32_T)
            for field, queued, typ in (
                (Ctx.EVS_INST, Ctx.Q_INST, I32_T),
                (Ctx.EVS_T, Ctx.Q_T, F64_T),
                (Ctx.EVS_FLAG, Ctx.Q_FLAG, F64_T),
                (Ctx.EVS_ROW, Ctx.Q_ROW, I32_T),
            ):
                value = self.load(self.array[queued], q, typ)
                b.store(value, self.at(self.array[field], zero, typ))
            which = self.load(self.array[Ctx.Q_PHASE], q, I32_T)
            b.store(b.add(q, ir.Constant(I64_T, 1)), self.q_head)
            switch = b.switch(which, head)
            for j in range(len(plan.receive)):
                if not self.sends[j]:
                    continue
                case = self.fn.append_basic_block(f"deliver.self{j}")
                switch.add_case(ir.Constant(I32_T, j), case)
                b.position_at_end(case)
                scratch = self.load(self.array[Ctx.SCRATCH], ir.Constant(I64_T, j), PTR)
                self.invoke(first + j, zero, ir.Constant(I64_T, 1), tq, scratch)
                self.drain(j, row)
                b.branch(head)
        b.position_at_end(done)

    # ------------------------------------------------------------------ the self-event queue
    QUEUE = (Ctx.Q_T, Ctx.Q_FLAG, Ctx.Q_INST, Ctx.Q_ROW, Ctx.Q_PHASE)
    QUEUE_TYPES = (F64_T, F64_T, I32_T, I32_T, I32_T)

    def move(self, src: ir.Value, dst: ir.Value) -> None:
        """Queue entry src to place dst."""
        for field, typ in zip(self.QUEUE, self.QUEUE_TYPES):
            array = self.array[field]
            self.b.store(self.load(array, src, typ), self.at(array, dst, typ))

    def compact(self) -> None:
        """Move the block's pending entries down to the start of its region."""
        b = self.b
        base, q = b.load(self.q_base, typ=I64_T), b.load(self.q_head, typ=I64_T)
        shift = b.sub(q, base)
        self.loop(
            q,
            b.load(self.q_end, typ=I64_T),
            "q.compact",
            lambda i, _: self.move(i, b.sub(i, shift)),
        )
        b.store(b.sub(b.load(self.q_end, typ=I64_T), shift), self.q_end)
        b.store(base, self.q_head)

    def drain(self, j: int, row: ir.Value) -> None:
        """Queue the self-events receive phase j's last call sent, carrying weight row
        `row` (the delivered event's), and empty its record buffer."""
        b = self.b
        sends = self.array[Ctx.SENDS]
        inst, t, flag, count = (
            self.load(sends, ir.Constant(I64_T, 4 * j + k), PTR) for k in range(4)
        )
        n = b.load(count, typ=I64_T)

        def body(r, _exit):
            values = (
                self.load(t, r, F64_T),
                self.load(flag, r, F64_T),
                self.load(inst, r, I32_T),
                row,
                ir.Constant(I32_T, j),
            )
            self.insert(values)

        self.loop(ir.Constant(I64_T, 0), n, "send", body)
        b.store(ir.Constant(I64_T, 0), count)

    def insert(self, values: tuple) -> None:
        """A self-event into the queue, after every entry not later than it (so entries of
        one time stay in the order they were sent). A full queue compacts; still full, it
        sets Q_FULL and drops the event (the simulation then stops with an error)."""
        b = self.b
        full = b.icmp_signed(">=", b.load(self.q_end, typ=I64_T), self.field(Ctx.Q_CAP))
        with b.if_then(full):
            self.compact()
        end = b.load(self.q_end, typ=I64_T)
        room = b.icmp_signed("<", end, self.field(Ctx.Q_CAP))
        with b.if_else(room) as (yes, no):
            with yes:
                k = self.variable(I64_T, end, "q.k")
                test = self.fn.append_basic_block("q.test")
                later = self.fn.append_basic_block("q.later")
                shift = self.fn.append_basic_block("q.shift")
                place = self.fn.append_basic_block("q.place")
                b.branch(test)
                b.position_at_end(test)
                now = b.load(k, typ=I64_T)
                above = b.icmp_signed(">", now, b.load(self.q_head, typ=I64_T))
                b.cbranch(above, later, place)
                b.position_at_end(later)
                before = b.sub(now, ir.Constant(I64_T, 1))
                t_before = self.load(self.array[Ctx.Q_T], before, F64_T)
                b.cbranch(b.fcmp_ordered(">", t_before, values[0]), shift, place)
                b.position_at_end(shift)
                self.move(before, now)
                b.store(before, k)
                b.branch(test)
                b.position_at_end(place)
                at = b.load(k, typ=I64_T)
                for field, typ, value in zip(self.QUEUE, self.QUEUE_TYPES, values):
                    b.store(value, self.at(self.array[field], at, typ))
                b.store(b.add(end, ir.Constant(I64_T, 1)), self.q_end)
            with no:
                flag = b.gep(self.ctx, [ir.Constant(I64_T, Ctx.Q_FULL)], source_etype=I64_T)
                b.store(ir.Constant(I64_T, 1), flag)

    def record(self, step: ir.Value, block: ir.Value) -> None:
        b = self.b
        start = self.array[Ctx.REC_START]
        lo = self.load(start, block, I64_T)
        hi = self.load(start, b.add(block, ir.Constant(I64_T, 1)), I64_T)
        row = b.mul(step, self.nrec)

        def body(r, _exit):
            node = b.sext(self.load(self.array[Ctx.REC_NODE], r, I32_T), I64_T)
            column = b.sext(self.load(self.array[Ctx.REC_COLUMN], r, I32_T), I64_T)
            value = self.load(self.v, node, F64_T)
            b.store(value, self.at(self.array[Ctx.REC_OUT], b.add(row, column), F64_T))

        self.loop(lo, hi, "rec", body)

    def check(self, block: ir.Value, t: ir.Value, leave) -> None:
        """A cell whose root voltage is not finite stops its block: BLOWUP[block] = t."""
        b = self.b
        width = ir.Constant(I64_T, self.plan.width)
        lo = b.mul(block, width)
        hi = b.add(lo, width)
        bad = self.fn.append_basic_block("blowup")
        ok = self.fn.append_basic_block("finite")

        def body(c, _exit):
            root = b.sext(self.load(self.array[Ctx.SLOT_ROOT], c, I32_T), I64_T)
            v = self.load(self.v, root, F64_T)
            finite = b.fcmp_ordered("==", b.fsub(v, v), ir.Constant(F64_T, 0.0))
            good = self.fn.append_basic_block("cell.ok")
            b.cbranch(finite, good, bad)
            b.position_at_end(good)

        self.loop(lo, hi, "cell", body)
        b.branch(ok)
        b.position_at_end(bad)
        b.store(t, self.at(self.array[Ctx.BLOWUP], block, F64_T))
        b.store(b.add(b.load(self.blown, typ=I64_T), ir.Constant(I64_T, 1)), self.blown)
        b.branch(leave)
        b.position_at_end(ok)


def lower_epoch(plan: EpochPlan, name: str, math: str = "libm") -> str:
    module = ir.Module(name=name)
    module.triple = Jit.get().triple
    driver = _Driver(module, plan, plan.phases(), name, math)
    driver.build()
    return str(module)


_NO_LANES, _NO_TIMES = np.zeros(0, np.int32), np.zeros(0)


#: Self-events a thread's queue holds: those pending from its blocks done this epoch and
#: those of the block it is running.
QUEUE_CAPACITY = 1 << 14


class _Worker:
    """One thread's share: a range of blocks, its own context and slot copies."""

    def __init__(self, program: CompiledEpoch, blocks: tuple[int, int]) -> None:
        plan = program.plan
        self.slots = []
        self.last: list[list[Any]] = []  # per phase: the arrays its slots point at
        for k, phase in enumerate(program.phases):
            slots = np.zeros(slot_count(phase.kernel), dtype=np.int64)
            self.last.append([None] * len(phase.kernel.params))
            if k < program.receive_first:  # NET_RECEIVE gets its event arrays each epoch
                fill_slots(phase.kernel, phase.args, slots, self.last[k])
            self.slots.append(slots)
        self.ctx = np.zeros(Ctx.PHASES + 2 * len(program.phases), dtype=np.int64)
        self.ctx_float = self.ctx.view(np.float64)
        self.address = self.ctx.ctypes.data
        self.ctx[Ctx.BLOCK_LO], self.ctx[Ctx.BLOCK_HI] = blocks
        self.ctx_float[Ctx.DT] = plan.dt
        self.address_of(
            {
                Ctx.V: plan.v,
                Ctx.SLOT_ROOT: plan.layout.slot_root,
                Ctx.BLOWUP: program.blowup,
                Ctx.COPIES: program.copies,
            }
        )
        for k, phase in enumerate(program.phases):
            self.ctx[Ctx.PHASES + 2 * k] = self.slots[k].ctypes.data
            self.ctx[Ctx.PHASES + 2 * k + 1] = phase.ranges.ctypes.data
        self.generation = -1
        self.capacity = 0
        if plan.threshold is not None:
            ranges = plan.threshold.ranges
            self.detectors = int(ranges[blocks[1]] - ranges[blocks[0]])
            self.stream_slot = len(plan.threshold.kernel.params)
            self.count = np.zeros(1, dtype=np.int64)
            self.slots[0][self.stream_slot + 2] = self.count.ctypes.data
        self.self_events(program)

    def self_events(self, program: CompiledEpoch) -> None:
        """The self-event queue, the scratch event a queued self-event is delivered
        through, and each receive phase's net_send record buffer (`_Driver.deliver`)."""
        capacity = QUEUE_CAPACITY if program.plan.sends else 1  # t, flag, instance, row, phase
        types = (np.float64, np.float64, np.int32, np.int32, np.int32)
        self.queue = [np.zeros(capacity, dtype) for dtype in types]
        self.event = [np.zeros(1, np.int32), np.zeros(1), np.zeros(1), np.zeros(1, np.int32)]
        scratch, sends = [], []
        self.held: list[Any] = []  # what the tables below point at
        for j, phase in enumerate(program.plan.receive):
            k = program.receive_first + j
            n_params = len(phase.kernel.params)
            buffers = []
            if phase.kernel.streams:  # net_send only (the plan refuses others)
                records = max(1, emits_per_lane(phase.kernel)["net_send"])
                buffers = [np.zeros(records, np.int32), np.zeros(records), np.zeros(records)]
                buffers.append(np.zeros(1, np.int64))
                self.slots[k][n_params : n_params + 4] = [a.ctypes.data for a in buffers]
            args = dict(phase.args)
            names = ("event.instance", "event.t", "event.flag", "event.netcon")
            args.update(zip(names, self.event))
            slots = self.slots[k].copy()
            fill_slots(phase.kernel, args, slots)
            scratch.append(slots.ctypes.data)
            sends += [a.ctypes.data for a in buffers] or [0] * 4
            self.held += [slots, buffers]
        self.scratch = np.array(scratch or [0], dtype=np.int64)
        self.sends = np.array(sends or [0], dtype=np.int64)
        fields = (Ctx.Q_T, Ctx.Q_FLAG, Ctx.Q_INST, Ctx.Q_ROW, Ctx.Q_PHASE)
        self.address_of(dict(zip(fields, self.queue)))
        fields = (Ctx.EVS_INST, Ctx.EVS_T, Ctx.EVS_FLAG, Ctx.EVS_ROW)
        self.address_of(dict(zip(fields, self.event)))
        self.address_of({Ctx.SCRATCH: self.scratch, Ctx.SENDS: self.sends})
        self.ctx[Ctx.Q_CAP] = capacity

    def pending(self) -> tuple[np.ndarray, ...]:
        """The self-events still pending after an epoch (t, flag, instance, row, phase),
        block by block in delivery order; the queue is emptied."""
        n = int(self.ctx[Ctx.Q_LEFT])
        self.ctx[Ctx.Q_LEFT] = 0
        return tuple(a[:n].copy() for a in self.queue)

    def address_of(self, arrays: dict[int, np.ndarray]) -> None:
        for index, array in arrays.items():
            self.ctx[index] = array.ctypes.data

    def point_at(self, program: CompiledEpoch, events: EpochEvents) -> None:
        """Address this epoch's event buffers (only when they moved)."""
        if events.generation == self.generation:
            return
        self.address_of(
            {
                Ctx.EV_START: events.start,
                Ctx.EV_T: events.t,
                Ctx.EV_PHASE: events.phase,
                Ctx.EV_LANE: events.lane,
                Ctx.EV_ROW: events.row,
            }
        )
        for j, args in enumerate(events.receive_args):
            k = program.receive_first + j
            fill_slots(program.phases[k].kernel, args, self.slots[k], self.last[k])
        self.generation = events.generation

    def spike_buffers(self, nsteps: int) -> None:
        """The threshold kernel's spike stream: room for `nsteps` steps, emptied."""
        need = max(1, self.detectors * nsteps)
        if need > self.capacity:
            self.spike_presyn = np.empty(need, dtype=np.int32)
            self.spike_t = np.empty(need, dtype=np.float64)
            self.slots[0][self.stream_slot] = self.spike_presyn.ctypes.data
            self.slots[0][self.stream_slot + 1] = self.spike_t.ctypes.data
            self.capacity = need
        self.count[0] = 0


def _join(calls: list) -> None:
    """Wait for every call, even through an interrupt (Ctrl-C raises in this thread): the
    workers run compiled code on the model's arrays, which must outlive them. The first
    interrupt is raised once they are done."""
    interrupt: BaseException | None = None
    while True:
        try:
            wait(calls)
            break
        except BaseException as exc:
            interrupt = interrupt or exc
    if interrupt is not None:
        raise interrupt


class CompiledEpoch:
    """An epoch driver compiled for one plan, with its workers (one per thread). The
    model's arrays are the state: each block copies its share in and out every epoch, so
    there is nothing to `load` or `store`."""

    resident = False

    def __init__(self, plan: EpochPlan, address: int, threads: int) -> None:
        self.plan, self.phases = plan, plan.phases()
        self.function = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)(address)
        self.receive_first = len(self.phases) - len(plan.receive)
        self.blowup = np.full(plan.nblocks, np.inf)
        self.copies = np.array(
            [
                array.ctypes.data
                for c in plan.copies
                for array in (c.model, c.layout, c.dst, c.src, c.ranges)
            ]
            or [0],
            dtype=np.int64,
        )
        self.workers = [_Worker(self, blocks) for blocks in partition(plan, threads)]
        self.threads = len(self.workers)
        self.pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None
        self.record_out = np.zeros((0, 0))
        self.recording: tuple = ()

    def _record_buffer(self, nsteps: int) -> np.ndarray:
        plan = self.plan
        nrec = len(plan.record_node)
        key = (plan.record_start, plan.record_node, plan.record_column)
        if self.record_out.shape[0] < nsteps or self.record_out.shape[1] != nrec:
            self.record_out = np.zeros((max(nsteps, 1), nrec))
            self.recording = ()
        if self.recording != tuple(id(a) for a in key):
            for w in self.workers:
                w.address_of(
                    {
                        Ctx.REC_START: plan.record_start,
                        Ctx.REC_NODE: plan.record_node,
                        Ctx.REC_COLUMN: plan.record_column,
                        Ctx.REC_OUT: self.record_out,
                    }
                )
                w.ctx[Ctx.NREC] = nrec
            self.recording = tuple(id(a) for a in key)
        return self.record_out[:nsteps]

    def advance(
        self, t0: float, nsteps: int, events: EpochEvents
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Run every block through `nsteps` steps from `t0`. Returns the spikes (threshold
        lane, t), the recorded voltages (nsteps x recorded nodes) and None, or where a
        voltage stopped being finite: per block, that time (inf where it did not)."""
        record = self._record_buffer(nsteps)
        threshold = self.plan.threshold is not None
        for w in self.workers:
            w.ctx[Ctx.NSTEPS] = nsteps
            w.ctx_float[Ctx.T0] = t0
            w.point_at(self, events)
            if threshold:
                w.spike_buffers(nsteps)
        if self.pool is None:
            blown = self.function(self.workers[0].address)
        else:
            calls = [self.pool.submit(self.function, w.address) for w in self.workers[1:]]
            try:
                blown = self.function(self.workers[0].address)  # this thread takes a share too
            finally:
                _join(calls)
            blown += sum(c.result() for c in calls)
        blowup = None
        if blown:
            blowup = self.blowup.copy()
            self.blowup[:] = np.inf
        counts = [int(w.count[0]) for w in self.workers] if threshold else [0]
        if not any(counts):
            return _NO_LANES, _NO_TIMES, record, blowup
        lane = np.concatenate([w.spike_presyn[:n] for w, n in zip(self.workers, counts)])
        t = np.concatenate([w.spike_t[:n] for w, n in zip(self.workers, counts)])
        return lane, t, record, blowup

    def load(self) -> None:
        pass

    def store(self) -> None:
        pass

    def pending(self) -> tuple[np.ndarray, ...]:
        """The self-events sent in the last epoch and due after it (t, flag, instance,
        row, phase), block by block; QueueOverflow if a queue overflowed."""
        if any(w.ctx[Ctx.Q_FULL] for w in self.workers):
            raise QueueOverflow(
                QUEUE_CAPACITY, "thread's cells", "run with more threads, or compiled epochs off"
            )
        parts = [w.pending() for w in self.workers]
        return tuple(np.concatenate(column) for column in zip(*parts))


def partition(plan: EpochPlan, threads: int) -> list[tuple[int, int]]:
    """Contiguous block ranges with about equal node counts, one per thread (at most one
    thread per block)."""
    nblocks = plan.nblocks
    threads = max(1, min(threads, nblocks))
    nodes = plan.layout.base
    total = nodes[-1] - nodes[0]
    cuts = [0]
    for k in range(1, threads):
        cut = int(np.searchsorted(nodes, nodes[0] + total * k / threads))
        cuts.append(min(max(cut, cuts[-1] + 1), nblocks - (threads - k)))
    cuts.append(nblocks)
    return list(zip(cuts, cuts[1:]))


def compile_epoch(plan: EpochPlan, threads: int, math: str = "libm") -> CompiledEpoch:
    text = lower_epoch(plan, "pn_epoch", math)
    return CompiledEpoch(plan, Jit.get().add_unique(text, "pn_epoch", "epoch1"), threads)


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
