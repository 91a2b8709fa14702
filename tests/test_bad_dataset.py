"""Damaged datasets, file by file and array by array: each defect is refused with one line
(`portneuron: error: FILE@OFFSET: ARRAY[i] = VALUE, but ...`), exit code 1, no traceback, and
an out.dat already in the -o folder is left byte for byte as it was; a damaged value that is
legal runs to the same out.dat as CoreNEURON's `nrniv-core` on the same files.

The datasets are NEURON's own (nrncore_write); an element is changed in place at the byte
offset the reader records for its array. Most cases call the command line in this process
(`cli.main`); a few run the real script in a subprocess to show what a user sees.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("neuron")

import neuron_cells  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from neuron import h  # noqa: E402
from neuron_models import clear_neuron  # noqa: E402
from portneuron.backends import backend_status, load_backend  # noqa: E402
from refusals import SENTINEL, one_line, with_earlier_out_dat  # noqa: E402

from portneuron import cli  # noqa: E402
from portneuron.io.dataset import (  # noqa: E402
    load_dataset,
    read_files_dat,
    read_group,
    read_mech_types,
)
from portneuron.io.datfile import Record  # noqa: E402
from portneuron.sim.simulation import Simulation  # noqa: E402

pytestmark = pytest.mark.neuron

TSTOP = "10"  # [ms]: the cells fire by then
NRNIV_CORE = Path(sys.executable).parent / "nrniv-core"
BACKEND = "llvm" if backend_status("llvm").available else "numpy"
pc = h.ParallelContext()


# ---------------------------------------------------------------- datasets NEURON writes
def write(folder: Path) -> Path:
    h.dt = 0.025
    h.finitialize(-65)
    pc.nrncore_write(str(folder))
    return folder


def ring(ncell: int, delay: float) -> list:
    """`ncell` hh somas (gids 0..) in a ring through ExpSyns with NetCon delay `delay` [ms],
    started by one NetStim event into cell 0 at 1 ms."""
    clear_neuron()
    keep, syns = [], []
    for gid in range(ncell):
        soma = h.Section(name=f"soma{gid}")
        soma.L = soma.diam = 20
        soma.insert("hh")
        syn = h.ExpSyn(soma(0.5))
        syn.tau = 2
        pc.set_gid2node(gid, pc.id())
        pc.cell(gid, h.NetCon(soma(0.5)._ref_v, None, sec=soma))
        keep += [soma, syn]
        syns.append(syn)
    for gid in range(ncell):
        nc = pc.gid_connect(gid, syns[(gid + 1) % ncell])
        nc.weight[0], nc.delay = 0.05, delay
        keep.append(nc)
    stim = h.NetStim()
    stim.start, stim.number = 1, 1
    nc = h.NetCon(stim, syns[0])
    nc.weight[0], nc.delay = 0.05, 1
    return [*keep, stim, nc]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """NEURON's datasets: "synapse", a ball-and-sticks cell driven by a noisy NetStim
    (Random123) through an Exp2Syn; "ring", three cells with voltage spike sources; "play",
    the cell driven by an IClamp whose amplitude is a played Vector."""
    root = tmp_path_factory.mktemp("datasets")
    folders = {}
    for name, build in (
        ("synapse", lambda: neuron_cells.ball_and_sticks("exp2syn")),
        ("ring", lambda: ring(3, 1.0)),
        ("play", lambda: neuron_cells.ball_and_sticks("play")),
    ):
        keep = build()
        folders[name] = write(root / name)
        del keep
    clear_neuron()
    return folders


def layout(folder: Path) -> dict[str, Record]:
    """Every binary array of the dataset, as `<file>:<array>`, with where it lies."""
    types = read_mech_types(folder / "bbcore_mech.dat")
    found = {}
    for g in read_files_dat(folder / "files.dat"):
        for rec in read_group(folder, g, types).records.values():
            found[f"{rec.path.name}:{rec.what}"] = rec
    return found


def damaged(folder: Path, dest: Path, rec: Record, index: int, value) -> Path:
    """A copy of the dataset with element `index` of array `rec` set to `value`."""
    shutil.copytree(folder, dest)
    path = dest / rec.path.name
    dtype = np.dtype(rec.dtype).newbyteorder("<")
    data = bytearray(path.read_bytes())
    at = rec.offset + index * dtype.itemsize
    data[at : at + dtype.itemsize] = np.array(value, dtype).tobytes()
    path.write_bytes(data)
    return dest


# ---------------------------------------------------------------- running and judging
def run_here(*args: str) -> tuple[int, str]:
    """`portneuron run ...` in this process: the exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["run", *args])
    return code, err.getvalue()


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portneuron", "run", *args], capture_output=True, text=True
    )


