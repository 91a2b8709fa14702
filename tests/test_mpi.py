"""Several ranks (mpiexec, mpi4py with the mpich wheel): out.dat is the one-rank run's, byte
for byte, whatever the rank count, thread count or backend, for the built-in ringtest and
for a NEURON dataset of several groups; an error on one rank ends every rank in one line;
and the scheduler's placement."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portneuron import scheduler
from portneuron.errors import PortneuronError

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
PORTNEURON = str(Path(sys.executable).parent / "portneuron")
# the mpich wheel's library, for NEURON and nrniv-core (which load an MPI library at run time)
LIBMPI = Path(sys.executable).parent.parent / "lib" / "libmpi.so.12"


def mpi_ready() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (the mpi extra)"
    return "" if MPIEXEC else "mpiexec is not installed beside this Python (the mpich wheel)"


needs_mpi = pytest.mark.skipif(bool(mpi_ready()), reason=mpi_ready() or "ready")


def ringtest(outdir: Path, ranks: int, *options: str) -> subprocess.CompletedProcess:
    command = [PORTNEURON, "run", "-e", "100", "-o", str(outdir), "--json", *options]
    if ranks:
        command = [MPIEXEC, "-n", str(ranks), *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@needs_mpi
@pytest.mark.mpi
def test_ringtest_out_dat_is_the_same_on_any_number_of_ranks(tmp_path):
    """The built-in ringtest (16 rings of 8 cells, 100 ms, 592 spikes) on 1 process and
    under mpiexec with 1 to 4 ranks, on llvm with 1 and 2 threads and on numpy (its first
    20 ms: numpy's stepwise loop takes 25 s a rank for 100): the same out.dat, byte for byte;
    each rank builds only the cells the scheduler placed on it."""
    expected = {}
    for tstop in ("100", "20"):
        reference = tmp_path / f"serial-{tstop}"
        reference.mkdir()
        assert ringtest(reference, 0, "-e", tstop).returncode == 0
        expected[tstop] = (reference / "out.dat").read_bytes()
    assert expected["100"].count(b"\n") == 592
    assert 0 < expected["20"].count(b"\n") < 592 and expected["100"].startswith(expected["20"])
    for ranks, options in [(1, ()), (2, ("--threads", "1")), (3, ("--threads", "2")),
                           (4, ("--threads", "1")), (2, ("--backend", "numpy", "-e", "20"))]:  # fmt: skip
        outdir = tmp_path / f"{ranks}{'-'.join(options)}"
        outdir.mkdir()
        run = ringtest(outdir, ranks, *options)
        assert run.returncode == 0, run.stderr[-2000:]
        tstop = "20" if "-e" in options else "100"
        assert (outdir / "out.dat").read_bytes() == expected[tstop], (ranks, options)
        summary = [line for line in run.stdout.splitlines() if line.startswith("{")]
        assert len(summary) == 1 and f'"ranks": {ranks}' in summary[0]  # rank 0 reports
        if ranks == 2 and options == ("--threads", "1"):
            check_plan_beside_the_run(tmp_path / "summary.json", summary[0])


def check_plan_beside_the_run(path: Path, summary: str) -> None:
    """`portneuron plan --measured` puts a run's measured load (its --json summary's
    rank_busy_s) beside the plan's prediction, each rank's device named."""
    from portneuron.cli import main

    path.write_text(summary)
    busy = json.loads(summary)["rank_busy_s"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plan", "-n", "2", "--threads", "1", "--measured", str(path), "--json"]) == 0
    plan = json.loads(out.getvalue())
    assert plan["devices"] == ["llvm (1 thread)"] * 2 and plan["measured_busy_s"] == busy
    assert plan["measured_imbalance"] == round(max(busy) / (sum(busy) / 2) - 1, 4)
    assert plan["cells"] == [64, 64] and plan["predicted_share"] == [0.5, 0.5]


WRITE_DATASET = """
import sys
import neuron_models as nm
from portneuron.io.spikes import format_spikes
ring = nm.build_ringtest(stim_gids=True)
nm.pc.nthread(4)  # four cell groups
spikes = nm.run_neuron(ring, tstop=100.0)
nm.write_dataset(ring, sys.argv[1])
print(format_spikes(spikes), end="")
"""


@needs_mpi
@pytest.mark.mpi
def test_a_neuron_dataset_of_four_groups_on_any_number_of_ranks(tmp_path):
    """NEURON's ringtest (its NetStims with gids, on 4 threads) written as 4 cell groups:
    each rank reads only the groups the scheduler gives it; out.dat is NEURON's spikes on
    one process and on 2, 3 and 4 ranks, as nrniv-core's on 2 ranks. A fifth rank would
    have no group: one line."""
    pytest.importorskip("neuron")
    dataset = tmp_path / "data"
    written = subprocess.run(
        [sys.executable, "-c", WRITE_DATASET, str(dataset)],
        capture_output=True, text=True, cwd=Path(__file__).parent, timeout=300,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr[-2000:]
    assert (dataset / "files.dat").read_text().split()[1] == "4"
    expected = written.stdout
    assert expected.count("\n") == 608  # the ringtest's 592 and the 16 NetStims' spikes
    assert_every_rank_count_gives(expected, dataset, (0, 2, 3, 4), tmp_path)
    run = ringtest(tmp_path, 5, "-d", str(dataset), "--threads", "1")
    assert run.returncode != 0 and not (tmp_path / "out.dat").exists()
    ours = [line for line in run.stderr.splitlines() if line.startswith("portneuron:")]
    assert ours == [
        f"portneuron: rank 4 of 5: error: {dataset}: 4 cell groups for 5 ranks, none for this "
        f"one; run on at most 4 ranks"
    ]


WRITE_DATASET_ON_RANKS = """
import sys
from neuron import h
h.nrnmpi_init()
import neuron_models as nm
from portneuron.io.spikes import format_spikes
ring = nm.build_ringtest(stim_gids=True)  # gid g on rank g % nhost
spikes = nm.run_neuron(ring, tstop=100.0)
nm.write_dataset(ring, sys.argv[1])
every = nm.pc.py_gather(spikes, 0)
if nm.pc.id() == 0:
    print("spikes:", format_spikes(sorted(s for part in every for s in part)), end="")
