"""The learned 0th layer as the hardware computes it: exact integer arithmetic on the tile's
input integers (``docs/arithmetic.md``, "The crop predictor in hardware").

:func:`quantize_zeroth` turns a float :class:`~golden.predictors.ZerothLayer`, a threshold
``tau`` and the per-crop energy into :class:`PredictorParams` (integer weights and biases, the
evaluation order); :func:`predict_int` is the integer predictor, vectorised over images, and
the reference the RTL ``hdl.predictor.Predictor`` is held to bit for bit;
:func:`predictor_cycles` and :func:`predictor_events` are its cycle count and event counts.

The integer predictor on pixels ``x [C, H, W]`` (``H``, ``W`` multiples of 8):

1. ``g = sum_c x[c]`` (the channel mean's ``1/C`` is folded into the weights);
2. ``r[k] = |conv2d(g, KERNELS[k], stride 2, padding 1)|`` exactly (int64);
3. ``S[k, gy, gx]`` = the exact sum of ``r[k]`` over cell ``(gy, gx)`` of the 4x4 grid
   (``H/8 x W/8`` outputs each), flattened ``k*16 + gy*4 + gx`` (64 features);
4. per candidate crop ``c`` (the evaluation order): ``a_c = sum_f A[c, f] * S[f] + B[c]``,
   ``A`` signed ``weight_bits``-bit, ``B`` the bias with the threshold folded in; the crop
   passes iff ``a_c >= 0``;
5. the choice is the first candidate that passes, else crop 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .predictors import GRID, KERNELS, ZerothLayer
from .study import NCROPS

__all__ = ["PredictorParams", "quantize_zeroth", "logit_threshold", "features_int",
           "predict_int", "predictor_cycles", "predictor_events", "PREDICTOR_EVENTS",
           "WEIGHT_BITS", "FEATURES", "MAC_CYCLES", "INT_KERNELS", "crop_order"]

#: the integer kernels (Sobel x, y, two diagonals), ``[4, 3, 3]`` int64
INT_KERNELS = KERNELS[:, 0].to(torch.int64)
FEATURES = INT_KERNELS.shape[0] * GRID * GRID      #: 64
WEIGHT_BITS = 8          #: default classifier weight width (signed); see the contract
MAC_CYCLES = FEATURES + 1   #: cycles per evaluated candidate: 64 MACs and a decision
#: the events of one image, analytic (:func:`predictor_events`) and counted in the RTL
PREDICTOR_EVENTS = ("pixels", "linebuf_reads", "linebuf_writes", "conv_outputs",
                    "cell_reads", "cell_writes", "macs", "weight_reads", "compares")


@dataclass(frozen=True, eq=False)
class PredictorParams:
    """The integer predictor of one image size: rows in evaluation ``order`` (crop indices,
    cheapest first, only crops before crop 0 that can pass), ``weight [R, 64]`` int64 signed
    ``weight_bits``-bit, ``bias [R]`` int64 (the threshold folded in), ``exponent [R]`` (row
    ``c`` is the float row times ``2**exponent[c]``: its FlexPoint scale, not needed by the
    hardware since it only compares with 0)."""
    height: int
    width: int
    channels: int
    pixel_bits: int
    weight_bits: int
    order: tuple[int, ...]
    weight: torch.Tensor
    bias: torch.Tensor
    exponent: tuple[int, ...]

    @property
    def rows(self) -> int:
        return len(self.order)

    @property
    def cell(self) -> tuple[int, int]:
        """Conv outputs per grid cell: ``(H/8, W/8)``."""
        return self.height // (2 * GRID), self.width // (2 * GRID)

    @property
    def gray_bits(self) -> int:
        """Unsigned width of the channel sum."""
        return (self.channels * ((1 << self.pixel_bits) - 1)).bit_length()

    @property
    def sum_bits(self) -> int:
        """Unsigned width of a pooled sum ``S`` (``|kernel|_1 = 8``)."""
        ch, cw = self.cell
        return (ch * cw * 8 * ((1 << self.gray_bits) - 1)).bit_length()

    @property
    def bias_bits(self) -> int:
        return max([int(abs(b)).bit_length() + 1 for b in self.bias.tolist()] + [2])

    @property
    def acc_bits(self) -> int:
        """Signed width of the accumulator: holds every partial sum of every row."""
        smax = (1 << self.sum_bits) - 1
        worst = [int(w.abs().sum()) * smax + abs(int(b))
                 for w, b in zip(self.weight, self.bias)] or [1]
        return max(worst).bit_length() + 1


def logit_threshold(tau: float) -> float:
    """The logit ``L`` with ``risk <= tau  <=>  logit >= L`` (``risk = 1 - sigmoid(logit)``):
    ``ln((1 - tau) / tau)``; ``+inf`` for ``tau <= 0`` (never), ``-inf`` for ``tau >= 1``
    (always).

    >>> logit_threshold(0.5), logit_threshold(0.0), logit_threshold(1.0)
    (0.0, inf, -inf)
    """
    if tau <= 0:
        return math.inf
    if tau >= 1:
        return -math.inf
    return math.log((1 - tau) / tau)


def crop_order(cost) -> list[int]:
    """Crops by ascending ``cost [16]``, ties toward the lower index, up to (without) crop 0:
    the only ones :func:`golden.predictors.choose` can pick instead of crop 0."""
    cost = [float(c) for c in cost]
    order = sorted(range(NCROPS), key=lambda c: (cost[c], c))
    return order[:order.index(0)]


def quantize_zeroth(zl: ZerothLayer, tau: float, cost, *, height: int, width: int,
                    channels: int, pixel_bits: int, pixel_frac: int,
                    weight_bits: int = WEIGHT_BITS) -> PredictorParams:
    """The integer predictor of ``zl`` at threshold ``tau`` on ``channels x height x width``
    images whose pixels are unsigned ``pixel_bits``-bit integers with ``pixel_frac`` fraction
    bits (``x = q / 2**pixel_frac``), ranking crops by ``cost [16]``.

    With ``n`` conv outputs per cell and ``s = channels * n * 2**pixel_frac``, the float logit
    is ``sum_f A[c,f] S[f] + B[c]`` with ``A = W / (std * s)`` and ``B = b - sum_f W mean /
    std``. Row ``c`` scales by ``2**e_c``, the largest power of two that keeps
    ``round(A[c] * 2**e_c)`` in signed ``weight_bits`` bits, and its bias is
    ``round((B[c] - L) * 2**e_c)`` with ``L`` = :func:`logit_threshold` (``tau``). Rounding is
    half away from zero (``torch.round`` is half-even; the difference does not matter since the
    hardware only sees the rounded integers). A crop that can never pass (``L = +inf``) is left
    out of the order; one that always passes (``L = -inf``) gets weights 0 and bias 0.

    Raises
    ------
    ValueError
        If ``height`` or ``width`` is not a positive multiple of 8, or a width is out of range.
    """
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % (2 * GRID):
            raise ValueError(f"{name} must be a positive multiple of {2 * GRID}, not {v!r}")
    if not 2 <= weight_bits <= 32:
        raise ValueError(f"weight_bits must be an integer in [2, 32], not {weight_bits}")
    n = (height // (2 * GRID)) * (width // (2 * GRID))
    s = channels * n * 2.0 ** pixel_frac
    W = zl.weight.to(torch.float64)
    std, mean = zl.std.to(torch.float64), zl.mean.to(torch.float64)
    A = W / (std * s)[None]
    B = zl.bias.to(torch.float64) - (W * (mean / std)[None]).sum(1)
    L = logit_threshold(float(tau))
    qmax = (1 << (weight_bits - 1)) - 1
    order, rows, biases, exps = [], [], [], []
    for c in crop_order(cost):
        if L == math.inf:
            continue
        order.append(c)
        if L == -math.inf:
            rows.append(torch.zeros(FEATURES, dtype=torch.int64))
            biases.append(0)
            exps.append(0)
            continue
        amax = float(A[c].abs().max())
        e = math.floor(math.log2(qmax / amax)) if amax > 0 else 0
        rows.append(_round_away(A[c] * 2.0 ** e))
        biases.append(int(_round_away(torch.tensor((float(B[c]) - L) * 2.0 ** e))))
        exps.append(e)
    weight = torch.stack(rows) if rows else torch.zeros(0, FEATURES, dtype=torch.int64)
    return PredictorParams(height, width, channels, pixel_bits, weight_bits, tuple(order),
                           weight, torch.tensor(biases, dtype=torch.int64), tuple(exps))


def _round_away(t: torch.Tensor) -> torch.Tensor:
    """Round half away from zero to int64 (float64 in)."""
    t = t.to(torch.float64)
    return (torch.sign(t) * torch.floor(t.abs() + 0.5)).to(torch.int64)


def features_int(pixels: torch.Tensor) -> torch.Tensor:
    """``S [N, 64]`` int64: the pooled absolute kernel responses of ``pixels [N, C, H, W]``
    (steps 1-3 of the module docstring), exact."""
    g = pixels.to(torch.int64).sum(1)                          # [N, H, W]
    N, H, W = g.shape
    gp = torch.nn.functional.pad(g, (1, 1, 1, 1))
    Ho, Wo = H // 2, W // 2
    r = torch.zeros(N, INT_KERNELS.shape[0], Ho, Wo, dtype=torch.int64)
    for ky in range(3):
        for kx in range(3):
            tap = gp[:, ky:ky + 2 * Ho:2, kx:kx + 2 * Wo:2]       # [N, Ho, Wo]
            r += INT_KERNELS[:, ky, kx].view(1, -1, 1, 1) * tap[:, None]
    r = r.abs()
    ch, cw = Ho // GRID, Wo // GRID
    return r.view(N, -1, GRID, ch, GRID, cw).sum((3, 5)).flatten(1)


def predict_int(params: PredictorParams, pixels: torch.Tensor, *, details: bool = False):
    """The integer predictor's crop ``[N]`` (int64) for ``pixels [N, C, H, W]`` (unsigned
    integers); with ``details`` also a dict of ``features [N, 64]``, ``acc [N, R]`` (the
    accumulator of every row) and ``position [N]`` (the chosen row, ``R`` for crop 0)."""
    if tuple(pixels.shape[1:]) != (params.channels, params.height, params.width):
        raise ValueError(f"pixels must be [N, {params.channels}, {params.height}, "
                         f"{params.width}], not {list(pixels.shape)}")
    S = features_int(pixels)
    acc = S @ params.weight.t() + params.bias[None]             # exact in int64
    ok = acc >= 0
    ok = torch.cat([ok, torch.ones(len(S), 1, dtype=torch.bool)], 1)
    position = ok.to(torch.int64).argmax(1)                     # the first True
    order = torch.tensor(list(params.order) + [0], dtype=torch.int64)
    choice = order[position]
    if details:
        return choice, {"features": S, "acc": acc, "position": position}
    return choice


def predictor_cycles(params: PredictorParams, position: int) -> int:
    """Clock edges of one image on the RTL ``Predictor`` with the pixel stream always valid,
    from the edge taking the first pixel to the edge raising ``choice.valid``, both included,
    when row ``position`` (``R`` for crop 0) is chosen: ``H*W`` pixel edges, then (if ``R >
    0``) one edge loading the first row's bias and ``MAC_CYCLES = 65`` edges per evaluated row
    (64 multiply-accumulates and the decision, which loads the next row's bias):
    ``H*W + 1 + 65 * min(position + 1, R)``; ``H*W`` when ``R = 0``."""
    R = params.rows
    n = params.height * params.width
    if R == 0:
        return n
    return n + 1 + MAC_CYCLES * min(int(position) + 1, R)


def predictor_events(params: PredictorParams, position: int) -> dict[str, int]:
    """Event counts of one image (:data:`PREDICTOR_EVENTS`): per pixel two line-buffer reads
    and two writes; per conv output position (``H/2 * W/2``) four kernel results, one read and
    one write of its cell word (the first of a cell writes without reading, counted as a read
    all the same: the port reads every time); per evaluated row 64 MACs with a weight read and
    a feature read each (in ``cell_reads``), and one compare."""
    n = params.height * params.width
    pos = (params.height // 2) * (params.width // 2)
    rows = min(int(position) + 1, params.rows)
    macs = FEATURES * rows
    return {"pixels": n, "linebuf_reads": 2 * n, "linebuf_writes": 2 * n,
            "conv_outputs": 4 * pos, "cell_reads": pos + macs, "cell_writes": pos,
            "macs": macs, "weight_reads": macs, "compares": rows}
