"""Flip recovery, shift-and-add, correction, bias and the FlexPoint output stage
(``docs/arithmetic.md`` sections 5, 6 and 7)."""

from collections import defaultdict

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig

from ._common import check_config, tree_sum
from .layouts import chunk_bits, index_bits, layer_config_layout, xsum_bits

__all__ = ["ShiftAdd", "OutputStage"]


class OutputStage:
    """The FlexPoint output stage of ``docs/arithmetic.md`` section 7, as combinational logic
    added to ``m``: the layer ``shift`` clamped to ``[shift_min, shift_max]``, then
    ``stage(v) = sat(relu(round_shift(v, sh)))`` for any signed ``v`` (one per output; the
    clamped shift is shared). Used by :class:`ShiftAdd` (one crossbar's ``v``) and by
    :class:`~hdl.ima.IMA` (the reduced sum of several)."""

    def __init__(self, m: Module, cfg: AccelConfig, shift, relu):
        self._cfg, self._relu = cfg, relu
        smin, smax = cfg.shift_min, cfg.shift_max
        sh = Signal(signed(cfg.shift_bits))
        with m.If(shift < smin):
            m.d.comb += sh.eq(smin)
        with m.Elif(shift > smax):
            m.d.comb += sh.eq(smax)
        with m.Else():
            m.d.comb += sh.eq(shift)
        right = Signal(range(max(smax, 1)))       # sh - 1, for sh > 0
        left = Signal(range(max(-smin, 0) + 1))  # -sh, for sh < 0
        m.d.comb += [right.eq(sh - 1), left.eq(-sh)]
        self._sh, self._right, self._left = sh, right, left

    def __call__(self, v):
        cfg, sh = self._cfg, self._sh
        shifted = v
        if cfg.shift_min < 0:
            shifted = Mux(sh < 0, v << self._left, shifted)
        if cfg.shift_max > 0:
            # (v + 2**(sh-1)) >> sh == ((v >> (sh-1)) + 1) >> 1: no variable constant.
            shifted = Mux(sh > 0, ((v >> self._right) + 1) >> 1, shifted)
        r = Mux(self._relu & (shifted < 0), 0, shifted)
        return Mux(r > cfg.output_max, cfg.output_max,
                   Mux(r < cfg.output_min, cfg.output_min, r))


