"""The event queue: NetCon deliveries and self-events, in time order.

Events with equal times leave in the order they were queued. An event names its target
(mechanism set and instance), its flag (0 for a NetCon event, the `net_send` flag for a
self-event) and the weight row it carries (the NetCon's; a self-event carries the row of the
event that sent it, or the set's spare row when sent from INITIAL).

An instance's latest self-event, while pending, is movable (NMODL's `net_move`): it leaves
at the new time, as if queued then, with its flag and row. An instance's pending WATCH
events can be dropped (NEURON removes them when the instance activates its WATCH
conditions anew).
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
        self._movable: dict[tuple[int, int], Event] = {}  # (set, instance) -> self-event
        self._watching: dict[tuple[int, int], list[Event]] = {}  # pending WATCH events
        self._dropped: set[int] = set()  # seqs of events moved away: skipped when popped

    def __len__(self) -> int:
        return len(self._heap) - len(self._dropped)

    def push(
        self,
        t: float,
        target_set: int,
        instance: int,
        flag: float,
        row: int,
        self_event: bool = False,
        watch: bool = False,
    ) -> None:
        event = Event(t, self._seq, target_set, instance, flag, row)
        heapq.heappush(self._heap, event)
        self._seq += 1
        if self_event:
            self._movable[(target_set, instance)] = event
        if watch:
            self._watching.setdefault((target_set, instance), []).append(event)

    def move(self, target_set: int, instance: int, t: float) -> bool:
        """Move the instance's pending self-event to `t`; False if it has none."""
        event = self._movable.get((target_set, instance))
        if event is None:
            return False
        self._dropped.add(event.seq)
        self.push(t, target_set, instance, event.flag, event.row, self_event=True)
        return True

    def drop_watch_events(self, target_set: int, instance: int) -> None:
        """Drop the instance's pending WATCH events."""
        for event in self._watching.pop((target_set, instance), ()):
            self._dropped.add(event.seq)

    def _skip_dropped(self) -> None:
        while self._heap and self._heap[0].seq in self._dropped:
            self._dropped.discard(heapq.heappop(self._heap).seq)

    def pop_due(self, until: float) -> Event | None:
        """The earliest event with time <= `until`, removed from the queue; else None."""
        self._skip_dropped()
        if self._heap and self._heap[0].t <= until:
            event = heapq.heappop(self._heap)
            key = (event.target_set, event.instance)
            if self._movable.get(key) is event:
                del self._movable[key]
            pending = self._watching.get(key) if self._watching else None
            if pending and event in pending:
                pending.remove(event)
                if not pending:
                    del self._watching[key]
            return event
        return None

    def earliest(self) -> float:
        self._skip_dropped()
        return self._heap[0].t if self._heap else float("inf")

    def clear(self) -> None:
        self._heap.clear()
        self._movable.clear()
        self._watching.clear()
        self._dropped.clear()
        self._seq = 0
