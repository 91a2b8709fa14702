"""The opencl backend: the cuda backend's kernels in OpenCL C, run through pyopencl."""

from .backend import OpenclBackend

__all__ = ["OpenclBackend"]
