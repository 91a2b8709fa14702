"""Backends: portneuron's own, and others' through the `portneuron.backends` entry-point
group, imported lazily.

A backend module is imported only when asked for by name, so `--backend numpy` never imports
llvmlite or pycuda. Every backend answers `availability()` with a reason instead of failing on
import when its hardware or libraries are missing. Another package adds a backend with an
entry point in that group (`name = "package.module:Class"`); portneuron's own are in `OWN`,
so that a run on one of them does not read every installed package's metadata (importlib's
scan: 40 to 80 ms of a start-up).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from .base import Backend, BackendUnavailable

GROUP = "portneuron.backends"

#: portneuron's own backends: name -> "module:class".
OWN = {
    "numpy": "portneuron.backends.numpy:NumpyBackend",
    "llvm": "portneuron.backends.llvm:LlvmBackend",
    "cuda": "portneuron.backends.cuda:CudaBackend",
    "opencl": "portneuron.backends.opencl:OpenclBackend",
}


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str


@cache
def _others() -> dict[str, str]:
    """Other packages' backends, from their entry points (one of portneuron's own names
    among them is ignored)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.name not in OWN}


def backend_names() -> list[str]:
    """Names of the registered backends, without importing any of them."""
    return sorted({*OWN, *_others()})


def _backend_class(name: str) -> type[Backend]:
    """The class of backend `name`, its module imported (ImportError where it cannot be)."""
    where = OWN.get(name) or _others().get(name)
    if where is None:
        raise BackendUnavailable(
            f"unknown backend {name!r}; registered backends: {', '.join(backend_names())}"
        )
    module, _, attribute = where.partition(":")
    found = getattr(importlib.import_module(module), attribute, None)
    if found is None:  # a package's entry point that names no class: a reason, as an import
        raise ImportError(f"{module} has no {attribute!r}")
    return found


def backend_status(name: str) -> BackendStatus:
    """Whether backend `name` can run here, and if not, why."""
    try:
        cls = _backend_class(name)
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
    return _backend_class(name)()


def emitter(stage: str) -> Backend:
    """A backend whose `emit` prints `stage`: one that renders source for a device
    (cuda, opencl) even where it cannot run; any other only where it can."""
    known = ["ir"]
    for name in backend_names():
        cls = _backend_class(name)
        if stage in cls.stages:
            return cls() if cls.emits_anywhere else load_backend(name)
        known += cls.stages
    raise BackendUnavailable(f"no backend emits {stage!r}; what can be emitted: {', '.join(known)}")


def best_backend() -> str:
    """The fastest backend that can run here: llvm where llvmlite runs, else numpy. Never
    cuda by default: a GPU is chosen by name (`--backend cuda`, `backend="cuda"`)."""
    for name in ("llvm", "numpy"):
        if backend_status(name).available:
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
