"""Ranks and threads on the ringtest: portneuron under mpiexec, with NEURON in the same run.

portneuron builds the ringtest itself (`portneuron run` without -d; every rank builds only
the cells the scheduler places on it) and runs it on 1 rank x 1 thread, 1 rank x 2 threads
and 2 ranks x 1 thread (mpiexec from the mpich wheel); NEURON builds the same model
(tests/neuron_models.py) and runs it on 1 and 2 threads and on 2 MPI ranks (its gids
dealt round robin), and writes it as 2 cell groups
(its NetStims with gids: 16 more spikes) for nrniv-core --mpi on 1 and 2 ranks. Every portneuron run's out.dat must
be the same, byte for byte. Repetitions are interleaved; times are simulate-only medians
(rank 0's, which waits for the others at every exchange); peak RSS is the largest process's
(a rank's, for mpiexec's children). Results go to perf/results.jsonl (kind "mpi") and
perf/RESULTS.md.

    python perf/mpi.py                                         # 16 x 8 cells, 100 ms
    python perf/mpi.py --nring 64 --branch 64 64 --compart 8 8   # the large ringtest
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from ringtest import NEURON, append_results, child, measured, median_of, ringtest_arguments

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


#: NEURON's ringtest as a dataset of 2 cell groups (2 threads; its NetStims take gids so
#: that NEURON can write them beside cells of another thread) for nrniv-core --mpi.
TWO_GROUPS = """
import json, sys
import neuron_models as nm
nring, ncell, tstop, dataset = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
branch, compart = json.loads(sys.argv[5]), json.loads(sys.argv[6])
ring = nm.build_ringtest(nring=nring, ncell=ncell, nbranch=tuple(branch),
                         ncompart=tuple(compart), stim_gids=True)
nm.pc.nthread(2)
nm.write_dataset(ring, dataset)
print(json.dumps({}))
"""


#: NEURON itself under mpiexec (the mpich wheel's library through MPI_LIB_NRN_PATH), the
#: ringtest's gids dealt round robin; rank 0 reports its simulate time and every rank's
#: spikes.
NEURON_RANKS = """
import json, sys, time
from neuron import h
h.nrnmpi_init()
import neuron_models as nm
nring, ncell, tstop = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
branch, compart = json.loads(sys.argv[4]), json.loads(sys.argv[5])
ring = nm.build_ringtest(nring=nring, ncell=ncell, nbranch=tuple(branch), ncompart=tuple(compart))
tvec, idvec = h.Vector(), h.Vector()
nm.pc.spike_record(-1, tvec, idvec)
nm._initialize(0.025)
nm.pc.barrier()
t0 = time.perf_counter()
nm.pc.psolve(tstop)
simulate = time.perf_counter() - t0
spikes = int(nm.pc.allreduce(tvec.size(), 1))
if nm.pc.id() == 0:
    print(json.dumps({"spikes": spikes, "simulate_s": simulate}))
