"""The reference backend: interprets the IR with NumPy."""

from .backend import NumpyBackend

__all__ = ["NumpyBackend"]