nm.pc.barrier()
h.quit()
"""


@needs_mpi
@pytest.mark.mpi
def test_a_dataset_neuron_wrote_on_four_ranks(tmp_path):
    """NEURON itself under mpiexec (4 ranks, the mpich wheel's library), the ringtest's
    gids dealt round robin, writes one cell group per rank; portneuron on 1 process and on
    1 to 4 ranks gives NEURON's spikes (gathered from its ranks), byte for byte, as
    nrniv-core does on 2 ranks."""
    pytest.importorskip("neuron")
    dataset = tmp_path / "data"
    written = neuron_on_ranks(4, WRITE_DATASET_ON_RANKS, str(dataset))
    assert written.returncode == 0, written.stderr[-2000:]
    assert (dataset / "files.dat").read_text().split()[1:] == ["4", "0", "1", "2", "3"]
    expected = written.stdout.split("spikes: ", 1)[1]
    assert expected.count("\n") == 608
    assert_every_rank_count_gives(expected, dataset, (0, 1, 2, 3, 4), tmp_path)


def assert_every_rank_count_gives(expected: str, dataset: Path, counts, tmp_path: Path) -> None:
    """portneuron on `dataset` on each number of ranks in `counts` (0: no mpiexec), one
    thread each, and nrniv-core on 2 ranks: out.dat is `expected`."""
    for ranks in counts:
        outdir = tmp_path / f"out{ranks}"
        outdir.mkdir()
        run = ringtest(outdir, ranks, "-d", str(dataset), "--threads", "1")
        assert run.returncode == 0, run.stderr[-2000:]
        assert (outdir / "out.dat").read_text() == expected, ranks
    assert coreneuron_on_two_ranks(dataset, tmp_path / "coreneuron") == expected


def neuron_on_ranks(ranks: int, script: str, *args: str) -> subprocess.CompletedProcess:
    """`script` in NEURON itself under mpiexec, its MPI library the mpich wheel's."""
    return subprocess.run(
        [MPIEXEC, "-n", str(ranks), "env", f"MPI_LIB_NRN_PATH={LIBMPI}", f"LD_PRELOAD={LIBMPI}",
         sys.executable, "-c", script, *args],
        capture_output=True, text=True, cwd=Path(__file__).parent, timeout=300,
    )  # fmt: skip


def mixed_run(ranks: int, policy: str, backends: str = "llvm") -> dict:
    command = [sys.executable, "mixed_network.py", policy, "50", backends]
    if ranks:
        command = [MPIEXEC, "-n", str(ranks), *command]
    run = subprocess.run(
        command, capture_output=True, text=True, cwd=Path(__file__).parent, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@needs_mpi
@pytest.mark.mpi
def test_a_mixed_network_placed_by_cost_and_by_count():
    """tests/mixed_network.py (16 large active cells, then 112 small ones, by gid; built by
    the native builder): the scheduler's placement on 2 ranks predicts loads within 10 %
    of each other, a split by count (the first half of the gids on rank 0) 50 % or more
    apart. Under mpiexec each rank builds its part (Network.build(ranks=...)); the spikes
    are the one-process run's on 2 and 3 ranks, by either placement. (The measured load is
    perf/mpi.py's: no timing is asserted here.)"""
    from mixed_network import by_count, mixed_network, predicted

    net = mixed_network()
    cost_loads = predicted(net, net.placement(2), 2)
    count_loads = predicted(net, by_count(net, 2), 2)
    assert scheduler.imbalance(cost_loads) <= 0.10
    assert scheduler.imbalance(count_loads) >= 0.50
    expected = mixed_run(0, "cost")["spikes"]
    assert len(expected) > 200
    for ranks, policy in [(2, "cost"), (2, "count"), (3, "cost")]:
        got = mixed_run(ranks, policy)
        assert got["spikes"] == expected, (ranks, policy)
        assert sum(got["cells"]) == 128 and min(got["cells"]) > 0, (ranks, policy)


DIRECT_ON_RANKS = """
import json, sys
from neuron import h
h.nrnmpi_init()
import numpy as np
import neuron_models as nm
import portneuron.direct
from portneuron.io.spikes import format_spikes
ring = nm.build_ringtest(stim_gids=True)  # gid g on rank g % nhost
seg = next(c for c in ring.cells if c is not None).soma(0.5)  # a cell of this rank
nm._initialize(0.025)
result = portneuron.direct.run(100.0, record=[seg], backend=sys.argv[1])
v = h.Vector().record(seg._ref_v)
theirs = nm.run_neuron(ring, 100.0)  # this rank's spikes
every = nm.pc.py_gather(theirs, 0)
dv = nm.pc.py_gather(float(np.abs(np.array(result.traces[0]) - np.array(v)).max()), 0)
if nm.pc.id() == 0:
    expected = format_spikes(sorted(s for part in every for s in part))
    print("result:", json.dumps({"same": format_spikes(result.spikes) == expected,
                                 "spikes": len(result.spikes), "dv": dv}))
nm.pc.barrier()
h.quit()
"""


@needs_mpi
@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_direct_mode_under_mpiexec(ranks):
    """NEURON itself on 2 and 3 MPI ranks (the ringtest's gids dealt round robin) hands
    each rank's cells to portneuron's rank of the same number (direct mode: one folder a
    rank, mpi4py's COMM_WORLD for the exchange): every rank's result has all 608 spikes,
    NEURON's, and each rank's recorded soma v is NEURON's to the bit."""
    pytest.importorskip("neuron")
    run = neuron_on_ranks(ranks, DIRECT_ON_RANKS, "llvm")
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.split("result: ", 1)[1])
    assert result == {"same": True, "spikes": 608, "dv": [0.0] * ranks}


DIRECT_WITH_THREADS = """
import sys
from pathlib import Path
from neuron import h
h.nrnmpi_init()
import neuron_models as nm
import portneuron.direct
from portneuron.errors import PortneuronError
nm.build_ringtest(stim_gids=True)
nm.pc.nthread(2)
nm._initialize(0.025)
try:
    portneuron.direct.run(10.0)
except PortneuronError as exc:
    # one file a rank: the ranks' stdout reaches the test through mpiexec, interleaved
    Path(sys.argv[1], f"rank{int(nm.pc.id())}.txt").write_text(f"refused: {exc}\\n")
nm.pc.barrier()
h.quit()
"""


@needs_mpi
@pytest.mark.mpi
def test_direct_mode_under_mpiexec_refuses_threads_in_one_line(tmp_path):
    """Direct mode under MPI hands over one thread a rank: NEURON on 2 ranks of 2 threads
    is refused on every rank in one line, before anything is written."""
    pytest.importorskip("neuron")
    run = neuron_on_ranks(2, DIRECT_WITH_THREADS, str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert (
        lines
        == [
            "refused: direct mode under MPI hands over one thread a rank, not 2; call pc.nthread(1)\n"
        ]
        * 2
    )


def test_a_rank_without_cells_is_one_line():
    """Building a network's part with no cells (an empty `local`) is one line."""
    from mixed_network import mixed_network

    with pytest.raises(PortneuronError, match="^no cells to build here"):
        mixed_network().build(local=set())


def coreneuron_on_two_ranks(dataset: Path, outdir: Path) -> str:
    """`nrniv-core --mpi` of the neuron wheel on 2 ranks (its MPI library the mpich wheel's,
    loaded by --mpi-lib): its spikes, sorted and written as portneuron writes them."""
    import neuron

    from portneuron.io.spikes import format_spikes

    lib = Path(neuron.__file__).parent / ".data" / "lib" / "libcorenrnmpi_mpich.so"
    outdir.mkdir()
    run = subprocess.run(
        [MPIEXEC, "-n", "2", "env", f"LD_PRELOAD={LIBMPI}",
         str(Path(sys.executable).parent / "nrniv-core"), "--mpi", "--mpi-lib", str(lib),
         "-d", str(dataset), "-e", "100", "-o", str(outdir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = (line.split() for line in (outdir / "out.dat").read_text().splitlines())
    return format_spikes(sorted((float(t), int(g)) for t, g in rows))


FAIL_ON_RANK_1 = """
import sys
import portneuron.cli as cli
from portneuron.errors import PortneuronError

built = cli.build_model


def build_model(args, library, progress, ranks):
    if ranks.rank == 1:
        raise PortneuronError("the model cannot be built here")
    return built(args, library, progress, ranks)


cli.build_model = build_model
sys.exit(cli.main(["run", "-e", "100", "-o", sys.argv[1]]))
"""


@needs_mpi
@pytest.mark.mpi
def test_an_error_on_one_rank_ends_every_rank_in_one_line(tmp_path):
    """Rank 1 fails while rank 0 waits for it in the first collective: every rank ends
    within seconds (MPI_Abort), with one line naming the failing rank, a nonzero exit and
    no out.dat."""
    start = time.monotonic()
    run = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-c", FAIL_ON_RANK_1, str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert time.monotonic() - start < 60
    assert run.returncode != 0
    ours = [line for line in run.stderr.splitlines() if line.startswith("portneuron:")]
    assert ours == ["portneuron: rank 1 of 2: error: the model cannot be built here"]
    assert not (tmp_path / "out.dat").exists()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=0, max_size=60), st.integers(1, 8))
def test_every_cell_is_placed_once_within_list_schedulings_bound(costs, nranks):
    """Longest-first: each cell on one rank, and no rank above the mean load plus
    (1 - 1/ranks) of the largest cost (list scheduling's bound)."""
    rank = scheduler.place(costs, nranks)
    assert rank.shape == (len(costs),) and ((rank >= 0) & (rank < nranks)).all()
    loads = scheduler.loads(costs, rank, nranks)
    assert loads.sum() == sum(costs)
    if costs:
        assert loads.max() <= sum(costs) / nranks + (1 - 1 / nranks) * max(costs) + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=8), st.integers(2, 3))
def test_placement_is_within_four_thirds_of_the_best(costs, nranks):
    """Against the best placement (all of them tried): Graham's 4/3 - 1/(3 ranks)."""
    best = min(
        scheduler.loads(costs, np.array(choice), nranks).max()
        for choice in itertools.product(range(nranks), repeat=len(costs))
    )
    largest = scheduler.loads(costs, scheduler.place(costs, nranks), nranks).max()
    assert largest <= (4 / 3 - 1 / (3 * nranks)) * best + 1e-9


def test_plan_prints_the_placement_and_its_predicted_balance(capsys, tmp_path):
    """`portneuron plan`: each rank's device, cells and operations, every cell once, and the
    predicted imbalance no worse than a split by cell count; ranks of different backends
    loaded by speeds measured here (numpy's rank gets one block); -n 0, a --measured file
    that is not a run's summary or is of another rank count, one line each."""
    from portneuron.build.ringtest import cell_costs
    from portneuron.cli import main

    assert main(["plan", "-n", "3", "--branch", "10", "200", "--compart", "1", "8", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    costs = cell_costs(16, 8, (10, 200), (1, 8))
    assert sum(plan["cells"]) == 128 and sum(plan["cost"]) == costs.sum()
    assert plan["imbalance"] <= plan["imbalance_by_count"]
    assert main(["plan", "-n", "2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == (
        "128 cells on 2 ranks, longest first by operations (blocks of 8 cells of one shape):"
    )
    assert text[-1].startswith("predicted imbalance (largest over mean, less 1): ")
    assert main(["plan", "-n", "0"]) == 1
    assert capsys.readouterr().err == "portneuron: error: -n 0: give at least 1 rank\n"
    assert main(["plan", "-n", "2", "--threads", "0"]) == 1
    assert capsys.readouterr().err == "portneuron: error: --threads must be >= 1, not 0\n"
    assert main(["plan", "-n", "1", "--backend", "numpy,llvm"]) == 1
    assert capsys.readouterr().err == (
        "portneuron: error: --backend numpy,llvm: 2 backends, one a rank, for 1 rank(s); "
        "give -n 2 or more\n"
    )
    assert main(["plan", "-n", "2", "--backend", "numpy,llvm", "--threads", "1", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["devices"] == ["numpy", "llvm (1 thread)"] and plan["cells"] == [8, 120]
    assert plan["speeds"][1] > 10 * plan["speeds"][0]
    bad = tmp_path / "bad.json"
    for text, error in [
        ("no json", f"{bad}: not a JSON object; give --measured the file `portneuron run "
                    f"--json` printed"),
        ('{"ranks": 1}', f"{bad}: no rank_busy_s (a run's --json summary has it when the run "
                         f"had several ranks); run under mpiexec -n 2 with --json"),
        ('{"rank_busy_s": [1, 1, 1]}', f"{bad}: the run had 3 ranks, the plan -n 2; give -n 3"),
    ]:  # fmt: skip
        bad.write_text(text)
        assert main(["plan", "-n", "2", "--measured", str(bad)]) == 1
        assert capsys.readouterr().err == f"portneuron: error: {error}\n"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 5)), max_size=80),
    st.integers(1, 8),
    st.integers(1, 8),
)
def test_blocks_of_one_shape_stay_together(cells, width, nranks):
    """place_blocks: each shape's cells go `width` at a time (index order) to one rank,
    every cell once, within list scheduling's bound over the blocks."""
    costs, shapes = [c for c, _ in cells], [s for _, s in cells]
    rank = scheduler.place_blocks(costs, shapes, width, nranks)
    assert rank.shape == (len(cells),) and ((rank >= 0) & (rank < nranks)).all()
    block_costs = []
    for shape in set(shapes):
        members = [i for i, s in enumerate(shapes) if s == shape]
        for k in range(0, len(members), width):
            block = members[k : k + width]
            assert len({int(rank[i]) for i in block}) == 1
            block_costs.append(sum(costs[i] for i in block))
    loads = scheduler.loads(costs, rank, nranks)
    if cells:
        bound = sum(costs) / nranks + (1 - 1 / nranks) * max(block_costs)
        assert loads.max() <= bound + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 5)), min_size=1, max_size=60),
    st.lists(st.lists(st.integers(0, 59), min_size=1, max_size=6), max_size=6),
    st.integers(1, 8),
    st.integers(1, 8),
)
def test_cells_kept_together_share_a_rank(cells, groups, width, nranks):
    """place_blocks with `together` (gap-junction components, say): each group's cells on
    one rank, every block of one shape of the cells no group holds whole, every cell once;
    the load within list scheduling's bound over the items placed (the components the
    groups make, and those blocks)."""
    costs, shapes = [c for c, _ in cells], [s for _, s in cells]
    groups = [sorted({i % len(cells) for i in g}) for g in groups]
    rank = scheduler.place_blocks(costs, shapes, width, nranks, groups)
    assert rank.shape == (len(cells),) and ((rank >= 0) & (rank < nranks)).all()
    for group in groups:
        assert len({int(rank[i]) for i in group}) == 1, group
    coupled = {i for g in groups if len(g) > 1 for i in g}
    link = list(range(len(cells)))  # the items, recomputed: cells linked by a block or a group

    def root(x):
        while link[x] != x:
            x = link[x]
        return x

    for shape in set(shapes):
        members = [i for i, s in enumerate(shapes) if s == shape and i not in coupled]
        for k in range(0, len(members), width):
            assert len({int(rank[i]) for i in members[k : k + width]}) == 1
            for i in members[k : k + width]:
                link[root(i)] = root(members[k])
    for group in groups:
        for i in group:
            link[root(i)] = root(group[0])
    loads = scheduler.loads(costs, rank, nranks)
    assert loads.sum() == sum(costs)
    items = {}
    for i, c in enumerate(costs):
        items[root(i)] = items.get(root(i), 0) + c
    largest_item = max(items.values())
    assert loads.max() <= sum(costs) / nranks + (1 - 1 / nranks) * largest_item + 1e-9


