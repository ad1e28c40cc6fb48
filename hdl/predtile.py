"""Predict -> crop -> compute in one design: the crop predictor, a frame buffer and a
``ConvTile`` (AQuA: the learned 0th layer chooses each image's crop, the tile computes the
cropped layer)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig
from arch.contract import FRACTION_BITS
from arch.geometry import ConvGeometry

from ._common import check_config
from .agu import RegionCropAGU
from .convtile import ConvTile
from .layouts import (agu_config_layout, index_bits, tile_layer_layout, tile_output_layout,
                      tile_pixel_layout, tile_read_layout, tile_weight_write_layout)
from .predictor import Predictor, choice_layout

__all__ = ["PredTile"]


class PredTile(wiring.Component):
    """One conv layer on ``ConvTile(cfg, geom)`` under the crop a :class:`Predictor` chooses
    for each image, all in RTL.

    **Run.** The host streams the whole ``geom.height x geom.width`` image row-major on
    ``pix`` (all channels per transfer). Every pixel goes to the predictor and into the frame
    buffer at ``row*width + col``. When the predictor's choice is valid, the next edge takes it
    and starts the tile with ``setup`` mode 1 (crop vector = the chosen crop, ``fraction``
    passed through by the predictor), and starts a replay :class:`~hdl.agu.RegionCropAGU` on
    the same kept window (``golden.crop.kept_window``): it reads the kept pixels from the frame
    buffer in the order the tile loads them (``golden.crop.agu_sequence``), one per clock the
    tile is ready. ``done`` (and ``error``) are the tile's; the clock ``done`` is high the next
    image may stream in. With ``pix`` always valid an image takes
    ``predictor_cycles + tile_cycles`` edges from the edge taking its first pixel to the edge
    raising ``done`` (``golden.predictor_hw.predictor_cycles``, ``golden.crop.tile_cycles``).

    ``choice`` holds the last choice taken (crop and fraction). ``wr``, ``layer``, ``rd``,
    ``rd_data`` are the tile's.

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        Unsigned inputs (the predictor's pixels).
    geom : :class:`~arch.geometry.ConvGeometry`
        The tile's layer; its ``height x width`` is the image size (multiples of 8).
    kernels, order, weights, biases, weight_bits
        The :class:`~hdl.predictor.Predictor`'s.

    Raises
    ------
    TypeError
        If ``cfg`` or ``geom`` has the wrong type.
    ValueError
        If ``cfg`` has signed inputs, or as ``ConvTile`` and ``Predictor`` raise.
    """

    def __init__(self, cfg: AccelConfig, geom: ConvGeometry, *, kernels, order, weights,
                 biases, weight_bits: int = 8):
        self._cfg = check_config(cfg)
        if not isinstance(geom, ConvGeometry):
            raise TypeError(f"geom must be a ConvGeometry, not {geom!r}")
        if cfg.input_signed:
            raise ValueError(f"the predictor takes unsigned pixels; {cfg.name} has signed "
                             f"inputs")
        self._geom = geom
        self._pred = Predictor(height=geom.height, width=geom.width,
                               channels=geom.in_channels, pixel_bits=cfg.input_bits,
                               kernels=kernels, order=order, weights=weights, biases=biases,
                               weight_bits=weight_bits)
        self._tile = ConvTile(cfg, geom)
        super().__init__({
            "wr":       In(stream.Signature(tile_weight_write_layout(cfg, geom),
                                            always_ready=True)),
            "layer":    In(tile_layer_layout(cfg, geom)),
            "fraction": In(FRACTION_BITS),
            "pix":      In(stream.Signature(tile_pixel_layout(cfg, geom))),
            "rd":       In(tile_read_layout(geom)),
            "rd_data":  Out(tile_output_layout(cfg, geom)),
            "choice":   Out(choice_layout()),
            "busy":     Out(1),
            "done":     Out(1),
            "error":    Out(1),
        })

    cfg = property(lambda self: self._cfg)
    geom = property(lambda self: self._geom)

    def elaborate(self, platform):
        # The frame buffer decouples the predictor (which needs the whole image) from the
        # tile (which wants only the kept pixels, after the choice): the replay AGU walks the
        # same window the tile derives from the crop vector, so its addresses and the tile's
        # loads stay in lockstep through the tile's own fmap handshake.
        cfg, g = self._cfg, self._geom
        H, W = g.height, g.width
        m = Module()
        m.submodules.pred = pred = self._pred
        m.submodules.tile = tile = self._tile
        m.submodules.replay = replay = RegionCropAGU(cfg, max_height=H, max_width=W)
        m.submodules.frame = frame = Memory(shape=tile_pixel_layout(cfg, g).members["x"],
                                            depth=H * W, init=[])
        fb_w, fb_r = frame.write_port(), frame.read_port(domain="comb")

        running = Signal()          # the tile runs the image in the frame buffer
        held = Signal()             # ... and has not raised done yet
        m.d.comb += held.eq(running & ~tile.done)
        # -- load: pixels into the predictor and the frame buffer
        waddr = Signal(index_bits(H * W))
        take = Signal()
        m.d.comb += [
            pred.fraction.eq(self.fraction),
            pred.pix.valid.eq(self.pix.valid & ~held),
            pred.pix.payload.x.eq(self.pix.payload.x.as_value()),
            self.pix.ready.eq(pred.pix.ready & ~held),
            take.eq(self.pix.valid & self.pix.ready),
            fb_w.en.eq(take), fb_w.addr.eq(waddr), fb_w.data.eq(self.pix.payload.x),
        ]
        with m.If(take):
            m.d.sync += waddr.eq(Mux(waddr == H * W - 1, 0, waddr + 1))

        # -- the choice starts the tile (crop mode) and the replay AGU on the kept window
        ch = pred.choice.payload
        go = Signal()
        m.d.comb += [go.eq(pred.choice.valid & ~held & ~tile.busy),
                     pred.choice.ready.eq(go)]
        su = tile.setup
        m.d.comb += [su.height.eq(H), su.width.eq(W), su.mode.eq(1), su.crop.eq(ch.crop),
                     su.fraction.eq(ch.fraction), tile.start.eq(go)]
        win = Signal(agu_config_layout(H, W))
        half = 1 << (FRACTION_BITS - 1)
        amount = {}
        for side, size in (("r", H), ("c", W)):
            n = (ch.fraction * size + half) >> FRACTION_BITS
            cap = (size - 1) >> 1
            amount[side] = Mux(n < cap, n, cap)
        m.d.comb += [win.height.eq(H), win.width.eq(W),
                     win.r0.eq(Mux(ch.crop[3], amount["r"], 0)),
                     win.r1.eq(H - Mux(ch.crop[2], amount["r"], 0)),
                     win.c0.eq(Mux(ch.crop[1], amount["c"], 0)),
                     win.c1.eq(W - Mux(ch.crop[0], amount["c"], 0)),
                     # a fraction the tile refuses (error at the start edge) replays nothing
                     replay.setup.eq(win), replay.start.eq(go & (ch.fraction < half))]
        with m.If(tile.done):
            m.d.sync += running.eq(0)
        with m.If(go):
            m.d.sync += [running.eq(1), self.choice.eq(ch)]

        # -- replay: kept pixels from the frame buffer into the tile
        m.d.comb += [
            fb_r.addr.eq(replay.addr.payload.linear),
            tile.fmap.valid.eq(replay.addr.valid),
            tile.fmap.payload.x.eq(fb_r.data),
            replay.addr.ready.eq(tile.fmap.ready),
        ]

        # -- the tile's ports
        wiring.connect(m, wiring.flipped(self.wr), tile.wr)
        m.d.comb += [tile.layer.eq(self.layer), tile.rd.eq(self.rd),
                     self.rd_data.eq(tile.rd_data), self.done.eq(tile.done),
                     self.error.eq(tile.error), self.busy.eq(held | tile.busy)]
        return m
