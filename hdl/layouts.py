"""Payload layouts of the datapath, defined once from an :class:`~arch.config.AccelConfig`.

The RTL uses these layouts for its ports; the cocotb testbenches use the very same layouts (field
offsets and widths) to pack stimulus and unpack observations. No bit position is written down
anywhere else.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from arch import contract
from arch.config import AccelConfig
from arch.contract import FRACTION_BITS
from arch.geometry import ConvGeometry, Mapping

__all__ = ["Phase", "weight_write_layout", "input_layout", "output_layout",
           "layer_config_layout", "obs_layout", "index_bits", "xsum_bits", "step_bits",
           "chunk_bits", "plan_bits", "agu_config_layout", "agu_address_layout",
           "FRACTION_BITS",
           "tile_setup_layout", "tile_weight_write_layout", "tile_layer_layout",
           "tile_pixel_layout", "tile_output_layout", "tile_read_layout",
           "ima_weight_write_layout", "ima_input_layout", "ima_layer_layout",
           "ima_output_layout", "ima_tile_weight_write_layout", "ima_tile_layer_layout"]


class Phase(enum.Enum, shape=contract.PHASE_BITS):
    """State of the datapath controller: what the *next* clock edge does
    (see ``docs/arithmetic.md``, "Timing"). The codes are :mod:`arch.contract`'s, which the
    golden trace uses as plain integers."""
    IDLE = contract.PHASE_IDLE    #: waiting for an input vector
    XBAR = contract.PHASE_XBAR    #: forming column sums (one row group per clock)
    ADC = contract.PHASE_ADC      #: converting columns (adc.columns_per_cycle per clock) and shift-adding
    FINAL = contract.PHASE_FINAL  #: correction, bias, FlexPoint shift, ReLU, saturation
    OUT = contract.PHASE_OUT      #: output vector valid, waiting for ready
    XBAR_ADC = contract.PHASE_XBAR_ADC  #: overlapped stage: ADC of chunk t, crossbar of t+1


def index_bits(count: int) -> int:
    """Width of an index into ``count`` items (at least 1)."""
    return max((count - 1).bit_length(), 1)


def xsum_bits(cfg: AccelConfig) -> int:
    """Signed width of Σ_r x[r] accumulated over the input chunks."""
    return (cfg.rows * ((1 << cfg.input_bits) - 1)).bit_length() + 2


def step_bits(cfg: AccelConfig) -> int:
    return index_bits(max(cfg.xbar_steps, cfg.adc_steps))


def chunk_bits(cfg: AccelConfig) -> int:
    return index_bits(cfg.input_cycles)


def _input_shape(cfg: AccelConfig):
    return signed(cfg.input_bits) if cfg.input_signed else unsigned(cfg.input_bits)


def _weight_shape(cfg: AccelConfig):
    return signed(cfg.weight_bits) if cfg.weight_signed else unsigned(cfg.weight_bits)


def weight_write_layout(cfg: AccelConfig) -> data.StructLayout:
    """One weight write: the weight of ``row`` for output ``group``, and the flip flags of the
    group's ``slices`` columns (flag bit ``s`` belongs to slice ``s``)."""
    return data.StructLayout({
        "row":   index_bits(cfg.rows),
        "group": index_bits(cfg.outputs),
        "value": _weight_shape(cfg),
        "flags": cfg.slices,
    })


def input_layout(cfg: AccelConfig) -> data.StructLayout:
    """One input vector: an activation per crossbar row (row 0 in the low bits), and the
    vector's first chunk ``first_chunk`` (above ``x``; ``docs/arithmetic.md`` section 8):
    chunks ``0 .. first_chunk - 1`` are skipped, which is exact when they are 0 in every row
    (inputs reduced to ``p_max`` bits, ``first_chunk = floor((Bx - p_max) / d)``). 0 streams
    every chunk."""
    return data.StructLayout({"x": data.ArrayLayout(_input_shape(cfg), cfg.rows),
                              "first_chunk": chunk_bits(cfg)})


def output_layout(cfg: AccelConfig) -> data.StructLayout:
    """One output vector: a saturated result per output group."""
    return data.StructLayout({"y": data.ArrayLayout(signed(cfg.output_bits), cfg.outputs)})