def test_random_pairs_stay_apart_from_the_blocks():
    """Random pairs of cells of one shape kept together: every pair on one rank, and the
    ranks' loads even (before, the blocks holding a pair's cells were joined, random pairs
    joined every block into one item and one rank took every cell)."""
    rng = np.random.default_rng(3)
    order = rng.permutation(1000)
    pairs = [sorted(order[k : k + 2]) for k in range(0, 1000, 2)]
    rank = scheduler.place_blocks([1.0] * 1000, [0] * 1000, 8, 2, pairs)
    assert all(rank[a] == rank[b] for a, b in pairs)
    assert list(np.bincount(rank)) == [500, 500]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 1000), min_size=1, max_size=60),
    st.lists(st.floats(0.01, 100.0), min_size=1, max_size=6),
)
def test_ranks_of_different_speeds(costs, speeds):
    """place with speeds: every item once; every rank given one at least while there are
    items enough; each rank that has two or more finishes within list scheduling's bound
    for uniform machines, (total + (ranks - 1) largest) / (sum of speeds); equal speeds
    place as no speeds do."""
    nranks = len(speeds)
    rank = scheduler.place(costs, nranks, speeds)
    assert rank.shape == (len(costs),) and ((rank >= 0) & (rank < nranks)).all()
    counts = np.bincount(rank, minlength=nranks)
    if len(costs) >= nranks:
        assert (counts >= 1).all()
    loads = scheduler.loads(costs, rank, nranks)
    bound = (sum(costs) + (nranks - 1) * max(costs)) / sum(speeds)
    for r in np.flatnonzero(counts >= 2):
        assert loads[r] / speeds[r] <= bound * (1 + 1e-12)
    assert (scheduler.place(costs, nranks, [2.5] * nranks) == scheduler.place(costs, nranks)).all()