def coreneuron(folder: Path, out: Path) -> subprocess.CompletedProcess:
    """nrniv-core on the dataset, starting from the dataset's voltages as portneuron does
    (`--voltage=1000`; nrniv-core's own default sets every node to -65 mV)."""
    if not NRNIV_CORE.exists():
        pytest.skip(f"no nrniv-core next to {sys.executable}")
    return subprocess.run(
        [str(NRNIV_CORE), "-d", str(folder), "-e", TSTOP, "-o", str(out), "--voltage=1000"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(err: str) -> str:
    """The one line on stderr, an error (no traceback)."""
    line = one_line(err)
    assert line.startswith("portneuron: error: "), line
    return line


def refused(folder: Path, work: Path, *options: str) -> str:
    """The dataset must be refused: exit 1, one line (returned), out.dat untouched."""
    out = with_earlier_out_dat(work / "out")
    code, err = run_here("-d", str(folder), "-e", TSTOP, "-o", str(out), *options)
    assert code == 1, err
    line = one_error_line(err)
    assert (out / "out.dat").read_text() == SENTINEL
    return line


def judge(folder: Path, work: Path) -> str:
    """Refused with one line, or run to the out.dat nrniv-core writes on the same files."""
    out = with_earlier_out_dat(work / "out")
    code, err = run_here("-d", str(folder), "-e", TSTOP, "-o", str(out), "--backend", BACKEND)
    if code != 0:
        assert code == 1, err
        one_error_line(err)
        assert (out / "out.dat").read_text() == SENTINEL
        return "refused"
    core = coreneuron(folder, work / "core")
    assert core.returncode == 0, (
        f"portneuron runs what nrniv-core refuses (exit {core.returncode}): "
        f"{(core.stderr + core.stdout)[-600:]}"
    )
    ours, theirs = (out / "out.dat").read_text(), (work / "core" / "out.dat").read_text()
    if ours == theirs:
        return "same as nrniv-core"
    wild = wild_from(folder)
    assert before(ours, wild) == before(theirs, wild), (ours, theirs, wild)
    return "same as nrniv-core until the voltages ran wild"


WILD_MV = 1e3  # [mV]: no neuron's voltage; there both engines compute noise


def wild_from(folder: Path) -> float:
    """The time [ms] portneuron's voltages first leave +-WILD_MV, else inf. Past it a run is
    floating-point noise, and nrniv-core's differs from NEURON's: a negative synaptic weight
    that drives hh to 1e13 mV gives NEURON's spikes in portneuron, one more than nrniv-core."""
    model = load_dataset(folder)
    result = Simulation(model, load_backend(BACKEND), dt=model.dt).run(
        float(TSTOP), record=np.arange(model.nodes.count)
    )
    wild = np.flatnonzero(np.abs(result.v).max(axis=1) > WILD_MV)
    return float(result.t[wild[0]]) if len(wild) else math.inf


def before(spikes: str, t: float) -> list[str]:
    return [line for line in spikes.splitlines() if float(line.split()[0]) < t]


# ---------------------------------------------------------------- 1. truncated files
FILES = ("files.dat", "bbcore_mech.dat", "globals.dat", "0_1.dat", "0_2.dat")


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.7, -1], ids=["empty", "30%", "70%", "1-byte-short"])
@pytest.mark.parametrize("name", FILES)
def test_truncated_file_is_one_line(datasets, tmp_path, name, cut):
    folder = tmp_path / "data"
    shutil.copytree(datasets["synapse"], folder)
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1 if cut == -1 else int(len(data) * cut)])
    line = refused(folder, tmp_path)
    assert re.search(rf"{re.escape(str(path))}[:@][0-9]+: .*(truncated|expected)", line), line


