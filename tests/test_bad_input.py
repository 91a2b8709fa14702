"""Bad input of every kind a user can give: options, output paths, `.mod` files and mechanism
folders, and interrupts. Each gets one line on stderr, the documented exit code, no
traceback, and leaves an out.dat that was already there byte for byte as it was. (Damaged
datasets, file by file and array by array, are tests/test_bad_dataset.py's.)

Most cases call the command line in this process (`cli.main`), which is what the
`portneuron` script runs; a few run the real script in a subprocess to show what a user sees.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from refusals import SENTINEL, one_line, with_earlier_out_dat

from portneuron import cli, progress
from portneuron.nmodl import builtin_mod_files


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return with_earlier_out_dat(tmp_path / "out")


def refused(capsys, *argv: str, code: int = 1) -> str:
    """Run the CLI in-process; it must fail with `code` and one line, which is returned."""
    assert cli.main(list(argv)) == code
    out, err = capsys.readouterr()
    return one_line(err)


@pytest.fixture
def no_work(monkeypatch):
    """Options must be refused before any model is built or read."""

    def built(*args, **kwargs):
        raise AssertionError("the model was built before the options were checked")

    monkeypatch.setattr(cli, "build_model", built)


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "argv, message",
    [
        (["-e", "inf"], r"-e/--tstop must be a finite number, not inf"),
        (["-e", "nan"], r"-e/--tstop must be a finite number, not nan"),
        (["-e", "-1"], r"-e/--tstop must be >= 0"),
        (["-e", "0"], r"-e 0 ms with dt 0.025 ms is no step at all"),
        (["-e", "0.01"], r"is no step at all; give -e of at least 0.0125 ms"),
        (["--dt", "0"], r"--dt must be positive"),
        (["--dt", "-0.025"], r"--dt must be positive"),
        (["--dt", "inf"], r"--dt must be a finite number"),
        (["--dt", "1e9"], r"dt 1e\+09 ms is no step at all"),
        (["-v", "nan"], r"-v must be a finite number"),
        (["--threads", "0"], r"--threads must be >= 1"),
        (["--celsius", "-300"], r"--celsius must be above -273.15 and at most 1000"),
        (["-l", "nan"], r"--celsius must be above -273.15"),
        (["--seed", "-1"], r"--seed must be from 0 to 100000000, not -1"),
        (["-s", "100000001"], r"--seed must be from 0 to 100000000"),
        (["--mindelay", "0"], r"--mindelay must be a positive number of ms, not 0.0"),
        (["--mindelay", "inf"], r"--mindelay must be a positive number of ms"),
        (["--restore", "/nonexistent/ck"], r"/nonexistent/ck: no checkpoint here"),
        (["--report-conf", "/nonexistent/r.json"], r"r.json: cannot read the report file"),
        (["--nring", "0"], r"--nring must be >= 1"),
        (["--ncell", "-3"], r"--ncell must be >= 1"),
        (["--branch", "5", "2"], r"--branch LO HI needs 1 <= LO <= HI"),
        (["--compart", "0", "1"], r"--compart LO HI needs 1 <= LO <= HI"),
        (["--nring", "1000000000"], r"compartments need about [0-9.e+]+ GiB, and this machine"),
        (["-e", "1e308"], r"is inf steps, more than any run can take"),
        (["-d", "/nonexistent/dataset"], r"/nonexistent/dataset: no such folder"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_impossible_options_are_refused_before_any_work(capsys, tmp_path, no_work, argv, message):
    out = tmp_path / "not-yet"
    line = refused(capsys, "run", *argv, "-o", str(out))
    assert re.search(message, line), line
    assert line.startswith("portneuron: error: ")
    assert not out.exists()  # not even the output folder was made


def test_a_checkpoint_folder_that_is_a_file_is_refused_before_any_work(capsys, tmp_path, no_work):
    (tmp_path / "ck").write_text("")
    line = refused(capsys, "run", "--checkpoint", str(tmp_path / "ck"), "-o", str(tmp_path))
    assert re.search(r"--checkpoint .*ck: needs a folder, and this is a file", line), line
    assert not (tmp_path / "out.dat").exists()


def test_unknown_backend_is_one_line(capsys, outdir):
    line = refused(capsys, "run", "--backend", "vulkan", "-o", str(outdir))
    assert "unknown backend 'vulkan'; registered backends: cuda, llvm, numpy" in line
    assert (outdir / "out.dat").read_text() == SENTINEL


def test_argparse_errors_are_its_usage_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "-e", "soon"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid float value: 'soon'" in err and "Traceback" not in err


def test_dt_above_the_min_delay_warns_and_runs(capsys, tmp_path):
    assert cli.main(["run", "--nring", "1", "-e", "4", "--dt", "2", "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert one_line(err).startswith("portneuron: warning: dt 2 ms is larger than the model's")
    assert "min-delay 1 ms, so the model runs step by step" in err


def test_a_model_too_large_for_memory_says_how_much_it_asked_for(capsys, monkeypatch, tmp_path):
    """Where no estimate catches it beforehand, NumPy's own refusal is the one line."""
    import numpy as np

    def build_model(*args, **kwargs):
        return np.zeros((2**36, 2**20))

    monkeypatch.setattr(cli, "build_model", build_model)
    line = refused(capsys, "run", "-o", str(tmp_path))
    assert re.match(
        r"portneuron: error: out of memory \(Unable to allocate 512\. PiB for an array .*\); "
        r"simulate a smaller model",
        line,
    ), line


