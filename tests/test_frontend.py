"""The NMODL front end: built-in mechanisms compile; bad input is one clean error line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portneuron.ir import format_mechanism, verify_mechanism

from portneuron.errors import NmodlError
from portneuron.nmodl import builtin_mod_files, compile_file, compile_source

COMPILES = {
    "hh": ("density", {"table_rates", "init", "current", "state"}),
    "passive": ("density", {"init", "current"}),
    "expsyn": ("point_process", {"init", "current", "state", "net_receive"}),
    "exp2syn": ("point_process", {"init", "current", "state", "net_receive"}),
    "stim": ("point_process", {"init", "current"}),
    "netstim": ("artificial_cell", {"init", "net_receive"}),
    "svclmp": ("point_process", {"init", "current", "state"}),
}
ERROR_LINE = re.compile(r"^\S+:\d+(:\d+)?: \S.*$")


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_builtin_compiles_and_verifies(name):
    mechanism = verify_mechanism(compile_file(builtin_mod_files()[name]))
    kind, kernels = COMPILES[name]
    assert mechanism.kind == kind
    assert {k.name for k in mechanism.kernels} == kernels


def test_pattern_is_refused_by_name_with_its_place():
    with pytest.raises(NmodlError) as info:
        compile_file(builtin_mod_files()["pattern"])
    message = str(info.value)
    assert ERROR_LINE.match(message) and "pattern.mod:" in message
    # its C (nrn_fake_fire, CoreNEURON's pattern file) is none of the idioms portneuron knows:
    # its helpers are C only VERBATIM reaches, its bbcore_write an unknown serialisation
    assert (
        "pattern.mod:108: VERBATIM C code is not supported (a block starting 'static void "
        "bbcore_write(" in message
    )


def test_every_builtin_file_is_covered():
    assert set(builtin_mod_files()) == set(COMPILES) | {"pattern"}


HEADER = "NEURON { SUFFIX x RANGE a }\nASSIGNED { a }\n"


@pytest.mark.parametrize(
    "body, line, word",
    [
        ("BREAKPOINT {\n  LAG a BY a\n}\n", 4, "LAG statements"),
        ("BREAKPOINT {\n  a = b\n}\n", 4, "undeclared variable 'b'"),
        ("BREAKPOINT {\n  a = foo(1)\n}\n", 4, "foo"),
        ("VERBATIM\n#define a 3\nENDVERBATIM\n", 3, "VERBATIM #defines 'a', a name the NMODL"),
        ("BREAKPOINT {\nVERBATIM\n int x; \nENDVERBATIM\n}\n", 4, "VERBATIM"),
        (
            "STATE { s }\nBREAKPOINT { SOLVE d METHOD runge }\nDERIVATIVE d { s' = -s }\n",
            4,
            "METHOD runge for DERIVATIVE d is not supported; use cnexp, derivimplicit or euler",
        ),
        ("FUNCTION f(x) {\n  f = f(x)\n}\nBREAKPOINT { a = f(1) }\n", 4, "recursive"),
    ],
)
def test_unsupported_constructs_are_named_with_file_and_line(body, line, word):
    with pytest.raises(NmodlError) as info:
        compile_source(HEADER + body, "bad.mod")
    message = str(info.value)
    assert ERROR_LINE.match(message), message
    assert message.startswith(f"bad.mod:{line}"), message
    assert word in message


def test_a_function_table_only_hoc_calls_compiles():
    """FUNCTION_TABLE values come from hoc (table_<name>), which NEURON does not hand over:
    a FUNCTION that only hoc calls may use one (the simulation never does); the mechanism
    compiles and has no data for it (nocmodl keeps it in one static). Called where the
    simulation runs it is one line (test_bad_input)."""
    m = compile_source(
        HEADER + "FUNCTION_TABLE tau(v, x)\nFUNCTION use_tau(v, x) {\n  use_tau = tau(v, x)\n}\n"
        "BREAKPOINT { a = 2 }\n",
        "ft.mod",
    )
    assert [v.name for v in m.variables] == ["a"]


def test_syntax_error_has_line_and_column():
    with pytest.raises(NmodlError) as info:
        compile_source("NEURON { SUFFIX x }\nBREAKPOINT {\n  a = b + \n}\n", "s.mod")
    assert str(info.value).startswith("s.mod:4:1: syntax error")


def test_cli_prints_ir_and_one_line_errors(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "portneuron", "compile", "hh", "--emit", "ir"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "kernel state over instance" in ok.stdout
    bad = tmp_path / "bad.mod"
    bad.write_text("NEURON { SUFFIX x }\nBREAKPOINT {\n  a = b + \n}\n")
    run = subprocess.run(
        [sys.executable, "-m", "portneuron", "compile", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert f"{bad}:4:1: syntax error" in run.stderr


def test_cli_lists_backends():
    run = subprocess.run(
        [sys.executable, "-m", "portneuron", "backends"], capture_output=True, text=True
    )
    assert run.returncode == 0 and re.search(r"^numpy\s+available", run.stdout, re.M)


# ------------------------------------------------------------------ fuzzing

SOURCES = [p.read_text() for name, p in sorted(builtin_mod_files().items())]
TOKENS = ["{", "}", "(", ")", "=", "'", "+", "-", "*", "/", "^", "<", ">", ":", "~", ",", "0",
          "1e9", "-1", "v", "t", "dt", "x", "SOLVE", "METHOD", "cnexp", "derivimplicit", "sparse",
          "IF", "ELSE", "LOCAL", "TABLE", "FROM", "TO", "WITH", "DEPEND", "FUNCTION", "PROCEDURE",
          "RANGE", "GLOBAL", "USEION", "READ", "WRITE", "net_send", "exp", "STATE", "ASSIGNED",
          "PARAMETER", "KINETIC", "CONSERVE", "COMPARTMENT", "<->", "VERBATIM", "ENDVERBATIM",
          "NONSPECIFIC_CURRENT", "POINT_PROCESS", "SUFFIX", "\n"]  # fmt: skip


@st.composite
def mutated_sources(draw):
    source = draw(st.sampled_from(SOURCES))
    words = re.split(r"(\s+)", source)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(words) - 1))
        action = draw(st.sampled_from(["delete", "replace", "insert", "duplicate"]))
        if action == "delete":
            words[i] = ""
        elif action == "replace":
            words[i] = draw(st.sampled_from(TOKENS))
        elif action == "insert":
            words.insert(i, " " + draw(st.sampled_from(TOKENS)) + " ")
        else:
            words.insert(i, words[i])
    return "".join(words)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_sources())
def test_fuzzed_sources_give_ir_or_one_clean_error(source):
    try:
        verify_mechanism(compile_source(source, "fuzz.mod"))
    except NmodlError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("fuzz.mod"), message


UNITS_MOD = """
NEURON {{ SUFFIX u RANGE x }}
UNITS {{
    (mM) = (milli/liter)
    {definition}
}}
ASSIGNED {{ x }}
BREAKPOINT {{ x = {name} }}
"""


@pytest.mark.parametrize(
    "definition, value",
    [
        ("FARADAY = (faraday) (coulomb)", 96485.33212331001),  # e * N_A, CODATA 2018
        ("R = (k-mole) (joule/degC)", 8.31446261815324),  # k * N_A
        ("e = (e) (coulomb)", 1.602176634e-19),
        ("PI = (pi) (1)", 3.141592653589793),
        ("F2 = 96485.3 (coul)", 96485.3),
        ("KTOMV = 0.0853 (mV/degC)", 0.0853),
    ],
)
def test_units_constants_have_neurons_values(definition, value):
    """Valued by NEURON's own translator and units database: the numbers NEURON 9 uses."""
    name = definition.split("=")[0].strip()
    mechanism = compile_source(UNITS_MOD.format(definition=definition, name=name), "u.mod")
    text = format_mechanism(mechanism)
    assert f"\n  x = {value!r}\n" in text, text


