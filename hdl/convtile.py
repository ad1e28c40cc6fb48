"""A conv layer on crossbars: region-crop address generation, feature-map memories, im2col
gather and one :class:`~hdl.datapath.Datapath` per output-channel group (AQuA, ``golden.crop``).
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig
from arch.contract import FRACTION_BITS
from arch.geometry import ConvGeometry, Mapping

from ._common import above, check_config
from .agu import RegionCropAGU, invalid_window
from .datapath import Datapath
from .layouts import (agu_config_layout, chunk_bits, index_bits, input_layout, plan_bits,
                      tile_layer_layout,
                      tile_output_layout, tile_pixel_layout, tile_read_layout,
                      tile_setup_layout, tile_weight_write_layout)

__all__ = ["ConvTile", "TileState", "tile_signature", "DEFAULT_GEOMETRY", "default_geometry",
           "default_tile"]

#: The geometry ``make verilog`` builds: the demo CNN's first layer (1 -> 8, 3x3, stride 1,
#: padding 1, 32x32), which fits every shipped configuration in one row tile.
DEFAULT_GEOMETRY = ConvGeometry(in_channels=1, out_channels=8, kernel=3, stride=1, padding=1,
                                height=32, width=32)


def default_geometry(cfg: AccelConfig) -> ConvGeometry:
    """:data:`DEFAULT_GEOMETRY` if it fits one crossbar of ``cfg``; else the same layer with
    the largest square kernel (at most 3) whose taps fit, and as many input channels as the
    rows allow (``small_signed``, 8 rows: 2 channels, 2x2 kernel, padding 0)."""
    check_config(cfg)
    if DEFAULT_GEOMETRY.rows <= cfg.rows:
        return DEFAULT_GEOMETRY
    k = max(n for n in (1, 2, 3) if n * n <= cfg.rows)
    return ConvGeometry(in_channels=cfg.rows // (k * k), out_channels=8, kernel=k,
                        stride=1, padding=(k - 1) // 2, height=32, width=32)


def default_tile(cfg: AccelConfig) -> "ConvTile":
    """The tile ``make verilog`` builds for ``cfg``: :func:`default_geometry`."""
    return ConvTile(cfg, default_geometry(cfg))


class TileState(enum.Enum, shape=2):
    IDLE = 0      #: waiting for ``start``
    LOAD = 1      #: writing the kept input pixels into the feature-map memory
    COMPUTE = 2   #: gathering windows, running the crossbars, writing outputs


def tile_signature(cfg: AccelConfig, geom: ConvGeometry, *, wr_layout=None,
                   layer_layout=None) -> wiring.Signature:
    """The ports of a conv tile, defined once: :class:`ConvTile`'s, or with ``wr_layout`` and
    ``layer_layout`` replacing its weight-write and ``layer`` payloads those of a tile with
    other crossbars behind the same front end (:class:`~hdl.imatile.IMATile`).

    Members: ``wr`` (in, always-ready stream of weight writes), ``layer`` (in), ``setup``
    (in, :func:`~hdl.layouts.tile_setup_layout`), ``start`` (in, 1), ``fmap`` (in, stream of
    :func:`~hdl.layouts.tile_pixel_layout`), ``rd`` (in), ``rd_data`` (out,
    :func:`~hdl.layouts.tile_output_layout`), ``state`` (out, :class:`TileState`), ``busy``,
    ``done``, ``error`` (out, 1)."""
    if wr_layout is None:
        wr_layout = tile_weight_write_layout(cfg, geom)
    if layer_layout is None:
        layer_layout = tile_layer_layout(cfg, geom)
    return wiring.Signature({
        "wr":      In(stream.Signature(wr_layout, always_ready=True)),
        "layer":   In(layer_layout),
        "setup":   In(tile_setup_layout(cfg, geom)),
        "start":   In(1),
        "fmap":    In(stream.Signature(tile_pixel_layout(cfg, geom))),
        "rd":      In(tile_read_layout(geom)),
        "rd_data": Out(tile_output_layout(cfg, geom)),
        "state":   Out(TileState),
        "busy":    Out(1),
        "done":    Out(1),
        "error":   Out(1),
    })


def _divide(value, divisor: int):
    """``value // divisor`` for a non-negative value and a constant divisor (a shift for
    powers of two)."""
    if divisor & (divisor - 1) == 0:
        return value >> (divisor.bit_length() - 1)
    return value // Const(divisor)


class ConvTile(wiring.Component):
    """One conv layer (``geom``) for one image under one crop, then ``done``.

    **Run.** At a clock edge with ``start`` high while not ``busy``, ``setup`` is sampled: the
    input map size ``height x width`` and the kept window, explicit (``mode = 0``) or from a
    crop vector and fraction (``mode = 1``, ``golden.crop.kept_window`` with
    ``f = fraction / 256``). The computed output window follows (``golden.crop.output_window``).
    If the setup is invalid (a size of 0 or above the maximum, a window outside the map or
    empty, a fraction of 1/2 or more, a map smaller than the kernel with padding) the start edge
    raises ``error`` and ``done`` and nothing else happens. Otherwise:

    1. **Load.** A :class:`~hdl.agu.RegionCropAGU` walks the kept window row-major; the host
       streams the kept pixels in that order on ``fmap`` (all ``in_channels`` of a pixel per
       transfer) and each is written to the input memory at ``row*width + col``. Cropped pixels
       are never sent and never written.
    2. **Compute.** A second AGU walks the computed output window. For each output position the
       gather reads the ``kernel**2`` taps of its receptive field from the input memory, one
       per clock; taps outside the kept window (cropped, or padding) read as 0. The im2col
       vector (row ``c*kernel**2 + ky*kernel + kx``, as ``torch.nn.functional.unfold``) goes to
       every crossbar at once; their outputs (bias, FlexPoint shift, ReLU, saturation per
       ``layer``) are written to the output memory at ``oy*Wo + ox``. The gather of the next
       position overlaps the crossbars' work on the current one.

    **Precision plan** (``setup.plan = 1``, ``docs/arithmetic.md`` section 9): ``setup.bits``
    are the input bit widths of the top, bottom, left and right bands of ``fraction``
    (``golden.precision``); the kept window is the crop of the 0-bit sides. Each pixel is
    reduced to its band's width (corners: the minimum) as it is loaded, and each output
    position's vector goes to the crossbars with ``first_chunk = floor((Bx - p_max) / d)``,
    ``p_max`` the largest width its receptive field touches inside the map, so it streams only
    ``T - first_chunk`` chunks. A plan with every side ``0`` or ``Bx`` runs exactly as that
    crop; a side above ``Bx`` is refused. The cycles are
    ``golden.crop.tile_cycles(..., chunks=T_pos)``.

    The edge that writes the last output drops ``busy`` and raises ``done`` for one clock (with
    an empty output window, the edge that loads the last pixel). With ``fmap`` always valid,
    a run takes ``golden.crop.tile_cycles`` edges from the start edge to the edge raising
    ``done``, both included. A new image may start in the clock ``done`` is high, without a
    reset; weights and ``layer`` stay.

    **Read-out.** ``rd`` addresses an output pixel; ``rd_data`` shows it one clock later, or 0
    if the position lies outside the last run's computed output window (cropped outputs are
    0, ``golden.crop.cropped_conv2d``), or before any run finished.

    **Weights.** ``wr`` writes a weight and flags to crossbar ``xbar`` as
    :class:`~hdl.datapath.Datapath` does; only while not ``busy``.

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The crossbar configuration (one crossbar per output group).
    geom : :class:`~arch.geometry.ConvGeometry`
        The layer; ``geom.rows <= cfg.rows`` (one row tile). ``geom.height x geom.width``
        is the largest input map the tile accepts (the actual size is set at run time).

    Raises
    ------
    TypeError
        If ``cfg`` or ``geom`` has the wrong type.
    ConfigError
        If the layer's im2col rows do not fit one crossbar.
    """

    def __init__(self, cfg: AccelConfig, geom: ConvGeometry = DEFAULT_GEOMETRY):
        self._cfg = check_config(cfg)
        if not isinstance(geom, ConvGeometry):
            raise TypeError(f"geom must be a ConvGeometry, not {geom!r}")
        Mapping(cfg, geom).check_one_row_tile()
        self._geom = geom
        super().__init__(tile_signature(cfg, geom))

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def geom(self) -> ConvGeometry:
        return self._geom

    @property
    def memories(self) -> list[dict]:
        """The feature-map memories: name, depth, word width and bits (for the manifest)."""
        g, cfg = self._geom, self._cfg
        words = {"fmap_mem": (g.height * g.width, tile_pixel_layout(cfg, g).size),
                 "out_mem": (g.out_height * g.out_width,
                             tile_output_layout(cfg, g).size)}
        return [{"name": name, "depth": depth, "width": width, "bits": depth * width}
                for name, (depth, width) in words.items()]

    def _pixel_bits(self, m, held, n_r, n_c, bits, row, col):
        """The precision of input pixel ``(row, col)``: the minimum of the widths of the bands
        it lies in (top ``row < n_r``, bottom ``row >= height - n_r``, left, right), ``Bx``
        in the centre."""
        Bx = self._cfg.input_bits
        inside = [(n_r != 0) & (row < n_r), (n_r != 0) & (row >= held.height - n_r),
                  (n_c != 0) & (col < n_c), (n_c != 0) & (col >= held.width - n_c)]
        p = Const(Bx, plan_bits(self._cfg))
        for flag, b in zip(inside, bits):
            p = Mux(flag & (b < p), b, p)
        px = Signal(plan_bits(self._cfg), name="pixel_bits")
        m.d.comb += px.eq(p)
        return px

    def _reduce(self, m, values, p):
        """``values`` (activations, ``Bx`` bits of the config's signedness) reduced to ``p``
        bits: ``k = Bx - p``; ``(x + 2**(k-1))`` with its low ``k`` bits cleared, or, if that
        is above the ``Bx``-bit maximum, the ``Bx``-bit maximum with its low ``k`` bits
        cleared (``saturate((x + h) >> k, lo_p, hi_p) << k``; rounding up never goes below
        the minimum)."""
        cfg = self._cfg
        Bx = cfg.input_bits
        kb = Signal(range(Bx + 1), name="drop_bits")
        m.d.comb += kb.eq(Bx - p)
        mask = Signal(Bx + 1, name="drop_mask")                 # 2**k - 1
        m.d.comb += mask.eq((Const(1, Bx + 1) << kb) - 1)
        half = Signal(Bx, name="drop_half")                     # 2**(k-1), 0 for k = 0
        m.d.comb += half.eq((mask + 1) >> 1)
        top = cfg.input_max
        out = []
        for i, x in enumerate(values):
            s = Signal(signed(Bx + 2), name=f"round_{i}")
            m.d.comb += s.eq(x + half)
            r = Signal(Bx, name=f"reduced_{i}")
            m.d.comb += r.eq(Mux(s > top, Const(top & ((1 << Bx) - 1), Bx), s[:Bx])
                             & ~mask[:Bx])
            out.append(r)
        return out

    def _first_chunk(self, m, base_row, base_col, held, n_r, n_c, bits):
        """``t0 = floor((Bx - p_max) / d)`` of the position whose receptive field starts at
        ``(base_row, base_col)``: ``p_max`` is the largest precision over the 9 cells (row
        class top / middle / bottom x column class left / middle / right, each cell the
        minimum of its two bands) that the field touches inside the map."""
        cfg, k = self._cfg, self._geom.kernel
        Bx, d = cfg.input_bits, cfg.dac_bits
        pb = plan_bits(cfg)
        classes = []
        for base, n, size, (lo_b, hi_b) in ((base_row, n_r, held.height, bits[:2]),
                                            (base_col, n_c, held.width, bits[2:])):
            end = base + k                                        # one past the last tap
            classes.append([((n != 0) & (base < n), lo_b),
                            ((end > n) & (base < size - n), Const(Bx, pb)),
                            ((n != 0) & (end > size - n), hi_b)])
        p_max = Const(0, pb)
        for touch_r, b_r in classes[0]:
            for touch_c, b_c in classes[1]:
                cell = Mux(b_r < b_c, b_r, b_c)
                p_max = Mux(touch_r & touch_c & (cell > p_max), cell, p_max)
        pm = Signal(pb, name="p_max")
        m.d.comb += pm.eq(p_max)
        t0 = Signal(chunk_bits(cfg), name="first_chunk")
        with m.Switch(pm):
            for p in range(1, Bx + 1):
                with m.Case(p):
                    m.d.comb += t0.eq((Bx - p) // d)
        return t0

    def _staging_layout(self):
        """The gathered im2col vector: one crossbar's rows."""
        return input_layout(self._cfg)

    def elaborate(self, platform):
        # The front (setup, load, gather) is shared with hdl.imatile.IMATile, which replaces
        # the crossbars (_crossbars) by an IMA and gathers all of the layer's rows.
        m = Module()
        self._crossbars(m, self._front(m))
        return m

    def _front(self, m: Module) -> SimpleNamespace:
        cfg, g = self._cfg, self._geom
        k, s, p, taps = g.kernel, g.stride, g.padding, g.taps
        Ho_max, Wo_max = g.out_height, g.out_width

        m.submodules.agu_in = agu_in = RegionCropAGU(cfg, max_height=g.height,
                                                     max_width=g.width)
        m.submodules.agu_out = agu_out = RegionCropAGU(cfg, max_height=Ho_max,
                                                       max_width=Wo_max)
        m.submodules.fmap_mem = fmap_mem = Memory(
            shape=tile_pixel_layout(cfg, g).members["x"], depth=g.height * g.width, init=[])
        fmap_wr, fmap_rd = fmap_mem.write_port(), fmap_mem.read_port()

        state = Signal(TileState)
        idle = state == TileState.IDLE
        m.d.comb += [self.state.eq(state), self.busy.eq(~idle)]

        # -- the sampled setup: kept window, output window, validity (combinational)
        su = self.setup
        H, W = su.height, su.width
        frac_half = 1 << (FRACTION_BITS - 1)
        # the kept window, and the computed output window, as the AGUs take them
        win = Signal(agu_config_layout(g.height, g.width))
        hb, wb = len(win.height), len(win.width)
        n_r, n_c = Signal(hb), Signal(wb)
        for n, size in ((n_r, H), (n_c, W)):
            amount = (su.fraction * size + frac_half) >> FRACTION_BITS
            cap = (size - 1) >> 1
            m.d.comb += n.eq(Mux(amount < cap, amount, cap))
        m.d.comb += [win.height.eq(H), win.width.eq(W)]
        # a precision plan: the bit widths of the top, bottom, left and right bands (Bx
        # everywhere otherwise, so nothing is reduced); a 0-bit side is a cropped side
        Bx = cfg.input_bits
        bits = [Signal(plan_bits(cfg), name=f"plan_{side}")
                for side in ("top", "bottom", "left", "right")]
        m.d.comb += [b.eq(Mux(su.plan, su.bits[i], Bx)) for i, b in enumerate(bits)]
        with m.If(su.plan):
            m.d.comb += [win.r0.eq(Mux(bits[0] == 0, n_r, 0)),
                         win.r1.eq(H - Mux(bits[1] == 0, n_r, 0)),
                         win.c0.eq(Mux(bits[2] == 0, n_c, 0)),
                         win.c1.eq(W - Mux(bits[3] == 0, n_c, 0))]
        with m.Elif(su.mode):
            m.d.comb += [win.r0.eq(Mux(su.crop[3], n_r, 0)), win.r1.eq(H - Mux(su.crop[2], n_r, 0)),
                         win.c0.eq(Mux(su.crop[1], n_c, 0)), win.c1.eq(W - Mux(su.crop[0], n_c, 0))]
        with m.Else():
            m.d.comb += [win.r0.eq(su.r0), win.r1.eq(su.r1), win.c0.eq(su.c0), win.c1.eq(su.c1)]
        bad = Signal()
        m.d.comb += bad.eq(invalid_window(win, g.height, g.width)
                           | ((su.mode | su.plan) & (su.fraction >= frac_half))
                           | (su.plan & Cat(above(su.bits[i], Bx) for i in range(4)).any())
                           | (H + 2 * p < k) | (W + 2 * p < k))
        out_lay = agu_config_layout(Ho_max, Wo_max)
        ow = Signal(out_lay)
        for size, lo, hi, n_out, first, end in ((H, win.r0, win.r1, ow.height, ow.r0, ow.r1),
                                                (W, win.c0, win.c1, ow.width, ow.c0, ow.c1)):
            # golden.crop._out_range: outputs whose [o*s - p, o*s - p + k) meets [lo, hi).
            m.d.comb += n_out.eq(_divide(size + 2 * p - k, s) + 1)
            lead = lo + p + s
            m.d.comb += first.eq(Mux(lead >= k, _divide(lead - k, s), 0))
            stop = _divide(hi - 1 + p, s) + 1
            m.d.comb += end.eq(Mux(stop < n_out, stop, n_out))

        # -- latched per image
        held = Signal.like(win)
        held_nr, held_nc = Signal.like(n_r), Signal.like(n_c)       # band sizes
        held_bits = [Signal.like(b, name=f"held_{b.name}") for b in bits]
        held_out = Signal(out_lay)
        shown = Signal(out_lay)          # the output window rd masks with (last finished run)
        begin = Signal()
        m.d.comb += begin.eq(idle & self.start & ~bad)
        m.d.sync += self.done.eq(0)
        with m.If(idle & self.start):
            m.d.sync += self.error.eq(bad)
            with m.If(bad):
                m.d.sync += self.done.eq(1)
            with m.Else():
                m.d.sync += [held.eq(win), held_out.eq(ow), state.eq(TileState.LOAD),
                             held_nr.eq(n_r), held_nc.eq(n_c),
                             *[hb_.eq(b) for hb_, b in zip(held_bits, bits)]]

        # -- load: the input AGU addresses the kept pixels the host streams
        m.d.comb += [
            agu_in.start.eq(begin),
            agu_in.setup.eq(win),
            agu_in.addr.ready.eq(self.fmap.valid),
            self.fmap.ready.eq(agu_in.addr.valid),
            fmap_wr.en.eq(agu_in.addr.valid & self.fmap.valid),
            fmap_wr.addr.eq(agu_in.addr.payload.linear),
        ]
        # each pixel reduced to its band's precision as it is written (docs/arithmetic.md
        # section 9): p = min of the bands the pixel lies in (Bx in the centre), k = Bx - p
        # low bits dropped by rounding half up, saturated to the p-bit range, shifted back
        px_bits = self._pixel_bits(m, held, held_nr, held_nc, held_bits,
                                   agu_in.addr.payload.row, agu_in.addr.payload.col)
        reduced = self._reduce(m, [self.fmap.payload.x[c] for c in range(g.in_channels)],
                               px_bits)
        m.d.comb += fmap_wr.data.eq(Cat(*reduced))
        out_empty = (held_out.r0 >= held_out.r1) | (held_out.c0 >= held_out.c1)
        loaded = Signal()
        m.d.comb += loaded.eq((state == TileState.LOAD) & fmap_wr.en & agu_in.addr.payload.last)
        m.d.comb += [
            agu_out.start.eq(loaded & ~out_empty),
            agu_out.setup.eq(held_out),
        ]
        with m.If(loaded):
            m.d.sync += state.eq(Mux(out_empty, TileState.IDLE, TileState.COMPUTE))
            with m.If(out_empty):
                m.d.sync += [self.done.eq(1), shown.eq(held_out)]

        # -- gather: kernel**2 reads per output position into the staging vector
        sb = (max(g.height, g.width) * s + k).bit_length() + 1
        base_row, base_col = Signal(signed(sb)), Signal(signed(sb))
        ky, kx = Signal(index_bits(k)), Signal(index_bits(k))
        tap = Signal(index_bits(taps))
        pos_lin, pos_last = Signal(agu_out.addr.payload.linear.shape()), Signal()
        issuing = Signal()             # a read is issued at the next edge
        gathering = Signal()           # issuing or capturing
        cap_valid, cap_tap, cap_ok = Signal(), Signal(index_bits(taps)), Signal()
        staged = Signal()
        staging = Signal(self._staging_layout())
        staged_lin, staged_last = Signal.like(pos_lin), Signal()
        take = Signal()                # the crossbars take the staged vector at the next edge
        ready = Signal()               # the crossbars can take a vector (driven by _crossbars)
        m.d.comb += take.eq(staged & ready)
        first_chunk = self._first_chunk(m, base_row, base_col, held, held_nr, held_nc,
                                        held_bits)

        in_row, in_col = base_row + ky, base_col + kx
        tap_ok = Signal()
        m.d.comb += tap_ok.eq((in_row >= held.r0) & (in_row < held.r1)
                              & (in_col >= held.c0) & (in_col < held.c1))
        m.d.comb += [
            fmap_rd.en.eq(issuing),
            fmap_rd.addr.eq(Mux(tap_ok, in_row[:hb] * held.width + in_col[:wb], 0)),
            agu_out.addr.ready.eq(~gathering & (~staged | take)),
        ]
        with m.If(agu_out.addr.valid & agu_out.addr.ready):
            oy, ox = agu_out.addr.payload.row, agu_out.addr.payload.col
            pad = Const(p, signed(p.bit_length() + 1))
            m.d.sync += [base_row.eq(oy * s - pad), base_col.eq(ox * s - pad), ky.eq(0), kx.eq(0),
                         tap.eq(0), pos_lin.eq(agu_out.addr.payload.linear),
                         pos_last.eq(agu_out.addr.payload.last), issuing.eq(1),
                         gathering.eq(1)]
        with m.If(issuing):
            m.d.sync += [cap_valid.eq(1), cap_tap.eq(tap), cap_ok.eq(tap_ok), tap.eq(tap + 1)]
            with m.If(kx == k - 1):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
            with m.Else():
                m.d.sync += kx.eq(kx + 1)
            with m.If(tap == taps - 1):
                m.d.sync += issuing.eq(0)
        with m.Elif(cap_valid):
            m.d.sync += cap_valid.eq(0)
        with m.If(cap_valid):
            with m.Switch(cap_tap):
                for j in range(taps):
                    with m.Case(j):
                        m.d.sync += [staging.x[c * taps + j].eq(Mux(cap_ok, fmap_rd.data[c], 0))
                                     for c in range(g.in_channels)]
            with m.If(cap_tap == taps - 1):
                m.d.sync += [staged.eq(1), staged_lin.eq(pos_lin), staged_last.eq(pos_last),
                             gathering.eq(0)]
                # the position's first chunk (per-region precision), for a staging vector that
                # has one (one crossbar's input; the IMATile's streams every chunk)
                if "first_chunk" in self._staging_layout().members:
                    m.d.sync += staging.first_chunk.eq(first_chunk)
        with m.If(take):
            m.d.sync += staged.eq(0)
        return SimpleNamespace(state=state, staged=staged, staging=staging, ready=ready,
                               take=take, staged_lin=staged_lin, staged_last=staged_last,
                               held_out=held_out, shown=shown)

    def _crossbars(self, m: Module, f: SimpleNamespace):
        cfg, g = self._cfg, self._geom
        O, groups = cfg.outputs, Mapping(cfg, g).groups
        state, staged, staging, take, shown = f.state, f.staged, f.staging, f.take, f.shown
        m.submodules.out_mem = out_mem = Memory(
            shape=tile_output_layout(cfg, g).members["y"], depth=g.out_height * g.out_width,
            init=[])
        out_wr, out_rd = out_mem.write_port(), out_mem.read_port()
        dps = []
        for x in range(groups):
            dp = Datapath(cfg)
            m.submodules[f"xbar{x}"] = dp
            dps.append(dp)
        m.d.comb += f.ready.eq(dps[0].i.ready)

        # -- crossbars: one per output group, in lockstep; outputs into the output memory
        pending_lin, pending_last = Signal.like(f.staged_lin), Signal()
        with m.If(take):
            m.d.sync += [pending_lin.eq(f.staged_lin), pending_last.eq(f.staged_last)]
        for x, dp in enumerate(dps):
            m.d.comb += [
                dp.wr.valid.eq(self.wr.valid & (self.wr.payload.xbar == x)),
                dp.wr.payload.row.eq(self.wr.payload.row),
                dp.wr.payload.group.eq(self.wr.payload.group),
                dp.wr.payload.value.eq(self.wr.payload.value),
                dp.wr.payload.flags.eq(self.wr.payload.flags),
                dp.layer.shift.eq(self.layer.shift),
                dp.layer.relu.eq(self.layer.relu),
                dp.i.valid.eq(staged),
                dp.i.payload.eq(staging),
                dp.o.ready.eq(1),
            ]
            m.d.comb += [dp.layer.bias[o].eq(self.layer.bias[x * O + o]) for o in range(O)]
        m.d.comb += [
            out_wr.en.eq(dps[0].o.valid),
            out_wr.addr.eq(pending_lin),
            out_wr.data.eq(Cat(dps[o // O].o.payload.y[o % O] for o in range(g.out_channels))),
        ]
        with m.If(dps[0].o.valid & pending_last):
            m.d.sync += [state.eq(TileState.IDLE), self.done.eq(1), shown.eq(f.held_out)]

        # -- read-out, masked by the last finished run's output window
        inside = Signal()
        m.d.comb += out_rd.addr.eq(self.rd.row * shown.width + self.rd.col)
        m.d.sync += inside.eq((self.rd.row >= shown.r0) & (self.rd.row < shown.r1)
                              & (self.rd.col >= shown.c0) & (self.rd.col < shown.c1))
        m.d.comb += self.rd_data.y.eq(Mux(inside, out_rd.data.as_value(), 0))
