"""Device-resident compiled epochs for the cuda backend (portneuron.sim.epoch).

The model lives on the device: every array the step's kernels use is allocated there
once, uploaded when a run starts (`load`) and brought back into the model's arrays when
it ends (`store`). An epoch is one launch of `pn_epoch`: CUDA block b takes cell block b
(the plan's width, at most a warp's 32 cells) through all of the epoch's steps, as the
IR driver on the CPU takes a block (portneuron/sim/driver.py), so blocks never wait for each other.
Per epoch only the incoming events go up; the spikes, the recorded voltages and the
self-events still pending come down.

Within a block, each phase of the step is a device function (source.py, `device`) run
by all of the block's threads over the block's lanes of that phase, with a barrier after
it; the interleaved axial and Hines kernels run one thread per cell on the first warp.
Thread 0 alone delivers events, in the llvm driver's order (the epoch's events and the
self-events sent in it merged by time, the former first at equal times), and keeps the
block's self-event queue (QUEUE_CAPACITY entries, in time order, sent order among equal
times). Where several instances add to one node (point processes), the adds are atomic,
in the order the threads arrive: the sums may differ from the stepwise loop's in their
last bits.

The kernel reads everything through one table of 8-byte words (`_Source.entries`):
device pointers, and the phases' scalar arguments (a double's bits, an int's value).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from portneuron.ir import BOOL, F64, I32, Kernel
from portneuron.ir.walk import written

from ..base import QueueOverflow
from ..plan import EpochEvents, EpochPlan
from .mapping import emits_per_lane
from .runtime import Runtime
from .source import C_TYPES, module_source

#: Threads per CUDA block (one cell block): the mechanism phases' lanes are spread over
#: all of them, the Hines solve runs on the first warp.
BLOCK_THREADS = 256
#: Self-events one cell block's queue holds.
QUEUE_CAPACITY = 1024
#: status words: spikes found, blocks that blew up, queues that overflowed
SPIKES, BLOWN, OVERFLOW = range(3)
QUEUE_FIELDS = (("t", F64), ("flag", F64), ("inst", I32), ("row", I32), ("phase", I32))


@dataclass(frozen=True)
class Entry:
    """A table word: a host array's device copy ("array"), one of the epoch's own
    buffers ("buffer", by name), or a scalar ("f64", "int")."""

    kind: str
    value: Any


class _Source:
    """The CUDA C of one plan's epoch kernel, and the table it reads."""

    def __init__(self, plan: EpochPlan, block_threads: int = BLOCK_THREADS) -> None:
        self.plan, self.block_threads = plan, block_threads
        self.phases = plan.phases()
        self.entries: list[Entry] = []
        self.buffer_words: dict[str, int] = {}
        self.receive_first = len(self.phases) - len(plan.receive)
        self.sends = [bool(p.kernel.streams) for p in plan.receive]
        self.records = [max(1, emits_per_lane(p.kernel).get("net_send", 0)) for p in plan.receive]
        self.args = [self.arguments(k) for k in range(len(self.phases))]
        functions = [(p.kernel, f"pn_k{k}") for k, p in enumerate(self.phases)]
        parts = [module_source(functions, True, self.shared()), self.queue_functions()]
        parts += [self.deliver_function(), self.epoch_kernel()]
        self.text = "\n".join(p for p in parts if p)

    def shared(self) -> dict[str, set[str]]:
        """Each phase's arrays that a phase writes during the launch (by any name)."""
        writes = {
            _key(phase.args[name])
            for phase in self.phases
            for name in written(phase.kernel.body)
            if isinstance(phase.args.get(name), np.ndarray)
        }
        out = {}
        for k, phase in enumerate(self.phases):
            out[f"pn_k{k}"] = {
                p.name
                for p in phase.kernel.params
                if p.is_array
                and (p.name.startswith("event.") or _key(phase.args[p.name]) in writes)
            }
        return out

    # ------------------------------------------------------------------ the table
    def word(self, kind: str, value: Any) -> int:
        self.entries.append(Entry(kind, value))
        return len(self.entries) - 1

    def buffer(self, name: str, c_type: str) -> str:
        """A C expression for epoch buffer `name` as a `c_type` pointer."""
        if name not in self.buffer_words:
            self.buffer_words[name] = self.word("buffer", name)
        return f"(({c_type}*)table[{self.buffer_words[name]}])"

    def arguments(self, k: int) -> dict[str, str]:
        """C expressions of phase k's arguments (streams: by field name), `t` left out."""
        phase = self.phases[k]
        writes = written(phase.kernel.body)
        out = {}
        for p in phase.kernel.params:
            if p.name == "t" and not p.is_array:
                continue
            receive = k - self.receive_first
            if p.is_array and receive >= 0 and p.name.startswith("event."):
                entry = self.word("buffer", f"receive{receive}:{p.name}")
            elif p.is_array:
                entry = self.word("array", phase.args[p.name])
            elif p.dtype == F64:
                entry = self.word("f64", float(phase.args[p.name]))
            else:
                entry = self.word("int", int(phase.args[p.name]))
            if p.is_array:
                const = "" if p.name in writes else "const "
                out[p.name] = f"(({const}{C_TYPES[p.dtype]}*)table[{entry}])"
            elif p.dtype == F64:
                out[p.name] = f"__longlong_as_double((long long)table[{entry}])"
            elif p.dtype == BOOL:
                out[p.name] = f"(table[{entry}] != 0ull)"
            else:
                out[p.name] = f"(int)(long long)table[{entry}]"
        out["ranges"] = f"((const long long*)table[{self.word('array', phase.ranges)}])"
        return out

    def call(self, k: int, lo: str, hi: str, t: str, threads: str, **override: str) -> str:
        """A call of phase k's device function over lanes lo .. hi-1 at time t;
        `override`: argument expressions by parameter or stream-field name."""
        kernel: Kernel = self.phases[k].kernel
        args = [lo, hi, "thread" if threads != "1" else "0", threads]
        for p in kernel.params:
            args.append(override.get(p.name) or (t if p.name == "t" else self.args[k][p.name]))
        for s in kernel.streams:
            for field, _ in s.fields:
                args.append(override[f"{s.name}.{field}"])
            args += [override[f"{s.name}.order"], override[f"{s.name}.count"]]
        return f"pn_k{k}({', '.join(args)});"

    # ------------------------------------------------------------------ thread 0's code
    def queue_functions(self) -> str:
        if not any(self.sends):
            return ""
        fields = "".join(f"    {C_TYPES[t]}* {name};\n" for name, t in QUEUE_FIELDS)
        moves = "".join(f"    q->{name}[to] = q->{name}[from];\n" for name, _ in QUEUE_FIELDS)
        return f"""\
// A cell block's self-event queue: entries head .. end-1 are pending, in time order.
struct pn_queue {{
{fields}    int head;
    int end;
}};

static __device__ void pn_move(pn_queue* q, int from, int to)
{{
{moves}}}

// The pending entries moved down to the start of the block's region.
static __device__ void pn_compact(pn_queue* q)
{{
    for (int k = q->head; k < q->end; k++) {{
        pn_move(q, k, k - q->head);
    }}
    q->end -= q->head;
    q->head = 0;
}}

// A self-event, after every entry not later than it (sent order among equal times);
// with the queue full, the overflow count grows and the event is dropped.
static __device__ void pn_push(pn_queue* q, unsigned long long* status, double t,
                               double flag, int inst, int row, int phase)
{{
    if (q->end >= {QUEUE_CAPACITY} && q->head > 0) {{
        pn_compact(q);
    }}
    if (q->end >= {QUEUE_CAPACITY}) {{
        atomicAdd(status + {OVERFLOW}, 1ull);  // other blocks' thread 0 too
        return;
    }}
    int k = q->end;
    while (k > q->head && q->t[k - 1] > t) {{
        pn_move(q, k - 1, k);
        k--;
    }}
    q->t[k] = t;
    q->flag[k] = flag;
    q->inst[k] = inst;
    q->row[k] = row;
    q->phase[k] = phase;
    q->end++;
}}
"""

    def sent(self, j: int) -> dict[str, str]:
        """Receive phase j's net_send record buffers: the block's share of each."""
        if not self.sends[j]:
            return {}
        r = self.records[j]
        out = {
            f"net_send.{name}": f"{self.buffer(f'send{j}:{name}', c)} + block * {r}"
            for name, c in (("instance", "int"), ("t", "double"), ("flag", "double"),
                            ("order", "long long"))
        }  # fmt: skip
        out["net_send.count"] = f"{self.buffer(f'send{j}:count', 'unsigned long long')} + block"
        return out

    def drain(self, j: int) -> list[str]:
        """Queue what receive phase j's call sent, with the delivered event's weight row."""
        if not self.sends[j]:
            return []
        s = self.sent(j)
        return [
            "{",
            f"    unsigned long long* count = {s['net_send.count']};",
            f"    const int* inst = {s['net_send.instance']};",
            f"    const double* when = {s['net_send.t']};",
            f"    const double* flag = {s['net_send.flag']};",
            "    for (unsigned long long r = 0; r < *count; r++) {",
            f"        pn_push(q, status, when[r], flag[r], inst[r], row, {j});",
            "    }",
            "    *count = 0;",
            "}",
        ]

    def deliver_function(self) -> str:
        plan = self.plan
        if not plan.receive:
            return ""
        queue = any(self.sends)
        lines = [
            "// Thread 0: this block's events due by `until`, in order (module docstring).",
            "static __device__ void pn_deliver(const unsigned long long* __restrict__ table,",
            "                                  long long block, double until, long long* event,",
            "                                  long long event_end, "
            + ("pn_queue* q, unsigned long long* status)" if queue else "void*, void*)"),
            "{",
            f"    const double* ev_t = {self.buffer('ev:t', 'const double')};",
            f"    const int* ev_phase = {self.buffer('ev:phase', 'const int')};",
            f"    const int* ev_lane = {self.buffer('ev:lane', 'const int')};",
            f"    const int* ev_row = {self.buffer('ev:row', 'const int')};",
            "    for (;;) {",
            "        const bool has_event = *event < event_end;",
            "        const double te = has_event ? ev_t[*event] : INFINITY;",
        ]
        if queue:
            lines += [
                "        const bool has_self = q->head < q->end;",
                "        const double tq = has_self ? q->t[q->head] : INFINITY;",
                "        const bool take_event = has_event && te <= tq;",
                "        if (!(has_event || has_self) || !((take_event ? te : tq) <= until)) {",
            ]
        else:
            lines += ["        const bool take_event = true;",
                      "        if (!has_event || !(te <= until)) {"]  # fmt: skip
        lines += [
            "            return;",
            "        }",
            "        if (take_event) {",
            "            const long long e = (*event)++;",
            "            const int lane = ev_lane[e];",
            "            const int row = ev_row[e];",
            "            (void)row;",
            "            switch (ev_phase[e]) {",
        ]
        for j in range(len(plan.receive)):
            k = self.receive_first + j
            lines.append(f"            case {j}:")
            call = self.call(k, "lane", "lane + 1", "te", "1", **self.sent(j))
            lines += ["                " + x for x in [call, *self.drain(j), "break;"]]
        lines += ["            }"]
        if queue:
            scratch = {
                f"event.{name}": f"{self.buffer(f'scratch:{name}', c)} + block"
                for name, c in (("instance", "int"), ("t", "double"), ("flag", "double"),
                                ("netcon", "int"))
            }  # fmt: skip
            lines += [
                "        } else {  // the earliest self-event, through the block's scratch event",
                "            const int at = q->head++;",
                "            const int row = q->row[at];",
                f"            *({scratch['event.instance']}) = q->inst[at];",
                f"            *({scratch['event.t']}) = tq;",
                f"            *({scratch['event.flag']}) = q->flag[at];",
                f"            *({scratch['event.netcon']}) = row;",
                "            switch (q->phase[at]) {",
            ]
            for j in range(len(plan.receive)):
                if not self.sends[j]:
                    continue
                k = self.receive_first + j
                lines.append(f"            case {j}:")
                call = self.call(k, "0", "1", "tq", "1", **scratch, **self.sent(j))
                lines += ["                " + x for x in [call, *self.drain(j), "break;"]]
            lines += ["            }"]
        lines += ["        }", "    }", "}", ""]
        return "\n".join(lines)

    # ------------------------------------------------------------------ the kernel
    def phase(self, k: int, t: str) -> list[str]:
        ranges = self.args[k]["ranges"]
        streams = {}
        if k == 0 and self.plan.threshold is not None:
            streams = {
                "spike.presyn": self.buffer("spike:presyn", "int"),
                "spike.t": self.buffer("spike:t", "double"),
                "spike.order": self.buffer("spike:order", "long long"),
                "spike.count": f"status + {SPIKES}",
            }
        call = self.call(k, f"{ranges}[block]", f"{ranges}[block + 1]", t, "threads", **streams)
        return [call, "__syncthreads();"]

    def epoch_kernel(self) -> str:
        plan = self.plan
        queue = any(self.sends)
        w = plan.width
        body = [
            f"unsigned long long* status = {self.buffer('status', 'unsigned long long')};",
            "const double half = 0.5 * dt;",
            "double t = t0;",
            f"const long long* ev_start = {self.buffer('ev:start', 'const long long')};",
            "long long event = ev_start[block];  // thread 0's, as the queue",
            "const long long event_end = ev_start[block + 1];",
        ]
        if queue:
            fields = ", ".join(
                f"{self.buffer(f'queue:{name}', C_TYPES[t])} + block * {QUEUE_CAPACITY}"
                for name, t in QUEUE_FIELDS
            )
            body += [f"pn_queue block_queue = {{{fields}, 0, 0}};", "pn_queue* q = &block_queue;"]
        else:
            body.append("void* q = 0;")
        deliver = (
            ["if (thread == 0) {",
             "    pn_deliver(table, block, until, &event, event_end, q, status);",
             "}", "__syncthreads();"]
            if plan.receive else []
        )  # fmt: skip
        step = []
        k = 0
        if plan.threshold is not None:
            step += self.phase(0, "t")
            k = 1
        if deliver:
            step += ["{", "    const double until = t + half;", *["    " + x for x in deliver], "}"]
        step.append("t = t + half;")
        for _ in plan.first_half:
            step += self.phase(k, "t")
            k += 1
        step.append("t = t + half;")
        for _ in plan.second_half:
            step += self.phase(k, "t")
            k += 1
        if deliver:
            step += ["{", "    const double until = t;", *["    " + x for x in deliver], "}"]
        v = self.buffer("v", "double")
        step += [
            "if (nrec > 0) {  // the recorded voltages, as the stepwise loop has them",
            f"    const long long* start = {self.buffer('rec:start', 'const long long')};",
            f"    const int* node = {self.buffer('rec:node', 'const int')};",
            f"    const int* column = {self.buffer('rec:column', 'const int')};",
            f"    double* out = {self.buffer('rec:out', 'double')};",
            "    for (long long r = start[block] + thread; r < start[block + 1]; r += threads) {",
            f"        out[step * nrec + column[r]] = {v}[node[r]];",
            "    }",
            "}",
            "bool bad = false;  // a cell whose root voltage is not finite stops the block",
            f"const int* root = {self.buffer('slot_root', 'const int')};",
            f"for (long long s = block * {w} + thread; s < (block + 1) * {w}; s += threads) {{",
            f"    const double root_v = {v}[root[s]];",
            "    bad = bad || !(root_v - root_v == 0.0);",
            "}",
            "if (__syncthreads_or(bad)) {",
            "    if (thread == 0) {",
            f"        {self.buffer('blowup', 'double')}[block] = t;",
            f"        atomicAdd(status + {BLOWN}, 1ull);",
            "    }",
            "    break;",
            "}",
        ]
        tail = []
        if queue:
            tail = [
                "if (thread == 0) {  // what is still pending, for the simulation's queue",
                "    pn_compact(q);",
                f"    {self.buffer('queue:left', 'int')}[block] = q->end;",
                "}",
            ]
        text = [
            "// One epoch: CUDA block b takes cell block b through `nsteps` steps from t0.",
            f'extern "C" __global__ void __launch_bounds__({self.block_threads}) pn_epoch(',
            "    const unsigned long long* __restrict__ table,",
            "    long long nsteps,",
            "    double t0,",
            "    double dt,",
            "    long long nrec)",
            "{",
            "    const long long block = blockIdx.x;",
            "    const unsigned thread = threadIdx.x;",
            "    const unsigned threads = blockDim.x;",
            *["    " + x for x in body],
            "    for (long long step = 0; step < nsteps; step++) {",
            *["        " + x for x in step],
            "    }",
            *["    " + x for x in tail],
            "}",
        ]
        return "\n".join(text) + "\n"


