"""neuronas: hardware-aware spiking neural architecture search for compute-in-memory chips."""

from neuronas.errors import NeuronasError

__version__ = "0.1.0"
__all__ = ["NeuronasError", "__version__"]