nm.pc.barrier()
h.quit()
"""


def neuron_ranks(args, ranks: int) -> dict:
    libmpi = Path(sys.executable).parent.parent / "lib" / "libmpi.so.12"
    stdout, rss = measured(
        [MPIEXEC, "-n", str(ranks), "env", f"MPI_LIB_NRN_PATH={libmpi}", f"LD_PRELOAD={libmpi}",
         sys.executable, "-c", NEURON_RANKS, str(args.nring), str(args.ncell), str(args.tstop),
         json.dumps(args.branch), json.dumps(args.compart)]
    )  # fmt: skip
    result = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    result.update(engine=f"neuron {ranks}r", ranks=ranks, threads=1, peak_rss_mib=rss)
    return result


def coreneuron(args, ranks: int, dataset: Path, outdir: Path) -> dict:
    """nrniv-core --mpi of the neuron wheel (its mpich library, the mpich wheel's libmpi)."""
    import re

    import neuron

    lib = Path(neuron.__file__).parent / ".data" / "lib" / "libcorenrnmpi_mpich.so"
    libmpi = Path(sys.executable).parent.parent / "lib" / "libmpi.so.12"
    stdout, rss = measured(
        [MPIEXEC, "-n", str(ranks), "env", f"LD_PRELOAD={libmpi}", "OMP_NUM_THREADS=1",
         str(Path(sys.executable).parent / "nrniv-core"), "--mpi", "--mpi-lib", str(lib),
         "-d", str(dataset), "-e", str(args.tstop), "-o", str(outdir)]
    )  # fmt: skip
    solver = float(re.search(r"Solver Time\s*:\s*([0-9.eE+-]+)", stdout).group(1))
    spikes = len((outdir / "out.dat").read_text().splitlines())
    return {"engine": f"coreneuron {ranks}r", "ranks": ranks, "spikes": spikes,
            "simulate_s": solver, "peak_rss_mib": rss}  # fmt: skip


def portneuron(args, ranks: int, threads: int, outdir: Path) -> dict:
    command = [sys.executable, "-m", "portneuron", "run", "-e", str(args.tstop), "-o",
               str(outdir), "--json", "--threads", str(threads), "--nring", str(args.nring),
               "--ncell", str(args.ncell), "--branch", *map(str, args.branch),
               "--compart", *map(str, args.compart)]  # fmt: skip
    stdout, rss = measured([MPIEXEC, "-n", str(ranks), *command])
    result = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    result.update(engine=f"portneuron llvm {ranks}r", peak_rss_mib=rss, threads=threads)
    result["out_dat"] = (outdir / "out.dat").read_bytes()
    return result


def main() -> None:
    args = ringtest_arguments(__doc__).parse_args()
    if MPIEXEC is None:
        sys.exit("perf/mpi.py: no mpiexec beside this Python; pip install -e '.[mpi]'")
    size = [str(args.nring), str(args.ncell), str(args.tstop)]
    shape = [json.dumps(args.branch), json.dumps(args.compart)]
    rounds: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        for ranks, threads in ((1, 1), (1, 2), (2, 1)):
            outdir = Path(tmp) / f"{ranks}r{threads}t"
            outdir.mkdir()
            engines[(f"portneuron llvm {ranks}r", threads)] = lambda r=ranks, t=threads, o=outdir: (
                portneuron(args, r, t, o)
            )
        for threads in (1, 2):
            engines[("neuron", threads)] = lambda t=threads: child(
                NEURON, *size, "-", *shape, str(t)
            )
        engines[("neuron 2r", 1)] = lambda: neuron_ranks(args, 2)
        dataset = Path(tmp) / "two-groups"
        child(TWO_GROUPS, *size, str(dataset), *shape)
        for ranks in (1, 2):
            outdir = Path(tmp) / f"coreneuron{ranks}"
            outdir.mkdir()
            engines[(f"coreneuron {ranks}r", 1)] = lambda r=ranks, o=outdir: coreneuron(
                args, r, dataset, o
            )
        for k in range(args.repeat):
            for key, run in engines.items():
                rounds.setdefault(key, []).append(run())
                print(f"round {k + 1}: {key} done", file=sys.stderr)
    outs = {r.pop("out_dat") for key, runs in rounds.items() for r in runs if "out_dat" in r}
    assert len(outs) == 1, "portneuron's out.dat differs between rank or thread counts"
    results = []
    for (engine, threads), runs in rounds.items():
        r = median_of(runs)
        r.update(engine=engine, threads=threads)
        results.append(r)
    compartments = next(r["compartments"] for r in results if "compartments" in r)
    steps = round(args.tstop / 0.025)
    for r in results:
        r["compartments"] = compartments
        r["ns_per_compartment_step"] = round(r["simulate_s"] * 1e9 / (compartments * steps), 2)
    one = next(r for r in results if r["engine"] == "portneuron llvm 1r" and r["threads"] == 1)
    for r in results:  # against CoreNEURON on as many ranks (1 thread each)
        same = [a for a in results if a["engine"] == f"coreneuron {r.get('ranks', 1)}r"]
        if same and r["threads"] == 1:
            ratio = r["ns_per_compartment_step"] / same[0]["ns_per_compartment_step"]
            r["vs_coreneuron"] = round(ratio, 3)
    for r in results:  # against NEURON on as many cores (ranks x threads)
        cores = r.get("ranks", 1) * r["threads"]
        neuron = next(a for a in results if a["engine"] == "neuron" and a["threads"] == cores)
        r["vs_neuron"] = round(r["ns_per_compartment_step"] / neuron["ns_per_compartment_step"], 3)
        r["speedup_vs_1r1t"] = round(one["simulate_s"] / r["simulate_s"], 3)
        same = [a for a in results if a["engine"] == f"neuron {r.get('ranks', 1)}r"]
        if same and r["threads"] == 1:  # against NEURON under mpiexec on as many ranks
            ratio = r["ns_per_compartment_step"] / same[0]["ns_per_compartment_step"]
            r["vs_neuron_ranks"] = round(ratio, 3)
    config = {"kind": "mpi", "nring": args.nring, "ncell": args.ncell, "branch": args.branch,
              "compart": args.compart, "tstop": args.tstop, "identical_out_dat": True}  # fmt: skip
    append_results([{**config, **r} for r in results])


if __name__ == "__main__":
    main()
