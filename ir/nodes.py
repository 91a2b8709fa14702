"""IR node types: typed, frozen values with no behaviour.

A `Kernel` is a body of statements executed once per *lane*. What a lane is depends on the
kernel (`Kernel.lanes`): one mechanism instance, one event, one cell, one table point.
Lanes are independent except through `AddTo`, which accumulates (a scatter-add that is
correct when several lanes hit the same element). Inside a lane, `Loop` and `While` run
sequentially, which is how per-cell work such as the Hines solve is expressed. A lane may
run another kernel's lanes (`Launch`, through `View`s of its arrays) and mark what one
thread of it runs for all (`Serial`): what an epoch driver, one lane a block of cells, is
written in.

Expressions are typed: `F64`, `I32` or `BOOL`; binary operands must agree (use `Cast`).
An array may also be `F32`, a storage type only: stored to (an F64 value, rounded to the
nearest float32), never read, as a compact record of results (a report's rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class DType(Enum):
    F64 = "f64"
    I32 = "i32"
    BOOL = "bool"
    F32 = "f32"  # arrays only, stored to only


F64, I32, BOOL, F32 = DType.F64, DType.I32, DType.BOOL, DType.F32

ARITHMETIC_OPS = frozenset({"add", "sub", "mul", "div", "pow", "min", "max"})
COMPARISON_OPS = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
LOGICAL_OPS = frozenset({"and", "or"})
UNARY_OPS = frozenset({"neg", "not"})

#: Math intrinsics every backend provides, with their arity. All take and return F64.
INTRINSICS: dict[str, int] = {
    "exp": 1, "expm1": 1, "log": 1, "log10": 1, "sqrt": 1, "fabs": 1,
    "floor": 1, "ceil": 1, "sin": 1, "cos": 1, "tan": 1, "asin": 1, "acos": 1,
    "atan": 1, "sinh": 1, "cosh": 1, "tanh": 1, "atan2": 2, "fmod": 2,
    # Random123 Philox4x32-10 as NEURON's nrnran123: (id1, id2, id3, position, index) ->
    # uniform in (0, 1); counter (position // 4, id3, id1, id2), key (index, 0) (NEURON's
    # Random123_globalindex), word position % 4.
    "random123": 5,
}  # fmt: skip


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Const:
    value: float | int | bool
    dtype: DType = F64


@dataclass(frozen=True, slots=True)
class Var:
    """A local variable of the lane, or a scalar kernel parameter."""

    name: str
    dtype: DType = F64


@dataclass(frozen=True, slots=True)
class Lane:
    """The index of the current lane, in [0, number of lanes)."""


@dataclass(frozen=True, slots=True)
class Load:
    """`array[index]` for an array parameter of the kernel."""

    array: str
    index: Expr
    dtype: DType = F64


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True, slots=True)
class Call:
    """A math intrinsic from `INTRINSICS`."""

    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Select:
    """`then if cond else otherwise`; both sides are evaluated."""

    cond: Expr
    then: Expr
    otherwise: Expr


@dataclass(frozen=True, slots=True)
class Cast:
    """Convert between F64 and I32 (toward zero, as C does) or BOOL to either."""

    dtype: DType
    operand: Expr


Expr = Const | Var | Lane | Load | Unary | Binary | Call | Select | Cast


# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Assign:
    """Set a local variable; its type is fixed by its first assignment."""

    name: str
    value: Expr


@dataclass(frozen=True, slots=True)
class Store:
    """`array[index] = value`. Lanes must not store to the same element."""

    array: str
    index: Expr
    value: Expr


@dataclass(frozen=True, slots=True)
class AddTo:
    """`array[index] += value`, correct when several lanes hit the same element."""

    array: str
    index: Expr
    value: Expr


@dataclass(frozen=True, slots=True)
class If:
    cond: Expr
    then: tuple[Stmt, ...]
    otherwise: tuple[Stmt, ...] = ()


@dataclass(frozen=True, slots=True)
class Loop:
    """Sequential loop inside a lane: `var` runs from `start` by `step` (+1 or -1) while it
    has not reached `stop` (exclusive), like `range(start, stop, step)`.

    A `parallel` loop promises that its iterations are independent: no iteration touches an
    element another one writes, and the variables assigned in the body are private to the
    iteration (undefined after the loop). A backend may then run the iterations at once, as
    SIMD lanes; run one after another, they give the same result."""

    var: str
    start: Expr
    stop: Expr
    body: tuple[Stmt, ...]
    step: int = 1
    parallel: bool = False


@dataclass(frozen=True, slots=True)
class While:
    """Sequential loop inside a lane: `body` runs while `cond` holds, tested before each
    iteration (C's `while`). The body may run zero times, so it defines nothing after it."""

    cond: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class Serial:
    """`body`, run once for the lane. Where a backend gives a lane several threads (a GPU
    block), one of them runs it and the others wait at its end; so locals it assigns are not
    read after it (what it computes for the others goes through memory). Elsewhere it is
    `body` as it is."""

    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class View:
    """An array for a launched kernel: the caller's array `array` from element `offset` on
    (the callee's element k is the caller's `array[offset + k]`)."""

    array: str
    offset: Expr = field(default_factory=lambda: Const(0, I32))


@dataclass(frozen=True, slots=True)
class Records:
    """Where a launched kernel's stream goes instead of the caller's stream of its name:
    record k of the launch's lanes, in lane order, has its fields at `count[0] + k` of the
    `fields` Views (one a field, in order), and `count` (a View of a caller i32 array)
    moves on by the records written."""

    fields: tuple[View, ...]
    count: View


@dataclass(frozen=True, slots=True)
class Launch:
    """Run `kernel`'s lanes `lo` .. `hi` - 1 inside this lane, as if one after another
    (`Lane()` in the callee is its absolute lane). `bind` gives every callee parameter its
    value, by name: an array a `View` of a caller array, a scalar a caller expression; and
    each callee stream bound by its name to `Records` goes to the caller's arrays, any other
    is the caller's stream of the same name (its records come in the caller's lane's place,
    in the callee's lane order). The callee launches nothing (depth 1), and no Launch is
    inside a parallel loop. Different caller lanes may launch at once: they must not touch
    one element of the callee's arrays (or one count) except through `AddTo`."""

    kernel: Kernel
    lo: Expr
    hi: Expr
    bind: tuple[tuple[str, Expr | View | Records], ...]


@dataclass(frozen=True, slots=True)
class Emit:
    """Append one record to the kernel's output stream `stream` (e.g. a `net_send`)."""

    stream: str
    values: tuple[Expr, ...]


Stmt = Assign | Store | AddTo | If | Loop | While | Serial | Launch | Emit


# ---------------------------------------------------------------- kernels


@dataclass(frozen=True, slots=True)
class Param:
    """A kernel argument. `space` says what an array is indexed by ("instance", "node",
    "ion:na", "table", "event", "cell"); scalars have space "uniform".

    An array of space "lane:<regions>" is each lane's scratch: lane k touches only its
    elements regions[k] .. regions[k + 1] - 1 (`regions`, an i32 array parameter), writes
    each before it reads it, and what it leaves there is not read after the call. A
    backend may give every lane (or every thread, for the lanes it runs one after another)
    storage of its own instead of the caller's array, which then keeps no values of the
    call's: the interpreter fills it with NaN first, so a kernel that breaks the promise
    shows it."""

    name: str
    dtype: DType = F64
    space: str = "instance"

    @property
    def is_array(self) -> bool:
        return self.space != "uniform"

    @property
    def regions(self) -> str | None:
        """Where this is a lane's scratch, the name of the array of its lanes' regions."""
        return self.space[5:] if self.space.startswith("lane:") else None


@dataclass(frozen=True, slots=True)
class Stream:
    """An output stream: records of named, typed fields appended by `Emit`."""

    name: str
    fields: tuple[tuple[str, DType], ...]


@dataclass(frozen=True, slots=True)
class Kernel:
    name: str
    lanes: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    streams: tuple[Stream, ...] = ()
    doc: str = ""


# ---------------------------------------------------------------- mechanisms


@dataclass(frozen=True, slots=True)
class Variable:
    """A mechanism variable. `kind` is parameter, state, assigned or global; `per_instance`
    is False for GLOBAL variables shared by every instance. An array has `length` elements
    per instance, stored instance by instance (`mech.x[instance * length + k]`)."""

    name: str
    kind: str
    unit: str = ""
    default: float = 0.0
    per_instance: bool = True
    length: int = 0


@dataclass(frozen=True, slots=True)
class Ion:
    name: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    valence: int | None = None


@dataclass(frozen=True, slots=True)
class Diffusion:
    """A LONGITUDINAL_DIFFUSION of one state element between neighbouring instances (NEURON's
    ldifus.cpp): after every mechanism's state update, kernel `kernel` sets each instance's
    diffusion constant times cross-section (`diffusion.dc`) and COMPARTMENT volume
    (`diffusion.vol`), then the engine takes one implicit step of the state along the cell.
    `state` is element `index` of a STATE (0 for a scalar), or with `ion`, that ion's
    concentration (a STATE `cai` is the ion's own value)."""

    state: str
    index: int
    kernel: str
    ion: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    """A TABLE: `outputs` of a procedure or function tabulated over its argument at
    `points` equally spaced values from `lo` to `hi`, rebuilt when `depend` changes. A bound
    given as a name is the mechanism global of that name, read when the table is built."""

    name: str
    outputs: tuple[str, ...]
    lo: float | str
    hi: float | str
    points: int
    depend: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A mechanism lowered from NMODL: its variables and kernels.

    `kind` is "density", "point_process" or "artificial_cell". Kernels are named `init`,
    `current`, `state`, `net_receive`, `watch`, `table_<name>`, `diffusion_<k>` and, for
    BEFORE and AFTER blocks, `before_initial`, `after_initial`, `before_breakpoint`,
    `after_solve` and `before_step`; a mechanism has the ones its source needs.
    """

    name: str
    kind: str
    variables: tuple[Variable, ...]
    ions: tuple[Ion, ...] = ()
    kernels: tuple[Kernel, ...] = ()
    tables: tuple[Table, ...] = ()
    net_receive_args: tuple[str, ...] = ()
    electrode_current: bool = False
    source: str = ""
    notes: tuple[str, ...] = field(default=())
    #: NEURON's per-instance data fields in its order (as datasets store them), hidden
    #: ones included (`Dm`, `v`, `_g`, `_tsav`, ion copies).
    layout: tuple[str, ...] = ()
    #: POINTER variables in declaration order: each instance reads and writes a place
    #: elsewhere in the model (`pointer.<name>[pointer.<name>.index[instance]]`).
    pointers: tuple[str, ...] = ()
    #: POINTERs and BBCOREPOINTERs in declaration order ("pointer:x", "bbcorepointer:y"),
    #: as NEURON keeps their words.
    pointer_slots: tuple[str, ...] = ()
    #: Event Vectors of instances (VecStim's), by the variable that reaches them: each
    #: instance's times are `vector.<v>.data[offset[i] : offset[i] + size[i]]`.
    vectors: tuple[str, ...] = ()
    #: The NET_RECEIVE's WATCH conditions in source order (nocmodl's numbering): the flag
    #: each one's event carries. The `watch` kernel checks the active ones every step.
    watch_flags: tuple[float, ...] = ()
    #: A Random123 stream kept by a BBCOREPOINTER (BBP's VERBATIM idiom): its name (its
    #: ids and position are the per-instance `<stream>.id1` ... `<stream>.position`; ""
    #: where bbcore_write writes only Vectors), the ASSIGNED that says an instance's stream
    #: is Random123's (or ""), and the ints its bbcore_write writes per instance, the
    #: stream's ids, sequence and index first.
    stream: tuple[str, str, int] | None = None
    #: Whether NEURON gives instances a netsend pdata slot though no kernel sends (the
    #: source's net_send is in VERBATIM-guarded code that never runs).
    netsend_slot: bool = False
    #: Whether its CONSTRUCTOR does something: NEURON runs it where it makes an instance
    #: (so a model it hands over holds the result); a native build cannot.
    constructor: bool = False
    #: LONGITUDINAL_DIFFUSION steps in NEURON's order (statement, state, element), each
    #: with its `diffusion_<k>` kernel.
    diffusion: tuple[Diffusion, ...] = ()
    #: Variables every instance of a cell group shares (NEURON's GLOBALs and file-scope
    #: LOCALs that a block reads before it assigns them): `shared.<x>[group * length + k]`,
    #: each instance's group in `shared.group`, a group's instances
    #: `shared.first[g]:shared.first[g + 1]`.
    shared: tuple[str, ...] = ()
    #: Kernels that write shared variables: one lane a cell group, taking its instances in
    #: turn (lanes "group"), or, on events, one event a call.
    sequential: tuple[str, ...] = ()

    def kernel(self, name: str) -> Kernel | None:
        return next((k for k in self.kernels if k.name == name), None)

    @property
    def randoms(self) -> list[str]:
        """The RANDOM variables (each a stream in a pdata slot of its own), in order; a
        BBCOREPOINTER's stream (`stream`) is not one."""
        own = self.stream[0] if self.stream is not None else None
        ids = [v.name[: -len(".id1")] for v in self.variables if v.name.endswith(".id1")]
        return [name for name in ids if name != own]


def _reduce(node: object) -> tuple:
    """A node pickled as its class and its fields' values, unpickled by its `__init__`
    (a dataclass's own state goes through `fields()` for every node: loading a mechanism
    from the front end's cache took twice as long)."""
    cls = type(node)
    return cls, tuple([getattr(node, name) for name in cls.__slots__])


for _node in list(globals().values()):
    if isinstance(_node, type) and "__dataclass_fields__" in vars(_node):
        _node.__reduce__ = _reduce  # type: ignore[method-assign]
del _node
