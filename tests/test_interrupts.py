"""Ctrl-C and SIGTERM held over a wait on other threads (portneuron.interrupts.deferred):
an exception raised inside concurrent.futures' wait can leave a future's lock held and hang
the run (CI once hung in test_interrupt_stops_with_one_line), so the llvm backend's threaded
calls hold a signal until every call has returned, then hand it to the handler that was
there."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import wait

import pytest

from portneuron.interrupts import Interrupted, deferred, restore, stop_on_signals


def arrive(signum: int) -> None:
    """The signal, sent to this process and handled (in this, the main thread) before this
    returns: Python runs a handler between bytecodes, and these sleeps give it 50 chances."""
    os.kill(os.getpid(), signum)
    for _ in range(50):
        time.sleep(0.001)


@pytest.fixture
def stopping():
    previous = stop_on_signals()
    yield
    restore(previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_region_stops_the_run_when_it_ends(stopping, signum):
    reached = []
    with pytest.raises(Interrupted) as stop:
        with deferred():
            arrive(signum)
            reached.append("the end of the region")
    assert reached == ["the end of the region"]
    assert stop.value.signum == signum
    # the command line's handler, put back and run: a second signal waits
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_ctrl_c_under_pythons_own_handler():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            arrive(signal.SIGINT)
            reached.append("the end of the region")
    assert reached == ["the end of the region"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_region_a_signal_stops_at_once(stopping):
    with deferred():
        pass
    with pytest.raises(Interrupted):
        arrive(signal.SIGTERM)
        pytest.fail("not stopped")


def test_off_the_main_thread_nothing_changes(stopping):
    handlers = []

    def region() -> None:
        with deferred():
            handlers.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=region)
    worker.start()
    worker.join()
    assert handlers == [signal.getsignal(signal.SIGTERM)]


def test_threaded_calls_finish_before_the_stop(stopping, monkeypatch):
    """The llvm backend's compiled epochs on two threads, the signal arriving inside the
    wait for the other thread's call: it does not cut the wait, which returns (every call
    done); then the run stops, and the backend's pool still takes work."""
    pytest.importorskip("llvmlite")
    import portneuron.backends.llvm.backend as llvm
    from harness import synapse_network
    from portneuron.backends import load_backend

    from portneuron.sim.simulation import Simulation

    model = synapse_network("ExpSyn").build()
    backend = load_backend("llvm")
    sim = Simulation(model, backend, threads=2)
    sim.run(1.0)
    if sim.threads_used < 2:
        pytest.skip("the model runs on one thread")
    waits, cut = [], []

    def wait_with_a_signal(calls):
        try:
            arrive(signal.SIGTERM)
        except Interrupted:  # raised here, inside the wait: where it can hang the run
            cut.append(True)
            raise
        wait(calls)
        waits.append(all(call.done() for call in calls))

    monkeypatch.setattr(llvm, "wait", wait_with_a_signal)
    with pytest.raises(Interrupted):
        sim.run(2.0, initialize=False)
    assert cut == [] and waits == [True]
    monkeypatch.undo()
    assert backend.pool.submit(lambda: 7).result(timeout=5) == 7


def test_a_stop_while_mcjit_compiles_is_not_lost(stopping, monkeypatch, tmp_path):
    """Without a linker, MCJIT compiles a kernel and hands its object to the cache's writer,
    Python called from C through ctypes, which prints and drops an exception raised there:
    a stop that arrived then was lost, the handlers already ignored a second, and the run
    went on (CI's SIGTERM-early case hung so, on a machine without `ld`). The compile ends,
    its object is kept, and then the run stops."""
    pytest.importorskip("llvmlite")
    from portneuron.backends.llvm import runtime

    monkeypatch.setenv("PORTNEURON_LINKER", "none")
    monkeypatch.setenv("PORTNEURON_CACHE", str(tmp_path))
    store, stored = runtime.Jit._store, []

    def store_with_a_signal(self, module, buffer):
        arrive(signal.SIGTERM)
        store(self, module, buffer)
        stored.append(module.name)

    monkeypatch.setattr(runtime.Jit, "_store", store_with_a_signal)
    jit = runtime.Jit()
    name = "pn_a_stop_while_compiling"
    with pytest.raises(Interrupted):
        jit.add_kernel(name, lambda name: f'define void @"{name}"() {{\n  ret void\n}}\n')
    assert stored == [name] and (tmp_path / "llvm" / f"{name}.o").is_file()


@pytest.mark.parametrize(
    "argv, line",
    [(["run", "-e", "1"], "portneuron: SIGTERM: stopped before the simulation started; "
                          "nothing was written"),
     (["backends"], "portneuron: SIGTERM: stopped; nothing was written")],
)  # fmt: skip
def test_a_stop_before_the_commands_own_try(monkeypatch, capsys, argv, line):
    """A signal while the command line is parsed (CI's SIGTERM-importing case once landed
    there) says, for a run, that it had not started."""
    from portneuron import cli

    def parse_args(self, args=None, namespace=None):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(cli.argparse.ArgumentParser, "parse_args", parse_args)
    assert cli.main(argv) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_finished_command_ignores_a_later_stop(stopping, capsys, tmp_path):
    """Once the command has said how it ended, the `portneuron` command's own handlers give way
    to SIG_IGN: a stop then would say it again, and wrongly. Other handlers come back."""
    from portneuron import cli

    assert cli.main(["run", "--nring", "1", "-e", "1", "-o", str(tmp_path)]) == 0
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    restore({signal.SIGTERM: signal.SIG_DFL})
    assert cli.main(["run", "--nring", "1", "-e", "1", "-o", str(tmp_path)]) == 0
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
