"""VERBATIM C that published models share, recognised by what it does and given that meaning.

A VERBATIM block is C pasted into nocmodl's output; portneuron cannot run C, but a few
blocks recur across public models word for word or nearly, and each means one thing:

| idiom | where | what it does | in portneuron |
| --- | --- | --- | --- |
| `vector-element` | a PROCEDURE's whole body | VecStim's `element()`: the next time of the instance's event Vector into `etime`, `index` one on, or -1 at the end (or without a Vector) | lowered to IR over the instance's event times |
| `vector-play` | a PROCEDURE's whole body | VecStim's `play(vec)`: hoc gives the instance its Vector | the times come with the model (a dataset's BBCOREPOINTER data, or NEURON in direct mode); not callable from the mechanism's blocks |
| `vector-unref` | DESTRUCTOR | lets go of the Vector | nothing to do |
| `vector-bbcore` | top level | `bbcore_write`/`bbcore_read` of a Vector's times | read by the dataset reader |
| `declarations` | top level | `extern` prototypes of hoc's vector functions | nothing to do |
| `no-op` | anywhere | nothing but comments | nothing to do |
| `return` | the last statement of a PROCEDURE (`return 0;`) or of INITIAL (`return;`) | what the C function does there anyway | nothing to do |
| `ion-read` | anywhere | `cai = _ion_cai;`: a USEION READ variable read again from the ion | the ion's value, read there |
| `declarations` | top level | `#include`s, `#define`s, prototypes | nothing to do |
| `stream-draw` | a FUNCTION's whole body | `urand()`/`erand()`: `nrnran123_dblpick`/`negexp` of the instance's BBCOREPOINTER stream | a draw from the instance's Random123 stream (ids, position) |
| `stream-reset` | INITIAL | `nrnran123_setseq(rng, 0, 0)` where `usingR123` | the stream's position back to 0 |
| `hoc-only` | a PROCEDURE or FUNCTION | C taking hoc's arguments or making a stream (`setRNG`, `bbsavestate`) | not run (only hoc calls it; a call from the mechanism is refused) |
| `c-library` | top level | any other C (helper functions, statics, structs, `#include`s) | nothing: the simulation reaches it only through VERBATIM in the blocks it runs, refused there unless an idiom; refused if it `#define`s a name the NMODL code uses, or defines `bbcore_write`/`bbcore_read` other than the idioms' |
| `printf` | anywhere | `printf(...)`/`fprintf(stderr, ...)` of plain variables, nothing else | compiled out, as NMODL's printf (kernels print nothing) |
| `stream-bbcore` | top level | `bbcore_write`/`bbcore_read` of the stream's ids, sequence and index, first in the instance's ints | read by the dataset reader |
| `empty-vector` | anywhere | `if (vv && vector_capacity(vv) ...) {` on a Vector `stream-bbcore` writes, closed by a later block | skipped (the reader refuses a model whose Vectors are set) |
| `return` in NET_RECEIVE | NET_RECEIVE | `return;`: leaves the call | the rest of the call is skipped |

The event Vector is found through a BBCOREPOINTER (`_p_ptr`) or an ASSIGNED used as a
pointer's storage (`*((void**)(&space))`); its name is the idiom's `source`. Any other
VERBATIM is refused with its file, line and first line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_PREPROCESSOR = re.compile(r"^\s*#.*$", re.MULTILINE)


def squash(code: str) -> str:
    """The C without comments, preprocessor lines and white space."""
    code = _PREPROCESSOR.sub("", _COMMENTS.sub("", code))
    return re.sub(r"\s+", "", code)


@dataclass(frozen=True)
class Idiom:
    kind: str
    source: str = ""  # the variable through which the event Vector (or the stream) is reached
    flag: str = ""  # `stream-*`: the ASSIGNED that says the instance's stream is Random123's
    draw: str = ""  # `stream-draw`: "uniform" (nrnran123_dblpick) or "negexp"
    words: int = 0  # `stream-bbcore`: the ints bbcore_write writes per instance
    vectors: tuple[str, ...] = ()  # `stream-bbcore`: BBCOREPOINTER Vectors it writes as well


_SOURCE = (
    re.compile(r"vv=\(void\*\)\(_p_(\w+)\);"),  # BBCOREPOINTER
    re.compile(r"vv=\*\(\(void\*\*\)\(&(\w+)\)\);"),  # an ASSIGNED holding the pointer
)


_ION_READ = re.compile(r"(?:(\w+)=_ion_(\w+);)+")


def ion_reads(code: str) -> list[str] | None:
    """The variables of an `ion-read` block (`cai = _ion_cai; ...`), or None."""
    c = squash(code)
    if not _ION_READ.fullmatch(c):
        return None
    pairs = re.findall(r"(\w+)=_ion_(\w+);", c)
    return [a for a, b in pairs] if all(a == b for a, b in pairs) else None


def trailing_return(code: str, keyword: str) -> bool:
    """Whether a block is the `return` idiom for the last statement of a block of kind
    `keyword`: `return 0;` ends a PROCEDURE's C function (an int), `return;` INITIAL's."""
    c = squash(code)
    return (keyword == "PROCEDURE" and c == "return0;") or (keyword == "INITIAL" and c == "return;")


def recognise(code: str) -> Idiom | None:
    """The idiom a VERBATIM block is, or None."""
    c = squash(code)
    if not c:
        return Idiom("declarations")
    if (
        "size=vector_capacity(vv);" in c
        and "px=vector_vec(vv);" in c
        and "etime=px[i];" in c
        and "index+=1.;" in c
        and "index=-1.;" in c
        and "i=(int)index;" in c
    ):
        for pattern in _SOURCE:
            found = pattern.search(c)
            if found:
                return Idiom("vector-element", found.group(1))
        return None
    if "vector_arg(1)" in c and "bbcore" not in c and "etime" not in c:
        return Idiom("vector-play")
    if re.fullmatch(
        r"(void\*vv=\(void\*\)\(_p_\w+\);if\(vv\)\{hoc_obj_unref\(\*vector_pobj\(vv\)\);\})?", c
    ):
        return Idiom("vector-unref")
    if "staticvoidbbcore_write(" in c and "staticvoidbbcore_read(" in c and "vector_vec(" in c:
        return Idiom("vector-bbcore")
    externs = re.fullmatch(r"(extern(double\*|int|void\*)vector_(vec|capacity|arg)\(\);)+", c)
    if externs:
        return Idiom("declarations")
    return None


#: What only hoc calls: C that takes the hoc call's arguments, or that makes or deletes an
#: instance's stream (which the model then carries in its BBCOREPOINTER words).
_HOC_ONLY = (
    "getarg(", "ifarg(", "hoc_pgetarg(", "vector_arg(", "nrn_random_arg(",
    "nrnran123_newstream", "nrnran123_deletestream(",
)  # fmt: skip
_STATE = r"\(nrnran123_State\*\)_p_(\w+)"
_DRAW = {"dblpick": "uniform", "negexp": "negexp"}


_PRINT = re.compile(r'(?:f?printf\((?:stderr,|stdout,)?"(?:[^"\\]|\\.)*"(?:,[\w.]+)*\);)+')


def prints_only(code: str) -> bool:
    """Whether a block only prints (`printf`/`fprintf(stderr, ...)` of plain variables): the
    `printf` idiom, compiled out as NMODL's printf is."""
    return _PRINT.fullmatch(squash(code)) is not None


