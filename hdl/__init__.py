"""Amaranth RTL of one ISAAC-style crossbar tile (``docs/arithmetic.md``).

``BLOCKS`` maps a block name to a factory taking an :class:`~aqua.config.AccelConfig`; the Verilog
generator (``gen/``) emits one module ``aqua_<name>`` per entry.
"""

from .adc import ADCQuantizer
from .agu import RegionCropAGU
from .crossbar import CrossbarMAC
from .datapath import Datapath
from .layouts import Phase
from .requant import MultiplierRequantizer, ShiftRoundRequantizer
from .shiftadd import ShiftAdd

__all__ = ["BLOCKS", "CrossbarMAC", "ADCQuantizer", "ShiftAdd", "Datapath", "Phase",
           "RegionCropAGU", "ShiftRoundRequantizer", "MultiplierRequantizer"]

BLOCKS = {
    "crossbar": CrossbarMAC,
    "adc": ADCQuantizer,
    "shiftadd": ShiftAdd,
    "datapath": Datapath,
    "agu": RegionCropAGU,
    # accumulator (acc_bits) -> output_bits: the two requantizers compared by `aqua quantize`
    "requant_shift": ShiftRoundRequantizer.from_config,
    "requant_mult": MultiplierRequantizer.from_config,
}
