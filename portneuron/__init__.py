"""portneuron: a performance-portable compute engine for NEURON models."""

__version__ = "0.1.0"
