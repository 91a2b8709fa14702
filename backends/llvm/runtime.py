"""Compiled kernels: each a shared library of its own (or, without a linker, in the process's
one MCJIT engine), their cache on disk, and how kernels take their arguments: how the llvm
backend compiles and runs what it renders."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Container, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import portneuron.ir
from portneuron.ir import F64, Kernel
from portneuron.ir.types import NUMPY_DTYPES

from portneuron.interrupts import deferred

from ..base import dumping


def cache_dir() -> Path:
    """Where compiled kernels are kept between runs (PORTNEURON_CACHE, else ~/.cache)."""
    root = os.environ.get("PORTNEURON_CACHE") or Path.home() / ".cache" / "portneuron"
    return Path(root) / "llvm"


@cache
def _lowering() -> str:
    """A digest of the code that turns IR into machine code: this backend's, the IR's,
    llvmlite's version."""
    import llvmlite

    digest = hashlib.sha256(llvmlite.__version__.encode())
    for package in (Path(__file__).parent, Path(portneuron.ir.__file__).parent):
        for path in sorted(package.rglob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


#: /proc/cpuinfo's fields that name a processor and its features (x86, Arm); the others
#: (its clock, its number) vary from core to core and moment to moment.
CPU_FIELDS = (
    "vendor_id", "cpu family", "model", "model name", "stepping", "flags", "CPU implementer",
    "CPU architecture", "CPU variant", "CPU part", "CPU revision", "Features",
)  # fmt: skip


def host() -> tuple[str, str, str]:
    """LLVM's triple, CPU name and features for this machine: what compiled kernels are
    for, and part of their key. Asking LLVM loads llvmlite's library (35 ms, 36 MiB mapped),
    so the answer is kept in the cache by a digest of what the operating system says of the
    processor (/proc/cpuinfo's first processor's fields that name it and its features) and
    llvmlite's version; a machine that says nothing of it asks LLVM every time."""
    import llvmlite

    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n", 1)[0]
    except OSError:
        first = ""
    said = sorted(
        line for line in first.splitlines() if line.split(":", 1)[0].strip() in CPU_FIELDS
    )
    path = None
    if said:
        key = "\n".join([llvmlite.__version__, sys.platform, *said])
        path = cache_dir() / f"host-{hashlib.sha256(key.encode()).hexdigest()[:24]}.txt"
        try:
            known = path.read_text().split("\n")
            if len(known) == 4 and known[3] == "end":  # whole (written, then renamed)
                return known[0], known[1], known[2]
        except OSError:
            pass
    import llvmlite.binding as llvm

    answer = llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features()
    answer = answer[0], answer[1], answer[2].flatten()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text("\n".join([*answer, "end"]))
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time
    return answer


def slot_count(kernel: Kernel) -> int:
    """Argument slots of a kernel: one per parameter, one per stream field and count."""
    return len(kernel.params) + sum(len(s.fields) + 1 for s in kernel.streams)


def linker() -> str | None:
    """The linker that makes a compiled kernel a shared library (PORTNEURON_LINKER, else
    `ld` where the system has one, on Linux); None: kernels are loaded in the process by
    MCJIT instead (PORTNEURON_LINKER=none)."""
    chosen = os.environ.get("PORTNEURON_LINKER", "ld" if sys.platform == "linux" else "none")
    return None if chosen in ("", "none") else shutil.which(chosen)


class Jit:
    """Compiled kernels for the host CPU. A kernel's object is linked into a shared library
    of its own (with `linker`), kept on disk by the hash of its LLVM IR and target and
    opened with dlopen: a run whose kernels are all there neither compiles nor starts
    LLVM's JIT. Without a linker, one MCJIT engine for the process loads the objects (kept
    on disk alike). Functions in memory by name."""

    _instance: Jit | None = None

    def __init__(self) -> None:
        self.triple, self.cpu, self.features = host()
        self.linker = linker()
        self.suffix = ".so" if self.linker else ".o"
        self.addresses: dict[str, int] = {}
        self.libraries: list[ctypes.CDLL] = []  # open for the process: their code runs
        self.link_failed = False
        self.hits = 0
        self.seconds = 0.0  # spent compiling (or loading from the cache)

    @classmethod
    def get(cls) -> Jit:
        if cls._instance is None:
            cls._instance = Jit()
        return cls._instance

    @functools.cached_property
    def llvm(self):
        """llvmlite's binding to LLVM, loaded where a kernel is compiled (a run whose
        kernels are all in the cache and linked needs none of it)."""
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        return llvm

    @functools.cached_property
    def machine(self):
        """The target machine for the host: position-independent code for shared libraries
        where there is a linker, else MCJIT's."""
        shared = self.linker is not None
        return self.llvm.Target.from_triple(self.triple).create_target_machine(
            cpu=self.cpu, features=self.features, opt=3, reloc="pic" if shared else "default",
            codemodel="default" if shared else "jitdefault", jit=not shared,
        )  # fmt: skip

    @functools.cached_property
    def engine(self):
        """The MCJIT engine, made only where kernels are not linked: it resolves the C
        library's functions by the names the generated code calls them."""
        from .render import OPAQUE_LIBM, libm_symbol

        llvm = self.llvm
        libm = _libm()
        for name in OPAQUE_LIBM:  # the C library's own functions, under names LLVM cannot know
            llvm.add_symbol(
                libm_symbol(name), ctypes.cast(getattr(libm, name), ctypes.c_void_p).value
            )
        empty = llvm.parse_assembly("")
        engine = llvm.create_mcjit_compiler(empty, self.machine)
        engine.remove_module(empty)  # else the first finalize compiles it, codegen and all
        engine.set_object_cache(self._store)  # written here, read by _load
        return engine

    @functools.cached_property
    def shims(self) -> bytes:
        """The object that gives each shared library the C library's functions under the
        names the generated code calls them by: `portneuron.exp` jumps to `exp`."""
        from .render import OPAQUE_LIBM, libm_symbol

        lines = []
        for name in sorted(OPAQUE_LIBM):
            args = ["double %a", "double %b"][: 2 if name in ("atan2", "pow") else 1]
            lines += [
                f'define double @"{libm_symbol(name)}"({", ".join(args)}) {{',
                f"  %r = tail call double @{name}({', '.join(args)}) #0",
                "  ret double %r",
                "}",
                f"declare double @{name}({', '.join(['double'] * len(args))})",
            ]
        lines.append("attributes #0 = { nobuiltin }")
        module = self.llvm.parse_assembly("\n".join(lines))
        module.triple = self.triple
        return self.machine.emit_object(module)

    def _write(self, path: Path, data: bytes) -> None:
        """`data` into the cache, its digest after it (a damaged or cut file must not reach
        a loader, which crashes on one)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            _seal(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _store(self, module, buffer: bytes) -> None:
        """A module MCJIT compiled, into the cache."""
        if module.name.startswith("pn_"):
            self._write(cache_dir() / f"{module.name}.o", buffer)

    def _cached(self, name: str) -> bytes | None:
        """The file of function `name` from the cache, if it is there whole."""
        try:
            data = (cache_dir() / f"{name}{self.suffix}").read_bytes()
        except OSError:
            return None
        body, digest = data[:-32], data[-32:]
        return body if len(data) > 32 and hashlib.sha256(body).digest() == digest else None

    def name(self, kernel: Kernel, options: str) -> str:
        """The name of `kernel`'s function: the hash of the kernel as given (before the
        backend verifies and folds it), `options`, the lowering's own code (the IR's
        verifier and passes with it) and the target, which is also the key of the disk
        cache."""
        key = "\0".join((repr(kernel), options, _lowering(), self.triple, self.cpu, self.features))
        return f"pn_{hashlib.sha256(key.encode()).hexdigest()[:24]}"

    def add_kernel(self, name: str, lower: Callable[[str], str]) -> int:
        """The address of function `name`, `lower(name)` giving its module's text: a kernel
        compiled before, by any process, is loaded from the cache without being lowered
        again."""
        if name in self.addresses:
            return self.addresses[name]
        start = time.perf_counter()
        try:
            if not (dumping("llvm") or dumping("asm")):
                address = self._load(name)
                if address:
                    self.hits += 1
                    return address
            return self._add(lower(name), name)
        finally:
            self.seconds += time.perf_counter() - start

    def _load(self, name: str) -> int:
        """Function `name` from the cache, 0 where it is not there."""
        data = self._cached(name)
        if data is None:
            return 0
        if self.linker:
            return self._open(cache_dir() / f"{name}.so", name)
        self.engine.add_object_file(self.llvm.ObjectFileRef.from_data(data))
        return self._from_engine(name)

    def _from_engine(self, name: str) -> int:
        """Function `name`, added to the engine (an object or a module): compiled or
        linked there. A stop waits for the end: compiling calls the object cache's writer,
        Python called from C through ctypes, which prints and drops an exception raised in
        it (a Ctrl-C or SIGTERM raised there was lost, and the run went on)."""
        with deferred():
            self.engine.finalize_object()
        self.addresses[name] = self.engine.get_function_address(name)
        return self.addresses[name]

    def _open(self, path: Path, name: str) -> int:
        """Function `name` from shared library `path`, 0 where it cannot be opened."""
        try:
            library = ctypes.CDLL(str(path))
            address = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        except (OSError, AttributeError):
            return 0
        self.libraries.append(library)
        self.addresses[name] = address
        return address

    def _add(self, text: str, name: str) -> int:
        llvm = self.llvm
        module = llvm.parse_assembly(text)
        module.name = name
        module.verify()
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        builder = llvm.create_pass_builder(self.machine, options)
        builder.getModulePassManager().run(module, builder)
        if dumping("llvm"):
            print(f"; ---- {name} (optimised)\n{module}", file=sys.stderr)
        if dumping("asm"):
            print(self.machine.emit_assembly(module), file=sys.stderr)
        if self.linker and not self.link_failed:
            obj = self.machine.emit_object(module)
            address = self._link(obj, name)
            if address:
                return address
            self.engine.add_object_file(self.llvm.ObjectFileRef.from_data(obj))
        else:
            self.engine.add_module(module)
        return self._from_engine(name)

    def _link(self, obj: bytes, name: str) -> int:
        """Function `name` from its object, linked with the shims into a shared library that
        goes into the cache and is opened there (where the cache cannot be written, from a
        folder of this process's); 0 where the linker fails (it says why, once)."""
        with tempfile.TemporaryDirectory() as folder:
            kernel, shims = Path(folder, "kernel.o"), Path(folder, "shims.o")
            kernel.write_bytes(obj)
            shims.write_bytes(self.shims)
            library = cache_dir() / f"{name}.so"
            built = library.with_suffix(f".{os.getpid()}.tmp")
            try:
                library.parent.mkdir(parents=True, exist_ok=True)
                built.touch()
            except OSError:
                library = built = Path(folder, f"{name}.so")
            command = [self.linker, "-shared", "-o", str(built), str(kernel), str(shims), "-lm"]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                built.unlink(missing_ok=True)
                if not self.link_failed:
                    why = (done.stderr.strip().splitlines() or ["no message"])[0]
                    print(f"portneuron: {self.linker} cannot link compiled kernels ({why}); "
                          f"they are loaded by LLVM's JIT instead", file=sys.stderr)  # fmt: skip
                self.link_failed = True
                return 0
            if built != library:
                _seal(built, library)
            return self._open(library, name)  # opened before its folder goes: it stays mapped

    def assembly(self, text: str) -> str:
        module = self.llvm.parse_assembly(text)
        options = self.llvm.create_pipeline_tuning_options(speed_level=3)
        builder = self.llvm.create_pass_builder(self.machine, options)
        builder.getModulePassManager().run(module, builder)
        return str(module), self.machine.emit_assembly(module)


def _seal(tmp: Path, path: Path) -> None:
    """File `tmp` into the cache as `path`, whole, its digest after it (_cached checks it)."""
    with tmp.open("ab") as out:
        out.write(hashlib.sha256(tmp.read_bytes()).digest())
    os.replace(tmp, path)


@cache
def _libm() -> ctypes.CDLL:
    """The C library's maths: the process's own where Python links it (no search)."""
    from .render import OPAQUE_LIBM

    process = ctypes.CDLL(None)
    if all(hasattr(process, name) for name in OPAQUE_LIBM):
        return process
    return ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")


#: A parameter's slot, its name, its array's NumPy type (None: a scalar) and whether a
#: scalar is a double: what fill_slots writes, worked out once per kernel (slot_plan).
Slot = tuple[int, str, Any, bool]


def slot_plan(kernel: Kernel, names: Container[str] | None = None) -> list[Slot]:
    """The slots of the kernel's parameters (those `names` names, else all), for
    fill_slots."""
    return [
        (k, p.name, NUMPY_DTYPES[p.dtype] if p.is_array else None, p.dtype == F64)
        for k, p in enumerate(kernel.params)
        if names is None or p.name in names
    ]


def fill_slots(
    kernel: Kernel,
    args: Mapping[str, Any],
    slots: np.ndarray,
    last: list[Any] | None = None,
    plan: Sequence[Slot] | None = None,
) -> None:
    """Write the kernel's parameters into its argument slots: an array's address, a
    scalar's value. With `last` (the values passed before), an array seen before keeps its
    slot; the arrays are held there, so their addresses stay valid while cached. `plan`
    (slot_plan's): those parameters only, else all."""
    float_slots = slots.view(np.float64)
    for k, name, dtype, double in slot_plan(kernel) if plan is None else plan:
        value = args[name]
        if dtype is not None:
            if last is not None and value is last[k]:
                continue
            if not isinstance(value, np.ndarray) or value.dtype != dtype:
                raise TypeError(f"{kernel.name}: {name!r} needs a NumPy {dtype} array")
            if not value.flags.c_contiguous:
                raise TypeError(f"{kernel.name}: {name!r} must be contiguous")
            slots[k] = value.ctypes.data
            if last is not None:
                last[k] = value
        elif double:
            float_slots[k] = value
        else:
            slots[k] = int(value)
