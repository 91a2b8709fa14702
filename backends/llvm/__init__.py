"""The llvm backend: IR kernels compiled for the host CPU with llvmlite."""

from .backend import LlvmBackend

__all__ = ["LlvmBackend"]