def epoch_source(plan: EpochPlan, block_threads: int = BLOCK_THREADS) -> str:
    """The CUDA C of the plan's epoch kernel, `pn_epoch`, with its device functions, for
    blocks of `block_threads` threads."""
    return _Source(plan, block_threads).text


class CudaEpoch:
    """One plan's epochs on a device (module docstring)."""

    resident = True
    threads = 1  # host threads: the work is the device's

    def __init__(self, plan: EpochPlan, runtime: Runtime, block_threads: int = BLOCK_THREADS):
        self.plan, self.runtime, self.block_threads = plan, runtime, block_threads
        source = _Source(plan, block_threads)
        self.source, self.entries = source.text, source.entries
        self.records = source.records
        self.function = runtime.compile(self.source, "pn_epoch")
        # every device allocation, freed when the program is dropped (or by `release`)
        self.allocations: set[int] = set()
        self.release = weakref.finalize(self, _free, runtime, self.allocations)
        self.release.atexit = False  # the driver may be gone by then
        # the model's arrays on the device: one allocation per host buffer
        self.resident_arrays: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
        arrays = [e.value for e in self.entries if e.kind == "array"]
        arrays += [plan.v, plan.layout.slot_root]
        for array in arrays:
            self._resident(array)
        self._check_overlaps()
        self.written = []  # (host, device) of what the kernels write
        seen = set()
        for phase in plan.phases():
            for name in written(phase.kernel.body):
                value = phase.args.get(name)
                if isinstance(value, np.ndarray) and not name.startswith("event."):
                    key = _key(value)
                    if key not in seen:
                        seen.add(key)
                        self.written.append(self.resident_arrays[key])
        self.buffers: dict[str, tuple[int, int]] = {}  # name: (pointer, bytes)
        # the table: constant words now, a buffer's pointer whenever it is (re)allocated
        self.table = np.zeros(max(1, len(self.entries)), dtype=np.uint64)
        self.table_device = self._alloc(self.table.nbytes)
        self.table_words: dict[str, list[int]] = {}  # buffer name: its words
        for k, entry in enumerate(self.entries):
            if entry.kind == "buffer":
                self.table_words.setdefault(entry.value, []).append(k)
            elif entry.kind == "array":
                self.table[k] = self.resident_arrays[_key(entry.value)][1]
            elif entry.kind == "f64":
                self.table[k] = np.float64(entry.value).view(np.uint64)
            else:
                self.table[k] = np.int64(entry.value).view(np.uint64)
        self.table_changed = True
        self.status = np.zeros(4, dtype=np.uint64)
        self.blowup = np.full(plan.nblocks, np.inf)
        self._upload_buffer("blowup", self.blowup)
        self._upload_buffer("v", plan.v, resident=True)
        self._upload_buffer("slot_root", plan.layout.slot_root, resident=True)
        self.recording: tuple = ()
        self.record_out = np.zeros((0, 0))
        self._self_event_buffers()

    # ------------------------------------------------------------------ device memory
    def _alloc(self, nbytes: int) -> int:
        pointer = self.runtime.alloc(nbytes)
        self.allocations.add(pointer)
        return pointer

    def _resident(self, array: np.ndarray) -> tuple[np.ndarray, int]:
        key = _key(array)
        if key not in self.resident_arrays:
            host = np.ascontiguousarray(array)
            if host is not array:
                raise ValueError("a kernel argument is not contiguous")
            self.resident_arrays[key] = (array, self._alloc(array.nbytes))
        return self.resident_arrays[key]

    def _check_overlaps(self) -> None:
        """Two arguments that share memory would be two device copies: refuse them."""
        spans = sorted((a, a + size) for a, size in self.resident_arrays if size)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError("two kernel arguments of the epoch share memory")

    def buffer(self, name: str, nbytes: int) -> int:
        """Epoch buffer `name`, at least `nbytes` long (grown as needed)."""
        pointer, size = self.buffers.get(name, (0, -1))
        if size < nbytes:
            if size >= 0:
                self.allocations.remove(pointer)
                self.runtime.free(pointer)
            pointer = self._alloc(max(nbytes, 8))
            self._place(name, pointer, nbytes)
        return pointer

    def _place(self, name: str, pointer: int, nbytes: int) -> None:
        self.buffers[name] = (pointer, nbytes)
        self.table[self.table_words.get(name, [])] = pointer
        self.table_changed = True

    def _upload_buffer(self, name: str, host: np.ndarray, resident: bool = False) -> int:
        if resident:  # one of the model's arrays: the table points at its device copy
            pointer = self.resident_arrays[_key(host)][1]
            self._place(name, pointer, host.nbytes)
            return pointer
        pointer = self.buffer(name, host.nbytes)
        self.runtime.upload(pointer, host)
        return pointer

    def _self_event_buffers(self) -> None:
        plan, nblocks = self.plan, self.plan.nblocks
        if not plan.sends:
            return
        for name, dtype in QUEUE_FIELDS:
            self.buffer(f"queue:{name}", nblocks * QUEUE_CAPACITY * (8 if dtype == F64 else 4))
        self.buffer("queue:left", 4 * nblocks)
        for name, size in (("instance", 4), ("t", 8), ("flag", 8), ("netcon", 4)):
            self.buffer(f"scratch:{name}", size * nblocks)
        for j, phase in enumerate(plan.receive):
            if not phase.kernel.streams:
                continue
            r = self.records[j] * nblocks
            for name, size in (("instance", 4), ("t", 8), ("flag", 8), ("order", 8)):
                self.buffer(f"send{j}:{name}", size * r)
            self._upload_buffer(f"send{j}:count", np.zeros(nblocks, dtype=np.uint64))

    def _sync_table(self) -> None:
        """The table onto the device, if a buffer moved since it last went."""
        if self.table_changed:
            missing = self.table_words.keys() - self.buffers.keys()
            if missing:
                raise RuntimeError(f"epoch buffers never allocated: {sorted(missing)}")
            self.runtime.upload(self.table_device, self.table)
            self.table_changed = False

    # ------------------------------------------------------------------ the program
    def load(self) -> None:
        """The model's state into the layout, and everything onto the device."""
        for copy in self.plan.copies:
            copy.layout[copy.dst] = copy.model[copy.src]
        for host, pointer in self.resident_arrays.values():
            self.runtime.upload(pointer, host)

    def store(self) -> None:
        """What the kernels wrote back from the device, and into the model's arrays."""
        for host, pointer in self.written:
            self.runtime.download(host, pointer)
        for copy in self.plan.copies:
            if copy.back:
                copy.model[copy.src] = copy.layout[copy.dst]

    def _events(self, events: EpochEvents) -> None:
        """This epoch's events onto the device."""
        n = int(events.start[-1])
        self._upload_buffer("ev:start", events.start)
        for name in ("t", "phase", "lane", "row"):
            array = getattr(events, name)
            self.buffer(f"ev:{name}", array.nbytes)
            self.runtime.upload(self.buffers[f"ev:{name}"][0], array[:n])
        for j, args in enumerate(events.receive_args):
            for name in ("event.instance", "event.netcon", "event.t", "event.flag"):
                array = args[name]
                pointer = self.buffer(f"receive{j}:{name}", array.nbytes)
                self.runtime.upload(pointer, array[:n])

    def _record(self, nsteps: int) -> np.ndarray:
        plan = self.plan
        nrec = len(plan.record_node)
        key = (plan.record_start, plan.record_node, plan.record_column)
        if self.recording != tuple(id(a) for a in key):
            self._upload_buffer("rec:start", plan.record_start.astype(np.int64))
            self._upload_buffer("rec:node", plan.record_node.astype(np.int32))
            self._upload_buffer("rec:column", plan.record_column.astype(np.int32))
            self.recording = tuple(id(a) for a in key)
        if self.record_out.shape[0] < nsteps or self.record_out.shape[1] != nrec:
            self.record_out = np.zeros((max(nsteps, 1), nrec))
        self.buffer("rec:out", self.record_out.nbytes)
        return self.record_out[:nsteps]

    def advance(
        self, t0: float, nsteps: int, events: EpochEvents
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """As the llvm backend's CompiledEpoch.advance; the model's arrays are not
        updated (`store` does that), except where a block blew up."""
        plan, runtime = self.plan, self.runtime
        self._events(events)
        record = self._record(nsteps)
        # a detector's crossings are two steps apart at least (v below, then not)
        capacity = len(plan.threshold_presyn) * ((nsteps + 1) // 2)
        for name, size in (("presyn", 4), ("t", 8), ("order", 8)):
            self.buffer(f"spike:{name}", size * capacity)
        self.status[:] = 0
        self._upload_buffer("status", self.status)
        self._sync_table()
        args = [np.uintp(self.table_device), np.int64(nsteps), np.float64(t0)]
        args += [np.float64(plan.dt), np.int64(record.shape[1])]
        runtime.launch(self.function, plan.nblocks, self.block_threads, args)
        runtime.download(self.status, self.buffers["status"][0])
        if record.size:
            runtime.download(record, self.buffers["rec:out"][0])
        blowup = None
        if self.status[BLOWN]:
            blowup = np.empty(plan.nblocks)
            runtime.download(blowup, self.buffers["blowup"][0])
            runtime.upload(self.buffers["blowup"][0], self.blowup)
            self.store()
        n = int(self.status[SPIKES])
        lanes, t = np.empty(n, dtype=np.int32), np.empty(n)
        runtime.download(lanes, self.buffers["spike:presyn"][0])
        runtime.download(t, self.buffers["spike:t"][0])
        return lanes, t, record, blowup

    def pending(self) -> tuple[np.ndarray, ...]:
        """The self-events sent in the last epoch and due after it (t, flag, instance,
        row, phase), block by block; QueueOverflow if a block's queue overflowed."""
        if self.status[OVERFLOW]:
            raise QueueOverflow(
                QUEUE_CAPACITY, "block of cells on the device", "run with compiled epochs off"
            )
        nblocks = self.plan.nblocks
        left = np.empty(nblocks, dtype=np.int32)
        self.runtime.download(left, self.buffers["queue:left"][0])
        out = []
        for name, dtype in QUEUE_FIELDS:
            values = np.empty((nblocks, QUEUE_CAPACITY), np.float64 if dtype == F64 else np.int32)
            if left.any():
                self.runtime.download(values, self.buffers[f"queue:{name}"][0])
            out.append(np.concatenate([values[b, : left[b]] for b in range(nblocks)]))
        return tuple(out)


def _free(runtime: Runtime, allocations: set[int]) -> None:
    for pointer in allocations:
        runtime.free(pointer)
    allocations.clear()


def _key(array: np.ndarray) -> tuple[int, int]:
    return array.__array_interface__["data"][0], array.nbytes