def test_truncated_dataset_through_the_script(datasets, tmp_path):
    """What a user sees: one line on stderr, exit 1, the old out.dat kept."""
    folder = tmp_path / "data"
    shutil.copytree(datasets["synapse"], folder)
    path = folder / "0_2.dat"
    delays = layout(folder)["0_2.dat:NetCon delays"]
    path.write_bytes(path.read_bytes()[: delays.offset + 3])
    out = with_earlier_out_dat(tmp_path / "out")
    run = run_script("-d", str(folder), "-e", TSTOP, "-o", str(out))
    assert run.returncode == 1
    assert re.fullmatch(
        rf"portneuron: error: {re.escape(str(path))}@{delays.start}: file ends before the end of "
        r"NetCon delays \(1 values\); the file is truncated \(rewrite the dataset with "
        r"nrncore_write\)",
        one_error_line(run.stderr),
    )
    assert (out / "out.dat").read_text() == SENTINEL


# ---------------------------------------------------------------- 2. one element damaged
INTS = [-(2**31), -5, -2, -1, 0, 1, 2, 3, 999, 2**31 - 1]
WORDS = [0, 3, 4, 999, 2**32 - 1]  # uint32: Random123 words
FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 5e-324, 1e-300, 1e300]


def values(rec: Record, nnode: int) -> st.SearchStrategy:
    """Out-of-range and edge values for the array's type (with its own length and the node
    count, the bounds most indices have)."""
    if rec.dtype == "f8":
        return st.sampled_from(FLOATS)
    if rec.dtype == "u4":
        return st.sampled_from(WORDS)
    return st.sampled_from([*INTS, rec.count, nnode])


ARRAYS = {  # which arrays of which dataset: every array kind NEURON writes
    "synapse": [
        "0_1.dat:output gids", "0_1.dat:NetCon source gids", "0_2.dat:parent indices",
        "0_2.dat:a", "0_2.dat:b", "0_2.dat:area", "0_2.dat:v",
        "0_2.dat:capacitance node indices", "0_2.dat:capacitance data",
        "0_2.dat:pas node indices", "0_2.dat:pas data",
        "0_2.dat:na_ion node indices", "0_2.dat:na_ion data", "0_2.dat:na_ion pdata",
        "0_2.dat:Exp2Syn node indices", "0_2.dat:Exp2Syn data", "0_2.dat:Exp2Syn pdata",
        "0_2.dat:hh node indices", "0_2.dat:hh data", "0_2.dat:hh pdata",
        "0_2.dat:NetStim data", "0_2.dat:NetStim pdata", "0_2.dat:NetStim random streams",
        "0_2.dat:output_vindex", "0_2.dat:thresholds", "0_2.dat:NetCon target types",
        "0_2.dat:NetCon target instances", "0_2.dat:NetCon weights", "0_2.dat:NetCon delays",
    ],
    "ring": [
        "0_1.dat:output gids", "0_1.dat:NetCon source gids", "0_2.dat:output_vindex",
        "0_2.dat:NetCon target instances", "0_2.dat:NetCon delays", "0_2.dat:ExpSyn pdata",
    ],
    "play": ["0_2.dat:VecPlay 0 values", "0_2.dat:VecPlay 0 times", "0_2.dat:IClamp data"],
}  # fmt: skip
CASES = [(name, array) for name, arrays in ARRAYS.items() for array in arrays]


@pytest.mark.parametrize("name, array", CASES, ids=[f"{n}:{a}" for n, a in CASES])
@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain"
    suppress_health_check=[HealthCheck.too_slow],
)
@given(draw=st.data())
def test_damaged_element_is_refused_or_runs_as_coreneuron(datasets, name, array, draw):
    folder = datasets[name]
    arrays = layout(folder)
    rec = arrays[array]
    index = draw.draw(st.integers(0, rec.count - 1), label="index")
    value = draw.draw(values(rec, arrays["0_2.dat:v"].count), label="value")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        judge(damaged(folder, work / "data", rec, index, value), work)


