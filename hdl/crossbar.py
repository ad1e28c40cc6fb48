"""A digital, synthesizable stand-in for the analog crossbar: cells in registers, per-column
multiply-accumulate of the DAC levels (``docs/arithmetic.md`` sections 1 and 3)."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig

from ._common import check_config, tree_sum
from .layouts import index_bits, weight_write_layout

__all__ = ["CrossbarMAC"]


class CrossbarMAC(wiring.Component):
    """Crossbar array with its row drivers and column sums.

    The cells are registers, one ``cols * cell_bits`` wide register per row (column ``j``
    occupies bits ``j*cell_bits ..``), written one weight at a time through ``wr``; the
    hardware applies the biased encoding (``u = value + weight_bias``) and cuts ``u`` into
    ``slices`` cells, the low slice in column 0 of the group. The flip flag of each column is a
    register too; a flagged column is read as the complement ``c XOR M`` of its stored cells.

    The DAC levels of all rows are inputs (``levels``): the :class:`~hdl.datapath.Datapath`
    latches the input vector and presents chunk ``t`` of every row. At a crossbar step
    (``en``), rows ``step*P .. step*P + P - 1`` (``P = rows_per_cycle``) are multiplied with
    their cells and summed per column into ``col_sum``, which the step with ``step = 0``
    restarts from 0; ``insum`` sums the same rows' levels exactly.

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The tile configuration.

    Members
    -------
    wr : ``In(stream.Signature(weight_write_layout(cfg), always_ready=True))``
        Weight writes, applied at the edge at which ``wr.valid`` is high: the weight ``value``
        of ``row`` for output ``group``, and the flip flags of the group's ``slices`` columns.
        Writes to a ``group >= outputs`` are ignored.
    levels : ``In(data.ArrayLayout(unsigned(dac_bits), rows))``
        DAC level ``x_t[r]`` of every row (row 0 first).
    step : ``In(index_bits(xbar_steps))``
        Row group ``i`` summed by the next crossbar step.
    en : ``In(1)``
        Perform a crossbar step at the next edge:
        ``col_sum[j] <- (step == 0 ? 0 : col_sum[j]) + sum over the group of x_t[r] * c'[r, j]``,
        ``insum`` likewise with ``x_t[r]``.
    clear : ``In(1)``
        Clear ``col_sum`` and ``insum`` at the next edge (takes precedence over ``en``).
    col_sum : ``Out(data.ArrayLayout(unsigned(read_bits), cols))``
        Column sums (registers). ``read_bits`` covers every sum when the flags are those of
        ``docs/arithmetic.md`` section 1; with other flags the sum wraps modulo
        ``2**read_bits``.
    insum : ``Out(unsigned(insum_bits))``
        Sum of the DAC levels (register).
    flags : ``Out(cols)``
        Flip flags of the columns (registers), bit ``j`` for column ``j``.
    hold : ``In(1)``, only with ``[pipeline] overlap``
        Sample-and-hold: at a crossbar step with ``hold`` (the chunk's last), the new column
        sums and ``insum`` are also written to ``held`` and ``held_insum``; ``clear`` clears
        them.
    held : ``Out(data.ArrayLayout(unsigned(read_bits), cols))``, only with ``overlap``
        The sample-and-hold bank (registers): the column sums the ADC converts while the
        crossbar reads the next chunk.
    held_insum : ``Out(unsigned(insum_bits))``, only with ``overlap``
        ``insum`` of the held chunk (register).

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~arch.config.AccelConfig`.
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = check_config(cfg)
        held = {"hold":       In(1),
                "held":       Out(data.ArrayLayout(unsigned(cfg.read_bits), cfg.cols)),
                "held_insum": Out(unsigned(cfg.insum_bits))} if cfg.pipeline_overlap else {}
        super().__init__({
            "wr":      In(stream.Signature(weight_write_layout(cfg), always_ready=True)),
            "levels":  In(data.ArrayLayout(unsigned(cfg.dac_bits), cfg.rows)),
            "step":    In(index_bits(cfg.xbar_steps)),
            "en":      In(1),
            "clear":   In(1),
            "col_sum": Out(data.ArrayLayout(unsigned(cfg.read_bits), cfg.cols)),
            "insum":   Out(unsigned(cfg.insum_bits)),
            "flags":   Out(cfg.cols),
            **held,
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def latency(self) -> int:
        """Clocks from the first crossbar step of a chunk (``step = 0``) to its full column
        sums in ``col_sum``: ``xbar_steps``."""
        return self._cfg.xbar_steps

    def elaborate(self, platform):
        # Each row is one wide register, so a write is a word select and a read is a handful of
        # wide AND/XOR operations per row; only the adder trees are per column.
        cfg = self._cfg
        R, C, b, d = cfg.rows, cfg.cols, cfg.cell_bits, cfg.dac_bits
        S, P, X = cfg.slices, cfg.rows_per_cycle, cfg.xbar_steps
        m = Module()

        cells = [Signal(C * b, name=f"row{r}") for r in range(R)]

        # -- write port: biased encoding, slicing (low slice in column 0 of the group), flags
        wr = self.wr.payload
        u = Signal(cfg.weight_bits)
        m.d.comb += u.eq(wr.value.as_unsigned() + cfg.weight_bias)   # wraps into [0, 2^Bw)
        with m.If(self.wr.valid):
            with m.Switch(wr.row):
                for r in range(R):
                    with m.Case(r):
                        m.d.sync += cells[r].word_select(wr.group, S * b).eq(u)
            m.d.sync += self.flags.word_select(wr.group, S).eq(wr.flags)

        # -- the row group of this step: P rows of cells and levels
        group_cells = [Signal(C * b, name=f"group_row{p}") for p in range(P)]
        group_levels = [Signal(d, name=f"group_level{p}") for p in range(P)]
        if X == 1:
            m.d.comb += [group_cells[p].eq(cells[p]) for p in range(P)]
            m.d.comb += [group_levels[p].eq(self.levels[p]) for p in range(P)]
        else:
            with m.Switch(self.step):
                for i in range(X):
                    with m.Case(i):
                        m.d.comb += [group_cells[p].eq(cells[i * P + p]) for p in range(P)]
                        m.d.comb += [group_levels[p].eq(self.levels[i * P + p])
                                     for p in range(P)]

        # -- read: complement flagged columns (c XOR M), multiply by the level, sum per column
        flag_mask = Signal(C * b)
        m.d.comb += flag_mask.eq(Cat(self.flags[j].replicate(b) for j in range(C)))
        read_rows = []
        for p in range(P):
            stored = group_cells[p] ^ flag_mask
            if d == 1:
                # A 1-bit DAC level gates the whole row: one wide AND instead of C multipliers.
                gated = Signal(C * b, name=f"gated_row{p}")
                m.d.comb += gated.eq(stored & group_levels[p].replicate(C * b))
                read_rows.append([gated[j * b:(j + 1) * b] for j in range(C)])
            else:
                read_rows.append([stored[j * b:(j + 1) * b] * group_levels[p]
                                  for j in range(C)])

        partial = [Signal(cfg.read_bits, name=f"partial{j}") for j in range(C)]
        for j in range(C):
            m.d.comb += partial[j].eq(tree_sum(read_rows[p][j] for p in range(P)))
        partial_insum = Signal(cfg.insum_bits)
        m.d.comb += partial_insum.eq(tree_sum(group_levels))

        if cfg.pipeline_overlap:
            self._elaborate_held(m, partial, partial_insum)
            return m

        with m.If(self.clear):
            m.d.sync += [self.col_sum[j].eq(0) for j in range(C)]
            m.d.sync += self.insum.eq(0)
        with m.Elif(self.en):
            with m.If(self.step == 0):
                m.d.sync += [self.col_sum[j].eq(partial[j]) for j in range(C)]
                m.d.sync += self.insum.eq(partial_insum)
            with m.Else():
                m.d.sync += [self.col_sum[j].eq(self.col_sum[j] + partial[j]) for j in range(C)]
                m.d.sync += self.insum.eq(self.insum + partial_insum)

        return m

    def _elaborate_held(self, m, partial, partial_insum):
        # [pipeline] overlap: the column sums and the sample-and-hold bank. The step's new sums
        # are formed once (restart at step 0) and go to col_sum and, at the chunk's last step
        # (hold), to held as well, so the ADC reads the full sums of chunk t from held while
        # col_sum accumulates chunk t+1.
        cfg = self._cfg
        C = cfg.cols
        new_sum = [Signal(cfg.read_bits, name=f"new_sum{j}") for j in range(C)]
        new_insum = Signal(cfg.insum_bits)
        restart = self.step == 0
        m.d.comb += [new_sum[j].eq(Mux(restart, 0, self.col_sum[j]) + partial[j])
                     for j in range(C)]
        m.d.comb += new_insum.eq(Mux(restart, 0, self.insum) + partial_insum)
        with m.If(self.clear):
            m.d.sync += [self.col_sum[j].eq(0) for j in range(C)]
            m.d.sync += [self.held[j].eq(0) for j in range(C)]
            m.d.sync += [self.insum.eq(0), self.held_insum.eq(0)]
        with m.Elif(self.en):
            m.d.sync += [self.col_sum[j].eq(new_sum[j]) for j in range(C)]
            m.d.sync += self.insum.eq(new_insum)
            with m.If(self.hold):
                m.d.sync += [self.held[j].eq(new_sum[j]) for j in range(C)]
                m.d.sync += self.held_insum.eq(new_insum)
