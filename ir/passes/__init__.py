"""IR -> IR passes, one per module."""

from .fold_constants import fold_constants

__all__ = ["fold_constants"]