@needs_mpi
@pytest.mark.mpi
def test_ranks_driving_different_backends(tmp_path):
    """`mpiexec -n 2 portneuron run --backend numpy,llvm`: rank 0 runs numpy, rank 1 llvm,
    each loaded by its measured speed (llvm's is hundreds of times numpy's: numpy gets one
    block of 8 cells); out.dat is the one-process run's. A list longer than the ranks, or
    naming an unknown backend, is one line."""
    reference = tmp_path / "serial"
    reference.mkdir()
    assert ringtest(reference, 0, "-e", "20").returncode == 0
    run = ringtest(tmp_path, 2, "-e", "20", "--backend", "numpy,llvm")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "out.dat").read_bytes() == (reference / "out.dat").read_bytes()
    summary = json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][0])
    assert summary["rank_backends"] == ["numpy", "llvm"]
    assert summary["rank_cells"][0] < summary["rank_cells"][1]
    assert sum(summary["rank_cells"]) == 128
    assert summary["rank_speeds"][1] > 10 * summary["rank_speeds"][0]
    for backends, message in (
        ("numpy,llvm,llvm", "--backend numpy,llvm,llvm: 3 backends, one a rank, but this run "
                            "has 2 rank(s); run under mpiexec -n 3"),
        ("numpy,vulkan", "unknown backend 'vulkan'; registered backends: cuda, llvm, numpy"),
    ):  # fmt: skip
        run = ringtest(tmp_path / "bad", 2, "--backend", backends)
        assert run.returncode != 0
        ours = [line for line in run.stderr.splitlines() if line.startswith("portneuron:")]
        assert len(ours) >= 1 and message in ours[0], ours


