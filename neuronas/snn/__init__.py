"""Spiking networks with the crossbar in the loop (torch; knows nothing of the search)."""

import logging

# torch warns "Triton not available" on every CPU-only import (SpikingJelly probes for it);
# nothing here uses Triton, and the line would break the search's live progress display.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from neuronas.snn._kernels import set_draws_ahead  # noqa: E402
from neuronas.snn.build import SpikingNetwork, build, crossbar_layers  # noqa: E402
from neuronas.snn.crossbar import (  # noqa: E402
    CrossbarConfig,
    CrossbarConv2d,
    CrossbarConvTranspose2d,
    CrossbarLinear,
    DeviceModel,
    adc_quantize,
    quantize_weight,
    sense_amp,
)
from neuronas.snn.neurons import LDLIFNode, ld_lif_step, make_neuron  # noqa: E402

__all__ = [
    "CrossbarConfig",
    "CrossbarConv2d",
    "CrossbarConvTranspose2d",
    "CrossbarLinear",
    "DeviceModel",
    "LDLIFNode",
    "SpikingNetwork",
    "adc_quantize",
    "build",
    "crossbar_layers",
    "ld_lif_step",
    "make_neuron",
    "quantize_weight",
    "sense_amp",
    "set_draws_ahead",
]