_DEFINE = re.compile(r"^\s*#\s*(?:define|undef)\s+(\w+)", re.MULTILINE)


def defined_names(code: str) -> set[str]:
    """The names a block `#define`s or `#undef`s."""
    return set(_DEFINE.findall(_COMMENTS.sub("", code)))


def serialises(code: str) -> bool:
    """Whether a block defines `bbcore_write` or `bbcore_read` (the words NEURON's writer
    keeps for an instance's BBCOREPOINTERs)."""
    return re.search(r"\bbbcore_(?:write|read)\s*\(", _COMMENTS.sub("", code)) is not None


def hoc_only(code: str) -> bool:
    """Whether a block takes the arguments of a hoc call (`setRNG(1, 2, 3)`) or makes or
    deletes a stream (`clearRNG()`): the procedure or function it is in runs only when hoc
    calls it (the `hoc-only` idiom)."""
    c = squash(code)
    return any(call in c for call in _HOC_ONLY)


def stream_reset(code: str) -> Idiom | None:
    """`if (usingR123) { nrnran123_setseq((nrnran123_State*)_p_rng, 0, 0); }`: the stream
    back to its start (the `stream-reset` idiom)."""
    c = squash(code)
    found = re.fullmatch(rf"if\((\w+)\)\{{nrnran123_setseq\({_STATE},0,0\);\}}", c)
    if found:
        return Idiom("stream-reset", found[2], flag=found[1])
    found = re.fullmatch(rf"nrnran123_setseq\({_STATE},0,0\);", c)
    return Idiom("stream-reset", found[1]) if found else None


