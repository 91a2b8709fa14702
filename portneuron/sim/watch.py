"""WATCH conditions at run time, in NEURON's order (the rules: portneuron.nmodl.watch).

NEURON keeps one list of active conditions, each moved to its end when (re)activated, and
checks them in that order at the start of every step; the events of those that fire enter
its queue in that order, at the step's t, and events of equal times leave the queue in the
order they entered it. So each activation here takes the next number of one counter (its
rank), and the conditions that fire at a check are queued by rank: the order of NEURON's
list, across instances and mechanisms. The order matters where one instance has several
conditions fire at once: the first event's NET_RECEIVE may activate anew, which drops the
others' pending events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .binding import BoundMechanism
from .events import EventQueue


class Watches:
    """The active WATCH conditions of every mechanism set that has some."""

    def __init__(self, mechanisms: Sequence[BoundMechanism]) -> None:
        self.sets = [m for m in mechanisms if m.has("watch")]
        # per set, each instance's conditions' ranks (0: never activated)
        self.rank = {m.index: np.zeros(len(m.args["watch.active"]), np.int64) for m in self.sets}
        self.counter = 0

    def reset(self) -> None:
        """No condition active (NEURON's finitialize empties its lists)."""
        for m in self.sets:
            m.args["watch.active"][:] = 0.0
            m.args["watch.above"][:] = 0.0
            self.rank[m.index][:] = 0
        self.counter = 0

    def activate(self, bound: BoundMechanism, records: dict, queue: EventQueue) -> None:
        """The activations one NET_RECEIVE call made, in the order it made them: its first
        one for an instance deactivates all that instance's conditions and drops their
        pending events."""
        width = len(bound.set.mechanism.watch_flags)
        active, above = bound.args["watch.active"], bound.args["watch.above"]
        rank = self.rank[bound.index]
        cleared: set[int] = set()
        for instance, k, is_above in zip(
            records["instance"].tolist(), records["watch"].tolist(), records["above"].tolist()
        ):
            first = instance * width
            if instance not in cleared:
                cleared.add(instance)
                active[first : first + width] = 0.0
                queue.drop_watch_events(bound.index, instance)
            self.counter += 1
            active[first + k], above[first + k] = 1.0, float(is_above)
            rank[first + k] = self.counter

    def check(self, t: float, dt: float, queue: EventQueue) -> None:
        """Check every active condition at the start of a step; queue the events of those
        that fired, at t, in NEURON's order."""
        fired = []
        for bound in self.sets:
            out = bound.run("watch", t, dt).get("fired")
            if out is None or not len(out["instance"]):
                continue
            width = len(bound.set.mechanism.watch_flags)
            flags = bound.set.mechanism.watch_flags
            ranks = self.rank[bound.index]
            for instance, k in zip(out["instance"].tolist(), out["watch"].tolist()):
                fired.append((int(ranks[instance * width + k]), bound, instance, flags[k]))
        fired.sort(key=lambda f: f[0])
        for _, bound, instance, flag in fired:
            # no weights: NEURON calls NET_RECEIVE with none; the spare row stands in
            queue.push(t, bound.index, instance, flag, bound.spare_row, watch=True)