# --------------------------------------------------------------------------- output paths
def test_output_under_a_regular_file(capsys, tmp_path, no_work):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, "run", "-o", str(tmp_path / "file" / "sub"))
    assert "a part of this path is a file, not a folder" in line


def test_output_is_a_regular_file(capsys, tmp_path, no_work):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, "run", "-o", str(tmp_path / "file"))
    assert "needs a folder, and this is a file" in line
    assert (tmp_path / "file").read_text() == "x"


def test_output_where_nothing_can_be_written(capsys, no_work):
    line = refused(capsys, "run", "-o", "/proc/portneuron-out")
    assert "-o /proc/portneuron-out: cannot write there" in line


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root writes into read-only folders (CI runs as root: /proc and /sys above stand in)",
)
def test_output_in_a_read_only_folder(capsys, tmp_path, no_work):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "out.dat").write_text(SENTINEL)
    folder.chmod(0o555)
    line = refused(capsys, "run", "-o", str(folder))
    assert "cannot write there (Permission denied)" in line
    assert (folder / "out.dat").read_text() == SENTINEL


def test_out_dat_that_is_a_folder(capsys, tmp_path, no_work):
    (tmp_path / "out.dat").mkdir()
    assert "its out.dat is a folder" in refused(capsys, "run", "-o", str(tmp_path))


def test_paths_too_long_for_the_file_system(capsys, tmp_path, no_work):
    long = str(tmp_path / ("x" * 300))
    assert "cannot write there (File name too long)" in refused(capsys, "run", "-o", long)
    assert refused(capsys, "run", "-d", long).endswith("File name too long")
    assert refused(capsys, "compile", long + ".mod").endswith("File name too long")


def test_dataset_time_step_that_is_not_a_step(capsys, tmp_path, no_work):
    (tmp_path / "globals.dat").write_text(
        "1.8\ndt 0\n0 0\nsecondorder 0\nRandom123_globalindex 0\n"
    )
    line = refused(capsys, "run", "-d", str(tmp_path), "-o", str(tmp_path / "o"))
    assert "globals.dat: dt is 0.0, but a time step is finite and positive" in line


def test_stdout_that_cannot_be_written(tmp_path):
    """A full disk under stdout: one line on stderr, no second message at exit."""
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [sys.executable, "-m", "portneuron", "compile", "hh"],
            stdout=full, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert run.returncode == 1
    assert one_line(run.stderr) == "portneuron: error: No space left on device"


