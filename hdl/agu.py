"""The region-crop address generator (AQuA): one address per cycle of every kept input position
of a feature map, cropped positions skipped for free (``golden.crop``)."""

from numbers import Integral

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig

from ._common import above, check_config
from .layouts import agu_address_layout, agu_config_layout, index_bits

__all__ = ["RegionCropAGU"]

#: The largest map side the generator accepts (addresses stay below 2**24).
MAX_SIDE = 4096


def invalid_window(setup, max_height: int, max_width: int):
    """Whether ``setup`` (``height, width, r0, r1, c0, c1`` as in
    :func:`~hdl.layouts.agu_config_layout`) is a run the AGU refuses: a size of 0 or above the
    maximum, or a window that is empty or reaches outside the map."""
    return ((setup.height == 0) | above(setup.height, max_height)
            | (setup.width == 0) | above(setup.width, max_width)
            | (setup.r0 >= setup.r1) | (setup.r1 > setup.height)
            | (setup.c0 >= setup.c1) | (setup.c1 > setup.width))


def _side(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 1 <= value <= MAX_SIDE:
        raise ValueError(f"{name} must be an integer in [1, {MAX_SIDE}], not {value}")
    return int(value)


class RegionCropAGU(wiring.Component):
    """Address generator for one image under one crop window.

    At a clock edge with ``start`` high while not ``busy``, the configuration ``setup``
    (``height``, ``width`` and the kept window ``[r0, r1) x [c0, c1)``) is latched. If it is
    valid (``0 < height <= max_height``, ``0 < width <= max_width``, ``r0 < r1 <= height``,
    ``c0 < c1 <= width``), ``busy`` rises and ``addr`` streams every kept position once,
    row-major over the window (``golden.crop.agu_sequence``): one address per clock while
    ``addr.ready`` is high, none spent on cropped positions. The edge that transfers the last
    address drops ``busy`` and raises ``done`` for one clock. An invalid configuration does not
    start a run: the start edge raises ``error`` (held until the next start) and ``done``.
    ``start`` while ``busy`` is ignored; a new image may start at any clock after ``busy``
    falls, including the clock in which ``done`` is high, without a reset.

    With a consumer that is always ready a run takes ``(r1 - r0)*(c1 - c0) + 1`` edges from
    the start edge to the edge raising ``done``, both included (``golden.crop.agu_cycles``).
    Outside a run ``addr.payload`` holds the registers of the last address (0 after reset;
    after a rejected start, the start position of the rejected window).

    Parameters
    ----------
    cfg : :class:`~arch.config.AccelConfig`
        The tile configuration (the AGU does not depend on it; taken for uniformity).
    max_height, max_width : int
        Largest map size the run-time configuration may ask for, in ``[1, 4096]``.

    Members
    -------
    setup : ``In(agu_config_layout(max_height, max_width))``
        Map size and kept window; sampled at the start edge only.
    start : ``In(1)``
        Start a run (ignored while ``busy``).
    addr : ``Out(stream.Signature(agu_address_layout(max_height, max_width)))``
        ``row``, ``col``, ``linear = row*width + col``, ``first``, ``last``.
    busy : ``Out(1)``
        A run is in progress (equals ``addr.valid``).
    done : ``Out(1)``
        High for one clock after a run ends (or a start is rejected).
    error : ``Out(1)``
        The last start was rejected (invalid configuration).

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~arch.config.AccelConfig`, or a size is not an integer.
    ValueError
        If ``max_height`` or ``max_width`` is outside ``[1, 4096]``.
    """

    def __init__(self, cfg: AccelConfig, *, max_height: int = 32, max_width: int = 32):
        self._cfg = check_config(cfg)
        self._max_height = _side("max_height", max_height)
        self._max_width = _side("max_width", max_width)
        super().__init__({
            "setup":  In(agu_config_layout(self._max_height, self._max_width)),
            "start":  In(1),
            "addr":   Out(stream.Signature(agu_address_layout(self._max_height,
                                                              self._max_width))),
            "busy":   Out(1),
            "done":   Out(1),
            "error":  Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def max_height(self) -> int:
        return self._max_height

    @property
    def max_width(self) -> int:
        return self._max_width

    @property
    def latency(self) -> int:
        """1: the first address is valid one clock after the start edge."""
        return 1

    def elaborate(self, platform):
        # Two counters (row, col) walk the window; the linear address is carried alongside
        # (+1 per column, +width per row via `row_base = row*width + c0`), so the only
        # multiplier is the one forming the first address at the start edge.
        m = Module()
        cfg_in = self.setup
        lay = agu_config_layout(self._max_height, self._max_width)
        held = Signal(lay)                     # the latched configuration
        row = Signal(index_bits(self._max_height))
        col = Signal(index_bits(self._max_width))
        lin_bits = index_bits(self._max_height * self._max_width)
        linear = Signal(lin_bits)
        row_base = Signal(lin_bits)
        busy = Signal()

        bad = Signal()
        m.d.comb += bad.eq(invalid_window(cfg_in, self._max_height, self._max_width))

        first = (row == held.r0) & (col == held.c0)
        last = (row + 1 == held.r1) & (col + 1 == held.c1)
        m.d.comb += [
            self.addr.valid.eq(busy),
            self.addr.payload.row.eq(row),
            self.addr.payload.col.eq(col),
            self.addr.payload.linear.eq(linear),
            self.addr.payload.first.eq(first),
            self.addr.payload.last.eq(last),
            self.busy.eq(busy),
        ]

        m.d.sync += self.done.eq(0)
        with m.If(~busy & self.start):
            start_addr = cfg_in.r0 * cfg_in.width + cfg_in.c0
            m.d.sync += [
                held.eq(cfg_in),
                row.eq(cfg_in.r0),
                col.eq(cfg_in.c0),
                linear.eq(start_addr),
                row_base.eq(start_addr),
                busy.eq(~bad),
                self.error.eq(bad),
                self.done.eq(bad),
            ]
        with m.Elif(busy & self.addr.ready):
            with m.If(last):
                m.d.sync += [busy.eq(0), self.done.eq(1)]
            with m.Elif(col + 1 == held.c1):
                m.d.sync += [
                    row.eq(row + 1),
                    col.eq(held.c0),
                    linear.eq(row_base + held.width),
                    row_base.eq(row_base + held.width),
                ]
            with m.Else():
                m.d.sync += [col.eq(col + 1), linear.eq(linear + 1)]
        return m
