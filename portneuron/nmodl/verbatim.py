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
    source: str = ""  # the variable through which the event Vector is reached


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


def first_line(code: str) -> str:
    """The block's first line of C, past comments, for a refusal."""
    code = _COMMENTS.sub("", code)
    return next((line.strip() for line in code.splitlines() if line.strip() not in ("", "{")), "")
