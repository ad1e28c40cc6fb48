"""One layer geometry and one crossbar mapping, shared by ``golden``, ``hdl``, ``cosim`` and the CLI.

:class:`ConvGeometry` is the one description of a crossbar layer: a convolution of
``in_channels -> out_channels`` with a square ``kernel``, ``stride`` and zero ``padding`` on a
``height x width`` input map. A fully connected layer is a 1x1 convolution on a 1x1 map
(:meth:`ConvGeometry.linear`). For a ``ConvTile`` the map size is the largest it accepts (the actual
size is set at run time).

:class:`Mapping` is how such a layer lies on the crossbars of an :class:`~arch.config.AccelConfig`
(``docs/arithmetic.md``, sections 6 and 9): im2col rows in ``unfold`` order (input channel, then
kernel row, then kernel column), cut into row tiles of ``cfg.rows``; output channels cut into groups
of ``cfg.outputs``; one physical crossbar per (row tile, group).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import AccelConfig, ConfigError

__all__ = ["conv_out_size", "ConvGeometry", "Mapping", "ImaPlan", "ImaSlot", "IM2COL_ORDER"]

#: The order of a position's im2col rows: ``torch.nn.functional.unfold``'s, channel-major.
IM2COL_ORDER = ("in_channel", "kernel_row", "kernel_col")


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution: ``floor((size + 2*padding - kernel) / stride) + 1``, or
    ``0`` where the kernel does not fit the padded input (``docs/arithmetic.md``, section 9).

    >>> conv_out_size(32, 3, 1, 1), conv_out_size(32, 3, 2, 1), conv_out_size(2, 3)
    (32, 16, 0)
    """
    return max(0, (size + 2 * padding - kernel) // stride + 1)


@dataclass(frozen=True)
class ConvGeometry:
    """A crossbar layer: ``in_channels -> out_channels``, ``kernel x kernel``, ``stride``,
    ``padding`` (zeros), on a ``height x width`` input map.

    Raises
    ------
    ConfigError
        If a field is not an integer in range, the padding is not smaller than the kernel, or the
        kernel does not fit the padded map.
    """
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    height: int = 1
    width: int = 1

    def __post_init__(self):
        for name, lo in (("in_channels", 1), ("out_channels", 1), ("kernel", 1), ("stride", 1),
                         ("padding", 0), ("height", 1), ("width", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"conv geometry: {name} must be an integer >= {lo}, "
                                  f"not {value!r}")
        if self.padding >= self.kernel:
            raise ConfigError(f"conv geometry: padding {self.padding} must be smaller than "
                              f"the kernel {self.kernel}")
        if max(self.height, self.width) > 4096:
            raise ConfigError("conv geometry: maps larger than 4096 on a side are not supported")
        if self.height + 2 * self.padding < self.kernel \
                or self.width + 2 * self.padding < self.kernel:
            raise ConfigError(f"conv geometry: the {self.kernel}x{self.kernel} kernel does not "
                              f"fit a {self.height}x{self.width} map with padding "
                              f"{self.padding}")

    @classmethod
    def linear(cls, in_features: int, out_features: int) -> "ConvGeometry":
        """A fully connected layer: a 1x1 convolution on a 1x1 map."""
        return cls(in_features, out_features)

    @property
    def rows(self) -> int:
        """im2col rows of one output position (the K of the ``[K, N]`` weight matrix):
        ``in_channels * kernel**2``."""
        return self.in_channels * self.kernel * self.kernel

    @property
    def taps(self) -> int:
        """Kernel positions ``kernel**2``: input-memory reads per output position."""
        return self.kernel * self.kernel

    def out_size(self, size: int) -> int:
        """Output side for an input side ``size`` (:func:`conv_out_size`)."""
        return conv_out_size(size, self.kernel, self.stride, self.padding)

    @property
    def out_height(self) -> int:
        return self.out_size(self.height)

    @property
    def out_width(self) -> int:
        return self.out_size(self.width)

    @property
    def positions(self) -> int:
        """Output positions on the full map: ``out_height * out_width``."""
        return self.out_height * self.out_width

    def with_size(self, height: int, width: int) -> "ConvGeometry":
        """The same layer on a ``height x width`` map."""
        return dataclasses.replace(self, height=int(height), width=int(width))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Mapping:
    """How the layer ``geometry`` lies on the crossbars of ``cfg``: ``row_tiles`` tiles of
    ``cfg.rows`` im2col rows times ``groups`` groups of ``cfg.outputs`` output channels, one
    crossbar each. The weight matrix is zero padded to ``[padded_rows, padded_outputs]``."""
    cfg: AccelConfig
    geometry: ConvGeometry

    def __post_init__(self):
        if not isinstance(self.cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {self.cfg!r}")
        if not isinstance(self.geometry, ConvGeometry):
            raise TypeError(f"geometry must be a ConvGeometry, not {self.geometry!r}")

    @property
    def row_tiles(self) -> int:
        return -(-self.geometry.rows // self.cfg.rows)

    @property
    def groups(self) -> int:
        return -(-self.geometry.out_channels // self.cfg.outputs)

    @property
    def crossbars(self) -> int:
        return self.row_tiles * self.groups

    @property
    def padded_rows(self) -> int:
        return self.row_tiles * self.cfg.rows

    @property
    def padded_outputs(self) -> int:
        return self.groups * self.cfg.outputs

    @property
    def im2col_order(self) -> tuple[str, ...]:
        return IM2COL_ORDER

    def ima(self, crossbars: int | None = None) -> "ImaPlan":
        """How the ``row_tiles x groups`` crossbars of the layer run on an IMA of ``crossbars``
        crossbars (default ``cfg.ima_crossbars``): see :class:`ImaPlan`."""
        n = self.cfg.ima_crossbars if crossbars is None else crossbars
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"crossbars must be a positive integer, not {n!r}")
        kt, g = self.row_tiles, self.groups
        if kt <= n:
            span, lanes, chunks = kt, min(n // kt, g), 1
        else:
            span, lanes, chunks = n, 1, -(-kt // n)
        return ImaPlan(self, n, lanes, span, chunks, chunks * -(-g // lanes))

    def passes(self, crossbars: int | None = None) -> int:
        """Runs (weight programmings) of the layer on an IMA of ``crossbars`` crossbars."""
        return self.ima(crossbars).passes

    def check_one_row_tile(self) -> "Mapping":
        """``self`` if one crossbar holds the layer's im2col rows, else ``ConfigError``."""
        g = self.geometry
        if self.row_tiles > 1:
            raise ConfigError(f"conv geometry {g.in_channels}x{g.kernel}x{g.kernel} needs "
                              f"{g.rows} crossbar rows; {self.cfg.name} has {self.cfg.rows} "
                              f"(a ConvTile maps a layer onto one row tile)")
        return self


@dataclass(frozen=True)
class ImaSlot:
    """What crossbar ``slot`` of an IMA holds in one pass: row tile ``row_tile`` of output
    group ``group`` (reduced in lane ``lane``), or zero weights when ``used`` is false (a row
    tile beyond the layer's, or a group beyond its last)."""
    slot: int
    lane: int
    group: int
    row_tile: int
    used: bool


@dataclass(frozen=True)
class ImaPlan:
    """A layer's crossbars on one IMA of ``crossbars`` crossbars (``docs/arithmetic.md``,
    section 9). The IMA reduces ``lanes`` output groups at a time, each over ``span``
    crossbars side by side (slot ``s = lane*span + i``); one *pass* is one programming of the
    weights and one run over every output position. With ``kt = row_tiles``:

    * ``kt <= crossbars``: ``span = kt``, ``lanes = min(crossbars // kt, groups)``,
      ``chunks = 1``: every output group is complete in one pass;
    * ``kt > crossbars``: ``span = crossbars``, ``lanes = 1``, ``chunks = ceil(kt / crossbars)``:
      a group takes ``chunks`` passes, whose partial sums are added in a buffer.

    Pass ``p`` holds chunk ``c = p % chunks`` of groups ``(p // chunks)*lanes + lane``; slot
    ``lane*span + i`` holds row tile ``c*span + i``. ``passes = chunks * ceil(groups / lanes)``.
    """
    mapping: Mapping
    crossbars: int
    lanes: int
    span: int
    chunks: int
    passes: int

    @property
    def used_crossbars(self) -> int:
        """Crossbars the IMA instantiates for this layer: ``lanes * span``."""
        return self.lanes * self.span

    def chunk(self, p: int) -> int:
        return p % self.chunks

    def group_base(self, p: int) -> int:
        """The output group of lane 0 in pass ``p``."""
        return (p // self.chunks) * self.lanes

    def first(self, p: int) -> bool:
        """Pass ``p`` starts its groups' sums (no partial sum from a previous pass)."""
        return self.chunk(p) == 0

    def last(self, p: int) -> bool:
        """Pass ``p`` completes its groups' sums (bias, shift, ReLU, saturation, outputs)."""
        return self.chunk(p) == self.chunks - 1

    def slots(self, p: int) -> list[ImaSlot]:
        """The crossbars of pass ``p``, slot by slot."""
        if not 0 <= p < self.passes:
            raise ValueError(f"pass must lie in [0, {self.passes - 1}], not {p}")
        m, c, base = self.mapping, self.chunk(p), self.group_base(p)
        out = []
        for lane in range(self.lanes):
            for i in range(self.span):
                j, k = base + lane, c * self.span + i
                out.append(ImaSlot(lane * self.span + i, lane, j, k,
                                   j < m.groups and k < m.row_tiles))
        return out
