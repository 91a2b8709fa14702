"""Building models without NEURON: cells from sections, networks of gids, the ringtest."""

from .cell import Cell, Section
from .network import Network, Place

__all__ = ["Cell", "Network", "Place", "Section"]
