"""The opencl backend: the cuda backend's renderer in OpenCL C and its host code, on an
OpenCL device (in CI the CPU, through PoCL). The equivalence suite
(test_backend_equivalence.py, test_epoch_queue.py) runs it against numpy like every other
backend; here is what is its own: the arena its memory lives in, the source, and the one
line it answers with where it cannot run."""

from __future__ import annotations

import numpy as np
import pytest
from harness import synapse_network
from portneuron.backends import backend_status, load_backend
from portneuron.backends.opencl import OpenclBackend
from portneuron.backends.opencl import backend as opencl_backend
from test_cuda import check_epochs

from portneuron.cli import main
from portneuron.sim.simulation import Simulation

OPENCL = backend_status("opencl")
needs_device = pytest.mark.skipif(not OPENCL.available, reason=f"opencl: {OPENCL.reason}")


@needs_device
def test_the_arena_hands_out_aligned_spans_grows_and_keeps_what_it_holds():
    runtime = load_backend("opencl").runtime
    size = runtime.size
    spans = {runtime.alloc(n): n for n in (8, 1, 200, 4096)}
    assert all(start > 0 and start % 128 == 0 for start in spans)
    values = {start: np.arange(n // 8 or 1, dtype=np.float64) + start for start, n in spans.items()}
    for start, host in values.items():
        runtime.upload(start, host)
    big = runtime.alloc(3 * size)  # more than is free: the arena doubles, at least
    assert runtime.size >= 4 * size and big + 3 * size <= runtime.size
    for start, host in values.items():  # moved with the arena
        back = np.zeros_like(host)
        runtime.download(back, start)
        np.testing.assert_array_equal(back, host)
    for start in [*spans, big]:
        runtime.free(start)
    assert runtime.spans == [(128, runtime.size)]  # every span joined again


@needs_device
@pytest.mark.parametrize("shape", [(8, 64), (32, 256)])
def test_epochs_match_numpy_at_both_shapes(shape):
    """Work-groups of 64 and 256 work-items, 8 and 32 cells a block (a split kernel's lanes
    over every work-item of the group): as the cuda stand-in's test of the same."""
    check_epochs(OpenclBackend(None, *shape), "PulseSyn")


@needs_device
def test_a_report_on_opencl_is_numpys_to_the_bit(tmp_path):
    """A report of every compartment, which the device's epochs record as float32 (an f32
    array: C's rounding of each double stored), is the numpy run's float32 of its voltages."""
    h5py = pytest.importorskip("h5py")
    data = []
    for name in ("numpy", "opencl"):
        out = tmp_path / name
        argv = ["run", "--nring", "2", "-e", "5", "--backend", name, "-o", str(out)]
        assert main([*argv, "--report", "all@0.1"]) == 0
        with h5py.File(out / "all.h5") as f:
            data.append(f["report/All/data"][:])
    assert data[0].shape == (51, 304) and data[0].dtype == np.float32
    np.testing.assert_array_equal(data[1].view(np.int32), data[0].view(np.int32))


@needs_device
def test_a_network_on_opencl_spikes_as_on_numpy():
    runs = []
    for name in ("numpy", "opencl"):
        model = synapse_network("ExpSyn").build()
        runs.append(Simulation(model, load_backend(name)).run(20.0))
    assert len(runs[0].spikes) >= 10 and runs[1].spikes == runs[0].spikes


def test_cli_emits_opencl_without_a_device(capsys):
    assert main(["compile", "hh", "--emit", "opencl"]) == 0
    out = capsys.readouterr().out
    assert "// ==== hh.state (opencl)" in out and out.count("__kernel void") == 4
    assert "#pragma OPENCL FP_CONTRACT OFF" in out
    for cuda in ("__global__", "__device__", "atomicAdd", "long long", "threadIdx"):
        assert cuda not in out, cuda
    assert main(["compile", "hh", "--emit", "hip"]) == 1
    assert "no backend emits 'hip'; what can be emitted: ir" in capsys.readouterr().err


def test_a_device_that_cannot_build_is_one_line(monkeypatch):
    """PoCL built for another CPU fails every build ("unknown target CPU"): the backend
    says so in one line instead of failing in the middle of a run."""
    cl = pytest.importorskip("pyopencl")
    if not opencl_backend.devices():
        pytest.skip("no OpenCL device")

    class Refusing:
        def __init__(self, context, source):
            pass

        def build(self, options=()):
            raise cl.RuntimeError(
                "clBuildProgram failed: BUILD_PROGRAM_FAILURE\nerror: unknown target CPU 'generic'"
            )

    monkeypatch.setattr(cl, "Program", Refusing)
    ok, reason = opencl_backend._availability.__wrapped__()
    assert not ok and "cannot build a kernel: clBuildProgram failed" in reason
    assert "\n" not in reason


def test_a_model_larger_than_the_devices_buffer_is_one_line(monkeypatch, capsys, tmp_path):
    """The arena is one buffer: a model that needs more than the device allows in one
    (CL_DEVICE_MAX_MEM_ALLOC_SIZE, here made 1 MiB) stops the run with one line, out.dat
    not written."""
    if not backend_status("opencl").available:
        pytest.skip("no OpenCL device")
    from portneuron.backends.opencl import runtime

    class Limited:
        def __init__(self, device) -> None:
            self.device, self.max_mem_alloc_size = device, runtime.FIRST_ARENA

        def __getattr__(self, name: str):
            return getattr(self.device, name)

    made = runtime.OpenclRuntime.__init__

    def limited(self, *args, **kwargs) -> None:
        made(self, *args, **kwargs)
        self.device = Limited(self.device)

    monkeypatch.setattr(runtime.OpenclRuntime, "__init__", limited)
    argv = ["run", "--backend", "opencl", "--nring", "64", "-e", "1", "-o", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("portneuron: error: out of memory ("), err
    assert "bytes in one OpenCL buffer; the device allows 1048576" in err[0]
    assert not (tmp_path / "out.dat").exists()