# ---------------------------------------------------------------- 3. the defects of issue 15
def message(rec: Record, index: int, value: object) -> str:
    """The start of the line that names the array element."""
    return f"portneuron: error: {rec}: {rec.what}[{index}] = {value}, but "


@pytest.mark.parametrize(
    "array, index, value, why",
    [
        ("0_2.dat:parent indices", 5, -5, "the parent of node 5 is an earlier node, 0 to 4"),
        ("0_2.dat:parent indices", 5, 999, "the parent of node 5 is an earlier node, 0 to 4"),
        ("0_2.dat:hh node indices", 3, -1, "the group has 15 nodes"),
        ("0_2.dat:pas node indices", 0, 999, "the group has 15 nodes"),
        ("0_2.dat:NetCon target instances", 0, 999, "Exp2Syn has 1 instances"),
        ("0_2.dat:NetCon target types", 0, 17, "hh has no NET_RECEIVE block"),
        ("0_2.dat:NetCon delays", 0, -1.0, "a delay is a finite number of ms, >= 0"),
        ("0_2.dat:NetCon delays", 0, math.inf, "a delay is a finite number of ms, >= 0"),
        ("0_2.dat:area", 2, math.nan, "an area is finite and >= 0"),
        ("0_2.dat:hh pdata", 6, 6, "word 0 of instance 1 points at ena of na_ion on its node, 5"),
        ("0_2.dat:Exp2Syn pdata", 0, 4, "word 0 of instance 0 is its area, which NEURON gives as its node, 5"),
        ("0_1.dat:NetCon source gids", 0, -1018, "no artificial cell of this group has that code"),
        ("0_2.dat:NetStim pdata", 1, 0, "Exp2Syn pdata[1] indexes that vdata entry too"),
    ],
    ids=[
        "parent-5", "parent-999", "node-index-1", "node-index-999", "target-instance-999",
        "target-without-net-receive", "delay-1", "delay-inf", "nan-area", "ion-pdata",
        "area-pdata", "unknown-negative-source", "shared-vdata",
    ],
)  # fmt: skip
def test_issue_15_defects_are_one_line(datasets, tmp_path, array, index, value, why):
    rec = layout(datasets["synapse"])[array]
    folder = damaged(datasets["synapse"], tmp_path / "data", rec, index, value)
    line = refused(folder, tmp_path)
    shown = np.array(value, np.dtype(rec.dtype)).item()
    assert line.startswith(
        message(rec, index, shown).replace(str(datasets["synapse"]), str(folder))
    )
    assert why in line and line.endswith("; the file is damaged"), line


def test_parent_minus_5_through_the_script(datasets, tmp_path):
    """Was a numpy MemoryError traceback ("Unable to allocate 687 TiB")."""
    rec = layout(datasets["synapse"])["0_2.dat:parent indices"]
    folder = damaged(datasets["synapse"], tmp_path / "data", rec, 5, -5)
    out = with_earlier_out_dat(tmp_path / "out")
    run = run_script("-d", str(folder), "-o", str(out))
    assert run.returncode == 1
    assert one_error_line(run.stderr) == (
        f"portneuron: error: {folder / '0_2.dat'}@{rec.start}: parent indices[5] = -5, but the "
        f"parent of node 5 is an earlier node, 0 to 4; the file is damaged"
    )
    assert (out / "out.dat").read_text() == SENTINEL


def test_duplicate_gid_in_a_group(datasets, tmp_path):
    rec = layout(datasets["ring"])["0_1.dat:output gids"]
    folder = damaged(datasets["ring"], tmp_path / "data", rec, 2, 0)
    line = refused(folder, tmp_path)
    assert "output gids[2] = 0, but " in line and "0_1.dat has it too (its output gids[0])" in line


