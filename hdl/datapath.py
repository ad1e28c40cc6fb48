"""One crossbar tile and its controller, cycle for cycle as ``docs/arithmetic.md`` section 8."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig

from ._common import above, check_config
from .adc import ADCQuantizer
from .crossbar import CrossbarMAC
from .layouts import (Phase, chunk_bits, input_layout, layer_config_layout, obs_layout,
                      output_layout, step_bits, weight_write_layout)
from .shiftadd import ShiftAdd

__all__ = ["Datapath"]


class Datapath(wiring.Component):
    """Crossbar, ADC and shift-add of one tile, run by a single controller.

    An input vector is taken at the handshake edge (edge 0), streamed through the crossbar
    ``dac_bits`` per chunk LSB first (``xbar_steps`` crossbar steps then ``adc_steps`` ADC
    steps per chunk), and the output vector is valid ``latency`` clocks later, until it is
    accepted. ``obs`` exposes every register that :func:`golden.trace.datapath_trace` predicts.

    With ``[pipeline] overlap`` (ISAAC's pipeline) the crossbar read of chunk ``t + 1`` runs
    beside the ADC of chunk ``t``, which converts the crossbar's sample-and-hold bank
    (``obs.held``); the controller is :meth:`_overlapped_controller`.

    The input vector is latched into a shift register of ``rows * input_bits`` bits that moves
    right by ``dac_bits`` (per row, zeros shifted in) after the last ADC step of each chunk
    (with ``overlap``: after the chunk's last crossbar step), so
    chunk ``t`` of row ``r`` is always the low ``dac_bits`` bits of row ``r``'s slot; for signed
    inputs the last chunk is the sign bit alone with zeros above it, as the contract's 1-bit
    sign chunk requires.

    **First chunk** (per-region precision, ``docs/arithmetic.md`` section 9): the payload's
    ``first_chunk = t0`` starts the vector at chunk ``t0`` (the shift register is latched
    already shifted by ``t0 * dac_bits``, the chunk counter starts at ``t0``), so chunks
    ``0 .. t0 - 1`` are skipped and the output is valid ``(T - t0) * (xbar_steps +
    adc_steps) + 1`` clocks after the handshake. Exact when those chunks are 0 in every row.
    ``t0 = 0`` is the full schedule; a ``t0`` above ``T - 1`` is taken as ``T - 1``.

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The tile configuration.
    partial : bool
        Emit the partial sum (``partial``) instead of finalising (default ``False``).

    Members
    -------
    wr : ``In(stream.Signature(weight_write_layout(cfg), always_ready=True))``
        Weight writes (see :class:`~hdl.crossbar.CrossbarMAC`); only while ``IDLE``.
    layer : ``In(layer_config_layout(cfg))``
        Layer shift, ReLU enable and biases, held steady while vectors stream.
    i : ``In(stream.Signature(input_layout(cfg)))``
        Input vectors. ``i.ready = (phase == IDLE) | (phase == OUT & o.ready)``.
    o : ``Out(stream.Signature(output_layout(cfg)))``
        Output vectors; ``o.valid`` is high exactly while ``phase == OUT``.
    obs : ``Out(obs_layout(cfg))``
        Controller state and datapath registers, for co-simulation.
    partial : ``Out(data.ArrayLayout(signed(acc_bits), outputs))``
        Only with ``partial=True``: ``acc[o] - weight_bias*xsum`` of the vector, final while
        ``phase`` is ``FINAL`` (and ``OUT``); ``o.payload`` then stays 0: the output stage is
        the reduction's (:class:`~hdl.ima.IMA`, ``docs/arithmetic.md`` section 9).

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
        extra = {"partial": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.outputs))} \
            if partial else {}
        super().__init__({
            "wr":    In(stream.Signature(weight_write_layout(cfg), always_ready=True)),
            "layer": In(layer_config_layout(cfg)),
            "i":     In(stream.Signature(input_layout(cfg))),
            "o":     Out(stream.Signature(output_layout(cfg))),
            "obs":   Out(obs_layout(cfg)),
            **extra,
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def latency(self) -> int:
        """Clocks from the input handshake to ``o.valid``: ``input_cycles * (xbar_steps +
        adc_steps) + 1``, or with ``[pipeline] overlap`` ``xbar_steps + (input_cycles - 1) *
        max(xbar_steps, adc_steps) + adc_steps + 1`` (``cfg.latency``; with ``first_chunk = 0``,
        see :meth:`latency_from`)."""
        return self._cfg.latency

    def latency_from(self, first_chunk: int) -> int:
        """Clocks from the input handshake to ``o.valid`` of a vector with ``first_chunk``:
        ``(input_cycles - first_chunk) * (xbar_steps + adc_steps) + 1``."""
        cfg = self._cfg
        if cfg.pipeline_overlap:
            return cfg.latency      # the overlapped schedule streams every chunk
        t0 = min(max(int(first_chunk), 0), cfg.input_cycles - 1)
        return (cfg.input_cycles - t0) * (cfg.xbar_steps + cfg.adc_steps) + 1

    def elaborate(self, platform):
        # The controller is three registers (phase, chunk, step) that always describe the next
        # edge; every datapath register is enabled by a decode of them, so each register's value
        # on each cycle is the simple function of the schedule that golden.trace computes.
        cfg = self._cfg
        R, Bx, d = cfg.rows, cfg.input_bits, cfg.dac_bits
        T, X, G = cfg.input_cycles, cfg.xbar_steps, cfg.adc_steps
        m = Module()
        m.submodules.crossbar = xbar = CrossbarMAC(cfg)
        m.submodules.adc = adc = ADCQuantizer(cfg)
        m.submodules.shiftadd = sa = ShiftAdd(cfg, partial=self._partial)

        phase = Signal(Phase)
        chunk = Signal(chunk_bits(cfg))
        step = Signal(step_bits(cfg))
        adc_code = Signal(data.ArrayLayout(unsigned(cfg.adc_bits), cfg.adc_columns_per_cycle))
        adc_valid = Signal()
        x = Signal(R * Bx)     # latched input vector, shifted right by d per row and chunk

        take = Signal()        # input handshake at the next edge
        give = Signal()        # output handshake at the next edge
        in_xbar = Signal()
        in_adc = Signal()
        in_final = Signal()
        m.d.comb += [
            self.i.ready.eq((phase == Phase.IDLE) | ((phase == Phase.OUT) & self.o.ready)),
            self.o.valid.eq(phase == Phase.OUT),
            take.eq(self.i.valid & self.i.ready),
            give.eq(self.o.valid & self.o.ready),
            in_xbar.eq(phase == Phase.XBAR),
            in_adc.eq(phase == Phase.ADC),
            in_final.eq(phase == Phase.FINAL),
        ]

        # -- weights go straight to the crossbar
        wiring.connect(m, wiring.flipped(self.wr), xbar.wr)

        # -- chunk t of every row: the low d bits of its slot of the shift register
        m.d.comb += [xbar.levels[r].eq(x[r * Bx:r * Bx + d]) for r in range(R)]
        shifted = Cat(Cat(x[r * Bx + d:(r + 1) * Bx], Const(0, d)) for r in range(R)) \
            if Bx > d else Const(0, R * Bx)
        m.d.comb += [
            xbar.step.eq(step),
            xbar.en.eq(in_xbar),
            xbar.clear.eq(take),
            adc.col_sum.eq(xbar.col_sum),
            adc.group.eq(step),
            sa.rec.eq(adc.rec),
            sa.insum.eq(xbar.insum),
            sa.flags.eq(xbar.flags),
            sa.chunk.eq(chunk),
            sa.group.eq(step),
            sa.clear.eq(take),
            sa.en.eq(in_adc),
            sa.finalize.eq(in_final),
            sa.layer.eq(self.layer),
            self.o.payload.y.eq(sa.y),
        ]
        if self._partial:
            m.d.comb += self.partial.eq(sa.partial)

        m.d.comb += [
            self.obs.phase.eq(phase),
            self.obs.chunk.eq(chunk),
            self.obs.step.eq(step),
            self.obs.col_sum.eq(xbar.col_sum),
            self.obs.insum.eq(xbar.insum),
            self.obs.adc_valid.eq(adc_valid),
            self.obs.adc_code.eq(adc_code),
            self.obs.acc.eq(sa.acc),
            self.obs.xsum.eq(sa.xsum),
        ]

        if cfg.pipeline_overlap:
            # ISAAC's pipeline: a controller of its own (the sequential one below is unchanged)
            self._overlapped_controller(m, xbar, adc, sa, phase, chunk, step, adc_code,
                                        adc_valid, x, shifted, take, give)
            return m

        # -- first chunk (per-region precision): the only change to the schedule is where the
        # chunk counter starts. The vector is latched shifted right by t0*d per row (a log
        # shifter over the bits of t0, zeros in), so the register again holds chunk `chunk` in
        # its low d bits; with t0 = 0 this is the plain latch.
        t0 = Signal(chunk_bits(cfg))
        m.d.comb += t0.eq(Mux(above(self.i.payload.first_chunk, T - 1), T - 1,
                              self.i.payload.first_chunk))
        raw = self.i.payload.x.as_value()
        rows_in = [raw[r * Bx:(r + 1) * Bx] for r in range(R)]
        for b in range(len(t0)):
            n = (1 << b) * d
            rows_in = [Mux(t0[b], Cat(v[n:], Const(0, n)) if n < Bx else Const(0, Bx), v)
                       for v in rows_in]

        # -- the controller (section 8)
        last_step = Signal()
        m.d.comb += last_step.eq(step == Mux(in_xbar, X - 1, G - 1))
        with m.If(take):
            m.d.sync += [x.eq(Cat(*rows_in)), adc_valid.eq(0),
                         phase.eq(Phase.XBAR), chunk.eq(t0), step.eq(0)]
            m.d.sync += [adc_code[n].eq(0) for n in range(cfg.adc_columns_per_cycle)]
        with m.Elif(in_xbar):
            m.d.sync += adc_valid.eq(0)
            with m.If(last_step):
                m.d.sync += [phase.eq(Phase.ADC), step.eq(0)]
            with m.Else():
                m.d.sync += step.eq(step + 1)
        with m.Elif(in_adc):
            m.d.sync += [adc_code.eq(adc.code), adc_valid.eq(1)]
            with m.If(last_step):
                m.d.sync += [x.eq(shifted), step.eq(0)]
                with m.If(chunk == T - 1):
                    m.d.sync += [phase.eq(Phase.FINAL), chunk.eq(0)]
                with m.Else():
                    m.d.sync += [phase.eq(Phase.XBAR), chunk.eq(chunk + 1)]
            with m.Else():
                m.d.sync += step.eq(step + 1)
        with m.Elif(in_final):
            m.d.sync += [adc_valid.eq(0), phase.eq(Phase.OUT)]
        with m.Elif(give):
            m.d.sync += [phase.eq(Phase.IDLE), chunk.eq(0), step.eq(0)]
        return m

    # -- [pipeline] overlap ---------------------------------------------------------------------

    def _overlapped_controller(self, m, xbar, adc, sa, phase, chunk, step, adc_code, adc_valid,
                               x, shifted, take, give):
        # The overlapped schedule of section 8: XBAR (chunk 0's crossbar read, X edges), then
        # T-1 stages XBAR_ADC of D = max(X, G) edges -- the ADC converts chunk `chunk` from the
        # crossbar's sample-and-hold bank at steps k < G while the crossbar reads chunk
        # `chunk`+1 at steps k >= D - X, its last step loading the bank -- then ADC (the last
        # chunk, G edges), FINAL, OUT. The sequential controller's decodes (xbar.en, sa.en,
        # adc.col_sum, ...) are overridden here: later comb assignments win in Amaranth.
        cfg = self._cfg
        T, X, G, D = cfg.input_cycles, cfg.xbar_steps, cfg.adc_steps, cfg.stage_steps
        in_xbar, in_adc, in_stage = (phase == Phase.XBAR), (phase == Phase.ADC), \
            (phase == Phase.XBAR_ADC)
        xbar_on = Signal()       # the next edge is a crossbar step ...
        xstep = Signal.like(xbar.step)   # ... of this row group
        adc_on = Signal()        # the next edge is an ADC step (group `step`)
        hold = Signal()          # ... the chunk's last crossbar step: load the sample-and-hold
        m.d.comb += [
            xbar_on.eq(in_xbar | (in_stage & (step >= D - X))),
            xstep.eq(Mux(in_xbar, step, step - (D - X))),
            adc_on.eq(in_adc | (in_stage & (step < G))),
            hold.eq(xbar_on & (xstep == X - 1)),
            xbar.step.eq(xstep),
            xbar.en.eq(xbar_on),
            xbar.hold.eq(hold),
            adc.col_sum.eq(xbar.held),
            sa.insum.eq(xbar.held_insum),
            sa.en.eq(adc_on),
            self.obs.held.eq(xbar.held),
            self.obs.held_insum.eq(xbar.held_insum),
        ]
        with m.If(take):
            m.d.sync += [x.eq(self.i.payload.as_value()), adc_valid.eq(0),
                         phase.eq(Phase.XBAR), chunk.eq(0), step.eq(0)]
            m.d.sync += [adc_code[n].eq(0) for n in range(cfg.adc_columns_per_cycle)]
        with m.Elif(in_xbar | in_adc | in_stage):
            m.d.sync += adc_valid.eq(adc_on)
            with m.If(adc_on):
                m.d.sync += adc_code.eq(adc.code)
            with m.If(hold):
                m.d.sync += x.eq(shifted)            # the crossbar's next chunk
            m.d.sync += step.eq(step + 1)
            with m.If(in_xbar & (step == X - 1)):    # chunk 0 read: the first stage
                m.d.sync += [step.eq(0),
                             phase.eq(Phase.ADC if T == 1 else Phase.XBAR_ADC)]
            with m.If(in_stage & (step == D - 1)):   # a stage done: the next, or the last ADC
                m.d.sync += [step.eq(0), chunk.eq(chunk + 1)]
                with m.If(chunk == max(T - 2, 0)):
                    m.d.sync += phase.eq(Phase.ADC)
            with m.If(in_adc & (step == G - 1)):     # the last chunk converted
                m.d.sync += [step.eq(0), chunk.eq(0), phase.eq(Phase.FINAL)]
        with m.Elif(phase == Phase.FINAL):
            m.d.sync += [adc_valid.eq(0), phase.eq(Phase.OUT)]
        with m.Elif(give):
            m.d.sync += [phase.eq(Phase.IDLE), chunk.eq(0), step.eq(0)]

