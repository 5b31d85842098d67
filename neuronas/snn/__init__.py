"""Spiking networks with the crossbar in the loop (torch; knows nothing of the search)."""

from neuronas.snn.build import SpikingNetwork, build, crossbar_layers
from neuronas.snn.crossbar import (
    CrossbarConfig,
    CrossbarConv2d,
    CrossbarConvTranspose2d,
    CrossbarLinear,
    DeviceModel,
    adc_quantize,
    quantize_weight,
    sense_amp,
)
from neuronas.snn.neurons import LDLIFNode, ld_lif_step, make_neuron

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
]
