"""AQuA region cropping: crop vectors, kept windows, a cropped conv layer and the AGU sequence.

Per image, a *crop vector* ``(top, bottom, left, right)`` of four bits says which borders of the
feature maps are removed, and a *crop fraction* ``f`` how much: every set side removes
``n = round(f * size)`` rows (top/bottom) or columns (left/right). What is left is the *kept
window*, a half-open rectangle ``(r0, r1, c0, c1)``: rows ``r0 <= r < r1``, columns
``c0 <= c < c1``. Later layers, whose maps are smaller, use the window scaled proportionally.

Cropped activations are zero (quantized to 0 bits) and are not computed: output positions whose
receptive field lies wholly in the cropped area are skipped (and read as 0).

Exact rules (all integer or :class:`fractions.Fraction` arithmetic, no float rounding):

* **Encoding.** ``CROP_VECTORS[i] = (top, bottom, left, right)`` with
  ``i = top*8 + bottom*4 + left*2 + right``; index 0 keeps everything, 15 crops all four sides.
* **Amount.** ``f`` must lie in ``[0, 1/2)``; the float is taken exactly
  (``Fraction(f)``). ``n_rows = min(floor(f*H + 1/2), floor((H-1)/2))`` and likewise
  ``n_cols`` with ``W``: round half up, capped so that cropping both sides keeps at least one
  row (column). ``r0 = top*n_rows``, ``r1 = H - bottom*n_rows``, ``c0 = left*n_cols``,
  ``c1 = W - right*n_cols``.
* **Scaling** to a map of ``H' x W'``: ``r0' = floor(r0*H'/H)``, ``r1' = ceil(r1*H'/H)`` (and
  columns alike): the start floors and the end ceils, so the scaled window covers the image of
  the original one, never shrinks to nothing, and is monotonic in the original window.
* **Computed outputs.** Output ``(oy, ox)`` of a conv with ``kernel k, stride s, padding p``
  reads input rows ``oy*s - p .. oy*s - p + k - 1``; it is computed iff that range meets
  ``[r0, r1)`` and the column range meets ``[c0, c1)``. Those positions form a rectangle
  (:func:`output_window`); the others are 0 in :func:`cropped_conv2d`.
* **Fractions in hardware.** The ``ConvTile`` takes ``f`` as an ``FRACTION_BITS``-bit code,
  ``f = code / 2**FRACTION_BITS`` (:func:`fraction_code`); with such an ``f`` the rules above
  are exact integer arithmetic, ``n = min((code*H + 2**(FRACTION_BITS-1)) >> FRACTION_BITS,
  (H-1) >> 1)``, which the RTL computes.
* **AGU order.** :func:`agu_sequence` lists every kept input position once, row-major over the
  window (row ``r0`` first, columns ``c0 .. c1-1`` within a row), with ``linear = row*W + col``,
  ``first`` on the first entry and ``last`` on the last.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real

import torch

from arch.config import AccelConfig
from arch.contract import FRACTION_BITS
from arch.geometry import ConvGeometry, Mapping, conv_out_size

from .layer import conv2d, matrix_mapping

__all__ = ["CROP_VECTORS", "crop_vector", "crop_index", "crop_amount", "kept_window",
           "scale_window", "check_window", "crop_activations", "output_window",
           "cropped_conv2d", "CropCounts", "crop_counts", "AGUEntry", "agu_sequence",
           "agu_cycles", "fraction_code", "tile_cycles", "ima_tile_cycles"]

#: The 16 crop vectors ``(top, bottom, left, right)``; index ``top*8 + bottom*4 + left*2 + right``.
CROP_VECTORS: tuple[tuple[int, int, int, int], ...] = tuple(
    ((i >> 3) & 1, (i >> 2) & 1, (i >> 1) & 1, i & 1) for i in range(16))

Window = tuple[int, int, int, int]


def crop_vector(crop) -> tuple[int, int, int, int]:
    """``crop`` as a ``(top, bottom, left, right)`` tuple: an index ``0..15`` or a 4-sequence of
    0/1 (booleans allowed).

    >>> crop_vector(9), crop_vector((1, 0, 0, 1))
    ((1, 0, 0, 1), (1, 0, 0, 1))
    """
    if isinstance(crop, Integral) and not isinstance(crop, bool):
        if not 0 <= crop < 16:
            raise ValueError(f"crop index must lie in [0, 15], not {crop}")
        return CROP_VECTORS[int(crop)]
    try:
        vec = tuple(int(b) for b in crop)
    except TypeError:
        raise TypeError(f"crop must be an index 0..15 or (top, bottom, left, right), "
                        f"not {crop!r}") from None
    if len(vec) != 4 or any(b not in (0, 1) for b in vec):
        raise ValueError(f"crop vector must be four bits (top, bottom, left, right), "
                         f"not {crop!r}")
    return vec


def crop_index(crop) -> int:
    """The index ``top*8 + bottom*4 + left*2 + right`` of ``crop``."""
    t, b, left, right = crop_vector(crop)
    return t * 8 + b * 4 + left * 2 + right


def _fraction(fraction) -> Fraction:
    if isinstance(fraction, bool) or not isinstance(fraction, (Real, Fraction)):
        raise TypeError(f"fraction must be a real number, not {fraction!r}")
    f = Fraction(fraction)
    if not 0 <= f < Fraction(1, 2):
        raise ValueError(f"fraction must lie in [0, 0.5), not {fraction}")
    return f


def _size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def crop_amount(fraction, size: int) -> int:
    """Rows (columns) one set side removes from ``size``:
    ``min(floor(fraction*size + 1/2), floor((size-1)/2))``.

    >>> [crop_amount(0.25, n) for n in (1, 2, 3, 4, 6, 32)]
    [0, 0, 1, 1, 2, 8]
    >>> crop_amount(0.49, 2), crop_amount(0.125, 4)     # capped; exact ties round up
    (0, 1)
    """
    f = _fraction(fraction)
    size = _size("size", size)
    return min(int(f * size + Fraction(1, 2)), (size - 1) // 2)


def kept_window(crop, fraction, H: int, W: int) -> Window:
    """The kept window ``(r0, r1, c0, c1)`` (half-open) of an ``H x W`` map.

    >>> kept_window(0b1010, 0.25, 32, 32)     # top and left
    (8, 32, 8, 32)
    >>> kept_window(15, 0.25, 32, 32)
    (8, 24, 8, 24)

    Raises
    ------
    ValueError
        If ``fraction`` is outside ``[0, 0.5)``, ``H`` or ``W`` is not positive or ``crop`` is
        not a crop vector.
    """
    top, bottom, left, right = crop_vector(crop)
    H, W = _size("H", H), _size("W", W)
    nr, nc = crop_amount(fraction, H), crop_amount(fraction, W)
    return top * nr, H - bottom * nr, left * nc, W - right * nc


def check_window(window, H: int, W: int) -> Window:
    """``window`` as a tuple of ints, if it is a non-empty window inside ``H x W``.

    Raises
    ------
    ValueError
        "window (r0, r1, c0, c1) = ... must satisfy 0 <= r0 < r1 <= H and 0 <= c0 < c1 <= W".
    """
    H, W = _size("H", H), _size("W", W)
    r0, r1, c0, c1 = (int(v) for v in window)
    if not (0 <= r0 < r1 <= H and 0 <= c0 < c1 <= W):
        raise ValueError(f"window (r0, r1, c0, c1) = {tuple(window)} must satisfy "
                         f"0 <= r0 < r1 <= {H} and 0 <= c0 < c1 <= {W}")
    return r0, r1, c0, c1


def scale_window(window, H_from: int, W_from: int, H_to: int, W_to: int) -> Window:
    """``window`` of an ``H_from x W_from`` map scaled to ``H_to x W_to``: starts floor, ends
    ceil.

    >>> scale_window((8, 24, 8, 24), 32, 32, 16, 16)
    (4, 12, 4, 12)
    >>> scale_window((1, 2, 0, 3), 3, 3, 2, 2)
    (0, 2, 0, 2)
    """
    r0, r1, c0, c1 = check_window(window, H_from, W_from)
    H_to, W_to = _size("H_to", H_to), _size("W_to", W_to)
    return (r0 * H_to // H_from, -(-r1 * H_to // H_from),
            c0 * W_to // W_from, -(-c1 * W_to // W_from))


def crop_activations(x: torch.Tensor, window) -> torch.Tensor:
    """``x [..., H, W]`` with every position outside ``window`` set to 0 (a new tensor)."""
    H, W = x.shape[-2], x.shape[-1]
    r0, r1, c0, c1 = check_window(window, H, W)
    out = torch.zeros_like(x)
    out[..., r0:r1, c0:c1] = x[..., r0:r1, c0:c1]
    return out


def _conv_params(kernel, stride, padding):
    for name, value, lo in (("kernel", kernel, 1), ("stride", stride, 1),
                            ("padding", padding, 0)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(kernel), int(stride), int(padding)


def _out_range(lo: int, hi: int, size: int, k: int, s: int, p: int) -> tuple[int, int]:
    """Outputs ``o`` in ``[0, n_out)`` whose input range ``[o*s - p, o*s - p + k)`` meets
    ``[lo, hi)``: ``o*s - p <= hi - 1`` and ``o*s - p + k - 1 >= lo``."""
    n_out = conv_out_size(size, k, s, p)
    first = max(0, -(-(lo - k + 1 + p) // s))
    end = min(n_out, (hi - 1 + p) // s + 1)
    return first, max(first, end)


def output_window(window, H: int, W: int, kernel: int, stride: int, padding: int) -> Window:
    """The output positions whose receptive field touches ``window``: a half-open rectangle of
    the ``Ho x Wo`` output map (empty ranges come back as ``(a, a)``).

    >>> output_window((8, 24, 8, 24), 32, 32, 3, 1, 1)
    (7, 25, 7, 25)
    >>> output_window((8, 24, 8, 24), 32, 32, 3, 2, 1)
    (4, 13, 4, 13)
    """
    r0, r1, c0, c1 = check_window(window, H, W)
    k, s, p = _conv_params(kernel, stride, padding)
    if H + 2 * p < k or W + 2 * p < k:
        raise ValueError(f"kernel {k} does not fit the {H}x{W} map with padding {p}")
    return (*_out_range(r0, r1, H, k, s, p), *_out_range(c0, c1, W, k, s, p))


def cropped_conv2d(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor,
                   bias: torch.Tensor | None = None, *, stride: int = 1, padding: int = 0,
                   shift: int = 0, relu: bool = False, window, layer=None) -> torch.Tensor:
    """:func:`golden.layer.conv2d` of the cropped input (zeros outside ``window``); outputs
    outside :func:`output_window` are not computed and are 0 (not ``finalize(bias)``, which a
    computed all-zero receptive field would give).

    ``x [B, Cin, H, W]``, ``w [Cout, Cin, k, k]``; returns int64 ``[B, Cout, Ho, Wo]``.
    """
    if w.dim() != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"w must be [Cout, Cin, k, k], not {list(w.shape)}")
    H, W = x.shape[-2], x.shape[-1]
    o = output_window(window, H, W, w.shape[2], stride, padding)
    y = conv2d(cfg, crop_activations(x, window), w, bias, stride=stride, padding=padding,
               shift=shift, relu=relu, layer=layer)
    return crop_activations(y, o) if o[0] < o[1] and o[2] < o[3] else torch.zeros_like(y)


@dataclass(frozen=True)
class CropCounts:
    """Work of one conv layer for one image, cropped and uncropped.

    ``positions``: output positions computed; ``macs``: multiply-accumulates
    (``positions * Cin*k*k * Cout``, zero padding included); ``activations``: crossbar
    matrix-vector activations (``row_tiles * output_groups * positions``). The ``*_full``
    fields are the same for the uncropped layer.
    """
    positions: int
    macs: int
    activations: int
    positions_full: int
    macs_full: int
    activations_full: int

    @property
    def saved_activations(self) -> int:
        return self.activations_full - self.activations


def crop_counts(cfg: AccelConfig, in_channels: int, out_channels: int, H: int, W: int,
                kernel: int, stride: int, padding: int, window) -> CropCounts:
    """Operations and crossbar activations of a ``Cin -> Cout`` ``kernel x kernel`` conv on an
    ``H x W`` map under ``window`` (see :class:`CropCounts`)."""
    k, s, p = _conv_params(kernel, stride, padding)
    r0, r1, c0, c1 = output_window(window, H, W, k, s, p)
    ho, wo = conv_out_size(H, k, s, p), conv_out_size(W, k, s, p)
    K = _size("in_channels", in_channels) * k * k
    N = _size("out_channels", out_channels)
    mapping = matrix_mapping(cfg, K, N)
    tiles, groups = mapping.row_tiles, mapping.groups
    n, full = (r1 - r0) * (c1 - c0), ho * wo
    return CropCounts(n, n * K * N, n * tiles * groups, full, full * K * N, full * tiles * groups)


@dataclass(frozen=True)
class AGUEntry:
    """One address the AGU emits."""
    row: int
    col: int
    linear: int
    first: bool
    last: bool


def agu_sequence(H: int, W: int, kernel: int, stride: int, padding: int,
                 window) -> list[AGUEntry]:
    """Every kept input position once, row-major over ``window`` (the order in which the tile
    loads its input feature map). The sequence does not depend on ``kernel``, ``stride`` and
    ``padding`` (they decide the computed outputs, :func:`output_window`); they are checked.

    >>> [(e.row, e.col, e.linear, e.first, e.last) for e in agu_sequence(4, 5, 3, 1, 1,
    ...                                                                   (1, 3, 2, 4))]
    [(1, 2, 7, True, False), (1, 3, 8, False, False), (2, 2, 12, False, False), \
(2, 3, 13, False, True)]
    """
    r0, r1, c0, c1 = check_window(window, H, W)
    output_window(window, H, W, kernel, stride, padding)      # validates the conv parameters
    cells = [(r, c) for r in range(r0, r1) for c in range(c0, c1)]
    return [AGUEntry(r, c, r * W + c, i == 0, i == len(cells) - 1)
            for i, (r, c) in enumerate(cells)]


def agu_cycles(H: int, W: int, kernel: int, stride: int, padding: int, window) -> int:
    """Clock edges of one AGU run with a consumer that is always ready, from the edge that
    samples ``start`` to the edge that raises ``done``, both included: one edge to latch the
    configuration, then one per kept position, ``(r1 - r0) * (c1 - c0) + 1``. Cropped
    positions cost nothing. (A run with an erroneous configuration takes 1 edge.)"""
    r0, r1, c0, c1 = check_window(window, H, W)
    _conv_params(kernel, stride, padding)
    return (r1 - r0) * (c1 - c0) + 1


def fraction_code(fraction) -> int:
    """The ``FRACTION_BITS``-bit code of ``fraction`` for the ``ConvTile`` setup:
    ``fraction * 2**FRACTION_BITS``, which must be an integer (the fraction is taken exactly).

    >>> fraction_code(0.25), fraction_code(Fraction(3, 16))
    (64, 48)

    Raises
    ------
    ValueError
        If ``fraction`` is outside ``[0, 1/2)`` or not a multiple of ``2**-FRACTION_BITS``.
    """
    code = _fraction(fraction) * (1 << FRACTION_BITS)
    if code.denominator != 1:
        raise ValueError(f"fraction {fraction} is not a multiple of 1/{1 << FRACTION_BITS}; "
                         f"the tile takes {FRACTION_BITS}-bit fractions")
    return int(code)


def tile_cycles(cfg: AccelConfig, geom: ConvGeometry, H: int, W: int, window, *,
                chunks=None) -> int:
    """Clock edges of one ``ConvTile`` run, from the edge that samples ``start`` to the edge
    that raises ``done``, both included, with the host's pixel stream always valid.

    With ``n`` kept input pixels (the window's area), ``P`` computed output positions
    (:func:`output_window`), ``taps = kernel**2``, the datapath latency ``L`` and the period
    ``D = max(L + 1, taps + 2)`` of consecutive vectors (the crossbars' ``L + 1``, unless the
    gather of ``taps`` reads plus one capture is slower)::

        start edge                                   1
        load: one edge per kept pixel                n
        first position from the output AGU           1
        gather: taps reads, the last one captured    taps + 1
        crossbars take the vector                    1
        every further position                       (P - 1) * D
        the last one's latency, output written       L + 1   (raises done)

    that is ``n + taps + L + 5 + (P - 1) * D``. If no output is computed (``P = 0``) the run
    ends at the edge loading the last pixel: ``n + 1``. Cropped pixels and positions cost
    nothing. A setup the tile rejects takes 1 edge (the start edge raises ``error``).

    **Per-position chunks** (a precision plan, ``docs/arithmetic.md`` section 9): ``chunks``
    gives the chunks ``T_i`` each computed position streams, in the output AGU's order
    (row-major over :func:`output_window`; a ``[rows, cols]`` tensor of the window or a flat
    sequence of ``P`` ints in ``[1, input_cycles]``). Position ``i`` then has the latency
    ``L_i = T_i * (xbar_steps + adc_steps) + 1`` and the period ``D_i = max(L_i + 1,
    taps + 2)``, and the run takes ``n + taps + 5 + sum(D_i, i < P - 1) + L_{P-1}`` edges
    (``chunks=None``: every ``T_i = input_cycles``, the formula above).
    """
    if not isinstance(geom, ConvGeometry):
        raise TypeError(f"geom must be a ConvGeometry, not {geom!r}")
    r0, r1, c0, c1 = check_window(window, H, W)
    o = output_window(window, H, W, geom.kernel, geom.stride, geom.padding)
    n = (r1 - r0) * (c1 - c0)
    P = (o[1] - o[0]) * (o[3] - o[2])
    T, taps = cfg.input_cycles, geom.taps
    if chunks is None:
        if P == 0:
            return n + 1
        L = cfg.latency
        return n + taps + L + 5 + (P - 1) * max(L + 1, taps + 2)
    ts = [int(t) for t in (chunks.reshape(-1).tolist() if isinstance(chunks, torch.Tensor)
                           else chunks)]
    if len(ts) != P or any(not 1 <= t <= T for t in ts):
        raise ValueError(f"chunks must give {P} per-position chunk counts in [1, {T}], "
                         f"not {ts[:8]}{'...' if len(ts) > 8 else ''} ({len(ts)} values)")
    if P == 0:
        return n + 1
    # the overlapped schedule ignores the first chunk (section 8): every vector takes L
    lat = [cfg.latency if cfg.pipeline_overlap else t * (cfg.xbar_steps + cfg.adc_steps) + 1
           for t in ts]
    return n + taps + 5 + sum(max(li + 1, taps + 2) for li in lat[:-1]) + lat[-1]


def ima_tile_cycles(cfg: AccelConfig, geom: ConvGeometry, H: int, W: int, window,
                    crossbars: int | None = None) -> int:
    """Clock edges of one image on an ``IMATile`` (``docs/arithmetic.md`` section 9): the
    layer's ``passes`` on an IMA of ``crossbars`` crossbars (default ``cfg.ima_crossbars``,
    :meth:`arch.geometry.Mapping.passes`), each a run of :func:`tile_cycles` edges (the IMA
    reduces at the crossbars' final edge, so a run takes what a one-crossbar tile's does).
    The host's weight writes between passes, made while the tile is idle, are not counted.

    >>> from arch.config import load_config
    >>> g = ConvGeometry(16, 16, kernel=3, padding=1, height=16, width=16)
    >>> cfg = load_config("small")
    >>> Mapping(cfg, g).passes(), tile_cycles(cfg, g, 16, 16, (0, 16, 0, 16))
    (8, 11021)
    >>> ima_tile_cycles(cfg, g, 16, 16, (0, 16, 0, 16))
    88168
    """
    if not isinstance(geom, ConvGeometry):
        raise TypeError(f"geom must be a ConvGeometry, not {geom!r}")
    return Mapping(cfg, geom).passes(crossbars) * tile_cycles(cfg, geom, H, W, window)
