"""Fast, vectorised layer model: matrix-vector, linear and conv2d through the crossbar datapath.

Exact to ``docs/arithmetic.md`` for every ADC mode, by one of two paths, chosen in one place
(:func:`matvec_acc` and :func:`conv2d`, both by :func:`adc_is_identity`):

* **The exact integer path** (:func:`integer_acc`), when the ADC passes every read unchanged
  (``lossless``, and any ``clip``/``drop_lsb`` ADC that can neither drop nor saturate): the
  layer's ``Σ_r x[r] w[r, n]`` as one float matrix product or convolution over all ``K`` rows,
  in the narrowest float type in which it is provably exact (:func:`integer_plan`); a small
  matrix layer in one call of the compiled :func:`golden.kernels.dense`.
* **The bit-serial path** (:func:`bitserial_acc`), for every mode: every read of every input
  chunk, its ADC code and the shift-add over chunks in one compiled pass over the inputs
  (:class:`golden.kernels.Kernel`, reads from lookup tables of row groups), then the slice
  weights and the flip / weight-bias corrections as one small exact product. It is the
  reference the integer path is tested against.

``matvec``, ``linear`` and ``conv2d`` program their weights on every call (checks, encoded
cells, kernel tables) unless given ``layer=program(cfg, w)``, as a crossbar keeps its weights
across inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F

from arch.config import AccelConfig
from arch.geometry import ConvGeometry, Mapping, conv_out_size

from .arith import (check_range, chunk_positions, chunk_signs, encode_crossbars, finalize,
                    finalize_float, float_finalize_exact, rounding_offset)
from .kernels import DENSE_MACS, dense, dense_args, dense_weights

__all__ = ["ProgrammedLayer", "program", "matvec_acc", "bitserial_acc", "integer_acc",
           "IntegerPlan", "integer_plan", "adc_is_identity", "matvec", "linear", "conv2d",
           "matrix_mapping"]

@dataclass(frozen=True)
class ProgrammedLayer:
    """A weight matrix ``[K, N]`` cut into crossbar tiles and encoded into cells.

    ``weights`` is the int64 ``[K, N]`` matrix itself; ``cells[k]`` is
    ``[rows, groups * outputs * slices]`` for row tile ``k``: the stored cells of all output
    groups side by side (group ``g`` of tile ``k`` is one physical crossbar), and ``flags[k]``
    the matching flip flags. The cells are encoded on first use (the exact integer path never
    needs them).
    """
    cfg: AccelConfig
    in_features: int
    out_features: int
    weights: torch.Tensor

    @cached_property
    def mapping(self) -> Mapping:
        """The crossbar mapping of the ``[K, N]`` matrix (a 1x1 conv of ``K -> N``)."""
        return matrix_mapping(self.cfg, self.in_features, self.out_features)

    @property
    def row_tiles(self) -> int:
        return self.mapping.row_tiles

    @property
    def groups(self) -> int:
        return self.mapping.groups

    @cached_property
    def _encoded(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        cfg, mapping = self.cfg, self.mapping
        kt = mapping.row_tiles
        wp = torch.zeros(mapping.padded_rows, mapping.padded_outputs, dtype=torch.int64)
        wp[:self.in_features, :self.out_features] = self.weights
        # All crossbars at once: group g of tile k is columns [g*outputs, (g+1)*outputs).
        cells, flags = encode_crossbars(cfg, wp.view(kt, cfg.rows, -1))
        return (tuple(cells.reshape(kt, cfg.rows, -1).unbind(0)),
                tuple(flags.reshape(kt, -1).unbind(0)))

    @property
    def cells(self) -> tuple[torch.Tensor, ...]:
        return self._encoded[0]

    @property
    def flags(self) -> tuple[torch.Tensor, ...]:
        return self._encoded[1]

    @cached_property
    def _bitserial_plan(self) -> "_BitserialPlan":
        return _BitserialPlan.of(self)

    @cached_property
    def _integer_path(self) -> bool:
        """:func:`adc_is_identity` of the layer's configuration."""
        return adc_is_identity(self.cfg)

    @cached_property
    def _dense_weights(self) -> torch.Tensor:
        """``weights`` as :func:`golden.kernels.dense` takes them (exact when
        :attr:`_dense_exact`)."""
        return dense_weights(self.weights)

    @cached_property
    def _dense_exact(self) -> bool:
        """Whether every sum of ``x @ weights + bias`` is below ``2**53`` (any bias in range)."""
        X, W = _magnitudes(self.cfg)
        return self.in_features * X * W + max(-self.cfg.bias_range[0], self.cfg.bias_range[1]) \
            < (1 << 53)

    @cached_property
    def _float_operands(self) -> dict:
        """:func:`_integer_layer`'s cache for these weights."""
        return {}


