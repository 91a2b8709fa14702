"""NEURON's sparse linear solver (scopmath `sparse_thread`), as IR operation for operation.

NEURON builds the matrix of a KINETIC block from the elements the block touches, then
chooses the elimination order once, by a minimum-degree rule (`spar_minorder`):

- every row starts with its element count; rows wait in a list sorted by count, where a row
  (re)inserted goes before the rows of equal count already there;
- the row at the head of the list is the next pivot (its diagonal; rows are never
  exchanged for size, there is no numerical pivoting);
- for each row still waiting that has an element in the pivot's column (in their original
  order), every element of the pivot row right of the diagonal that the row lacks is
  created (a fill-in: the row's count rises by one and it is reinserted), then its count
  falls by one and it is reinserted; the pivot leaves the list.

`matsol` then eliminates in that order, for each pivot each row below it that has an element
in its column, top to bottom: `r = a[row][p] / a[p][p]`, `b[row] -= b[p] * r`, and
`a[row][c] -= a[p][c] * r` for the pivot row's elements right of the diagonal, left to
right. Back substitution runs from the last pivot up: `b[p] -= a[p][c] * b[c]` for its
elements right of the diagonal, then `b[p] /= a[p][p]`. "Below" and "right" follow the
elimination order; the solution of column c is left in `b[c]`.
"""

from __future__ import annotations

from dataclasses import dataclass

from portneuron.ir import F64, Var
from portneuron.ir import builder as b
from portneuron.ir.builder import KernelBuilder


@dataclass(frozen=True)
class Ordering:
    """The elimination order of a sparse matrix and its elements, fill-ins included."""

    pivots: tuple[int, ...]  # rows (= columns) in elimination order
    elements: frozenset[tuple[int, int]]  # (row, column), original numbering

    def later(self, i: int) -> tuple[int, ...]:
        """The rows (columns) after the i-th pivot, in elimination order."""
        return self.pivots[i + 1 :]


def elimination_order(n: int, elements: set[tuple[int, int]]) -> Ordering:
    """NEURON's `spar_minorder` on an n x n structure (the diagonal always exists)."""
    present = set(elements) | {(i, i) for i in range(n)}
    count = [sum(1 for c in range(n) if (r, c) in present) for r in range(n)]
    waiting: list[int] = []

    def insert(row: int) -> None:  # before the first row of at least its count
        at = next((k for k, r in enumerate(waiting) if count[r] >= count[row]), len(waiting))
        waiting.insert(at, row)

    def recount(row: int, change: int) -> None:
        waiting.remove(row)
        count[row] += change
        insert(row)

    for row in range(n):
        insert(row)
    pivots: list[int] = []
    remaining = list(range(n))  # not yet pivots, in their original order
    for _ in range(n):
        pivot = waiting[0]
        pivots.append(pivot)
        remaining.remove(pivot)
        right = [c for c in remaining if (pivot, c) in present]
        for row in [r for r in remaining if (r, pivot) in present]:
            for c in right:
                if (row, c) not in present:
                    present.add((row, c))
                    recount(row, +1)
            recount(row, -1)
        waiting.remove(pivot)
    return Ordering(tuple(pivots), frozenset(present))


def emit_solve(
    kb: KernelBuilder,
    ordering: Ordering,
    element: dict[tuple[int, int], str],
    rhs: list[str],
    scratch: str,
) -> None:
    """Emit `matsol`: solve in place, the matrix in the IR locals `element[(row, col)]` (one
    for every element of `ordering`), the right-hand side in `rhs[row]`, which holds the
    solution afterwards; `scratch` names a local for the row factors."""
    pivots, present = ordering.pivots, ordering.elements
    for i, p in enumerate(pivots):
        later = ordering.later(i)
        right = [c for c in later if (p, c) in present]
        for row in (r for r in later if (r, p) in present):
            r = kb.assign(scratch, b.div(Var(element[row, p], F64), Var(element[p, p], F64)))
            kb.assign(rhs[row], b.sub(Var(rhs[row], F64), b.mul(Var(rhs[p], F64), r)))
            for c in right:
                name = element[row, c]
                kb.assign(name, b.sub(Var(name, F64), b.mul(Var(element[p, c], F64), r)))
    for i in reversed(range(len(pivots))):
        p = pivots[i]
        for c in ordering.later(i):
            if (p, c) in present:
                value = b.mul(Var(element[p, c], F64), Var(rhs[c], F64))
                kb.assign(rhs[p], b.sub(Var(rhs[p], F64), value))
        kb.assign(rhs[p], b.div(Var(rhs[p], F64), Var(element[p, p], F64)))
