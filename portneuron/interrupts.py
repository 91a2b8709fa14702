"""Ctrl-C and SIGTERM: how the command line stops, and where a stop must wait.

The command line's handler raises `Interrupted` in the main thread, wherever it is, so that a
run stops while its model is read or built as well as between epochs. Code that waits for
other threads cannot be cut anywhere, though: an exception raised inside
`concurrent.futures.wait` can leave a future's lock held, and the thread finishing that
future then waits for the lock forever (a thread pool that runs compiled code hung 2 times in
200 such interrupts). Such a wait runs `deferred`: a signal that arrives there is handled by
the handler that was there once the wait is over.

This module imports nothing heavy: the `portneuron` command installs its handlers first,
before the half second of imports that follow.
"""

from __future__ import annotations

import _signal  # the C functions signal's wrap: theirs take 6 to 10 us (an enum lookup
import signal  # that fails, for a handler), these 0.03 to 0.4: a region runs each epoch
import sys
import threading
from types import FrameType

#: The signals that stop a run (exit status 128 + the signal).
STOPPING = (signal.SIGINT, signal.SIGTERM)

#: What a run stopped before its first step says.
BEFORE_THE_RUN = "stopped before the simulation started; nothing was written"


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: the run stops with one line and exit status 128 + the signal. A
    BaseException, as KeyboardInterrupt is, so that no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    for each in STOPPING:  # one stop, one line: a second ^C waits
        signal.signal(each, signal.SIG_IGN)
    raise Interrupted(signum)


def stop_on_signals() -> dict[int, object]:
    """Ctrl-C and SIGTERM raise `Interrupted` from here on; the handlers they replace, to
    put back (none off the main thread, where Python keeps its own handling)."""
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in STOPPING:
            previous[signum] = signal.signal(signum, _raise_interrupted)
    return previous


def restore(previous: dict[int, object]) -> None:
    """The handlers `previous` holds, back in place (SIG_DFL and SIG_IGN, as signal's
    enums, through signal's wrapper)."""
    for signum, handler in previous.items():
        (_signal.signal if callable(handler) else signal.signal)(signum, handler)


def finished(previous: dict[int, object]) -> None:
    """`restore`, at a command's end, but for the handlers of the `portneuron` command itself
    (installed before its imports): a command that has said how it ended ignores a later stop
    rather than say it again."""
    restore({s: signal.SIG_IGN if h is _raise_interrupted else h for s, h in previous.items()})


def stopped(stop: Interrupted, where: str = "stopped; nothing was written") -> int:
    """The one line an interrupted command prints; its exit status."""
    print(f"portneuron: {stop.name}: {where}", file=sys.stderr)
    return 128 + stop.signum


def stopped_early(stop: Interrupted, argv: list[str] | None) -> int:
    """`stopped`, for a stop before the command's own handling (in the imports, the parsing):
    a run says it had not started."""
    first = (sys.argv[1:] if argv is None else argv)[:1]
    return stopped(stop, BEFORE_THE_RUN) if first == ["run"] else stopped(stop)


class deferred:
    """A region the stopping signals do not cut: one that arrives in it (in the main thread,
    with a handler written in Python: the command line's, KeyboardInterrupt's) is held, and
    handed to that handler when the region ends. Outside the main thread nothing changes (a
    signal's handler runs in the main thread only)."""

    def __enter__(self) -> deferred:
        self.held: list[int] = []
        self.saved: dict[int, object] = {}
        if threading.get_ident() != threading.main_thread().ident:
            return self
        try:
            for signum in STOPPING:
                handler = _signal.getsignal(signum)
                if callable(handler):
                    self.saved[signum] = handler  # before it is replaced: restore finds it
                    _signal.signal(signum, self._hold)
        except BaseException:  # one that arrived before the region began: raised as it was
            restore(self.saved)
            raise
        return self

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.held.append(signum)

    def __exit__(self, *exc: object) -> None:
        restore(self.saved)
        for signum in dict.fromkeys(self.held):  # the handler's own: it raises or stops
            handler = self.saved[signum]
            handler(signum, sys._getframe())
