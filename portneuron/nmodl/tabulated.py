"""What a TABLE is at run time: the grid its points are computed on and the names of its
arrays, shared by the front end, which lowers the lookups, and the binding, which fills the
tables. Free of the front end's imports: a run whose mechanisms come from the cache does not
load them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from portneuron.ir import Table


def element(name: str) -> tuple[str, int] | None:
    """(array, index) of an element name `x[3]`, which stands for one value of an array."""
    if name.endswith("]") and "[" in name:
        base, index = name[:-1].split("[", 1)
        return base, int(index)
    return None


def bounds(table: Table, args: dict) -> tuple[float, float]:
    """The table's (lo, hi), its named bounds read from the kernel arguments' globals. As in
    NEURON, FROM may exceed TO (the grid then runs downwards)."""
    lo, hi = (
        b if isinstance(b, float) else float(args[f"global.{b}"]) for b in (table.lo, table.hi)
    )
    return lo, hi


def grid(table: Table, lo: float, hi: float) -> np.ndarray:
    """The argument values of the table points from `lo` to `hi` (`bounds`), accumulated as
    NEURON does."""
    dx = (hi - lo) / (table.points - 1)
    x = np.empty(table.points)
    value = lo
    for i in range(table.points):
        x[i] = value
        value += dx
    return x


def mfac(table: Table, lo: float, hi: float) -> float:
    """NEURON's 1/dx, by which a lookup scales its argument."""
    return 1.0 / ((hi - lo) / (table.points - 1))


def array_name(table: Table, output: str) -> str:
    """The kernel array of one output's table: `table.rates.minf`, `table.mhnp.inf.2` for
    element 2 of an array output."""
    found = element(output)
    return f"table.{table.name}." + (f"{found[0]}.{found[1]}" if found else output)