def test_out_dat_has_an_ordinary_files_mode(tmp_path):
    assert cli.main(["run", "--nring", "1", "-e", "5", "-o", str(tmp_path), "--json"]) == 0
    assert (tmp_path / "out.dat").stat().st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- .mod files
BAD_MODS = {
    "syntax": ("NEURON { SUFFIX x }\nFOO { }\n", r"bad\.mod:2:1: syntax error"),
    "unbalanced": ("NEURON { SUFFIX x\n", r"bad\.mod:2:1: syntax error, unexpected End of file"),
    "verbatim": (
        "NEURON { SUFFIX x }\nBREAKPOINT { VERBATIM\n int a;\nENDVERBATIM\n}\n",
        r"bad\.mod:2:14: VERBATIM C code is not supported \(a block starting 'int a;'",
    ),
    "bbcorepointer": (
        "NEURON { SUFFIX x BBCOREPOINTER p }\nASSIGNED { p }\n",
        r"bad\.mod:1:\d+: BBCOREPOINTER p is not supported \(only as a VecStim's event Vector",
    ),
    "array-derivative": (
        "NEURON { SUFFIX x }\nSTATE { m[2] }\nBREAKPOINT { SOLVE s METHOD cnexp }\n"
        "DERIVATIVE s { m'[0] = -m[0] }\n",
        r"bad\.mod:4:\d+: a derivative of array STATE 'm' is not supported: NEURON's translator",
    ),
    "array-out-of-bounds": (
        "NEURON { SUFFIX x }\nASSIGNED { a[3] }\nINITIAL { a[3] = 1 }\n",
        r"bad\.mod:3:\d+: index 3 is outside array a\[3\]",
    ),
    "linear-equations": (
        "NEURON { SUFFIX x }\nSTATE { a b }\nINITIAL { SOLVE s }\nLINEAR s { ~ a + b = 1 }\n",
        r"bad\.mod:\d+(:\d+)?: LINEAR s has 1 equations for 2 states",
    ),
    "net-move-density": (
        "NEURON { SUFFIX x }\nINITIAL { net_move(t) }\n",
        r"bad\.mod:2:\d+: net_move is only allowed in NET_RECEIVE",
    ),
    "runge": (
        "NEURON { SUFFIX x }\nSTATE { m }\nBREAKPOINT { SOLVE s METHOD runge }\n"
        "DERIVATIVE s { m' = -m }\n",
        r"bad\.mod:3:29: METHOD runge .* use cnexp, derivimplicit or euler",
    ),
    "nonlinear-equations": (
        "NEURON { SUFFIX x }\nSTATE { a b }\nINITIAL { SOLVE s }\nNONLINEAR s { ~ a*b = 1 }\n",
        r"bad\.mod:\d+(:\d+)?: NONLINEAR s has 1 equations for 2 states \(a, b\)",
    ),
    "initial-cnexp": (
        "NEURON { SUFFIX x }\nSTATE { m }\nINITIAL { SOLVE s METHOD cnexp }\n"
        "DERIVATIVE s { m' = -m }\n",
        r"bad\.mod:3:\d+: SOLVE s METHOD cnexp outside BREAKPOINT is not supported",
    ),
    "undeclared": ("NEURON { SUFFIX x }\nBREAKPOINT { y = 1 }\n", r"undeclared variable 'y'"),
    "unknown-function": (
        "NEURON { SUFFIX x }\nASSIGNED { a }\nBREAKPOINT { a = f(1) }\n",
        r"unknown or unsupported function 'f'",
    ),
    "longitudinal-diffusion-not-a-state": (
        "NEURON { SUFFIX x }\nSTATE { X }\nASSIGNED { Y }\nBREAKPOINT { SOLVE k METHOD sparse }\n"
        "KINETIC k {\n  COMPARTMENT 1 {X}\n  LONGITUDINAL_DIFFUSION 1 {Y}\n  ~ X << (0)\n}\n",
        r"bad\.mod:7:29: Y must be a STATE in a LONGITUDINAL_DIFFUSION statement",
    ),
    "longitudinal-diffusion-without-compartment": (
        "NEURON { SUFFIX x }\nSTATE { X }\nBREAKPOINT { SOLVE k METHOD sparse }\n"
        "KINETIC k {\n  \n  LONGITUDINAL_DIFFUSION 1 {X}\n  ~ X << (0)\n}\n",
        r"bad\.mod:6:29: X must be declared in COMPARTMENT",
    ),
    "longitudinal-diffusion-in-a-point-process": (
        "NEURON { POINT_PROCESS x }\nSTATE { X }\nBREAKPOINT { SOLVE k METHOD sparse }\n"
        "KINETIC k {\n  COMPARTMENT 1 {X}\n  LONGITUDINAL_DIFFUSION 1 {X}\n  ~ X << (0)\n}\n",
        r"bad\.mod:6:3: LONGITUDINAL_DIFFUSION in a POINT_PROCESS or ARTIFICIAL_CELL",
    ),
    "shared-global-in-net-receive-initial": (
        "NEURON { POINT_PROCESS x GLOBAL n }\nASSIGNED { n }\nNET_RECEIVE(w) {\n"
        "  INITIAL { n = n + 1 }\n}\n",
        r"bad\.mod:4:3: NET_RECEIVE's INITIAL assigns a GLOBAL or file-scope LOCAL that a block "
        r"reads before assigning it",
    ),
    "shared-global-with-net-send": (
        "NEURON { POINT_PROCESS x GLOBAL n }\nASSIGNED { n }\nINITIAL {\n  n = n + 1\n"
        "  net_send(1, 1)\n}\nNET_RECEIVE(w) { }\n",
        r"bad\.mod:5:3: a block that sends events \(net_send\) assigns a GLOBAL",
    ),
    "function-table-where-the-simulation-runs": (
        "NEURON { SUFFIX x }\nASSIGNED { a }\nFUNCTION_TABLE tau(v)\nBREAKPOINT { a = tau(v) }\n",
        r"bad\.mod:4:18: FUNCTION_TABLE tau is called where the simulation runs: its values are "
        r"given from hoc \(table_tau\)",
    ),
    "scopmath-random": (
        "NEURON { SUFFIX x }\nASSIGNED { a }\nBREAKPOINT { a = normrand(0, 1) }\n",
        r"bad\.mod:3:18: normrand draws from NEURON's one process-wide generator",
    ),
    "for-netcons-outside-net-receive": (
        "NEURON { POINT_PROCESS x }\nINITIAL {\n  FOR_NETCONS(w) { }\n}\nNET_RECEIVE(w) { }\n",
        r"bad\.mod:3:\d+: FOR_NETCONS outside NET_RECEIVE: not supported here",
    ),
    "for-netcons-arguments": (
        "NEURON { POINT_PROCESS x }\nNET_RECEIVE(w, n) {\n  FOR_NETCONS(a) { a = 1 }\n}\n",
        r"bad\.mod:3:3: FOR_NETCONS names 1 arguments and NET_RECEIVE 2; name as many",
    ),
    "v-in-net-receive": (
        "NEURON { POINT_PROCESS x }\nNET_RECEIVE(w) {\n  v = v + w\n}\n",
        r"bad\.mod:3:3: assigning to 'v' in NET_RECEIVE is not supported",
    ),
    "binary": (b"\x7fELF\x02\x01\x01\x00\x00", r"bad\.mod: not a text file \(it has NUL bytes\)"),
    # WATCH where NEURON refuses it: its translator outside NET_RECEIVE; its C compiler in
    # NET_RECEIVE's INITIAL (nocmodl 9.0.2 emits an undeclared _watch_rm); a crash at run
    # time in an ARTIFICIAL_CELL; a condition reading what its C function cannot see
    "watch-density": (
        "NEURON { SUFFIX x }\nASSIGNED { a }\nINITIAL { WATCH (a > 1) 2 }\n",
        r"bad\.mod:3:11: WATCH outside NET_RECEIVE",
    ),
    "watch-procedure": (
        "NEURON { POINT_PROCESS x }\nASSIGNED { v }\nPROCEDURE p() {\n  WATCH (v > 1) 2\n}\n",
        r"bad\.mod:4:3: WATCH in PROCEDURE p: NEURON's translator allows it only in NET_RECEIVE",
    ),
    "watch-net-receive-initial": (
        "NEURON { POINT_PROCESS x }\nASSIGNED { v }\n"
        "NET_RECEIVE(w) {\n  INITIAL {\n    WATCH (v > 1) 2\n  }\n}\n",
        r"bad\.mod:5:5: WATCH in NET_RECEIVE's INITIAL block: NEURON 9's translation of it "
        r"does not compile",
    ),
    "watch-artificial-cell": (
        "NEURON { ARTIFICIAL_CELL x }\nNET_RECEIVE(w) {\n  WATCH (t > 1) 2\n}\n",
        r"bad\.mod:3:3: WATCH in an ARTIFICIAL_CELL: NEURON crashes on it",
    ),
    "watch-argument": (
        "NEURON { POINT_PROCESS x }\nASSIGNED { v }\nNET_RECEIVE(w) {\n  WATCH (v > w) 2\n}\n",
        r"bad\.mod:4:14: WATCH condition v>w reads 'w', which NEURON's condition \(checked "
        r"outside any event\) cannot see",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MODS))
