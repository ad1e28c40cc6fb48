"""The crop predictor (AQuA's learned 0th layer) in RTL: gradient kernels on the pixel stream,
pooled sums, a serial linear classifier and the priority choice
(``docs/arithmetic.md``, "The crop predictor in hardware"; golden model
``golden.predictor_hw.predict_int``)."""

from numbers import Integral

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from arch.contract import FRACTION_BITS

from ._common import tree_sum
from .layouts import index_bits

__all__ = ["Predictor", "PredictorState", "choice_layout", "pixel_layout", "GRID"]

GRID = 4            #: the pooled grid is GRID x GRID cells per kernel
MAX_SIDE = 1024


def pixel_layout(channels: int, pixel_bits: int) -> data.StructLayout:
    """One pixel, all channels (channel 0 in the low bits): the same bits as the tile's
    ``tile_pixel_layout`` for unsigned inputs."""
    return data.StructLayout({"x": data.ArrayLayout(unsigned(pixel_bits), channels)})


def choice_layout() -> data.StructLayout:
    """The predictor's answer: the crop index (``top<<3 | bottom<<2 | left<<1 | right``, the
    tile's ``setup.crop``) and the fraction code passed through from ``fraction``."""
    return data.StructLayout({"crop": 4, "fraction": FRACTION_BITS})


class PredictorState(enum.Enum, shape=3):
    LOAD = 0      #: taking pixels
    BIAS = 1      #: the last cell sum is written; the first row's bias is loaded
    MAC = 2       #: multiply-accumulate of the current row, one feature per clock
    DECIDE = 3    #: compare the row's accumulator with 0 (and load the next row's bias)
    OUT = 4       #: the choice is valid, waiting for ready


def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value}")
    return int(value)


def _divide(value, divisor: int):
    if divisor & (divisor - 1) == 0:
        return value >> (divisor.bit_length() - 1)
    return value // Const(divisor)


