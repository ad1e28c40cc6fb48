"""The ADC transfer function (``docs/arithmetic.md`` section 4), ``adc_columns_per_cycle``
columns at a time."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig

from ._common import check_config
from .layouts import index_bits

__all__ = ["ADCQuantizer"]


class ADCQuantizer(wiring.Component):
    """``adc_columns_per_cycle`` (``N``) shared ADCs behind a column multiplexer.

    Combinational: ``group`` selects columns ``group*N .. group*N + N - 1`` of ``col_sum``, and
    ``code[n]`` / ``rec[n]`` are the code and reconstruction of column ``group*N + n`` in the
    same cycle. The :class:`~hdl.datapath.Datapath` registers the codes (``obs.adc_code``) and
    feeds the reconstructions to the shift-add at the same edge, which is what section 8 of the
    contract asks for (the ADC step converts and accumulates in one clock).

    ==========  ==============================================  ====================
    mode        code                                            rec
    ==========  ==============================================  ====================
    lossless    ``read``                                        ``code``
    clip        ``min(read, 2**A - 1)``                         ``code``
    drop_lsb    ``min((read + 2**(k-1)) >> k, 2**A - 1)``       ``code << k``
    ==========  ==============================================  ====================

    with ``A = adc_bits`` and ``k = adc_drop`` (no rounding term when ``k = 0``).

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The tile configuration.

    Members
    -------
    col_sum : ``In(data.ArrayLayout(unsigned(read_bits), cols))``
        Column reads (from :class:`~hdl.crossbar.CrossbarMAC`).
    group : ``In(index_bits(adc_steps))``
        Column group to convert. Groups ``>= adc_steps`` give unspecified codes.
    code : ``Out(data.ArrayLayout(unsigned(adc_bits), adc_columns_per_cycle))``
        ADC codes of the group's columns.
    rec : ``Out(data.ArrayLayout(unsigned(read_bits), adc_columns_per_cycle))``
        Their reconstructions, at the scale of ``col_sum`` (``rec <= 2**read_bits - 1`` in
        every mode).

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~arch.config.AccelConfig`.
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = check_config(cfg)
        N = cfg.adc_columns_per_cycle
        super().__init__({
            "col_sum": In(data.ArrayLayout(unsigned(cfg.read_bits), cfg.cols)),
            "group":   In(index_bits(cfg.adc_steps)),
            "code":    Out(data.ArrayLayout(unsigned(cfg.adc_bits), N)),
            "rec":     Out(data.ArrayLayout(unsigned(cfg.read_bits), N)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def latency(self) -> int:
        """0: the conversion is combinational."""
        return 0

    def elaborate(self, platform):
        # One wide multiplexer picks the group's N column sums (N*read_bits bits per group);
        # each lane then applies the transfer function of the configured mode.
        cfg = self._cfg
        N, k = cfg.adc_columns_per_cycle, cfg.adc_drop
        width = cfg.read_bits
        m = Module()

        lanes = Signal(data.ArrayLayout(unsigned(width), N))
        if cfg.adc_steps == 1:
            m.d.comb += lanes.eq(self.col_sum)
        else:
            m.d.comb += lanes.as_value().eq(
                self.col_sum.as_value().word_select(self.group, N * width))

        top = cfg.adc_code_max
        for n in range(N):
            read = lanes[n]
            if cfg.adc_mode == "lossless":
                m.d.comb += self.code[n].eq(read)
            elif cfg.adc_mode == "clip" or k == 0:
                m.d.comb += self.code[n].eq(Mux(read > top, top, read))
            else:   # drop_lsb with k > 0: round half up at bit k, then saturate
                rounded = (read + (1 << (k - 1))) >> k
                m.d.comb += self.code[n].eq(Mux(rounded > top, top, rounded))
            m.d.comb += self.rec[n].eq(self.code[n] << k)
        return m