REBALANCED = """
import sys
import portneuron.cli as cli
measured = cli.first_epochs  # run them, then say rank 0 worked 4 times as long as rank 1
cli.first_epochs = lambda *args: measured(*args) and [1.0, 0.25]
sys.exit(cli.main(sys.argv[1:]))
"""


@needs_mpi
@pytest.mark.mpi
def test_placing_again_after_the_first_epochs(tmp_path):
    """--rebalance: after its first epochs (0.1 s) a run on 2 ranks measures each rank's speed;
    given work that places the cells otherwise (rank 0 four times rank 1's, put in for
    the measured work, which the test cannot fix), it builds again and starts from t = 0:
    rank 1 gets more cells, out.dat is the one-process run's, the summary says when and
    why. '--rebalance off' and a fraction above every imbalance never do; a bad value is
    argparse's one line."""
    reference = tmp_path / "serial"
    reference.mkdir()
    assert ringtest(reference, 0, "-e", "1000").returncode == 0
    expected = (reference / "out.dat").read_bytes()
    for option, again in (("0", True), ("off", False), ("1e9", False)):
        outdir = tmp_path / option
        outdir.mkdir()
        run = subprocess.run(
            [MPIEXEC, "-n", "2", sys.executable, "-c", REBALANCED, "run", "-e", "1000", "-o",
             str(outdir), "--json", "--threads", "1", "--rebalance", option],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert (outdir / "out.dat").read_bytes() == expected, option
        summary = json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][0])
        assert ("rebalanced" in summary) == again, (option, summary)
        if again:
            assert 0 < summary["rebalanced"]["after_ms"] <= 250  # a quarter of the run
            assert summary["rebalanced"]["rank_busy_s"] == [1.0, 0.25]
            assert summary["rank_cells"][1] > summary["rank_cells"][0]
            assert sum(summary["rank_cells"]) == 128
    run = ringtest(tmp_path, 0, "--rebalance", "-1")
    assert run.returncode == 2
    assert "--rebalance: give a fraction >= 0 or 'off', not '-1'" in run.stderr