def test_bad_mod_file_is_one_line_with_file_and_place(capsys, tmp_path, case):
    text, message = BAD_MODS[case]
    path = tmp_path / "bad.mod"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = refused(capsys, "compile", str(path))
    assert re.search(message, line), line


def test_mod_that_is_a_folder_or_missing(capsys, tmp_path):
    (tmp_path / "dir.mod").mkdir()
    assert "dir.mod: cannot read: Is a directory" in refused(
        capsys, "compile", str(tmp_path / "dir.mod")
    )
    assert "no such file, and not a built-in mechanism" in refused(
        capsys, "compile", str(tmp_path / "none.mod")
    )


def synapse_mod(name: str) -> str:
    source = builtin_mod_files()["expsyn"].read_text()
    return source.replace("POINT_PROCESS ExpSyn", f"POINT_PROCESS {name}")


def test_latin1_in_a_comment_compiles_as_in_neuron(capsys, tmp_path):
    text = "COMMENT\nd\xe9j\xe0 vu: Ca\xb2\u207a (caf\xe9)\nENDCOMMENT\n".encode(
        "latin-1", "replace"
    )
    (tmp_path / "latin.mod").write_bytes(text + synapse_mod("LatinSyn").encode())
    assert cli.main(["compile", str(tmp_path / "latin.mod")]) == 0
    assert "mechanism LatinSyn (point_process)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a/myhh.mod": "hh"}, r"a/myhh\.mod: declares mechanism hh, as NEURON's built-in \(.*hh\.mod\)"),
        ({"a/syn.mod": "ExpSyn"}, r"a/syn\.mod: declares mechanism ExpSyn, as NEURON's built-in"),
        ({"a/ap.mod": "APCount"}, r"declares mechanism APCount, as a mechanism built into NEURON"),
        ({"a/one.mod": "MySyn", "a/two.mod": "MySyn"}, r"a/two\.mod: declares mechanism MySyn, as .*a/one\.mod does"),
        ({"a/one.mod": "MySyn", "b/one.mod": "MySyn"}, r"b/one\.mod: declares mechanism MySyn, as .*a/one\.mod does"),
    ],
    ids=["builtin-hh", "builtin-ExpSyn", "builtin-APCount", "two-files", "two-folders"],
)  # fmt: skip
def test_mechanism_names_clash_as_neuron_refuses(capsys, tmp_path, outdir, files, message):
    for rel, name in files.items():
        path = tmp_path / rel
        path.parent.mkdir(exist_ok=True)
        if name == "hh":
            path.write_text(builtin_mod_files()["hh"].read_text())
        else:
            path.write_text(synapse_mod(name))
    folders = sorted({str((tmp_path / rel).parent) for rel in files})
    argv = ["run", "-e", "1", "-o", str(outdir)]
    for folder in folders:
        argv += ["--mechanisms", folder]
    line = refused(capsys, *argv)
    assert re.search(message, line), line
    assert "NEURON refuses two mechanisms of one name" in line
    assert (outdir / "out.dat").read_text() == SENTINEL


