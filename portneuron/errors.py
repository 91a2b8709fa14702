"""Errors a user can cause. Each prints as one line naming the file, the place and the fix."""

from __future__ import annotations


class PortneuronError(Exception):
    """A problem with the user's input or options; shown as one line, without a traceback."""


class NmodlError(PortneuronError):
    """A `.mod` file that does not parse, or uses a construct portneuron does not support."""

    def __init__(
        self, message: str, file: str = "<string>", line: int | None = None, col: int | None = None
    ):
        self.message, self.file, self.line, self.col = message, file, line, col
        where = file
        if line is not None:
            where += f":{line}"
            if col is not None:
                where += f":{col}"
        super().__init__(f"{where}: {message}")


class SimulationError(PortneuronError):
    """The simulation cannot go on (a voltage blew up, an event queue overflowed); names
    the cell and the time."""