class ShiftAdd(wiring.Component):
    """Output accumulators of one crossbar and its output stage.

    At an ADC step (``en``) for chunk ``t = chunk`` and column group ``g = group``, lane ``n``
    holds column ``j = g*N + n`` (``N = adc_columns_per_cycle``); the block recovers
    ``y = flag[j] ? M*insum - rec[n] : rec[n]`` and adds ``σ_t * 2**(p_t + (j mod S)*b) * y``
    to ``acc[j // S]``; at ``g = 0`` it also adds ``σ_t * 2**p_t * insum`` to ``xsum``. At the
    final step (``finalize``) it registers, for every output ``o``,
    ``y[o] = sat(relu(round_shift(acc[o] - weight_bias*xsum + bias[o], shift)))``.

    The layer's ``shift`` is clamped to ``[shift_min, shift_max]`` (the contract leaves other
    values undefined; clamping keeps the left shifter as narrow as the configuration says).

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The tile configuration.
    partial : bool
        Emit the partial sum instead of finalising (see ``partial``).

    Members
    -------
    rec : ``In(data.ArrayLayout(unsigned(read_bits), adc_columns_per_cycle))``
        Reconstructed ADC values of the group's columns (from :class:`~hdl.adc.ADCQuantizer`).
    insum : ``In(unsigned(insum_bits))``
        Sum of the DAC levels of the chunk.
    flags : ``In(cols)``
        Flip flags of all columns; the block selects the group's.
    chunk : ``In(chunk_bits(cfg))``
        Input chunk ``t``.
    group : ``In(index_bits(adc_steps))``
        Column group ``g``.
    clear : ``In(1)``
        Clear ``acc`` and ``xsum`` at the next edge (takes precedence over ``en``).
    en : ``In(1)``
        Accumulate the group at the next edge.
    finalize : ``In(1)``
        Register the output vector ``y`` at the next edge.
    layer : ``In(layer_config_layout(cfg))``
        ``shift``, ``relu`` and ``bias`` of the layer, held steady while vectors stream.
    acc : ``Out(data.ArrayLayout(signed(acc_bits), outputs))``
        Accumulators (registers).
    xsum : ``Out(signed(xsum_bits(cfg)))``
        Accumulated ``Σ_r x[r]`` (register).
    y : ``Out(data.ArrayLayout(signed(output_bits), outputs))``
        Output vector (register, written by ``finalize``; stays 0 with ``partial``).
    partial : ``Out(data.ArrayLayout(signed(acc_bits), outputs))``
        Only with ``partial=True``: ``acc[o] - weight_bias*xsum`` (combinational from the
        registers; final from the last ADC step to the next ``clear``), for a reduction over
        several crossbars (``docs/arithmetic.md`` section 6); the output stage is then not
        built.

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~arch.config.AccelConfig`.
    """

    def __init__(self, cfg: AccelConfig, *, partial: bool = False):
        self._cfg = check_config(cfg)
        if not isinstance(partial, bool):
            raise TypeError(f"partial must be a bool, not {partial!r}")
        self._partial = partial
        N, O = cfg.adc_columns_per_cycle, cfg.outputs
        extra = {"partial": Out(data.ArrayLayout(signed(cfg.acc_bits), O))} if partial else {}
        super().__init__({
            "rec":   In(data.ArrayLayout(unsigned(cfg.read_bits), N)),
            "insum": In(unsigned(cfg.insum_bits)),
            "flags": In(cfg.cols),
            "chunk": In(chunk_bits(cfg)),
            "group": In(index_bits(cfg.adc_steps)),
            "clear": In(1),
            "en":    In(1),
            "finalize": In(1),
            "layer": In(layer_config_layout(cfg)),
            "acc":   Out(data.ArrayLayout(signed(cfg.acc_bits), O)),
            "xsum":  Out(signed(xsum_bits(cfg))),
            "y":     Out(data.ArrayLayout(signed(cfg.output_bits), O)),
            **extra,
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def latency(self) -> int:
        """Clocks from ``finalize`` to the output vector in ``y``: 1."""
        return 1

    def elaborate(self, platform):
        # The N lanes of an ADC step feed at most K consecutive outputs ("slots"). Which lane
        # lands in which slot, at which slice shift, depends only on the phase (g*N) mod S, so
        # the slot sums are a few static shift-adds picked by phase; the chunk shift and sign
        # are applied once per slot (not per output), and each output adds the slot it owns
        # at this step.
        cfg = self._cfg
        N, S, O, G, T = (cfg.adc_columns_per_cycle, cfg.slices, cfg.outputs, cfg.adc_steps,
                         cfg.input_cycles)
        b, M = cfg.cell_bits, cfg.cell_max
        m = Module()

        # -- flip recovery per lane
        flag_lanes = Signal(N)
        if G == 1:
            m.d.comb += flag_lanes.eq(self.flags)
        else:
            m.d.comb += flag_lanes.eq(self.flags.word_select(self.group, N))
        y_bits = max(cfg.read_bits, (M * ((1 << cfg.insum_bits) - 1)).bit_length()) + 1
        y = [Signal(signed(y_bits), name=f"y{n}") for n in range(N)]
        for n in range(N):
            m.d.comb += y[n].eq(Mux(flag_lanes[n], self.insum * M - self.rec[n], self.rec[n]))

        # -- static slot sums per phase
        slot_bits = y_bits + cfg.weight_bits
        phases = defaultdict(list)              # phase r -> steps g
        for g in range(G):
            phases[(g * N) % S].append(g)
        K = max((r + N - 1) // S + 1 for r in phases)
        slot = [Signal(signed(slot_bits), name=f"slot{k}") for k in range(K)]

        def slot_terms(r):
            terms = defaultdict(list)
            for n in range(N):
                terms[(r + n) // S].append(y[n] << (((r + n) % S) * b))
            return [tree_sum(terms[k]) if terms[k] else 0 for k in range(K)]

        if len(phases) == 1:
            (r,) = phases
            m.d.comb += [slot[k].eq(v) for k, v in enumerate(slot_terms(r))]
        else:
            with m.Switch(self.group):
                for r, steps in sorted(phases.items()):
                    with m.Case(*steps):
                        m.d.comb += [slot[k].eq(v) for k, v in enumerate(slot_terms(r))]

        # -- chunk position and sign: σ_t * 2**p_t, per slot and for xsum
        max_pos = max(cfg.chunk_position(t) for t in range(T))
        scaled = [Signal(signed(slot_bits + max_pos + 1), name=f"scaled{k}") for k in range(K)]
        xs_add = Signal(signed(cfg.insum_bits + max_pos + 1))
        with m.Switch(self.chunk):
            for t in range(T):
                with m.Case(t):
                    p = cfg.chunk_position(t)
                    if cfg.chunk_negative(t):
                        m.d.comb += [scaled[k].eq(-(slot[k] << p)) for k in range(K)]
                        m.d.comb += xs_add.eq(-(self.insum << p))
                    else:
                        m.d.comb += [scaled[k].eq(slot[k] << p) for k in range(K)]
                        m.d.comb += xs_add.eq(self.insum << p)

        # -- accumulate: output o takes slot o - (g*N)//S at the steps that touch it
        owners = [defaultdict(list) for _ in range(O)]     # o -> slot k -> steps g
        for g in range(G):
            base = (g * N) // S
            for o in range(base, (g * N + N - 1) // S + 1):
                owners[o][o - base].append(g)
        with m.If(self.clear):
            m.d.sync += [self.acc[o].eq(0) for o in range(O)]
            m.d.sync += self.xsum.eq(0)
        with m.Elif(self.en):
            for o in range(O):
                with m.Switch(self.group):
                    for k, steps in sorted(owners[o].items()):
                        with m.Case(*steps):
                            m.d.sync += self.acc[o].eq(self.acc[o] + scaled[k])
            with m.If(self.group == 0):
                m.d.sync += self.xsum.eq(self.xsum + xs_add)

        # -- final: correction, bias, FlexPoint shift, ReLU, saturation
        correction = (self.xsum << (cfg.weight_bits - 1)) if cfg.weight_bias else 0
        if self._partial:
            m.d.comb += [self.partial[o].eq(self.acc[o] - correction) for o in range(O)]
            return m
        stage = OutputStage(m, cfg, self.layer.shift, self.layer.relu)
        v_bits = max(cfg.acc_bits, xsum_bits(cfg) + cfg.weight_bits, cfg.bias_bits) + 2
        for o in range(O):
            v = Signal(signed(v_bits), name=f"v{o}")
            m.d.comb += v.eq(self.acc[o] - correction + self.layer.bias[o])
            with m.If(self.finalize):
                m.d.sync += self.y[o].eq(stage(v))
        return m
