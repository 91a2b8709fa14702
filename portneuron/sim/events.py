"""The event queue: NetCon deliveries and self-events, in time order.

Events with equal times leave in the order they were queued. An event names its target
(mechanism set and instance), its flag (0 for a NetCon event, the `net_send` flag for a
self-event) and the weight row it carries (the NetCon's; a self-event carries the row of the
event that sent it, or the set's spare row when sent from INITIAL).
"""

from __future__ import annotations

import heapq
from typing import NamedTuple


class Event(NamedTuple):
    t: float  # [ms]
    seq: int
    target_set: int
    instance: int
    flag: float
    row: int


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, t: float, target_set: int, instance: int, flag: float, row: int) -> None:
        heapq.heappush(self._heap, Event(t, self._seq, target_set, instance, flag, row))
        self._seq += 1

    def pop_due(self, until: float) -> Event | None:
        """The earliest event with time <= `until`, removed from the queue; else None."""
        if self._heap and self._heap[0].t <= until:
            return heapq.heappop(self._heap)
        return None

    def earliest(self) -> float:
        return self._heap[0].t if self._heap else float("inf")

    def clear(self) -> None:
        self._heap.clear()
        self._seq = 0
