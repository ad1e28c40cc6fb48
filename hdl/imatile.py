"""A conv layer larger than one crossbar: the ``ConvTile`` front end (crop windows, feature-map
memory, im2col gather) feeding an :class:`~hdl.ima.IMA`, run in passes
(``docs/arithmetic.md`` section 9)."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from arch.config import AccelConfig, ConfigError
from arch.geometry import ConvGeometry, ImaPlan, Mapping

from ._common import check_config
from .convtile import ConvTile, TileState, tile_signature
from .ima import IMA
from .layouts import (ima_tile_layer_layout, ima_tile_weight_write_layout, input_layout,
                      tile_pixel_layout)

__all__ = ["IMATile"]


class IMATile(ConvTile):
    """One pass of a conv layer (``geom``, any number of im2col rows and output channels) for
    one image under one crop, on an IMA of ``cfg.ima_crossbars`` crossbars.

    The layer's crossbars are laid out by :meth:`arch.geometry.Mapping.ima`: pass ``p`` (the
    ``layer.pass`` field) programs crossbar ``lane*span + i`` with row tile ``c*span + i`` of
    output group ``(p // chunks)*lanes + lane``, ``c = p % chunks``. Setup, load, gather,
    ``done``, ``error`` and read-out are the :class:`~hdl.convtile.ConvTile`'s, and one run
    takes ``golden.crop.tile_cycles`` edges; the gathered vector holds all ``geom.rows``
    im2col rows, and each crossbar gets its ``rows``-row slice (zeros past the last row).

    A pass that completes its groups (``c = chunks - 1``) writes their channels of the output
    memory: ``sat(relu(round_shift(Σ row tiles + bias)))``; an earlier pass writes the sum of
    its row tiles, plus the previous passes' (``c > 0``), into a partial-sum memory at the
    position. The host runs every pass of an image in order (reprogramming the weights while
    idle, then ``start`` with the same setup and pixels); the output memory then holds the
    whole layer, ``golden.crop.cropped_conv2d``.

    Elaborating sets ``strobes`` (``take``: the IMA takes a vector, ``out``: its ``o.valid``,
    ``first``: its ``layer.first``, ``psum_rd`` / ``psum_wr``: the partial-sum memory's read and
    write enables, ``None`` with one chunk), which ``cosim.imatile.rtl_ima_events`` counts.

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The crossbar configuration (``cfg.ima_crossbars`` crossbars per IMA).
    geom : :class:`~arch.geometry.ConvGeometry`
        The layer and its largest input map.
    crossbars : int, optional
        Crossbars of the IMA (default ``cfg.ima_crossbars``).

    Raises
    ------
    TypeError
        If ``cfg`` or ``geom`` has the wrong type.
    ConfigError
        If the layer spans more than ``cfg.max_row_tiles`` row tiles.
    """

    def __init__(self, cfg: AccelConfig, geom: ConvGeometry, crossbars: int | None = None):
        self._cfg = check_config(cfg)
        if not isinstance(geom, ConvGeometry):
            raise TypeError(f"geom must be a ConvGeometry, not {geom!r}")
        mapping = Mapping(cfg, geom)
        if mapping.row_tiles > cfg.max_row_tiles:
            raise ConfigError(f"conv geometry {geom.in_channels}x{geom.kernel}x{geom.kernel} "
                              f"spans {mapping.row_tiles} row tiles; {cfg.name} allows at "
                              f"most {cfg.max_row_tiles}")
        self._geom = geom
        self._plan = mapping.ima(crossbars)
        plan = self._plan
        wiring.Component.__init__(self, tile_signature(
            cfg, geom, wr_layout=ima_tile_weight_write_layout(cfg, plan.used_crossbars),
            layer_layout=ima_tile_layer_layout(cfg, geom, plan.passes)))

    @property
    def plan(self) -> ImaPlan:
        return self._plan

    @property
    def memories(self) -> list[dict]:
        g, cfg, plan = self._geom, self._cfg, self._plan
        positions = g.out_height * g.out_width
        words = {"fmap_mem": (g.height * g.width, tile_pixel_layout(cfg, g).size)}
        for j in range(Mapping(cfg, g).groups):
            words[f"out_mem{j}"] = (positions, cfg.outputs * cfg.output_bits)
        if plan.chunks > 1:
            words["psum_mem"] = (positions, plan.lanes * cfg.outputs
                                 * cfg.sum_bits(Mapping(cfg, g).row_tiles))
        return [{"name": name, "depth": depth, "width": width, "bits": depth * width}
                for name, (depth, width) in words.items()]

    def _staging_layout(self):
        shape = input_layout(self._cfg).members["x"].elem_shape
        return data.StructLayout({"x": data.ArrayLayout(shape, self._geom.rows)})

    def _crossbars(self, m: Module, f: SimpleNamespace):
        cfg, g, plan = self._cfg, self._geom, self._plan
        mapping = Mapping(cfg, g)
        O, R, Bx = cfg.outputs, cfg.rows, cfg.input_bits
        lanes, span, chunks = plan.lanes, plan.span, plan.chunks
        bases = -(-mapping.groups // lanes)             # values of p // chunks
        positions = g.out_height * g.out_width
        m.submodules.ima = ima = IMA(cfg, lanes, span, mapping.row_tiles)

        # -- the pass: chunk c of the row tiles, group base (p // chunks) * lanes
        p = self.layer["pass"]
        chunk = Signal(range(max(chunks, 2)))
        gbase = Signal(range(max(bases, 2)))
        m.d.comb += [chunk.eq(p % chunks if chunks > 1 else 0),
                     gbase.eq(p // chunks if chunks > 1 else p)]
        last = Signal()
        m.d.comb += last.eq(chunk == chunks - 1)

        # -- weights, settings, the biases of the pass's groups
        m.d.comb += [
            ima.wr.valid.eq(self.wr.valid),
            ima.wr.payload.xbar.eq(self.wr.payload.xbar),
            ima.wr.payload.w.row.eq(self.wr.payload.row),
            ima.wr.payload.w.group.eq(self.wr.payload.group),
            ima.wr.payload.w.value.eq(self.wr.payload.value),
            ima.wr.payload.w.flags.eq(self.wr.payload.flags),
            ima.layer.shift.eq(self.layer.shift),
            ima.layer.relu.eq(self.layer.relu),
            ima.layer.first.eq(chunk == 0),
            ima.layer.last.eq(last),
        ]
        with m.Switch(gbase):
            for b in range(bases):
                with m.Case(b):
                    for lane in range(lanes):
                        j = b * lanes + lane
                        if j < mapping.groups:
                            m.d.comb += [ima.layer.bias[lane * O + o].eq(
                                self.layer.bias[j * O + o]) for o in range(O)]

        # -- the vector: crossbar lane*span + i gets rows of row tile chunk*span + i
        K = g.rows
        flat = f.staging.as_value()
        padded = Cat(flat, Const(0, (chunks * span * R - K) * Bx)) \
            if chunks * span * R > K else flat
        m.d.comb += [ima.i.valid.eq(f.staged), f.ready.eq(ima.i.ready), ima.o.ready.eq(1)]
        for lane in range(lanes):
            for i in range(span):
                dst = ima.i.payload.xbar[lane * span + i].as_value()
                if chunks == 1:
                    m.d.comb += dst.eq(padded[i * R * Bx:(i + 1) * R * Bx])
                    continue
                with m.Switch(chunk):
                    for c in range(chunks):
                        k = c * span + i
                        with m.Case(c):
                            m.d.comb += dst.eq(padded[k * R * Bx:(k + 1) * R * Bx])

        # -- the position in flight, the partial sums of earlier passes
        pending_lin, pending_last = Signal.like(f.staged_lin), Signal()
        with m.If(f.take):
            m.d.sync += [pending_lin.eq(f.staged_lin), pending_last.eq(f.staged_last)]
        # the IMA's event strobes, for counting in simulation (cosim.imatile.rtl_ima_events)
        self.strobes = SimpleNamespace(take=ima.i.valid & ima.i.ready, out=ima.o.valid,
                                       first=ima.layer.first, psum_rd=None, psum_wr=None)
        if chunks > 1:
            m.submodules.psum_mem = psum_mem = Memory(
                shape=data.ArrayLayout(signed(ima.sum_bits), lanes * O), depth=positions,
                init=[])
            psum_wr, psum_rd = psum_mem.write_port(), psum_mem.read_port()
            m.d.comb += [
                psum_rd.en.eq(f.take),          # read at the take edge, held until FINAL
                psum_rd.addr.eq(f.staged_lin),
                ima.psum.eq(psum_rd.data),
                psum_wr.en.eq(ima.o.valid & ~last),
                psum_wr.addr.eq(pending_lin),
                psum_wr.data.eq(ima.o.payload.sum),
            ]
            self.strobes.psum_rd, self.strobes.psum_wr = psum_rd.en, psum_wr.en

        # -- outputs: one memory per output group, written by the pass completing it
        out_rds = []
        for j in range(mapping.groups):
            mem = Memory(shape=data.ArrayLayout(signed(cfg.output_bits), O), depth=positions,
                         init=[])
            m.submodules[f"out_mem{j}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            lane = j % lanes
            m.d.comb += [
                wr.en.eq(ima.o.valid & last & (gbase == j // lanes)),
                wr.addr.eq(pending_lin),
                wr.data.eq(Cat(ima.o.payload.y[lane * O + o] for o in range(O))),
                rd.addr.eq(self.rd.row * f.shown.width + self.rd.col),
            ]
            out_rds.append(rd)
        with m.If(ima.o.valid & pending_last):
            m.d.sync += [f.state.eq(TileState.IDLE), self.done.eq(1),
                         f.shown.eq(f.held_out)]

        # -- read-out, masked by the last finished run's output window
        shown, inside = f.shown, Signal()
        m.d.sync += inside.eq((self.rd.row >= shown.r0) & (self.rd.row < shown.r1)
                              & (self.rd.col >= shown.c0) & (self.rd.col < shown.c1))
        words = Cat(rd.data.as_value() for rd in out_rds)[:g.out_channels * cfg.output_bits]
        m.d.comb += self.rd_data.y.eq(Mux(inside, words, 0))