def matrix_mapping(cfg: AccelConfig, in_features: int, out_features: int) -> Mapping:
    """The :class:`~arch.geometry.Mapping` of a ``[K, N]`` weight matrix (K im2col rows, N
    outputs): a fully connected layer, which tiles exactly as a conv with ``K`` rows."""
    return Mapping(cfg, ConvGeometry.linear(in_features, out_features))


def _check_row_tiles(cfg: AccelConfig, K: int, N: int) -> None:
    kt = matrix_mapping(cfg, K, N).row_tiles
    if kt > cfg.max_row_tiles:
        # section 6: the sum v of kt row tiles is sum_bits(kt) wide; it must fit int64
        raise ValueError(f"a layer of K = {K} inputs spans {kt} row tiles of {cfg.rows} rows; "
                         f"its sums need {cfg.sum_bits(kt)} bits, more than 64: at most "
                         f"{cfg.max_row_tiles} row tiles (K <= {cfg.max_row_tiles * cfg.rows}) "
                         f"with configuration '{cfg.name}'")


def program(cfg: AccelConfig, w: torch.Tensor) -> ProgrammedLayer:
    """Tile ``w [K, N]`` (zero padded, section 6) and encode every tile (section 1).

    Raises
    ------
    ValueError
        If ``w`` is not a matrix, or spans more than ``cfg.max_row_tiles`` row tiles (its sums
        would not fit 64 bits, section 6).
    golden.arith.RangeError
        If a weight lies outside ``[cfg.weight_min, cfg.weight_max]``.
    """
    if w.dim() != 2:
        raise ValueError(f"weights must be a [K, N] matrix, not {list(w.shape)}")
    check_range("weights", w, cfg.weight_min, cfg.weight_max)
    K, N = w.shape
    _check_row_tiles(cfg, K, N)
    return ProgrammedLayer(cfg, K, N, w.to(torch.int64))


# -- the choice ------------------------------------------------------------------------------

def adc_is_identity(cfg: AccelConfig) -> bool:
    """Whether ``ADC(read) = read`` for every read the crossbar can produce (section 4): no bit
    dropped (``adc_drop = 0``) and no read above the largest code. True for every ``lossless``
    configuration (the loader demands ``adc_bits >= read_bits``), and for a ``clip`` or
    ``drop_lsb`` ADC as wide. Then the layer takes the exact integer path."""
    return cfg.adc_drop == 0 and cfg.adc_code_max >= cfg.max_read


def matvec_acc(layer: ProgrammedLayer, x: torch.Tensor) -> torch.Tensor:
    """``Σ over tiles of (acc - weight_bias * xsum)`` for ``x [B, K]``: int64 ``[B, N]``.

    In ``lossless`` mode this equals ``x @ w`` exactly, and is computed so
    (:func:`integer_acc`); otherwise bit-serially (:func:`bitserial_acc`).
    """
    if adc_is_identity(layer.cfg):
        _check_inputs(layer, x)
        return integer_acc(layer.cfg, x, layer.weights)
    return bitserial_acc(layer, x)


def _check_inputs(layer: ProgrammedLayer, x: torch.Tensor, *, values: bool = True) -> None:
    if x.dim() != 2 or x.shape[1] != layer.in_features:
        raise ValueError(f"inputs must be [batch, {layer.in_features}], not {list(x.shape)}")
    if values:
        check_range("inputs", x, layer.cfg.input_min, layer.cfg.input_max)


# -- the exact integer path ------------------------------------------------------------------

@dataclass(frozen=True)
class IntegerPlan:
    """How :func:`integer_acc` forms ``Σ_r x[r] w[r, n]`` of ``K`` rows exactly.

    ``dtype`` is the float type of the products (``torch.int64`` when no float product is
    exact); ``x_limb_bits``/``w_limb_bits`` are 0 when that operand is used whole, else the
    width of its limbs (``x = Σ_i x_i 2**(i*L)``, low limbs unsigned, the top one signed).
    """
    dtype: torch.dtype
    x_limb_bits: int = 0
    w_limb_bits: int = 0