class Predictor(wiring.Component):
    """The integer crop predictor for ``channels x height x width`` images.

    **Load.** ``pix`` takes the image row-major, one pixel (all channels) per transfer; it is
    ready whenever the predictor is in ``LOAD``. The channel sum ``g`` of each pixel goes
    through two line buffers (rows ``r-1`` and ``r-2``) and a two-column window; at every
    pixel of odd row and odd column ``(2*oy + 1, 2*ox + 1)`` the 3x3 window centred on
    ``(2*oy, 2*ox)`` is complete (row ``-1`` and column ``-1`` read as 0: the padding) and the
    four kernels' absolute responses are registered; the next clock adds them to the word of
    their grid cell in the cell memory (the first output of a cell writes instead of adding).

    **Classify.** After the last pixel (the clock after it writes the last cell sum and loads
    the first row's bias), for each row ``i`` of the evaluation order: 64 clocks add
    ``weights[i][f] * S[f]`` (``f = k*16 + cell``), and the next clock decides: ``acc >= 0`` chooses ``order[i]``; otherwise the next
    row starts (that clock loads its bias), or, after the last row, crop 0 is chosen.

    **Answer.** ``choice`` is valid with the crop and ``fraction`` (sampled at the first pixel)
    until taken; the clock after the transfer the predictor takes pixels again. With ``pix``
    always valid an image takes ``golden.predictor_hw.predictor_cycles`` edges from the one
    taking the first pixel to the one raising ``choice.valid``.

    Parameters
    ----------
    height, width : int
        The image size, multiples of 8 (the 4x4 grid of a stride-2 conv), at most 1024.
    channels, pixel_bits : int
        Channels per pixel and their unsigned width.
    kernels : list of four 3x3 lists of int
        The gradient kernels (``golden.predictors.KERNELS``).
    order : sequence of int
        The crops (0..15, not 0) in evaluation order, cheapest first; may be empty.
    weights : list of ``len(order)`` lists of 64 int
        Signed ``weight_bits``-bit classifier weights, row per entry of ``order``.
    biases : list of ``len(order)`` int
        The biases, thresholds folded in.
    weight_bits : int
        Width of a weight.

    Members
    -------
    pix : ``In(stream.Signature(pixel_layout(channels, pixel_bits)))``
    fraction : ``In(FRACTION_BITS)``
        Passed through to ``choice.payload.fraction``.
    choice : ``Out(stream.Signature(choice_layout()))``
    state : ``Out(PredictorState)``
    position : ``Out(index_bits(len(order) + 1))``
        The row being evaluated (the chosen row, or ``len(order)`` for crop 0, in ``OUT``).

    Raises
    ------
    TypeError
        If a size or width is not an integer.
    ValueError
        For a bad size, kernel, order, weight or bias.
    """

    def __init__(self, *, height: int, width: int, channels: int, pixel_bits: int,
                 kernels, order, weights, biases, weight_bits: int = 8):
        self._height = _int("height", height, 8, MAX_SIDE)
        self._width = _int("width", width, 8, MAX_SIDE)
        for name, v in (("height", self._height), ("width", self._width)):
            if v % (2 * GRID):
                raise ValueError(f"{name} must be a multiple of {2 * GRID}, not {v}")
        self._channels = _int("channels", channels, 1, 64)
        self._pixel_bits = _int("pixel_bits", pixel_bits, 1, 32)
        self._weight_bits = _int("weight_bits", weight_bits, 2, 32)
        kernels = [[[int(v) for v in row] for row in k] for k in kernels]
        if len(kernels) != 4 or any(len(k) != 3 or any(len(r) != 3 for r in k)
                                    for k in kernels):
            raise ValueError("kernels must be four 3x3 integer kernels")
        self._kernels = kernels
        order = [int(c) for c in order]
        if any(not 1 <= c <= 15 for c in order) or len(set(order)) != len(order):
            raise ValueError(f"order must list distinct crops in [1, 15], not {order}")
        self._order = tuple(order)
        weights = [[int(v) for v in row] for row in weights]
        nf = 4 * GRID * GRID
        lo, hi = -(1 << (self._weight_bits - 1)), (1 << (self._weight_bits - 1)) - 1
        if len(weights) != len(order) or any(len(r) != nf for r in weights):
            raise ValueError(f"weights must be {len(order)} rows of {nf}, not "
                             f"{len(weights)} rows")
        if any(not lo <= v <= hi for r in weights for v in r):
            raise ValueError(f"weights must lie in [{lo}, {hi}] ({self._weight_bits} bits)")
        self._weights = weights
        biases = [int(b) for b in biases]
        if len(biases) != len(order):
            raise ValueError(f"biases must be {len(order)} values, not {len(biases)}")
        self._biases = biases
        super().__init__({
            "pix": In(stream.Signature(pixel_layout(self._channels, self._pixel_bits))),
            "fraction": In(FRACTION_BITS),
            "choice": Out(stream.Signature(choice_layout())),
            "state": Out(PredictorState),
            "position": Out(index_bits(len(order) + 1)),
        })

    height = property(lambda self: self._height)
    width = property(lambda self: self._width)
    channels = property(lambda self: self._channels)
    pixel_bits = property(lambda self: self._pixel_bits)
    weight_bits = property(lambda self: self._weight_bits)
    order = property(lambda self: self._order)

    @property
    def gray_bits(self) -> int:
        return (self._channels * ((1 << self._pixel_bits) - 1)).bit_length()

    @property
    def cell(self) -> tuple[int, int]:
        return self._height // (2 * GRID), self._width // (2 * GRID)

    @property
    def sum_bits(self) -> int:
        ch, cw = self.cell
        l1 = max(sum(abs(v) for r in k for v in r) for k in self._kernels)
        return max(1, (ch * cw * l1 * ((1 << self.gray_bits) - 1)).bit_length())

    @property
    def acc_bits(self) -> int:
        smax = (1 << self.sum_bits) - 1
        worst = [sum(abs(w) for w in r) * smax + abs(b)
                 for r, b in zip(self._weights, self._biases)] or [1]
        return max(worst).bit_length() + 1

    def elaborate(self, platform):
        # The window: two line buffers give each column's rows r-2, r-1 beside the incoming
        # row r; two column registers hold columns c-2, c-1. Every output of the stride-2 conv
        # is due at an odd (row, col) pixel, so the kernels are combinational on the window,
        # registered once, and folded into the cell memory the next clock (read-modify-write
        # on a combinational read port: outputs come at most every other clock).
        H, W, G = self._height, self._width, GRID
        ch, cw = self.cell
        gb, sb = self.gray_bits, self.sum_bits
        R = len(self._order)
        m = Module()

        state = Signal(PredictorState)
        m.d.comb += self.state.eq(state)
        row, col = Signal(index_bits(H)), Signal(index_bits(W))
        frac = Signal(FRACTION_BITS)
        first_pixel = Signal(init=1)

        m.submodules.lb1 = lb1 = Memory(shape=gb, depth=W, init=[])
        m.submodules.lb2 = lb2 = Memory(shape=gb, depth=W, init=[])
        lb1_w, lb1_r = lb1.write_port(), lb1.read_port(domain="comb")
        lb2_w, lb2_r = lb2.write_port(), lb2.read_port(domain="comb")
        m.submodules.cells = cells = Memory(shape=data.ArrayLayout(sb, 4), depth=G * G, init=[])
        cell_w, cell_r = cells.write_port(), cells.read_port(domain="comb")

        take = Signal()
        m.d.comb += [self.pix.ready.eq(state == PredictorState.LOAD),
                     take.eq(self.pix.valid & self.pix.ready)]
        g = Signal(gb)
        m.d.comb += g.eq(tree_sum(list(self.pix.payload.x)) if self._channels > 1
                         else self.pix.payload.x[0])

        # the column at c: rows r-2, r-1, r
        cur = [Signal(gb, name=f"cur{i}") for i in range(3)]
        w0 = [Signal(gb, name=f"win0_{i}") for i in range(3)]     # column c-2
        w1 = [Signal(gb, name=f"win1_{i}") for i in range(3)]     # column c-1
        m.d.comb += [lb1_r.addr.eq(col), lb2_r.addr.eq(col),
                     cur[0].eq(lb2_r.data), cur[1].eq(lb1_r.data), cur[2].eq(g)]
        m.d.comb += [lb1_w.addr.eq(col), lb1_w.data.eq(g), lb1_w.en.eq(take),
                     lb2_w.addr.eq(col), lb2_w.data.eq(lb1_r.data), lb2_w.en.eq(take)]
        with m.If(take):
            m.d.sync += [a.eq(b) for a, b in zip(w0, w1)]
            m.d.sync += [a.eq(b) for a, b in zip(w1, cur)]

        top, left = row == 1, col == 1           # row -1 / column -1: the padding
        due = Signal()
        m.d.comb += due.eq(take & row[0] & col[0])
        window = []
        for ky in range(3):
            window.append([])
            for kx in range(3):
                v = (w0, w1, cur)[kx][ky]
                pad = [c for c, on in ((top, ky == 0), (left, kx == 0)) if on]
                window[ky].append(Mux(pad[0] | pad[-1], 0, v) if pad else v)
        l1 = max(sum(abs(v) for r in k for v in r) for k in self._kernels)
        rb = max(1, (l1 * ((1 << gb) - 1)).bit_length()) + 1
        resp = []
        for i, k in enumerate(self._kernels):
            terms = [window[ky][kx] * Const(k[ky][kx], signed(abs(k[ky][kx]).bit_length() + 1))
                     for ky in range(3) for kx in range(3) if k[ky][kx]]
            v = Signal(signed(rb), name=f"resp{i}")
            m.d.comb += v.eq(tree_sum(terms) if terms else 0)
            a = Signal(unsigned(rb), name=f"abs{i}")
            m.d.comb += a.eq(Mux(v < 0, -v, v))
            resp.append(a)

        # stage 1: the registered responses and their cell
        s1_valid, s1_first = Signal(), Signal()
        s1_cell = Signal(range(G * G))
        s1_abs = [Signal(unsigned(rb), name=f"s1_abs{i}") for i in range(4)]
        oy, ox = row >> 1, col >> 1
        gy, gx = _divide(oy, ch), _divide(ox, cw)
        m.d.sync += s1_valid.eq(due)
        with m.If(due):
            m.d.sync += [s1_cell.eq(gy * G + gx),
                         s1_first.eq((oy == gy * ch) & (ox == gx * cw))]
            m.d.sync += [a.eq(b) for a, b in zip(s1_abs, resp)]

        # the row/column counters and the pixel-phase bookkeeping
        last_pixel = (row == H - 1) & (col == W - 1)
        with m.If(take):
            with m.If(first_pixel):
                m.d.sync += [frac.eq(self.fraction), first_pixel.eq(0)]
            with m.If(col == W - 1):
                m.d.sync += [col.eq(0), row.eq(Mux(row == H - 1, 0, row + 1))]
            with m.Else():
                m.d.sync += col.eq(col + 1)

        # classifier: weight ROM, bias ROM, serial MAC
        feat = Signal(range(4 * G * G))
        pos = Signal(index_bits(R + 1))
        acc = Signal(signed(self.acc_bits))
        m.d.comb += self.position.eq(pos)
        crop = Signal(4)
        m.d.comb += [self.choice.valid.eq(state == PredictorState.OUT),
                     self.choice.payload.crop.eq(crop),
                     self.choice.payload.fraction.eq(frac)]

        # the cell memory: stage 2 (read-modify-write) while loading, feature reads in MAC
        in_mac = state == PredictorState.MAC
        m.d.comb += cell_r.addr.eq(Mux(in_mac, feat[:4], s1_cell))
        m.d.comb += [cell_w.addr.eq(s1_cell), cell_w.en.eq(s1_valid)]
        for i in range(4):
            m.d.comb += cell_w.data[i].eq(Mux(s1_first, 0, cell_r.data[i]) + s1_abs[i])

        if R:
            m.submodules.wrom = wrom = Memory(
                shape=signed(self._weight_bits), depth=R * 4 * G * G,
                init=[v for r in self._weights for v in r])
            m.submodules.brom = brom = Memory(
                shape=signed(max(2, max(abs(b) for b in self._biases).bit_length() + 1)),
                depth=R, init=self._biases)
            m.submodules.orom = orom = Memory(shape=4, depth=R, init=list(self._order))
            w_r = wrom.read_port(domain="comb")
            b_r = brom.read_port(domain="comb")
            o_r = orom.read_port(domain="comb")
            nxt = Signal.like(pos)
            m.d.comb += nxt.eq(Mux(state == PredictorState.DECIDE, pos + 1, 0))
            m.d.comb += [w_r.addr.eq(Cat(feat, pos[:index_bits(R)]) if R > 1 else feat),
                         b_r.addr.eq(nxt), o_r.addr.eq(pos)]
            sel = Signal(sb)
            m.d.comb += sel.eq(cell_r.data.as_value().word_select(feat[4:], sb))
            product = w_r.data * sel

        with m.Switch(state):
            with m.Case(PredictorState.LOAD):
                with m.If(take & last_pixel):
                    if R:
                        m.d.sync += [state.eq(PredictorState.BIAS), pos.eq(0)]
                    else:
                        m.d.sync += [state.eq(PredictorState.OUT), crop.eq(0), pos.eq(0)]
            with m.Case(PredictorState.BIAS):
                if R:
                    m.d.sync += [state.eq(PredictorState.MAC), feat.eq(0), acc.eq(b_r.data)]
            with m.Case(PredictorState.MAC):
                if R:
                    m.d.sync += [acc.eq(acc + product), feat.eq(feat + 1)]
                    with m.If(feat == 4 * G * G - 1):
                        m.d.sync += state.eq(PredictorState.DECIDE)
            with m.Case(PredictorState.DECIDE):
                if R:
                    with m.If(acc >= 0):
                        m.d.sync += [state.eq(PredictorState.OUT), crop.eq(o_r.data)]
                    with m.Elif(pos == R - 1):
                        m.d.sync += [state.eq(PredictorState.OUT), crop.eq(0), pos.eq(R)]
                    with m.Else():
                        m.d.sync += [state.eq(PredictorState.MAC), pos.eq(pos + 1),
                                     feat.eq(0), acc.eq(b_r.data)]
            with m.Case(PredictorState.OUT):
                with m.If(self.choice.ready):
                    m.d.sync += [state.eq(PredictorState.LOAD), first_pixel.eq(1)]
        return m
