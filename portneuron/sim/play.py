"""Vector.play (continuous) as NEURON does it: a played variable follows a piecewise-linear
function of time, and the breakpoints arrive as events.

The events matter for bit-equality: between breakpoints the value is interpolated in the
bracketing interval, but once t passes the last breakpoint, or a breakpoint not yet
delivered, NEURON extrapolates along the interval that ends there (vrecord.cpp,
VecPlayContinuous::interpolate).
"""

from __future__ import annotations

import numpy as np

from portneuron.model import VecPlay


class Player:
    def __init__(self, play: VecPlay, target: np.ndarray) -> None:
        self.t, self.y = play.t_points, play.y
        self.target, self.instance = target, play.instance
        self.reset()

    def reset(self) -> None:
        """play_init: the first breakpoint is the next event."""
        self.ubound, self.last = 0, 0
        self.pending = len(self.t) > 0

    def deliver(self, until: float) -> None:
        """Deliver the breakpoint events due by `until`, each setting the value at its time."""
        while self.pending and self.t[self.ubound] <= until:
            tt = float(self.t[self.ubound])
            self.last = self.ubound
            if self.ubound < len(self.t) - 1:
                self.ubound += 1
            else:
                self.pending = False
            self.play(tt)

    def play(self, tt: float) -> None:
        if len(self.t):
            self.target[self.instance] = self.interpolate(tt)

    def interpolate(self, tt: float) -> float:
        t, y = self.t, self.y
        if tt >= t[self.ubound]:
            self.last = self.ubound
            if self.last == 0:
                return float(y[0])
        elif tt <= t[0]:
            self.last = 0
            return float(y[0])
        else:
            while tt < t[self.last]:
                self.last -= 1
            while tt >= t[self.last]:
                self.last += 1
        x0, x1 = float(y[self.last - 1]), float(y[self.last])
        t0, t1 = float(t[self.last - 1]), float(t[self.last])
        if t0 == t1:
            return (x0 + x1) / 2.0
        return x0 + (x1 - x0) * ((tt - t0) / (t1 - t0))
