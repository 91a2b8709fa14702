"""Backends: discovered through the `portneuron.backends` entry-point group, imported lazily.

A backend module is imported only when asked for by name, so `--backend numpy` never imports
llvmlite or pycuda. Every backend answers `availability()` with a reason instead of failing on
import when its hardware or libraries are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from .base import Backend, BackendUnavailable

GROUP = "portneuron.backends"


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str


def backend_names() -> list[str]:
    """Names of the registered backends, without importing any of them."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def _entry_point(name: str):
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep
    known = ", ".join(backend_names()) or "none (is portneuron installed?)"
    raise BackendUnavailable(f"unknown backend {name!r}; registered backends: {known}")


def backend_status(name: str) -> BackendStatus:
    """Whether backend `name` can run here, and if not, why."""
    try:
        cls = _entry_point(name).load()
    except BackendUnavailable as exc:
        return BackendStatus(name, False, str(exc))
    except ImportError as exc:
        return BackendStatus(name, False, f"cannot import: {exc}")
    ok, reason = cls.availability()
    return BackendStatus(name, ok, reason)


def load_backend(name: str) -> Backend:
    """An instance of backend `name`; `BackendUnavailable` names the reason if it cannot run."""
    status = backend_status(name)
    if not status.available:
        raise BackendUnavailable(f"backend {name!r} is unavailable: {status.reason}")
    return _entry_point(name).load()()


def emitter(stage: str) -> Backend:
    """A backend whose `emit` prints `stage`: one that renders source for a device
    (cuda, opencl) even where it cannot run; any other only where it can."""
    known = ["ir"]
    for name in backend_names():
        cls = _entry_point(name).load()
        if stage in cls.stages:
            return cls() if cls.emits_anywhere else load_backend(name)
        known += cls.stages
    raise BackendUnavailable(f"no backend emits {stage!r}; what can be emitted: {', '.join(known)}")


def best_backend() -> str:
    """The fastest backend that can run here: llvm where llvmlite runs, else numpy. Never
    cuda by default: a GPU is chosen by name (`--backend cuda`, `backend="cuda"`)."""
    for name in ("llvm", "numpy"):
        if name in backend_names() and backend_status(name).available:
            return name
    return "numpy"


__all__ = [
    "Backend",
    "BackendStatus",
    "BackendUnavailable",
    "best_backend",
    "emitter",
    "backend_names",
    "backend_status",
    "load_backend",
]
