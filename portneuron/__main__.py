"""`python -m portneuron` and the `portneuron` command. Ctrl-C and SIGTERM stop it with one
line from its first moment: their handlers are installed before the command line's imports
(numpy and the rest, half a second), which they may cut."""

import sys

from .interrupts import Interrupted, stop_on_signals, stopped_early


def main() -> int:
    stop_on_signals()
    try:
        from .cli import main as command_line

        return command_line()
    except Interrupted as stop:  # in the imports, or before the command line's own try
        return stopped_early(stop, None)


if __name__ == "__main__":
    sys.exit(main())
