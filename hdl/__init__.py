"""Amaranth RTL of one ISAAC-style crossbar tile (``docs/arithmetic.md``).

``BLOCKS`` maps a block name to a factory taking an :class:`~arch.config.AccelConfig`; the Verilog
generator (``gen/``) emits one module ``aqua_<name>`` per entry.
"""

from .adc import ADCQuantizer
from .agu import RegionCropAGU
from .convtile import ConvTile, default_tile
from .crossbar import CrossbarMAC
from .datapath import Datapath
from .ima import IMA
from .imatile import IMATile
from .layouts import Phase
from .requant import MultiplierRequantizer, ShiftRoundRequantizer
from .shiftadd import ShiftAdd

__all__ = ["BLOCKS", "CrossbarMAC", "ADCQuantizer", "ShiftAdd", "Datapath", "Phase",
           "RegionCropAGU", "ConvTile", "IMA", "IMATile", "ShiftRoundRequantizer",
           "MultiplierRequantizer"]

BLOCKS = {
    "crossbar": CrossbarMAC,
    "adc": ADCQuantizer,
    "shiftadd": ShiftAdd,
    "datapath": Datapath,
    "agu": RegionCropAGU,
    "convtile": default_tile,    # the demo CNN's conv0 where it fits (default_geometry)
    # accumulator (acc_bits) -> output_bits: the two requantizers compared by `aqua quantize`
    "requant_shift": ShiftRoundRequantizer.from_config,
    "requant_mult": MultiplierRequantizer.from_config,
}