def _float32_is_ieee() -> bool:
    """Whether torch forms float32 products in IEEE single precision: not when a user allowed
    TF32 or bfloat16 shortcuts (``torch.set_float32_matmul_precision``, the oneDNN
    ``fp32_precision`` switches); then the exact paths use float64 instead."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    mkldnn = torch.backends.mkldnn
    return all(getattr(getattr(mkldnn, part, None), "fp32_precision", "none") in ("none", "ieee")
               for part in ("matmul", "conv"))


def _magnitudes(cfg: AccelConfig) -> tuple[int, int]:
    return max(-cfg.input_min, cfg.input_max), max(-cfg.weight_min, cfg.weight_max)


def integer_plan(cfg: AccelConfig, K: int) -> IntegerPlan:
    """The float type, and limb split, in which ``Σ_r x[r] w[r, n]`` over ``K`` rows is exact.

    With ``X = max|x|`` and ``W = max|w|`` every partial sum of the product, in whatever order a
    BLAS or convolution kernel adds, is an integer of magnitude at most ``K * X * W``. Integers
    are exact in float32 below ``2**24`` and in float64 below ``2**53``; so float32 when
    ``K * X * W < 2**24`` (and torch's float32 products are IEEE: :func:`_float32_is_ieee`),
    else float64 when ``< 2**53``. Beyond, the operands are cut into
    limbs of ``Lx`` and ``Lw`` bits (every limb of magnitude at most ``2**L``) with
    ``bitlength(K) + Lx + Lw <= 52``, so that each of the limb products is exact in float64
    (``K * 2**Lx * 2**Lw < 2**52``); they are recombined in int64 (section 6's wrap argument:
    the final ``v`` fits 64 bits, so 64-bit wrapping sums of the shifted limb products give it
    exactly). The split with the fewest products is chosen.

    >>> from arch.config import load_config
    >>> integer_plan(load_config("small"), 144).dtype, integer_plan(load_config("isaac"), 128)
    (torch.float32, IntegerPlan(dtype=torch.float64, x_limb_bits=0, w_limb_bits=0))
    """
    X, W = _magnitudes(cfg)
    bound = K * X * W
    if bound < (1 << 24) and _float32_is_ieee():
        return IntegerPlan(torch.float32)
    if bound < (1 << 53):
        return IntegerPlan(torch.float64)
    budget = 52 - K.bit_length()
    xb, wb = X.bit_length(), W.bit_length()
    best = None
    for lx in range(1, min(xb, budget - 1) + 1):
        lw = min(wb, budget - lx)
        if lw < 1:
            continue
        cost = -(-xb // lx) * -(-wb // lw)
        if best is None or cost < best[0]:
            best = (cost, lx, lw)
    if best is None:
        return IntegerPlan(torch.int64)
    _, lx, lw = best
    return IntegerPlan(torch.float64, 0 if lx >= xb else lx, 0 if lw >= wb else lw)


def _limbs(t: torch.Tensor, bits: int, width: int) -> list[tuple[int, torch.Tensor]]:
    """``t`` (int64, ``|t| < 2**width``) as ``[(shift, limb)]`` with ``t = Σ limb << shift``:
    ``bits``-wide unsigned low limbs and a signed top limb (arithmetic shift)."""
    if bits == 0:
        return [(0, t)]
    n = -(-width // bits)
    mask = (1 << bits) - 1
    return [(i * bits, (t >> (i * bits)) if i == n - 1 else (t >> (i * bits)) & mask)
            for i in range(n)]


def _exact_product(cfg: AccelConfig, K: int, x: torch.Tensor, w: torch.Tensor, op
                   ) -> torch.Tensor:
    """``op(x, w)`` (a matmul or a convolution summing ``K`` products per output) for int64
    ``x`` and ``w``, exactly, as :func:`integer_plan` says: int64 result."""
    plan = integer_plan(cfg, K)
    if plan.dtype == torch.int64:
        return op(x, w)
    if plan.x_limb_bits == 0 and plan.w_limb_bits == 0:
        return op(x.to(plan.dtype), w.to(plan.dtype)).to(torch.int64)
    X, W = _magnitudes(cfg)
    total = None
    for sx, xl in _limbs(x, plan.x_limb_bits, X.bit_length()):
        xf = xl.to(plan.dtype)
        for sw, wl in _limbs(w, plan.w_limb_bits, W.bit_length()):
            if sx + sw >= 64:
                continue                    # a multiple of 2**64: 0 in wrapping int64
            part = op(xf, wl.to(plan.dtype)).to(torch.int64) << (sx + sw)
            total = part if total is None else total.add_(part)
    return total


def integer_acc(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x [B, K] @ w [K, N]`` exactly, int64 ``[B, N]``: the layer's ``v`` (bias excluded)
    whenever :func:`adc_is_identity` holds.

    Why this is the datapath's value. With ``ADC(read) = read`` (section 4), flip recovery
    gives ``y[t, o, s] = Σ_r x_t[r] c[r, o, s]`` exactly (section 5), so a tile's
    ``acc - weight_bias * xsum = Σ_t σ_t 2**p_t Σ_s 2**(s*b) Σ_r x_t[r] c[r, o, s]
    - weight_bias Σ_r x[r] = Σ_r x[r] (u[r, o] - weight_bias) = Σ_r x[r] w[r, o]`` over the
    tile's rows (section 6; ``Σ_s 2**(s*b) c = u`` and ``Σ_t σ_t 2**p_t x_t = x``, sections 1
    and 2). Padding rows have ``x = 0`` and add nothing; the tile sums of one output are added
    exactly, so ``v - bias = Σ_tiles Σ_r x w = Σ_{r < K} x[r] w[r, n]``, one product over all
    ``K`` rows. ``v`` fits ``sum_bits(kt) <= 64`` bits, so int64 holds it and any wrapping
    int64 partial sums (limbs, :func:`integer_plan`) still give it exactly.
    """
    return _exact_product(cfg, x.shape[1], x.to(torch.int64), w.to(torch.int64), torch.matmul)


def _integer_layer(cfg: AccelConfig, K: int, x: torch.Tensor, w: torch.Tensor,
                   bias: torch.Tensor | None, shift: int, relu: bool, op, bias_shape: int, *,
                   check_weights=None, cache: dict | None = None) -> torch.Tensor:
    """The exact integer path of a layer: ``finalize(v + bias)`` of ``v = op(x, w)`` (a product
    summing ``K`` terms per output), operands checked in the order the bit-serial path checks
    them (inputs, ``check_weights()`` if given, bias). When the plan is one float product and
    :func:`golden.arith.float_finalize_exact` holds for ``K*X*W + max|bias|``, the bias and the
    rounding offset ride in the product's bias, the shift in the weights' scale, and the output
    stage runs on the float result (:func:`golden.arith.finalize_float`); else int64.

    ``cache`` (a :class:`ProgrammedLayer`'s, for weights ``w`` it holds): what depends on the
    weights, the bias and the shift only (the plan, the checked bias, the scaled float
    operands), kept for the next call with the same, unmodified bias tensor."""
    ieee = _float32_is_ieee()
    key = (id(bias), shift, ieee)
    hit = None if cache is None else cache.get(key)
    if hit is not None and (hit[0] is not bias or hit[1] != _version(bias)):
        hit = None
    if hit is not None:
        plan, prepared = hit[2], hit[3]
    else:
        plan, prepared = integer_plan(cfg, K), None
    simple = plan.x_limb_bits == plan.w_limb_bits == 0 and plan.dtype.is_floating_point
    if simple:
        xf = x.to(plan.dtype)
        # The range check on the float copy (half the bytes): in-range inputs are exact in
        # it (|x| <= K*X*W below 2**24 / 2**53), larger ones round to beyond the range.
        lo, hi = (float(t) for t in torch.aminmax(xf)) if xf.numel() else (0.0, 0.0)
        if lo < cfg.input_min or hi > cfg.input_max:
            check_range("inputs", x, cfg.input_min, cfg.input_max)   # the exact message
    else:
        check_range("inputs", x, cfg.input_min, cfg.input_max)
    if hit is None:
        if check_weights is not None:
            check_weights()
        if bias is not None:
            check_range("bias", bias, *cfg.bias_range)
        X, W = _magnitudes(cfg)
        bmax = 0 if bias is None or not bias.numel() else int(bias.abs().max())
        if simple and float_finalize_exact(cfg, K * X * W + bmax, shift, plan.dtype):
            # Operands scaled by 2**-shift (exact): the product is (v + offset) * 2**-shift.
            offset, scale = rounding_offset(shift), 2.0 ** -shift
            b = None
            if bias is not None:
                b = (bias.to(torch.int64) + offset).to(plan.dtype) * scale
            elif offset:
                b = torch.full((bias_shape,), offset * scale, dtype=plan.dtype)
            prepared = (w.to(plan.dtype) * scale, b)
        version = _version(bias)
        if cache is not None and (bias is None or version is not None):
            if len(cache) >= _CACHE_ENTRIES:
                del cache[next(iter(cache))]
            cache[key] = (bias, version, plan, prepared)
    if prepared is not None:
        return finalize_float(cfg, op(xf, *prepared), shift=shift, relu_enable=relu)
    v = _exact_product(cfg, K, x.to(torch.int64), w.to(torch.int64),
                       lambda a, b_: op(a, b_, None))
    if bias is not None:
        v = v + _bias_view(bias.to(torch.int64), v)
    return finalize(cfg, v, shift=shift, relu_enable=relu)


def _bias_view(bias: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``bias [N]`` shaped to broadcast over ``v``'s dimension 1 (``[B, N]`` or NCHW)."""
    return bias.view(-1, *([1] * (v.dim() - 2)))


def _matmul_bias(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # (mm, then the bias in place: on a small layer faster than addmm's broadcast; exact either
    # way, every partial sum an integer the type holds)
    return torch.matmul(a, b) if bias is None else torch.mm(a, b).add_(bias)


# -- the bit-serial path ---------------------------------------------------------------------

def _exact_type(bound: int) -> torch.dtype:
    """The narrowest type holding every integer of magnitude up to ``bound`` exactly, and in
    which torch's products are exact."""
    if bound < (1 << 24) and _float32_is_ieee():
        return torch.float32
    return torch.float64 if bound < (1 << 53) else torch.int64


def bitserial_acc(layer: ProgrammedLayer, x: torch.Tensor) -> torch.Tensor:
    """``Σ over tiles of (acc - weight_bias * xsum)`` for ``x [B, K]``, int64 ``[B, N]``, bit
    by bit as the crossbar forms it (sections 2-6), in every ADC mode.

    Every read of every input chunk, its ADC code and the shift-add over chunks come from one
    compiled pass over the inputs (:func:`golden.kernels.lut_reduce`, its reads from
    lookup tables of row groups); then two small exact products:

    * *The ADC on the physical read.* A flagged column stores ``M - c``; its read is converted
      as any other, and flip recovery's ``y = M*insum - rec`` is ``-rec`` plus ``M*insum``. The
      kernel sums ``±σ_t 2**p_t code`` per column (``-`` in a flagged column); the ``M*insum``
      terms, weighted by the shift-add, sum to ``M * Σ_tiles f * xsum_tile``, one small product
      with the weight-bias correction.
    * *The ADC as a floor.* ``drop_lsb``: ``code = floor((read + h) / 2**k)``, ``h =
      2**(k-1)``, the rounding offset and the scale ``2**-k`` already in the tables (dyadic,
      exact), then the saturation ``min(., 2**A - 1)``; ``clip``: ``k = h = 0``.
      ``rec = code * 2**k``: the ``2**k`` goes into the slice weights.
    """
    _check_inputs(layer, x)
    return _bitserial(layer, *_matrix_rows(layer, x))


def _matrix_rows(layer: ProgrammedLayer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bit patterns ``[B, tiles * rows]`` of ``x [B, K]`` and its per-tile sums (int64
    ``[B, tiles]``), for :func:`_bitserial`."""
    cfg = layer.cfg
    B, K = x.shape
    pad = layer.row_tiles * cfg.rows - K
    rows = F.pad(x.to(_narrow_dtype(cfg)), (0, pad))
    xs_tile = F.pad(x.to(torch.int64), (0, pad)).view(B, layer.row_tiles, cfg.rows).sum(-1)
    return rows, xs_tile


def _narrow_dtype(cfg: AccelConfig) -> torch.dtype:
    """The narrowest integer type that holds the input bit patterns (a cast to it keeps the
    low bits, two's complement, and the chunks are cut from bits below input_bits only)."""
    return (torch.uint8 if cfg.input_bits <= 8 else
            torch.int32 if cfg.input_bits <= 31 else torch.int64)


@dataclass(frozen=True)
class _BitserialPlan:
    """What :func:`_bitserial` needs of a layer besides its inputs (built once per
    :class:`ProgrammedLayer`): the prepared kernel, the slice weights ``2**(s*b + k)`` and
    the correction ``corr [tiles, N]``, and the bounds ``|red|`` and ``|v|``."""
    kernel: object                  # golden.kernels.Kernel
    slice_w: torch.Tensor           # [S] int64
    corr: torch.Tensor              # [kt, GO] int64
    red_bound: int
    bound: int
    cache: dict = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, layer: ProgrammedLayer) -> "_BitserialPlan":
        from .kernels import Kernel, code_bound

        cfg = layer.cfg
        S, R, kt, k = cfg.slices, cfg.rows, layer.row_tiles, cfg.adc_drop
        cells = torch.stack(layer.cells)                          # [kt, R, cols]
        flags = torch.stack(layer.flags)                          # [kt, cols]
        GO = cells.shape[-1] // S
        coef = chunk_signs(cfg) << chunk_positions(cfg)           # σ_t 2**p_t, [T]
        red_bound = kt * int(coef.abs().sum()) * code_bound(cfg)  # |red|
        slice_w = (torch.ones(1, dtype=torch.int64) << (torch.arange(S, dtype=torch.int64)
                                                        * cfg.cell_bits)) << k
        fw = (flags.to(torch.int64).view(kt, GO, S) * (slice_w >> k)).sum(-1)   # [kt, GO]
        corr = cfg.cell_max * fw - cfg.weight_bias                              # [kt, GO]
        X, _ = _magnitudes(cfg)
        bound = red_bound * int(slice_w.sum()) + kt * R * X * int(corr.abs().max())  # |v|
        return cls(Kernel(cfg, cells, flags), slice_w, corr, red_bound, bound)

    def float_operands(self, dtype: torch.dtype, N: int, scale: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``corr[:, :N]`` and the block-diagonal ``[cols, N]`` matrix of the slice weights
        times ``scale`` (a power of two), in ``dtype`` (kept; not to be modified)."""
        key = (dtype, N, scale)
        if key not in self.cache:
            S = self.slice_w.numel()
            GO = self.corr.shape[1]
            sw = torch.kron(torch.eye(GO, dtype=dtype), self.slice_w.to(dtype).view(S, 1))
            self.cache[key] = (self.corr[:, :N].to(dtype), sw[:, :N] * scale)
        return self.cache[key]


def _bitserial(layer: ProgrammedLayer, rows: torch.Tensor, xs_tile: torch.Tensor,
               bias: torch.Tensor | None = None, shift: int | None = None,
               relu: bool = False) -> torch.Tensor:
    """:func:`bitserial_acc` of the input bit patterns ``rows [B, tiles * rows]`` (contiguous,
    :func:`_narrow_dtype`, zero padded to whole tiles) whose per-tile sums ``Σ_r x[r]`` are
    ``xs_tile`` (int64 ``[B, tiles]``): ``v`` (int64 ``[B, N]``); or, given a ``shift``, the
    layer's outputs ``finalize(v + bias)`` (the bias checked here).

    ``v = red @ sw + xs_tile @ corr``: ``red`` the kernel's shift-added codes per column
    (:meth:`golden.kernels.Kernel.reduce`), ``sw`` the block-diagonal ``[cols, N]``
    matrix of the slice weights ``2**(s*b + k)`` (``rec = code * 2**k``), ``corr`` flip
    recovery's ``M * Σ_tiles f * xsum`` (its ``insum`` terms, shift-added) and the weight-bias
    correction. When ``|v|`` (and the bias and rounding offset) stays below ``2**24`` /
    ``2**53`` all of it is one exact float product (the kernel writes ``red`` in that type),
    with the bias, the rounding offset and the scale ``2**-shift`` folded in as in
    :func:`_integer_layer`, and the output stage runs on it
    (:func:`golden.arith.finalize_float`); else int64.
    """
    cfg = layer.cfg
    plan = layer._bitserial_plan
    B = rows.shape[0]
    N, S = layer.out_features, cfg.slices
    finish = shift is not None
    bmax = 0
    if finish and bias is not None:                 # (the shift: checked by the finalize)
        check_range("bias", bias, *cfg.bias_range)
        bmax = int(bias.abs().max()) if bias.numel() else 0
    out_dtype = _exact_type(plan.bound + bmax + (rounding_offset(shift) if finish else 0))
    if out_dtype.is_floating_point and (
            not finish or float_finalize_exact(cfg, plan.bound + bmax, shift, out_dtype)):
        red = plan.kernel.reduce(rows, out_dtype)
        scale = 2.0 ** -shift if finish else 1.0
        corr, sw = plan.float_operands(out_dtype, N, scale)
        c = xs_tile.to(out_dtype) @ corr
        if finish:
            offset = rounding_offset(shift)
            if bias is not None:
                c += (bias.to(torch.int64) + offset).to(out_dtype)
            elif offset:
                c += offset
            c *= scale
            return finalize_float(cfg, torch.addmm(c, red, sw), shift=shift, relu_enable=relu)
        return torch.addmm(c, red, sw).to(torch.int64)
    red = plan.kernel.reduce(rows)
    v = ((red.reshape(B, -1, S) * plan.slice_w).sum(-1) + xs_tile @ plan.corr)[:, :N]
    if not finish:
        return v
    if bias is not None:
        v = v + bias.to(torch.int64)
    return finalize(cfg, v, shift=shift, relu_enable=relu)


def _im2col_rows(x: torch.Tensor, dtype: torch.dtype, width: int, kh: int, kw: int,
                 stride: int, padding: int) -> torch.Tensor:
    """The im2col rows of ``x [B, Cin, H, W]`` (``unfold`` order, a zero-padding tap an input
    0) cast to ``dtype``, ``[B, Ho, Wo, width]``, zero beyond ``Cin * kh * kw``: one copy per
    tap, from a channels-last copy of ``x``."""
    B, cin, H, W = x.shape
    ho, wo = conv_out_size(H, kh, stride, padding), conv_out_size(W, kw, stride, padding)
    xi = x.to(torch.int64) if x.is_floating_point() else x        # (a float cast wraps not)
    xp = F.pad(xi.to(dtype), (padding,) * 4).permute(0, 2, 3, 1).contiguous()  # B,Hp,Wp,Cin
    rows = torch.zeros(B, ho, wo, width, dtype=dtype)
    taps = rows[..., :cin * kh * kw].view(B, ho, wo, cin, kh, kw)
    for i in range(kh):
        for j in range(kw):
            taps[..., i, j] = xp[:, i:i + stride * ho:stride, j:j + stride * wo:stride]
    return rows


def _conv_bitserial(layer: ProgrammedLayer, x: torch.Tensor, kh: int, kw: int, stride: int,
                    padding: int, *finish) -> torch.Tensor:
    """:func:`bitserial_acc` of the im2col rows of ``x [B, Cin, H, W]``, ``[B * Ho * Wo, N]``,
    without forming them in int64: the bit patterns are gathered in their narrow type, and the
    per-tile sums ``Σ_r x[r]`` are one convolution with 0/1 weights (exact when
    ``rows * max|x|`` is, :func:`_exact_type`; else summed from int64 rows)."""
    cfg = layer.cfg
    B, cin = x.shape[:2]
    R, kt, K = cfg.rows, layer.row_tiles, layer.in_features
    rows = _im2col_rows(x, _narrow_dtype(cfg), kt * R, kh, kw, stride, padding)
    _, ho, wo, _ = rows.shape
    BL = B * ho * wo
    X, _ = _magnitudes(cfg)
    sdtype = _exact_type(R * X)
    if sdtype.is_floating_point:
        ones = torch.zeros(kt, kt * R, dtype=sdtype)
        for t in range(kt):
            ones[t, t * R:(t + 1) * R] = 1
        ones = ones[:, :K].reshape(kt, cin, kh, kw)
        xs = F.conv2d(x.to(sdtype), ones, stride=stride, padding=padding)    # [B, kt, ho, wo]
        xs_tile = xs.permute(0, 2, 3, 1).reshape(BL, kt).to(torch.int64)
    else:
        rows64 = _im2col_rows(x, torch.int64, kt * R, kh, kw, stride, padding)
        xs_tile = rows64.view(BL, kt, R).sum(-1)
    return _bitserial(layer, rows.view(BL, kt * R), xs_tile, *finish)


# -- layers ----------------------------------------------------------------------------------

def matvec(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           *, shift: int = 0, relu: bool = False,
           layer: ProgrammedLayer | None = None) -> torch.Tensor:
    """The full datapath for ``x [B, K]`` and ``w [K, N]``: int64 ``[B, N]`` outputs. Pass
    ``layer=program(cfg, w)`` to reuse the programmed weights across calls."""
    return _matvec(cfg, x, program(cfg, w) if layer is None else layer, bias, shift, relu)


def linear(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           *, shift: int = 0, relu: bool = False,
           layer: ProgrammedLayer | None = None) -> torch.Tensor:
    """``torch.nn.functional.linear`` through the datapath: ``x [B, K]``, ``w [N, K]``. Pass
    ``layer=program(cfg, w.t())`` to reuse the programmed weights across calls."""
    return _matvec(cfg, x, program(cfg, w.t()) if layer is None else layer, bias, shift, relu)


def _matvec(cfg, x, layer, bias, shift, relu):
    if layer._integer_path:
        _check_inputs(layer, x, values=False)      # (the range: in _integer_layer)
        if (layer._dense_exact and x.dtype == torch.int64
                and cfg.shift_min <= shift <= cfg.shift_max
                and x.shape[0] * layer.in_features * layer.out_features <= DENSE_MACS):
            out = _dense(layer, x, bias, shift, relu)
            if out is not None:
                return out
        return _integer_layer(cfg, layer.in_features, x, layer.weights, bias, shift, relu,
                              _matmul_bias, layer.out_features, cache=layer._float_operands)
    _check_inputs(layer, x)
    return _bitserial(layer, *_matrix_rows(layer, x), bias, shift, relu)


def _dense(layer: ProgrammedLayer, x: torch.Tensor, bias: torch.Tensor | None, shift: int,
           relu: bool) -> torch.Tensor | None:
    """A small layer on the exact integer path in one call (:func:`golden.kernels.dense`), its
    checks in :func:`_integer_layer`'s order (inputs, then the bias; the bias once per
    unmodified bias tensor: the kernel's arguments are kept in the layer's cache). None: an
    input is out of range (the caller's path raises the error), or the bias is not ``[N]``."""
    cache = layer._float_operands
    key = ("dense", id(bias), shift, relu)
    hit = cache.get(key)
    if hit is not None and hit[0] is bias and hit[1] == _version(bias):
        return dense(x.contiguous(), hit[3])
    cfg = layer.cfg
    if bias is not None and tuple(bias.shape) != (layer.out_features,):
        return None                                # (broadcasting: the torch path)
    b = None if bias is None else bias.to(torch.int64).contiguous()
    args = dense_args(cfg, layer._dense_weights, layer.out_features, b, shift, relu)
    out = dense(x.contiguous(), args)
    if out is None:
        return None
    if bias is not None:
        check_range("bias", bias, *cfg.bias_range)
    version = _version(bias)
    if bias is None or version is not None:
        if len(cache) >= _CACHE_ENTRIES:
            del cache[next(iter(cache))]
        cache[key] = (bias, version, b, args)     # (b: alive while args point into it)
    return out


#: At most this many entries in a programmed layer's cache of call operands (per bias, shift).
_CACHE_ENTRIES = 8


def _version(t: torch.Tensor | None) -> int | None:
    """``t``'s version counter (bumped by every in-place change), None if it keeps none."""
    try:
        return None if t is None else t._version
    except RuntimeError:                                # an inference-mode tensor
        return None


def conv2d(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           *, stride: int = 1, padding: int = 0, shift: int = 0, relu: bool = False,
           layer: ProgrammedLayer | None = None) -> torch.Tensor:
    """``torch.nn.functional.conv2d`` through the datapath (im2col rows in ``unfold`` order).

    ``x [B, Cin, H, W]``, ``w [Cout, Cin, kh, kw]``; returns int64 ``[B, Cout, Ho, Wo]``.
    Pass ``layer=program(cfg, w.flatten(1).t())`` to reuse the encoded weights across calls.
    When :func:`adc_is_identity` holds the layer is one exact convolution
    (:func:`integer_acc`'s argument, with a zero-padding tap an input 0, section 6).
    """
    if x.dim() != 4 or w.dim() != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d needs x [B, Cin, H, W] and w [Cout, Cin, kh, kw] with equal "
                         f"Cin, not {list(x.shape)} and {list(w.shape)}")
    B, _, H, W = x.shape
    cout, _, kh, kw = w.shape
    ho, wo = conv_out_size(H, kh, stride, padding), conv_out_size(W, kw, stride, padding)
    K = w[0].numel()
    if adc_is_identity(cfg):
        def check_weights():
            if layer is None:
                check_range("weights", w, cfg.weight_min, cfg.weight_max)
                _check_row_tiles(cfg, K, cout)

        def conv(a, b, c):
            return F.conv2d(a, b, c, stride=stride, padding=padding)
        return _integer_layer(cfg, K, x, w, bias, shift, relu, conv, cout,
                              check_weights=check_weights)
    check_range("inputs", x, cfg.input_min, cfg.input_max)
    if layer is None:
        layer = program(cfg, w.reshape(cout, -1).t())
    elif layer.in_features != K:
        raise ValueError(f"inputs must be [batch, {layer.in_features}], not {[B * ho * wo, K]}")
    out = _conv_bitserial(layer, x, kh, kw, stride, padding, bias, shift, relu)
    return out.view(B, ho, wo, cout).permute(0, 3, 1, 2).contiguous()