def test_the_same_folder_twice_is_no_clash(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "syn.mod").write_text(synapse_mod("MySyn"))
    argv = ["run", "--nring", "1", "-e", "1", "-o", str(tmp_path / "o")]
    assert (
        cli.main([*argv, "--mechanisms", str(tmp_path / "m"), "--mechanisms", str(tmp_path / "m")])
        == 0
    )


def test_mechanisms_not_a_folder(capsys, tmp_path, outdir):
    line = refused(capsys, "run", "--mechanisms", str(tmp_path / "none"), "-o", str(outdir))
    assert "--mechanisms needs a folder of .mod files" in line


# --------------------------------------------------------------------------- progress
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "json, tty, shown", [(False, True, True), (True, True, False), (False, False, False)]
)
def test_progress_only_on_a_terminal_and_not_under_json(
    monkeypatch, capsys, tmp_path, json, tty, shown
):
    stderr = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    argv = ["run", "--nring", "1", "-e", "20", "-o", str(tmp_path)] + (["--json"] if json else [])
    assert cli.main(argv) == 0
    text = stderr.getvalue()
    assert ("simulating:" in text and "/20 ms" in text) == shown, text
    assert ("building the model" in text) == shown


# --------------------------------------------------------------------------- interrupts
def start_long_run(outdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "portneuron", "run", "-e", "1e6", "-o", str(outdir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "signum, code, after",
    [(signal.SIGINT, 130, 3.0), (signal.SIGTERM, 143, 3.0), (signal.SIGINT, 130, 1.0),
     (signal.SIGTERM, 143, 1.0), (signal.SIGTERM, 143, 0.4)],
    ids=["SIGINT-simulating", "SIGTERM-simulating", "SIGINT-early", "SIGTERM-early",
         "SIGTERM-importing"],
)  # fmt: skip
def test_interrupt_stops_with_one_line(outdir, signum, code, after):
    """Sent while the command imports numpy and the rest (its handlers come first), builds
    the model or simulates: one line saying where it stopped and that out.dat was not
    written; the earlier out.dat is untouched; no stray temporary."""
    run = start_long_run(outdir)
    time.sleep(after)
    run.send_signal(signum)
    out, err = run.communicate(timeout=60)
    assert run.returncode == code, err
    line = one_line(err)
    name = signal.Signals(signum).name
    stopped = re.match(rf"portneuron: {name}: stopped at t = ([0-9.e+]+) ms of 1e\+06 ms; "
                       r"out.dat was not written \(one that was there is unchanged\)$", line)  # fmt: skip
    assert (
        stopped
        or line == f"portneuron: {name}: stopped before the simulation started; nothing was written"
    ), line
    if stopped:  # t = 0: the signal came as the simulation began (a warm kernel cache)
        assert 0 <= float(stopped.group(1)) < 1e6
    assert (outdir / "out.dat").read_text() == SENTINEL
    assert sorted(p.name for p in outdir.iterdir()) == ["out.dat"]


def test_interrupt_of_the_numpy_backend(outdir):
    """The stepwise loop stops too (the signal lands between steps)."""
    run = start_long_run(outdir, "--backend", "numpy", "--nring", "1")
    time.sleep(3.0)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130
    assert one_line(err).startswith("portneuron: SIGINT: stopped")
    assert (outdir / "out.dat").read_text() == SENTINEL
