"""The cuda backend: IR kernels as CUDA C, compiled and launched through PyCUDA."""

from .backend import CudaBackend

__all__ = ["CudaBackend"]