def layer_config_layout(cfg: AccelConfig) -> data.StructLayout:
    """Run-time layer settings, held steady by the host while vectors stream."""
    return data.StructLayout({
        "shift": signed(cfg.shift_bits),
        "relu":  1,
        "bias":  data.ArrayLayout(signed(cfg.bias_bits), cfg.outputs),
    })


def obs_layout(cfg: AccelConfig) -> data.StructLayout:
    """Every internal register the golden cycle trace predicts, exposed for co-simulation.
    With ``[pipeline] overlap`` it ends with the sample-and-hold bank (``held``, the column
    sums the ADC converts, and ``held_insum``); without, the layout is unchanged."""
    held = {"held": data.ArrayLayout(unsigned(cfg.read_bits), cfg.cols),
            "held_insum": unsigned(cfg.insum_bits)} if cfg.pipeline_overlap else {}
    return data.StructLayout({
        "phase":     Phase,
        "chunk":     chunk_bits(cfg),
        "step":      step_bits(cfg),
        "col_sum":   data.ArrayLayout(unsigned(cfg.read_bits), cfg.cols),
        "insum":     unsigned(cfg.insum_bits),
        "adc_valid": 1,
        "adc_code":  data.ArrayLayout(unsigned(cfg.adc_bits), cfg.adc_columns_per_cycle),
        "acc":       data.ArrayLayout(signed(cfg.acc_bits), cfg.outputs),
        "xsum":      signed(xsum_bits(cfg)),
        **held,
    })


def agu_config_layout(max_height: int, max_width: int) -> data.StructLayout:
    """Run-time configuration of the :class:`~hdl.agu.RegionCropAGU`: the map size and the
    kept window ``[r0, r1) x [c0, c1)`` (computed by the host with ``golden.crop``). Each
    field holds values up to ``max_height`` (rows) or ``max_width`` (columns) inclusive."""
    hb, wb = max_height.bit_length(), max_width.bit_length()
    return data.StructLayout({
        "height": hb, "width": wb,
        "r0": hb, "r1": hb,
        "c0": wb, "c1": wb,
    })


def agu_address_layout(max_height: int, max_width: int) -> data.StructLayout:
    """One address of the AGU's output stream: a kept input position, its row-major linear
    address ``row*width + col`` and the first/last flags of the run."""
    return data.StructLayout({
        "row":    index_bits(max_height),
        "col":    index_bits(max_width),
        "linear": index_bits(max_height * max_width),
        "first":  1,
        "last":   1,
    })


# -- ConvTile ---------------------------------------------------------------------------------

def plan_bits(cfg: AccelConfig) -> int:
    """Width of one band's input bit width in a precision plan: ``bitlength(Bx)`` (holds
    ``0 .. input_bits``)."""
    return cfg.input_bits.bit_length()


def tile_setup_layout(cfg: AccelConfig, geom: ConvGeometry) -> data.StructLayout:
    """Run-time configuration of one :class:`~hdl.convtile.ConvTile` image: the input map size
    and either an explicit kept window (``mode = 0``: ``r0, r1, c0, c1``) or a crop vector and
    fraction (``mode = 1``: ``crop`` bits ``top<<3 | bottom<<2 | left<<1 | right`` as
    ``golden.crop.crop_index``, ``fraction = code / 2**FRACTION_BITS``), or a precision plan
    (``plan = 1``, which overrides ``mode``: the border bands of ``fraction`` get the input bit
    widths ``bits[0..3]`` = top, bottom, left, right, each in ``[0, input_bits]``). The plan
    fields sit above the others, so a setup word without them is unchanged."""
    hb, wb = geom.height.bit_length(), geom.width.bit_length()
    return data.StructLayout({
        "height": hb, "width": wb,
        "mode": 1, "crop": 4, "fraction": FRACTION_BITS,
        "r0": hb, "r1": hb,
        "c0": wb, "c1": wb,
        "plan": 1,
        "bits": data.ArrayLayout(plan_bits(cfg), 4),
    })


def tile_weight_write_layout(cfg: AccelConfig, geom: ConvGeometry) -> data.StructLayout:
    """One weight write of a tile: :func:`weight_write_layout` plus the crossbar ``xbar``
    (output-channel group of ``cfg.outputs`` channels) it goes to."""
    return data.StructLayout({
        "xbar": index_bits(Mapping(cfg, geom).groups),
        **{name: field.shape for name, field in weight_write_layout(cfg)},
    })


