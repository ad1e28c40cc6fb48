"""An IMA: several crossbars in partial-sum mode and the digital reduction that adds their
results (``docs/arithmetic.md`` sections 6 and 9)."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig

from ._common import check_config, tree_sum
from .datapath import Datapath
from .layouts import (Phase, ima_input_layout, ima_layer_layout, ima_output_layout,
                      ima_weight_write_layout)
from .shiftadd import OutputStage

__all__ = ["IMA"]


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value}")
    return value


class IMA(wiring.Component):
    """``lanes * span`` crossbars (:class:`~hdl.datapath.Datapath` with ``partial=True``) run
    in lockstep on one input per crossbar; lane ``l`` adds the partial sums
    ``acc - weight_bias*xsum`` of crossbars ``l*span .. l*span + span - 1`` (an adder tree),
    plus ``psum`` unless ``layer.first``, and, when ``layer.last``, the bias and the output
    stage of section 7 once.

    Both results are registered at the crossbars' ``FINAL`` edge, so the IMA has the latency
    of one crossbar (``cfg.latency``) and the handshake of section 8: ``o.valid`` exactly while
    the crossbars are in ``OUT``.

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The crossbar configuration.
    lanes : int
        Output groups reduced at once.
    span : int
        Crossbars per lane.
    row_tiles : int
        Row tiles of the layer (``kt``): ``sum`` is ``cfg.sum_bits(row_tiles)`` wide.

    Members
    -------
    wr : ``In(stream.Signature(ima_weight_write_layout(cfg, lanes*span), always_ready=True))``
        A weight write to crossbar ``xbar``; only while idle.
    layer : ``In(ima_layer_layout(cfg, lanes))``
        Shift, ReLU, the lanes' biases, ``first`` and ``last``; held while vectors stream.
    psum : ``In(data.ArrayLayout(signed(sum_bits), lanes*outputs))``
        The previous passes' sums of the vector, sampled at the ``FINAL`` edge.
    i : ``In(stream.Signature(ima_input_layout(cfg, lanes*span)))``
        One input vector per crossbar.
    o : ``Out(stream.Signature(ima_output_layout(cfg, lanes, sum_bits)))``
        Per lane and output the finished ``y`` (valid when ``last``) and the ``sum``.

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~arch.config.AccelConfig` or a count is not an integer.
    ValueError
        If a count is not positive.
    """

    def __init__(self, cfg: AccelConfig, lanes: int, span: int, row_tiles: int):
        self._cfg = check_config(cfg)
        self._lanes = _count("lanes", lanes)
        self._span = _count("span", span)
        self._row_tiles = _count("row_tiles", row_tiles)
        n, sb = lanes * span, cfg.sum_bits(row_tiles)
        super().__init__({
            "wr":    In(stream.Signature(ima_weight_write_layout(cfg, n), always_ready=True)),
            "layer": In(ima_layer_layout(cfg, lanes)),
            "psum":  In(data.ArrayLayout(signed(sb), lanes * cfg.outputs)),
            "i":     In(stream.Signature(ima_input_layout(cfg, n))),
            "o":     Out(stream.Signature(ima_output_layout(cfg, lanes, sb))),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def span(self) -> int:
        return self._span

    @property
    def crossbars(self) -> int:
        return self._lanes * self._span

    @property
    def sum_bits(self) -> int:
        return self._cfg.sum_bits(self._row_tiles)

    @property
    def latency(self) -> int:
        """Clocks from the input handshake to ``o.valid``: one crossbar's, ``cfg.latency``."""
        return self._cfg.latency

    def elaborate(self, platform):
        # The crossbars hold acc and xsum from their last ADC step on, so the partial sums are
        # final in the FINAL phase: the reduction and the output stage are combinational there
        # and registered at the FINAL edge, where a lone crossbar registers its own output.
        cfg, O = self._cfg, self._cfg.outputs
        m = Module()
        dps = []
        for s in range(self.crossbars):
            dp = Datapath(cfg, partial=True)
            m.submodules[f"xbar{s}"] = dp
            dps.append(dp)
            m.d.comb += [
                dp.wr.valid.eq(self.wr.valid & (self.wr.payload.xbar == s)),
                dp.wr.payload.eq(self.wr.payload.w),
                dp.i.valid.eq(self.i.valid),
                dp.i.payload.eq(self.i.payload.xbar[s]),
                dp.o.ready.eq(self.o.ready),
            ]
        m.d.comb += [self.i.ready.eq(dps[0].i.ready), self.o.valid.eq(dps[0].o.valid)]
        final = Signal()
        m.d.comb += final.eq(dps[0].obs.phase == Phase.FINAL)

        stage = OutputStage(m, cfg, self.layer.shift, self.layer.relu)
        first, last = self.layer.first, self.layer.last
        for lane in range(self._lanes):
            for o in range(O):
                k = lane * O + o
                total = Signal(signed(self.sum_bits), name=f"sum{k}")
                m.d.comb += total.eq(
                    tree_sum([dps[lane * self._span + i].partial[o] for i in range(self._span)])
                    + Mux(first, 0, self.psum[k]))
                v = Signal(signed(self.sum_bits + 1), name=f"v{k}")
                m.d.comb += v.eq(total + Mux(last, self.layer.bias[k], 0))
                with m.If(final):
                    m.d.sync += [self.o.payload.sum[k].eq(total),
                                 self.o.payload.y[k].eq(stage(v))]
        return m