def two_groups(folder: Path, dest: Path, second_gid: int) -> Path:
    """The one-group ring twice: group 0 as written, group 100 a copy whose cells' gids are
    shifted by `second_gid` (0: the same gids again) and whose NetCons follow them."""
    shutil.copytree(folder, dest)
    for part in ("1", "2"):
        shutil.copy(dest / f"0_{part}.dat", dest / f"100_{part}.dat")
    (dest / "files.dat").write_text("1.8\n2\n0\n100\n")
    arrays = layout(folder)
    data = bytearray((dest / "100_1.dat").read_bytes())
    for what in ("output gids", "NetCon source gids"):
        rec = arrays[f"0_1.dat:{what}"]
        gids = np.frombuffer(data, "<i4", rec.count, rec.offset).copy()
        gids[gids >= 0] += second_gid
        data[rec.offset : rec.offset + 4 * rec.count] = gids.astype("<i4").tobytes()
    (dest / "100_1.dat").write_bytes(data)
    return dest


def test_duplicate_gid_across_groups(datasets, tmp_path):
    folder = two_groups(datasets["ring"], tmp_path / "data", 0)
    line = refused(folder, tmp_path)
    assert re.search(r"100_1\.dat@[0-9]+: output gids\[0\] = 0, but .*/0_1\.dat has it too", line)


def test_two_groups_with_distinct_gids_run_as_coreneuron(datasets, tmp_path):
    folder = two_groups(datasets["ring"], tmp_path / "data", 3)
    assert judge(folder, tmp_path) == "same as nrniv-core"
    assert len((tmp_path / "out" / "out.dat").read_text().splitlines()) == 6


def test_netcon_from_a_gid_nowhere(datasets, tmp_path):
    """CoreNEURON makes it an input from another rank that never fires; on one rank the
    connection is lost, which is what a damaged source gid looks like."""
    rec = layout(datasets["ring"])["0_1.dat:NetCon source gids"]
    folder = damaged(datasets["ring"], tmp_path / "data", rec, 1, 999)
    assert "NetCon source gids[1] = 999, but no cell group has that gid" in refused(
        folder, tmp_path
    )


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("delay", [0.0, 0.01, 0.0125, 0.02])
def test_netcon_shorter_than_dt_delivers_as_coreneuron(tmp_path, delay, backend):
    """NEURON and CoreNEURON queue a spike's events at once: one due before the step's
    midpoint is delivered before that step's currents. Delay 0 was one step late."""
    if not backend_status(backend).available:
        pytest.skip(backend_status(backend).reason)
    keep = ring(3, delay)
    folder = write(tmp_path / "data")
    del keep
    clear_neuron()
    core = coreneuron(folder, tmp_path / "core")
    assert core.returncode == 0, core.stderr
    out = tmp_path / "out"
    code, err = run_here("-d", str(folder), "-e", TSTOP, "-o", str(out), "--backend", backend)
    assert code == 0, err
    expected = (tmp_path / "core" / "out.dat").read_text()
    assert (out / "out.dat").read_text() == expected
    assert len(expected.splitlines()) == 3


def test_output_gids_name_their_artificial_cell(datasets, tmp_path):
    """An artificial cell without a gid is known by the code in output_vindex; its output
    gid must be that code (CoreNEURON looks NetCon sources up there)."""
    rec = layout(datasets["synapse"])["0_1.dat:output gids"]
    folder = damaged(datasets["synapse"], tmp_path / "data", rec, 1, -1018)
    line = refused(folder, tmp_path)
    assert "output gids[1] = -1018, but " in line and "or its code, -18" in line


def test_played_times_never_decrease(datasets, tmp_path):
    rec = layout(datasets["play"])["0_2.dat:VecPlay 0 times"]
    folder = damaged(datasets["play"], tmp_path / "data", rec, 5, 1.0)
    assert "VecPlay 0 times[5] = 1.0, but play times are finite and never decrease" in refused(
        folder, tmp_path
    )


def test_random_stream_position_is_0_to_3(datasets, tmp_path):
    rec = layout(datasets["synapse"])["0_2.dat:NetStim random streams"]
    folder = damaged(datasets["synapse"], tmp_path / "data", rec, 6, 4)
    assert "random streams[6] = 4, but a stream's position within its 4 words" in refused(
        folder, tmp_path
    )