@needs_mpi
@pytest.mark.mpi
@pytest.mark.slow
def test_a_cpu_rank_and_the_cuda_stand_in_in_one_run():
    """Devices in one run without a GPU: the mixed network on 2 ranks, rank 0 on llvm and
    rank 1 on the cuda backend's CPU stand-in (tests/cuda_host.py: its generated CUDA C
    built by g++, its own host code and compiled epochs), each loaded by its measured
    speed: the spikes are the one-process llvm run's."""
    import shutil as sh

    if sh.which("g++") is None:
        pytest.skip("g++ not found: no CPU stand-in for the cuda backend")
    expected = mixed_run(0, "cost")["spikes"]
    got = mixed_run(2, "cost", "llvm,cuda-host")
    assert got["spikes"] == expected
    assert sum(got["cells"]) == 128 and min(got["cells"]) > 0


def test_a_network_keeps_gids_together():
    """Network.placement(together=...): the mixed network's two pyramidal cells 3 and 12
    and interneurons 40 and 100 (as if gap junctions coupled them) share a rank on 2 and 3
    ranks; an unknown gid is one line."""
    from mixed_network import mixed_network

    net = mixed_network()
    for nranks in (2, 3):
        where = net.placement(nranks, together=[[3, 12], [40, 100]])
        assert where[3] == where[12] and where[40] == where[100]
        assert sorted(where) == list(range(129))
    with pytest.raises(PortneuronError, match="^placement: no cell with gid 500 to keep"):
        net.placement(2, together=[[3, 500]])


