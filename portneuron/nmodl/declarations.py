"""What a `.mod` file declares: its kind, variables, ions and named blocks.

NEURON's rules for where a variable lives: a PARAMETER is GLOBAL unless declared RANGE;
STATE and ASSIGNED variables are per instance unless declared GLOBAL. `v`, `t`, `dt`,
`celsius`, `area` and `diam`, and the ion variables named in USEION, come from the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NmodlError
from . import verbatim
from .parse import SourceMap, nmodl_module
from .tabulated import element
from .units import unit_factors

KINDS = {
    "SUFFIX": "density",
    "POINT_PROCESS": "point_process",
    "ARTIFICIAL_CELL": "artificial_cell",
}

#: Names the simulator provides to every mechanism.
SIMULATOR_NAMES = frozenset({"v", "t", "dt", "celsius", "area", "diam"})

#: BEFORE and AFTER blocks NEURON runs, by their kernel names (nrn_ba's BEFORE_INITIAL, ...).
BA_KERNELS = {
    ("BEFORE", "INITIAL"): "before_initial",
    ("AFTER", "INITIAL"): "after_initial",
    ("BEFORE", "BREAKPOINT"): "before_breakpoint",
    ("AFTER", "SOLVE"): "after_solve",
    ("BEFORE", "STEP"): "before_step",
}

#: NMODL built-in constants (NEURON's values; `PI` as in C).
BUILTIN_CONSTANTS = {"PI": 3.14159265358979323846, "E": 2.71828182845904523536}


def text(node) -> str:
    return nmodl_module().to_nmodl(node)


def initial_of(stmt):
    """The INITIAL block a NET_RECEIVE statement is, if it is one."""
    if stmt.get_node_type_name() == "InitialBlock":
        return stmt
    if stmt.get_node_type_name() == "ExpressionStatement":
        if stmt.expression.get_node_type_name() == "InitialBlock":
            return stmt.expression
    return None


def number(node) -> float:
    """The value of a number node (Integer, Double, DoubleUnit, negated forms)."""
    return float(text(node).split("(")[0])


@dataclass
class Declared:
    name: str
    kind: str  # parameter, state, assigned
    unit: str = ""
    default: float = 0.0
    length: int = 0  # the element count of an array variable; 0 for a scalar


def base_name(name: str) -> str:
    """The variable a value belongs to: `ca` for the element `ca[3]`, else the name."""
    at = element(name)
    return at[0] if at is not None else name


@dataclass
class Ion:
    name: str
    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    valence: int | None = None

    def variable_role(self, var: str) -> str | None:
        """'current', 'conductance' (di<ion>/dv), 'reversal', 'inside', 'outside' or None."""
        roles = {
            f"i{self.name}": "current",
            f"e{self.name}": "reversal",
            f"{self.name}i": "inside",
            f"{self.name}o": "outside",
        }
        return roles.get(var)


@dataclass
class Declarations:
    """Everything declared in a `.mod` file, with its named blocks by name."""

    filename: str
    source_map: SourceMap
    name: str = ""
    kind: str = ""
    range_names: set[str] = field(default_factory=set)
    global_names: set[str] = field(default_factory=set)
    ions: list[Ion] = field(default_factory=list)
    nonspecific: list[str] = field(default_factory=list)
    electrode: list[str] = field(default_factory=list)
    randoms: list[str] = field(default_factory=list)
    #: LOCALs declared outside any block: kept per instance, not in NEURON's data layout.
    file_locals: set[str] = field(default_factory=set)
    thread_safe: bool = False  # THREADSAFE in the NEURON block
    #: Names assigned anywhere in the file's blocks.
    assigned_names: set[str] = field(default_factory=set)
    #: Arrays indexed by a value known only at run time (read and written in place, not
    #: element by element); found while lowering.
    dynamic_arrays: set[str] = field(default_factory=set)
    #: DERIVATIVE blocks SOLVEd by cnexp that cnexp cannot solve: derivimplicit's, as nocmodl
    not_cnexp: set[str] = field(default_factory=set)
    variables: dict[str, Declared] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    procedures: dict[str, object] = field(default_factory=dict)
    functions: dict[str, object] = field(default_factory=dict)
    derivatives: dict[str, object] = field(default_factory=dict)
    kinetics: dict[str, object] = field(default_factory=dict)
    linears: dict[str, object] = field(default_factory=dict)
    nonlinears: dict[str, object] = field(default_factory=dict)
    #: POINTER variables, in declaration order.
    pointers: list[str] = field(default_factory=list)
    #: BBCOREPOINTER variables, in declaration order.
    bbcore_pointers: list[str] = field(default_factory=list)
    #: POINTERs and BBCOREPOINTERs together in declaration order ("pointer:x",
    #: "bbcorepointer:y"), as their pdata words lie.
    pointer_slots: list[str] = field(default_factory=list)
    #: PROCEDUREs whose whole body is a VERBATIM idiom (portneuron.nmodl.verbatim).
    idioms: dict[str, verbatim.Idiom] = field(default_factory=dict)
    #: The `stream-bbcore` idiom, where the file's bbcore_write writes a Random123 stream.
    stream_bbcore: verbatim.Idiom | None = None
    has_verbatim: bool = False
    #: A CONSTRUCTOR that does something (NEURON runs it where it makes an instance).
    constructor: bool = False
    #: EXTERNAL names: other mechanisms' GLOBALs (or hoc's), no data of this mechanism.
    externals: set[str] = field(default_factory=set)
    #: FUNCTION_TABLE names: functions whose values hoc gives (table_<name>), which only
    #: hoc-called FUNCTIONs and PROCEDUREs may call.
    function_tables: set[str] = field(default_factory=set)
    #: BEFORE and AFTER blocks by kernel name (before_initial, after_solve, ...), in order.
    ba_blocks: dict[str, list] = field(default_factory=dict)
    initial: object | None = None
    breakpoint: object | None = None
    net_receive: object | None = None

    def error(self, message: str, block: tuple[str, str] | None = None, word: str | None = None):
        return self.source_map.error(message, block, word)

    # -- where names live
    def ion_of(self, var: str) -> Ion | None:
        for ion in self.ions:
            if var in ion.read or var in ion.write:
                return ion
        return None

    def is_per_instance(self, var: str) -> bool:
        at = element(var)
        if at is not None:
            var = at[0]
        declared = self.variables.get(var)
        if declared is None or var in SIMULATOR_NAMES or self.ion_of(var):
            return False
        if var in self.pointers or var in self.bbcore_pointers:
            return False
        if var in self.range_names or declared.kind == "random" or declared.length:
            return True  # arrays too: one per instance, as their elements are written
        if var in self.written_globals:
            return True
        if var in self.global_names:
            return False
        return declared.kind != "parameter"

    @property
    def written_globals(self) -> set[str]:
        """GLOBALs (and PARAMETERs not RANGE) the mechanism assigns. NEURON keeps one value
        that every instance reads and writes in turn; portneuron keeps one per instance,
        starting from the global's value, where that gives NEURON's results, and shares
        the others (portneuron.nmodl.mechanism.SharedUse)."""
        return {
            n
            for n in self.assigned_names
            if n in self.variables
            and n not in self.range_names
            and n not in SIMULATOR_NAMES
            and not self.ion_of(n)
            and self.variables[n].kind != "random"
            and n not in self.pointers
            and n not in self.bbcore_pointers
            and (n in self.global_names or self.variables[n].kind == "parameter")
        }

    @property
    def shared_names(self) -> set[str]:
        """What NEURON keeps one value of (a thread's), which every instance reads and
        writes in turn, though the mechanism assigns it: its written GLOBALs and the
        file-scope LOCALs it assigns."""
        return self.written_globals | (self.file_locals & self.assigned_names)

    def length(self, var: str) -> int:
        """The element count of an array variable; 0 for a scalar or an unknown name."""
        declared = self.variables.get(var)
        return declared.length if declared is not None else 0

    def is_global(self, var: str) -> bool:
        return (
            var in self.variables
            and not self.is_per_instance(var)
            and var not in SIMULATOR_NAMES
            and not self.ion_of(var)
            and var not in self.pointers
            and var not in self.bbcore_pointers
        )

    @property
    def vectorized(self) -> bool:
        """Whether nocmodl makes the mechanism thread safe (its `vectorize`): not where a
        file without THREADSAFE assigns a GLOBAL or has a POINTER or VERBATIM, and never with a
        LINEAR or NONLINEAR block (its matrix is one static, THREADSAFE or not) or with
        EXTERNAL. Such a mechanism has no `v` of its own in NEURON's data."""
        if self.linears or self.nonlinears or self.externals:
            return False
        return self.thread_safe or not (self.written_globals or self.pointers or self.has_verbatim)

    @property
    def currents(self) -> list[str]:
        """Membrane currents written by the mechanism: ion currents, then nonspecific ones."""
        ion_currents = [
            w for ion in self.ions for w in ion.write if ion.variable_role(w) == "current"
        ]
        return ion_currents + self.nonspecific

    @property
    def states(self) -> list[str]:
        """The STATE values: each element of an array STATE (`ca[0]`, `ca[1]`, ...)."""
        out = []
        for v in self.variables.values():
            if v.kind == "state":
                out += [f"{v.name}[{k}]" for k in range(v.length)] if v.length else [v.name]
        return out


_UNSUPPORTED_BLOCKS = {
    "DiscreteBlock": ("DISCRETE", "DISCRETE blocks are not supported"),
}


def _does_something(block) -> bool:
    """Whether a block holds a statement other than comments and comment-only VERBATIM."""
    for stmt in block.statements:
        kind = stmt.get_node_type_name()
        if kind in ("LineComment", "BlockComment"):
            continue
        if kind == "Verbatim" and not verbatim.squash(stmt.statement.eval()):
            continue
        return True
    return False


def verbatim_refusal(d: Declarations, code: str, block: tuple[str, str] | None, nth: int = 0):
    """The one line for a VERBATIM block that is none of the idioms portneuron knows: its
    place and its first line."""
    message = (
        f"VERBATIM C code is not supported (a block starting {verbatim.first_line(code)!r}; "
        f"portneuron knows the idioms listed in its README); rewrite it in NMODL"
    )
    if block is None:
        span = d.source_map.block("VERBATIM", "", nth)
        return NmodlError(message, d.filename, span[0] if span else None)
    return d.error(message, block, "VERBATIM")


def _blocks(blocks):
    """Top-level blocks, those of INCLUDEd files in their place (as nocmodl pastes them)."""
    for block in blocks:
        if block.get_node_type_name() == "Include":
            yield from _blocks(block.blocks)
        else:
            yield block


def _shadowed(node, name: str) -> bool:
    """Whether `name` at `node` is a LOCAL or an argument of an enclosing block, not the
    file's variable of that name."""
    parent = node.parent
    while parent is not None:
        kind = parent.get_node_type_name()
        if kind == "StatementBlock":
            for stmt in parent.statements:
                if stmt.get_node_type_name() == "LocalListStatement" and any(
                    v.get_node_name() == name for v in stmt.variables
                ):
                    return True
        elif hasattr(parent, "parameters") and any(
            a.get_node_name() == name for a in parent.parameters
        ):
            return True
        parent = parent.parent
    return False


def _streams(d: Declarations) -> None:
    """The Random123 stream a BBCOREPOINTER keeps (BBP's VERBATIM idiom): drawn by a
    `stream-draw` FUNCTION, carried by a `stream-bbcore` bbcore_write. Each instance's
    stream is three ids and a position, as a RANDOM variable's."""
    draws = {i.source for i in d.idioms.values() if i.kind == "stream-draw"}
    if not draws:
        return
    stream = d.stream_bbcore
    if stream is None or draws != {stream.source}:
        raise d.error(
            f"the Random123 stream {', '.join(sorted(draws))} is drawn from but its "
            f"bbcore_write is not the idiom portneuron reads (the stream's ids, sequence and "
            f"index as each instance's first five ints)",
            ("NEURON", ""),
            "BBCOREPOINTER",
        )
    for part in ("id1", "id2", "id3", "position"):
        d.variables[f"{stream.source}.{part}"] = Declared(f"{stream.source}.{part}", "random")


def collect(program, source_map: SourceMap) -> Declarations:
    """Read the declarations and named blocks of a parsed program."""
    d = Declarations(source_map.filename, source_map)
    module = nmodl_module()
    top_verbatim = 0
    defines: list[tuple[str, str]] = []  # names top-level C #defines, and its block
    for block in _blocks(program.blocks):
        kind = block.get_node_type_name()
        if kind == "Verbatim":
            code = block.statement.eval()
            idiom = verbatim.stream_bbcore(code) or verbatim.recognise(code)
            if idiom is not None and idiom.kind == "stream-bbcore":
                d.stream_bbcore = idiom
            elif idiom is None or idiom.kind != "vector-bbcore":
                if verbatim.serialises(code):  # the words of BBCOREPOINTERs: refused unless known
                    raise verbatim_refusal(d, code, None, top_verbatim)
                # the `c-library` idiom: C that only VERBATIM reaches (refused where a block
                # the simulation runs holds it) and hoc calls; its macros are checked below
                defines += [(name, code) for name in sorted(verbatim.defined_names(code))]
            top_verbatim += 1
            continue
        if kind in ("ConstructorBlock", "DestructorBlock"):
            # NEURON runs them where it makes and frees an instance, never in a run: a model
            # handed over (direct mode, a dataset) holds what the CONSTRUCTOR set. A native
            # build makes instances itself and refuses a CONSTRUCTOR that does anything.
            if kind == "ConstructorBlock" and _does_something(block.statement_block):
                d.constructor = True
            continue
        if kind in ("ProcedureBlock", "FunctionBlock"):
            statements = list(block.statement_block.statements)
            codes = [
                st.statement.eval() for st in statements if st.get_node_type_name() == "Verbatim"
            ]
            if any(verbatim.hoc_only(code) for code in codes):
                d.idioms[block.get_node_name()] = verbatim.Idiom("hoc-only")
                continue
            if len(statements) == 1 and codes:
                idiom = verbatim.recognise(codes[0])
                if kind == "FunctionBlock":
                    idiom = verbatim.stream_draw(codes[0], block.get_node_name())
                if idiom is not None and idiom.kind in (
                    "vector-element",
                    "vector-play",
                    "stream-draw",
                ):
                    d.idioms[block.get_node_name()] = idiom
                    continue
            # any other VERBATIM is refused where the procedure is called, if it is
        if kind == "NeuronBlock":
            _neuron_block(d, block)
        elif kind == "ParamBlock":
            for stmt in block.statements:
                if stmt.get_node_type_name() == "ParamAssign":
                    default = number(stmt.value) if stmt.value is not None else 0.0
                    default = float(f"{default:g}")  # nocmodl writes defaults with %g
                    unit = stmt.unit.get_node_name() if stmt.unit is not None else ""
                    name = stmt.get_node_name()
                    length = getattr(stmt.name, "length", None)
                    length = _array_length(d, length, ("PARAMETER", ""), name)
                    d.variables[name] = Declared(name, "parameter", unit, default, length)
        elif kind in ("StateBlock", "AssignedBlock"):
            what = "state" if kind == "StateBlock" else "assigned"
            for definition in block.definitions:
                if definition.get_node_type_name() != "AssignedDefinition":
                    continue
                name = definition.get_node_name()
                length = _array_length(d, definition.length, (what.upper(), ""), name)
                unit = definition.unit.get_node_name() if definition.unit is not None else ""
                if name not in d.variables or d.variables[name].kind != "parameter":
                    d.variables[name] = Declared(name, what, unit, length=length)
        elif kind == "ConstantBlock":
            for stmt in block.statements:
                if stmt.get_node_type_name() == "ConstantStatement":
                    var = stmt.constant
                    d.constants[var.get_node_name()] = number(var.value)
        elif kind == "LocalListStatement":
            # nocmodl makes these one C static shared by every instance; mechanisms use them
            # for values every instance computes alike (a Q10 factor from celsius), which
            # per-instance storage reproduces without NEURON's thread-unsafety.
            for var in block.variables:
                name = var.get_node_name()
                length = getattr(var.name, "length", None)
                length = _array_length(d, length, None, name)
                if name in d.variables:
                    continue  # declared before (ASSIGNED): nocmodl keeps its per-instance field
                d.variables[name] = Declared(name, "assigned", length=length)
                d.file_locals.add(name)
        elif kind == "UnitBlock":
            d.constants.update(unit_factors(block, source_map))
        elif kind == "ProcedureBlock":
            d.procedures[block.get_node_name()] = block
        elif kind == "FunctionBlock":
            d.functions[block.get_node_name()] = block
        elif kind == "FunctionTableBlock":
            d.function_tables.add(block.get_node_name())
        elif kind == "DerivativeBlock":
            d.derivatives[block.get_node_name()] = block
        elif kind == "KineticBlock":
            d.kinetics[block.get_node_name()] = block
        elif kind == "LinearBlock":
            d.linears[block.get_node_name()] = block
        elif kind == "NonLinearBlock":
            d.nonlinears[block.get_node_name()] = block
        elif kind in ("BeforeBlock", "AfterBlock"):
            when = block.bablock.type.eval().upper()
            keyword = "BEFORE" if kind == "BeforeBlock" else "AFTER"
            name = BA_KERNELS.get((keyword, when))
            if name is None:  # NEURON's hoc_reg_ba exits on them too ("not implemented")
                raise d.error(
                    f"{keyword} {when} blocks are not supported (nor run by NEURON, which "
                    f"implements BEFORE/AFTER INITIAL, BEFORE BREAKPOINT, AFTER SOLVE and "
                    f"BEFORE STEP)",
                    None,
                    keyword,
                )
            d.ba_blocks.setdefault(name, []).append(block.bablock)
        elif kind == "InitialBlock":
            d.initial = block
        elif kind == "BreakpointBlock":
            d.breakpoint = block
        elif kind == "NetReceiveBlock":
            d.net_receive = block
        elif kind in _UNSUPPORTED_BLOCKS:
            keyword, message = _UNSUPPORTED_BLOCKS[kind]
            raise d.error(message, None, keyword)
    for name in d.externals:  # declared in ASSIGNED too, as nocmodl asks; not this one's
        d.variables.pop(name, None)
    if defines:  # a macro over a name the NMODL code uses changes what nocmodl's C means
        names = module.visitor.AstLookupVisitor().lookup(program, module.ast.AstNodeType.NAME)
        used = {n.get_node_name() for n in names} | set(d.variables)
        for name, code in defines:
            if name in used:
                raise d.error(
                    f"VERBATIM #defines {name!r}, a name the NMODL code uses (a block starting "
                    f"{verbatim.first_line(code)!r}): portneuron cannot follow C macros; "
                    f"rewrite it in NMODL",
                    None,
                    "VERBATIM",
                )
    for node in module.visitor.AstLookupVisitor().lookup(
        program, module.ast.AstNodeType.BINARY_EXPRESSION
    ):
        if node.op.eval() == "=" and node.lhs.get_node_type_name() in ("VarName", "Name"):
            name = node.lhs.get_node_name()
            if not _shadowed(node, name):
                d.assigned_names.add(name)
    if not d.kind:  # nocmodl's default: a density mechanism named after the file
        stem = Path(d.filename).stem
        if not stem.isidentifier() or d.filename.startswith("<"):
            raise d.error(
                "no SUFFIX, POINT_PROCESS or ARTIFICIAL_CELL in the NEURON block, and the "
                f"file's name {stem!r} cannot be the mechanism's (nocmodl's default); add a SUFFIX",
                ("NEURON", ""),
            )
        d.kind, d.name = "density", stem
    # a TABLE output declared only GLOBAL in the NEURON block: nocmodl makes it an ASSIGNED
    for block in (*d.procedures.values(), *d.functions.values()):
        for stmt in block.statement_block.statements:
            if stmt.get_node_type_name() != "TableStatement":
                continue
            for var in stmt.table_vars:
                name = var.get_node_name()
                if name not in d.variables and name in d.global_names:
                    d.variables[name] = Declared(name, "assigned")
    # VERBATIM anywhere (an INITIAL's `cai = _ion_cai;` too, an INCLUDEd file's) makes
    # nocmodl's C not thread safe without THREADSAFE
    d.has_verbatim = bool(
        module.visitor.AstLookupVisitor().lookup(program, module.ast.AstNodeType.VERBATIM)
    )
    vector_sources = {i.source for i in d.idioms.values() if i.kind == "vector-element"}
    _streams(d)
    stream = d.stream_bbcore
    for name in d.bbcore_pointers:
        if stream is not None and (name == stream.source or name in stream.vectors):
            continue
        if name not in vector_sources:
            raise d.error(
                f"BBCOREPOINTER {name} is not supported (only as a VecStim's event Vector, "
                f"the idiom portneuron knows)",
                ("NEURON", ""),
                "BBCOREPOINTER",
            )
    return d


def _array_length(d: Declarations, node, where, name: str) -> int:
    """The element count of an array declaration (`x[10]`, `x[NANN]`); 0 without one."""
    if node is None:
        return 0
    try:
        length = int(node.eval())
    except (AttributeError, TypeError, ValueError):
        raise d.error(f"the length of array {name!r} is not a number", where, name) from None
    if length < 1:
        raise d.error(f"array {name!r} has length {length}; give at least 1", where, name)
    return length


def _neuron_block(d: Declarations, block) -> None:
    where = ("NEURON", "")
    for stmt in block.statement_block.statements:
        kind = stmt.get_node_type_name()
        if kind == "Suffix":
            d.kind = KINDS.get(stmt.type.get_node_name(), "")
            d.name = stmt.get_node_name()
            if not d.kind:
                raise d.error(f"unknown mechanism kind {stmt.type.get_node_name()!r}", where)
        elif kind == "Range":
            d.range_names.update(v.get_node_name() for v in stmt.variables)
        elif kind == "Global":
            d.global_names.update(v.get_node_name() for v in stmt.variables)
        elif kind == "Useion":
            valence = int(number(stmt.valence.value)) if stmt.valence is not None else None
            d.ions.append(
                Ion(
                    stmt.get_node_name(),
                    [r.get_node_name() for r in stmt.readlist],
                    [w.get_node_name() for w in stmt.writelist],
                    valence,
                )
            )
        elif kind == "Nonspecific":
            d.nonspecific += [c.get_node_name() for c in stmt.currents]
        elif kind == "ElectrodeCurrent":
            d.electrode += [c.get_node_name() for c in stmt.currents]
        elif kind == "RandomVarList":
            for v in stmt.variables:
                name = v.get_node_name()
                d.randoms.append(name)
                # A Random123 stream per instance: three ids and the position in the stream.
                for part in ("id1", "id2", "id3", "position"):
                    d.variables[f"{name}.{part}"] = Declared(f"{name}.{part}", "random")
        elif kind == "ThreadSafe":
            d.thread_safe = True
        elif kind in ("LineComment", "BlockComment", "OntologyStatement"):
            pass  # REPRESENTS: an ontology annotation, nothing to run
        elif kind == "Pointer":
            d.pointers += [v.get_node_name() for v in stmt.variables]
            d.pointer_slots += [f"pointer:{v.get_node_name()}" for v in stmt.variables]
        elif kind == "BbcorePointer":
            d.bbcore_pointers += [v.get_node_name() for v in stmt.variables]
            d.pointer_slots += [f"bbcorepointer:{v.get_node_name()}" for v in stmt.variables]
        elif kind == "External":
            d.externals.update(v.get_node_name() for v in stmt.variables)
        else:
            keyword = text(stmt).split()[0] if text(stmt).split() else kind
            raise d.error(f"{keyword} in the NEURON block is not supported", where, keyword)
