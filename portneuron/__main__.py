"""`python -m portneuron` and the `portneuron` command. Ctrl-C and SIGTERM stop it with one
line from its first moment: their handlers are installed before the command line's imports
(numpy and the rest, half a second), which they may cut."""

import sys

from .interrupts import BEFORE_THE_RUN, Interrupted, stop_on_signals, stopped


def main() -> int:
    stop_on_signals()
    try:
        from .cli import main as command_line
    except Interrupted as stop:
        if sys.argv[1:2] == ["run"]:
            return stopped(stop, BEFORE_THE_RUN)
        return stopped(stop)
    return command_line()


if __name__ == "__main__":
    sys.exit(main())