def test_unknown_unit_in_a_units_constant_is_one_line():
    source = UNITS_MOD.format(definition="FARADAY = (faradayz) (coulomb)", name="FARADAY")
    with pytest.raises(NmodlError) as error:
        compile_source(source, "u.mod")
    assert str(error.value) == (
        "u.mod:5:5: UNITS constant FARADAY: Cannot recognize the units: faradayz "
        "(NEURON's units database, nrnunits.lib)"
    )


LAYOUT_FILES = [
    *(p for name, p in builtin_mod_files().items() if name != "pattern"),
    *sorted((Path(__file__).parent / "mods").glob("*.mod")),
    *sorted((Path(__file__).parent / "mods_epoch").glob("*.mod")),
]
NOT_VECTORIZED = (
    "NEURON { SUFFIX nv RANGE r GLOBAL g }\nPARAMETER { g = 1 }\nASSIGNED { r x }\n"
    "BREAKPOINT { g = 2 x = 1 r = x }\n"
)


@pytest.mark.parametrize(
    "source",
    [*LAYOUT_FILES, NOT_VECTORIZED, NOT_VECTORIZED.replace("GLOBAL g }", "GLOBAL g THREADSAFE }")],
    ids=lambda s: (
        s.name if isinstance(s, Path) else ("threadsafe" if "THREADSAFE" in s else "not-vectorized")
    ),
)
def test_data_layout_is_nocmodls(tmp_path, source):
    """The per-instance values, in order, as NEURON's translator registers them: what a
    dataset holds for each instance (a mechanism that assigns a GLOBAL without THREADSAFE
    is not vectorized, and keeps no v); and the pdata words' meanings, where portneuron
    follows them (ions, POINTERs, netsend, WATCH slots: dataset checks and POINTER
    decoding read them)."""
    from portneuron.io.checks import pdata_slots
    from portneuron.nmodl.units import nocmodl

    program, database = nocmodl()
    if isinstance(source, str):
        (tmp_path / "nv.mod").write_text(source)
        source = tmp_path / "nv.mod"
    subprocess.run(
        [str(program), str(source.resolve()), "-o", str(tmp_path)],
        capture_output=True, check=True, env={**os.environ, "MODLUNIT": str(database)},
    )  # fmt: skip
    cpp = (tmp_path / source.with_suffix(".cpp").name).read_text()
    fields = tuple(
        name if not length else f"{name}[{k}]"  # an array: one value per element
        for name, length in re.findall(r'_nrn_mechanism_field<double>\{"(\w+)"(?:, (\d+))?\}', cpp)
        for k in range(int(length or 1))
    )
    mechanism = compile_file(source)
    assert mechanism.layout == fields
    slots = pdata_slots(mechanism)
    if slots is not None:
        semantics = re.findall(r'hoc_register_dparam_semantics\(_mechtype, \d+, "([^"]+)"\)', cpp)
        assert [_semantics(slot) for slot in slots] == [s for s in semantics if s != "cvodeieq"]