def stream_draw(code: str, function: str) -> Idiom | None:
    """A FUNCTION's whole body drawing from the instance's stream: `urand()` (uniform in
    (0, 1), `nrnran123_dblpick`) or `erand()` (`nrnran123_negexp`), if the instance uses
    Random123 (`usingR123`), else from a hoc Random or nothing (the `stream-draw` idiom)."""
    c = squash(code)
    result = f"_l{function}"
    found = re.fullmatch(
        rf"doublevalue(?:=0(?:\.0?)?)?;if\((\w+)\)\{{value=nrnran123_(dblpick|negexp)\({_STATE}\);\}}"
        rf"(?:else[^;]*;?.*?)?{result}=value;",
        c,
    )
    if found:
        return Idiom("stream-draw", found[3], flag=found[1], draw=_DRAW[found[2]])
    found = re.fullmatch(rf"{result}=nrnran123_(dblpick|negexp)\({_STATE}\);", c)
    return Idiom("stream-draw", found[2], draw=_DRAW[found[1]]) if found else None


def stream_bbcore(code: str) -> Idiom | None:
    """`bbcore_write`/`bbcore_read` of one Random123 stream (ids, sequence, index: the
    instance's first five ints) and perhaps of Vectors after it (BBP's delayed-connection
    weights), or of those Vectors alone (`source` ""): the `stream-bbcore` idiom. Its
    `words` are the ints per instance."""
    c = squash(code)
    if "staticvoidbbcore_write(" not in c or "staticvoidbbcore_read(" not in c:
        return None
    write = c[c.index("staticvoidbbcore_write(") :]
    if "staticvoidbbcore_read(" in write:
        write = write[: write.index("staticvoidbbcore_read(")]
    signature = re.match(
        r"staticvoidbbcore_write\(double\*\w+,int\*\w+,int\*\w+,int\*(\w+),", write
    )
    streams = re.findall(
        r"nrnran123_State\*\*pv=\(nrnran123_State\*\*\)\(&_p_(\w+)\);"
        r"nrnran123_getids3\(\*pv,di,di\+1,di\+2\);(?:unsigned)?charwhich;"
        r"nrnran123_getseq\(\*pv,di\+3,&which\);di\[4\]=\(int\)which;",
        write,
    )
    advance = f"*{signature[1]}+=" if signature is not None else ""
    if signature is None or len(streams) > 1 or advance not in write:
        return None
    if streams and write.index("nrnran123_getids3") > write.index(advance):
        return None  # the stream's words are not the instance's first
    words = sum(int(n) for n in re.findall(rf"\*{signature[1]}\+=(\d+);", write))
    vectors = sorted(set(re.findall(r"\(&_p_(\w+)\)", write)) - set(streams))
    if not streams and not (vectors and "vector_capacity(" in write):
        return None  # neither a stream nor Vectors: not this idiom
    return Idiom(
        "stream-bbcore", streams[0] if streams else "", words=words, vectors=tuple(vectors)
    )


_HOLDS = re.compile(r"(?:IvocVect|void)\*(\w+)=\*\(\((?:IvocVect|void)\*\*\)\(&_p_(\w+)\)\);")


def vector_guard(code: str, vectors: tuple[str, ...]) -> int:
    """How many braces a block leaves open behind `if (vec && vector_capacity(vec) ...) {`,
    where vec is one of `vectors` (BBCOREPOINTER Vectors, empty in every instance): what
    follows, up to where those braces close, never runs (the `empty-vector` idiom); 0 if
    the block is not that."""
    c = squash(code)
    held, at = {}, 0  # C locals holding the Vectors: `IvocVect* vv = *((IvocVect**)(&_p_x));`
    while found := _HOLDS.match(c, at):
        held[found[1]] = found[2]
        at = found.end()
    guard = re.match(r"if\((\w+)&&vector_capacity\(\1\)", c[at:])
    if guard is None or held.get(guard[1]) not in vectors:
        return 0
    return max(c.count("{") - c.count("}"), 0)


def closes(code: str, depth: int) -> str | None:
    """What a block does after closing `depth` braces ("" or "return;"), or None if it
    does not begin by closing exactly them."""
    c = squash(code)
    if not c.startswith("}" * depth) or c[depth:].count("}") > c[depth:].count("{"):
        return None
    rest = c[depth:]
    return rest if rest in ("", "return;") else None


def returns(nmodl: str) -> bool:
    """Whether NMODL text holds a VERBATIM that returns (`return;`, NET_RECEIVE's early
    return)."""
    return any(
        squash(code).endswith("return;")
        for code in re.findall(r"VERBATIM(.*?)ENDVERBATIM", nmodl, re.DOTALL)
    )


def first_line(code: str) -> str:
    """The block's first line of C, past comments, for a refusal."""
    code = _COMMENTS.sub("", code)
    return next((line.strip() for line in code.splitlines() if line.strip() not in ("", "{")), "")