def test_gap_junction_components_share_a_rank_where_that_balances():
    """Network.placement's default: the cells gap junctions join (Network.joined) stay on
    one rank each where the loads stay within JOINED_IMBALANCE of even (random pairs: every
    pair together, 250 cells a rank); one component of nearly every cell (tests/gap_native's
    100-cell network) is placed as if uncoupled, its junctions crossing ranks."""
    import gap_native

    from portneuron.build import Cell, Network, Place
    from portneuron.build.network import JOINED_IMBALANCE
    from portneuron.library import MechanismLibrary

    library = MechanismLibrary([Path(__file__).parent / "mods"])
    net = Network(library)
    cell = Cell("cell")
    soma = cell.section("soma", L=15, diam=15)
    cell.insert(soma, "hh")
    for gid in range(500):
        net.add_cell(cell, gid)
    order = np.random.default_rng(5).permutation(500)
    pairs = [sorted(int(g) for g in order[k : k + 2]) for k in range(0, 500, 2)]
    for a, b in pairs:
        net.gap_junction(Place(a, soma), Place(b, soma), "HalfGap", g=0.01)
    assert sorted(sorted(c) for c in net.joined()) == sorted(pairs)
    where = net.placement(2)
    assert all(where[a] == where[b] for a, b in pairs)
    assert np.bincount(list(where.values())).tolist() == [250, 250]
    split = net.placement(2, together=[])
    assert sum(split[a] != split[b] for a, b in pairs) > 0  # what the default avoids

    coupled, _ = gap_native.network(library)
    largest = max(len(c) for c in coupled.joined())
    assert largest > 100 * (1 + JOINED_IMBALANCE) / 2  # one rank would take too much
    assert coupled.placement(2) == coupled.placement(2, together=[])