def _semantics(slot: str) -> str:
    """nocmodl's name for what a pdata slot of portneuron's pdata_slots holds."""
    kind, _, rest = slot.partition(":")
    if kind == "ion":
        return f"{rest.split(':')[0]}_ion"
    if kind == "style":
        return f"#{rest}_ion"
    return kind  # area, pntproc, pointer, bbcorepointer, random, netsend, watch


INCLUDING = 'NEURON {{ SUFFIX inc RANGE y }}\nASSIGNED {{ y }}\nINCLUDE "{name}"\nBREAKPOINT {{ y = sq(3) }}\n'


def test_include_beside_the_file_or_in_modl_include(tmp_path, monkeypatch):
    """Found where nocmodl looks: beside the including file, then in MODL_INCLUDE."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sq.inc").write_text("FUNCTION sq(x) { sq = x*x }\n")
    (tmp_path / "b" / "cube.inc").write_text("FUNCTION sq(x) { sq = x*x*x }\n")
    (tmp_path / "a" / "m.mod").write_text(INCLUDING.format(name="sq.inc"))
    assert "sq1.result = sq1.x * sq1.x\n" in format_mechanism(
        compile_file(tmp_path / "a" / "m.mod")
    )
    (tmp_path / "a" / "n.mod").write_text(INCLUDING.format(name="cube.inc"))
    with pytest.raises(NmodlError, match=r'n\.mod:3: INCLUDE "cube.inc": no such file beside'):
        compile_file(tmp_path / "a" / "n.mod")
    monkeypatch.setenv("MODL_INCLUDE", f"/nonexistent:{tmp_path / 'b'}")
    text = format_mechanism(compile_file(tmp_path / "a" / "n.mod"))
    assert "sq1.result = (sq1.x * sq1.x) * sq1.x\n" in text


def test_include_after_comment_lines(tmp_path, monkeypatch):
    """Comments before an INCLUDE do not hide it (NEURON's sdata.mod opens with one)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sq.inc").write_text("FUNCTION sq(x) { sq = x*x }\n")
    commented = (
        INCLUDING.format(name="sq.inc")
        .replace("INCLUDE", ": a comment that once shifted what follows\nINCLUDE")
        .replace("\nBREAKPOINT", "\n" * 60 + "BREAKPOINT")
    )
    (tmp_path / "a" / "m.mod").write_text(commented)
    assert "sq1.result = sq1.x * sq1.x\n" in format_mechanism(
        compile_file(tmp_path / "a" / "m.mod")
    )


def test_units_constant_from_a_unit_the_block_defines():
    source = UNITS_MOD.format(
        definition="(foo) = (2 millivolt)\n    K = (foo) (millivolt)", name="K"
    )
    assert "\n  x = 2.0\n" in format_mechanism(compile_source(source, "u.mod"))


NO_OP_VERBATIM = """
NEURON { SUFFIX nv USEION ca READ cai RANGE x }
ASSIGNED { x cai (mM) }
INITIAL {
    x = 1
VERBATIM
    /* comments only: nothing to do */
ENDVERBATIM
    p()
VERBATIM
    return;
ENDVERBATIM
}
BREAKPOINT {
VERBATIM
    cai = _ion_cai;
ENDVERBATIM
    x = x + cai
}
PROCEDURE p() {
    x = x + 2
VERBATIM
    return 0;
ENDVERBATIM
}
"""


def test_verbatim_idioms_that_change_nothing_compile():
    """VERBATIM that only comments, ends a PROCEDURE with `return 0;` or INITIAL with
    `return;` (what their C functions do there anyway), or reads a USEION READ variable
    again (`cai = _ion_cai;`: the ion's value, read there) compiles; a `return` anywhere
    else would skip statements, and is refused."""
    mechanism = compile_source(NO_OP_VERBATIM, "nv.mod")
    text = format_mechanism(mechanism)
    assert "cai = ion.ca.cai[ion.ca.index[pn.instance]]" in text
    early = NO_OP_VERBATIM.replace("    x = x + 2\nVERBATIM\n    return 0;\nENDVERBATIM\n",
                                   "VERBATIM\n    return 0;\nENDVERBATIM\n    x = x + 2\n")  # fmt: skip
    with pytest.raises(
        NmodlError,
        match=r"nv\.mod:\d+:\d+: VERBATIM C code is not supported \(a block starting 'return 0;'",
    ):
        compile_source(early, "nv.mod")


PROBSYN = (Path(__file__).parent / "mods" / "probsyn.mod").read_text()


def test_random123_stream_idiom_compiles_to_draws():
    """BBP's VERBATIM Random123 idiom (tests/mods/probsyn.mod): urand() is a draw from the
    instance's stream (ids and position per instance), INITIAL restarts it where usingR123
    says the stream is Random123's, setRNG/clearRNG/bbsavestate/setup_delay_vecs are hoc's,
    the delayed-connection Vector blocks are skipped (the Vectors must be empty), and the
    NET_RECEIVE's `return;`s skip what follows them."""
    mechanism = compile_source(PROBSYN, "probsyn.mod")
    assert mechanism.stream == ("rng", "usingR123", 7)
    assert {v.name for v in mechanism.variables if v.kind == "random"} == {
        "rng.id1", "rng.id2", "rng.id3", "rng.position"
    }  # fmt: skip
    text = format_mechanism(mechanism)
    assert text.count("random123(rng.id1, rng.id2, rng.id3, rng.position, random123_index)") == 2
    assert "select(usingR123 == 0.0, rng.position, 0.0)" in text
    assert "returned1 = 1.0" in text and "if returned1 == 0.0 {" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (  # the stream's words are not the idiom's
            ("nrnran123_getids3(*pv, di, di + 1, di + 2);", "nrnran123_getids3(*pv, di, di + 2, di + 1);"),
            "probsyn.mod:17:5: the Random123 stream rng is drawn from but its bbcore_write is "
            "not the idiom portneuron reads (the stream's ids, sequence and index as each "
            "instance's first five ints)",
        ),
        (  # hoc's procedure called from the mechanism
            ("    next_delay = -1\n}", "    next_delay = -1\n    setRNG()\n}"),
            "probsyn.mod:86:5: setRNG runs only when hoc calls it (its VERBATIM takes hoc's "
            "arguments or makes a stream) and cannot be called here",
        ),
        (  # a return where NEURON's C would leave a block early, outside NET_RECEIVE
            ("    next_delay = -1\n}", "    VERBATIM\n    return;\n    ENDVERBATIM\n    next_delay = -1\n}"),
            "a VERBATIM `return;` is supported in NET_RECEIVE only",
        ),
    ],
)  # fmt: skip
def test_random123_stream_idiom_refusals(change, message):
    old, new = change
    assert old in PROBSYN
    with pytest.raises(NmodlError) as refused:
        compile_source(PROBSYN.replace(old, new), "probsyn.mod")
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_compiled_mechanisms_are_kept_by_their_source(tmp_path, monkeypatch):
    """A source compiles once: the next compile of the same text (and file name) is the
    stored Mechanism, equal to a fresh one; a changed source or a damaged store compiles
    again; a source that INCLUDEs is never stored."""
    from portneuron.nmodl import cache

    monkeypatch.setenv("PORTNEURON_CACHE", str(tmp_path))
    source = builtin_mod_files()["hh"].read_text()
    first = compile_source(source, "hh.mod")
    stored = list((tmp_path / "nmodl").glob("*.pickle"))
    assert len(stored) == 1
    assert cache.load(source, "hh.mod") == first == compile_source(source, "hh.mod")
    assert cache.load(source.replace("gnabar = .12", "gnabar = .13"), "hh.mod") is None
    stored[0].write_bytes(b"not a pickle")
    assert cache.load(source, "hh.mod") is None and compile_source(source, "hh.mod") == first
    cache.save('INCLUDE "x.inc"\n' + source, "hh.mod", first)
    assert len(list((tmp_path / "nmodl").glob("*.pickle"))) == 1


def test_a_warm_run_imports_neither_sympy_nor_neurons_parser(tmp_path):
    """With every mechanism and kernel stored, the default model's run loads no front end:
    neither sympy and NEURON's parser nor the front end's own lowering (nor the dataset
    reader, which a built model does not need)."""
    own = ["portneuron.nmodl.declarations", "portneuron.nmodl.lower", "portneuron.io.dataset"]
    code = (
        "import sys\n"
        "from portneuron.cli import main\n"
        f"assert main(['run', '-e', '1', '-o', {str(tmp_path / 'out')!r}]) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sympy', '_nmodl'}\n"
        f"             | {{m for m in {own!r} if m in sys.modules}}))\n"
    )
    env = {**os.environ, "PORTNEURON_CACHE": str(tmp_path / "cache")}
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=True).stdout.splitlines()[-1]
        for _ in range(2)
    ]  # fmt: skip
    assert runs == [str(sorted(["_nmodl", "sympy", *own[:2]])), "[]"]