def tile_layer_layout(cfg: AccelConfig, geom: ConvGeometry) -> data.StructLayout:
    """Run-time layer settings of a tile: :func:`layer_config_layout` with a bias for every
    output of every crossbar (channel ``o`` is output ``o % outputs`` of crossbar
    ``o // outputs``)."""
    return data.StructLayout({
        "shift": signed(cfg.shift_bits),
        "relu":  1,
        "bias":  data.ArrayLayout(signed(cfg.bias_bits), Mapping(cfg, geom).padded_outputs),
    })


def tile_pixel_layout(cfg: AccelConfig, geom: ConvGeometry) -> data.StructLayout:
    """One input pixel: the activation of every input channel (channel 0 in the low bits);
    also the word of the tile's input feature-map memory."""
    return data.StructLayout({"x": data.ArrayLayout(_input_shape(cfg), geom.in_channels)})


def tile_output_layout(cfg: AccelConfig, geom: ConvGeometry) -> data.StructLayout:
    """One output pixel: the result of every output channel; the word of the output memory."""
    return data.StructLayout({"y": data.ArrayLayout(signed(cfg.output_bits),
                                                    geom.out_channels)})


def tile_read_layout(geom: ConvGeometry) -> data.StructLayout:
    """An output-memory read address: output ``row`` and ``col``."""
    return data.StructLayout({"row": index_bits(geom.out_height),
                              "col": index_bits(geom.out_width)})


# -- IMA (several crossbars reduced, docs/arithmetic.md section 9) -------------------------------

def ima_weight_write_layout(cfg: AccelConfig, crossbars: int) -> data.StructLayout:
    """One weight write of an IMA: :func:`weight_write_layout` plus the crossbar ``xbar``."""
    return data.StructLayout({"xbar": index_bits(crossbars),
                              "w": weight_write_layout(cfg)})


def ima_input_layout(cfg: AccelConfig, crossbars: int) -> data.StructLayout:
    """One IMA input: an :func:`input_layout` vector per crossbar (its ``rows``-row slice)."""
    return data.StructLayout({"xbar": data.ArrayLayout(input_layout(cfg), crossbars)})


def ima_layer_layout(cfg: AccelConfig, lanes: int) -> data.StructLayout:
    """Run-time settings of an IMA: shift, ReLU, the bias of each lane's ``outputs`` outputs,
    and whether the pass ``first`` starts the sums (else the ``psum`` input is added) and
    ``last`` completes them (bias and the output stage)."""
    return data.StructLayout({
        "shift": signed(cfg.shift_bits),
        "relu":  1,
        "bias":  data.ArrayLayout(signed(cfg.bias_bits), lanes * cfg.outputs),
        "first": 1,
        "last":  1,
    })


def ima_output_layout(cfg: AccelConfig, lanes: int, sum_bits: int) -> data.StructLayout:
    """One IMA output: per lane and output, the finished ``y`` (``output_bits``) and the
    reduced sum without bias (``sum_bits``, for the next pass's ``psum``)."""
    return data.StructLayout({
        "y":   data.ArrayLayout(signed(cfg.output_bits), lanes * cfg.outputs),
        "sum": data.ArrayLayout(signed(sum_bits), lanes * cfg.outputs),
    })


def ima_tile_weight_write_layout(cfg: AccelConfig, crossbars: int) -> data.StructLayout:
    """One weight write of an :class:`~hdl.imatile.IMATile`: :func:`weight_write_layout` plus
    the IMA crossbar ``xbar`` (``0 .. crossbars - 1``) it goes to."""
    return data.StructLayout({
        "xbar": index_bits(crossbars),
        **{name: field.shape for name, field in weight_write_layout(cfg)},
    })


def ima_tile_layer_layout(cfg: AccelConfig, geom: ConvGeometry,
                          passes: int) -> data.StructLayout:
    """Run-time settings of an :class:`~hdl.imatile.IMATile`: :func:`tile_layer_layout` plus
    the ``pass`` the crossbars are programmed for (``arch.geometry.ImaPlan``)."""
    return data.StructLayout({
        "shift": signed(cfg.shift_bits),
        "relu":  1,
        "bias":  data.ArrayLayout(signed(cfg.bias_bits), Mapping(cfg, geom).padded_outputs),
        "pass":  index_bits(passes),
    })