def counted(kb, b, y) -> None:
    x = kb.assign("x", b.call("exp", y))  # 20
    with kb.loop("i", 0, 10):
        kb.assign("x", b.add(x, 1.0))  # 10 x 1
    with kb.if_(b.gt(x, 0.0)):  # 1
        kb.assign("x", b.mul(b.add(x, 1.0), 2.0))  # 2
    with kb.else_():
        kb.assign("x", b.neg(x))  # 1


def test_a_cells_cost_counts_what_its_step_runs():
    """portneuron.cost: an exp weighs as twenty adds, a loop of constant bounds its trips,
    a branch its larger side; hh's instance costs more than pas's, and a cell is its nodes'
    share of the engine's kernels plus its instances'."""
    from portneuron.ir import F64, Var
    from portneuron.ir import builder as b
    from portneuron.ir.builder import KernelBuilder

    from portneuron import cost
    from portneuron.build import Cell
    from portneuron.library import MechanismLibrary

    kb = KernelBuilder("state", "instance", "")
    with kb.capture() as body:
        counted(kb, b, Var("y", F64))
    assert cost.body_ops(tuple(body)) == 20 + 10 + 1 + 2
    library = MechanismLibrary()
    hh, pas = (cost.mechanism_ops(library.get(m)) for m in ("hh", "pas"))
    assert hh > 10 * pas > 0
    cell = Cell()
    soma = cell.section("soma", L=20, diam=20, nseg=3)
    cell.insert(soma, "hh")
    built = cell.compile()
    assert cost.cell_ops(built, library) == built.count * cost.node_ops() + 3 * hh


def test_inputs_a_run_on_ranks_refuses_in_one_line(monkeypatch):
    """A launcher's ranks without mpi4py, and an artificial cell without a gid driving cells
    that land on different ranks: one line each."""
    from portneuron import parallel
    from portneuron.build import Cell, Network
    from portneuron.errors import PortneuronError

    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if not installed
    with pytest.raises(PortneuronError, match=r"^started by an MPI launcher with 2 ranks, but "
                       r"mpi4py is not installed: pip install 'portneuron\[mpi\]'$"):  # fmt: skip
        parallel.world()
    net = Network()
    for gid in (0, 1):
        cell = Cell()
        soma = cell.section("soma", L=20, diam=20)
        cell.point_process(soma, 0.5, "ExpSyn")
        net.add_cell(cell, gid)
    stim = net.artificial_cell("NetStim", number=1, start=0)
    for gid in (0, 1):
        net.connect(gid, 0, 0.01, 1.0, source_stim=stim)
    assert net.build(local={0, 1}).ncell == 2
    with pytest.raises(PortneuronError, match=r"^artificial cell 0 \(NetStim\) has no gid and "
                       r"drives cells on different ranks; give it a gid"):  # fmt: skip
        net.build(local={0})
