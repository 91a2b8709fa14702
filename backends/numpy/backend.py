"""NumPy backend: runs IR kernels through the reference interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from portneuron.ir import Kernel, verify_kernel
from portneuron.ir.interpret import Program
from portneuron.ir.passes import fold_constants

from ..base import Backend


class NumpyBackend(Backend):
    name: ClassVar[str] = "numpy"
    device_kind: ClassVar[str] = "cpu"
    simd_width: ClassVar[int] = 1

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, f"NumPy {np.__version__} (reference)"

    def compile(self, kernel: Kernel, hot: bool = True) -> Program:
        return Program(fold_constants(verify_kernel(kernel)))

    def run(
        self, compiled: Program, args: Mapping[str, Any], lanes: int
    ) -> dict[str, dict[str, Any]]:
        return compiled.run(args, lanes)
