"""Fast, vectorised layer model: matrix-vector, linear and conv2d through the crossbar datapath.

Exact to ``docs/arithmetic.md`` for every ADC mode. The bit-serial inputs and weight slices are
not looped over in Python: all input chunks of a batch go through one matrix product with all
cells of a layer, in floating point where that is provably exact (every partial sum is an integer
below 2**24 for float32, 2**53 for float64), and the shift-add is an integer reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from arch.config import AccelConfig
from arch.geometry import ConvGeometry, Mapping, conv_out_size

from .arith import (adc_convert, adc_reconstruct, check_range, chunk_positions, chunk_signs,
                    encode_weights, finalize, flip_recover, input_chunks)

__all__ = ["ProgrammedLayer", "program", "matvec_acc", "matvec", "linear", "conv2d",
           "matrix_mapping"]

# Elements of the [batch, T, columns] read tensor processed at once (bounds memory).
_BLOCK_ELEMENTS = 1 << 17   # elements of the [b, tiles, T, columns] read tensor per block: fits in cache


@dataclass(frozen=True)
class ProgrammedLayer:
    """A weight matrix ``[K, N]`` cut into crossbar tiles and encoded into cells.

    ``cells[k]`` is ``[rows, groups * outputs * slices]`` for row tile ``k``: the stored cells of
    all output groups side by side (group ``g`` of tile ``k`` is one physical crossbar), and
    ``flags[k]`` the matching flip flags.
    """
    cfg: AccelConfig
    in_features: int
    out_features: int
    cells: tuple[torch.Tensor, ...]
    flags: tuple[torch.Tensor, ...]

    @property
    def mapping(self) -> Mapping:
        """The crossbar mapping of the ``[K, N]`` matrix (a 1x1 conv of ``K -> N``)."""
        return matrix_mapping(self.cfg, self.in_features, self.out_features)

    @property
    def row_tiles(self) -> int:
        return len(self.cells)

    @property
    def groups(self) -> int:
        return self.mapping.groups


def matrix_mapping(cfg: AccelConfig, in_features: int, out_features: int) -> Mapping:
    """The :class:`~arch.geometry.Mapping` of a ``[K, N]`` weight matrix (K im2col rows, N
    outputs): a fully connected layer, which tiles exactly as a conv with ``K`` rows."""
    return Mapping(cfg, ConvGeometry.linear(in_features, out_features))


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
    mapping = matrix_mapping(cfg, K, N)
    kt, g = mapping.row_tiles, mapping.groups
    if kt > cfg.max_row_tiles:
        # section 6: the sum v of kt row tiles is sum_bits(kt) wide; it must fit int64
        raise ValueError(f"a layer of K = {K} inputs spans {kt} row tiles of {cfg.rows} rows; "
                         f"its sums need {cfg.sum_bits(kt)} bits, more than 64: at most "
                         f"{cfg.max_row_tiles} row tiles (K <= {cfg.max_row_tiles * cfg.rows}) "
                         f"with configuration '{cfg.name}'")
    wp = torch.zeros(mapping.padded_rows, mapping.padded_outputs, dtype=torch.int64)
    wp[:K, :N] = w
    cells, flags = [], []
    for k in range(kt):
        tile = wp[k * cfg.rows:(k + 1) * cfg.rows]
        parts = [encode_weights(cfg, tile[:, i * cfg.outputs:(i + 1) * cfg.outputs])
                 for i in range(g)]
        cells.append(torch.cat([c for c, _ in parts], dim=1).reshape(cfg.rows, -1))
        flags.append(torch.cat([f for _, f in parts], dim=0).reshape(-1))
    return ProgrammedLayer(cfg, K, N, tuple(cells), tuple(flags))


def _shift_add_coefficients(cfg: AccelConfig) -> torch.Tensor:
    """``σ_t * 2**(p_t + s*b)`` as ``[T, slices]`` (section 6)."""
    s = torch.arange(cfg.slices, dtype=torch.int64) * cfg.cell_bits
    p = chunk_positions(cfg).view(-1, 1)
    return chunk_signs(cfg).view(-1, 1) * (torch.ones(1, dtype=torch.int64) << (p + s))


def matvec_acc(layer: ProgrammedLayer, x: torch.Tensor) -> torch.Tensor:
    """``Σ over tiles of (acc - weight_bias * xsum)`` for ``x [B, K]``: int64 ``[B, N]``.

    In ``lossless`` mode this equals ``x @ w`` exactly.
    """
    cfg = layer.cfg
    if x.dim() != 2 or x.shape[1] != layer.in_features:
        raise ValueError(f"inputs must be [batch, {layer.in_features}], not {list(x.shape)}")
    B = x.shape[0]
    T, S, R, kt = cfg.input_cycles, cfg.slices, cfg.rows, layer.row_tiles
    coef = _shift_add_coefficients(cfg)                       # [T, S]
    raw_bound = R * cfg.cell_max * cfg.dac_max                # any read, any |y|
    cells = torch.stack(layer.cells)                          # [kt, R, cols]
    flags = torch.stack(layer.flags).unsqueeze(1)             # [kt, 1, cols]
    cols = cells.shape[-1]
    # The shift-add is a float64 contraction when every partial sum is an integer < 2**53.
    # Largest partial sum of the shift-add: every |y| <= raw_bound times every |coefficient|.
    acc_bound = kt * raw_bound * int(coef.abs().sum())
    exact_f64 = acc_bound < (1 << 53)
    # |read|, |rec|, |M*insum - rec| <= raw_bound * cell_max: float32 is exact below 2**24.
    fast = raw_bound * cfg.cell_max < (1 << 24)
    cells_f = cells.to(torch.float32) if fast else None
    acc_dtype = torch.float32 if fast and acc_bound < (1 << 24) else torch.float64
    coef_f = coef.to(acc_dtype)
    xpad = torch.zeros(B, kt * R, dtype=torch.int64)
    xpad[:, :layer.in_features] = x
    total = torch.empty(B, layer.groups * cfg.outputs, dtype=torch.int64)
    block = max(1, _BLOCK_ELEMENTS // (kt * T * cols))
    for b0 in range(0, B, block):
        chunks = input_chunks(cfg, xpad[b0:b0 + block].view(-1, kt, R))   # [b, kt, T, R]
        b = chunks.shape[0]
        a = chunks.transpose(0, 1).reshape(kt, b * T, R)
        if fast:
            # Reads, ADC and flip recovery in float32: every value is an integer < 2**24.
            read = torch.matmul(a.to(torch.float32), cells_f)
        else:
            read = _exact_matmul(a, cells, raw_bound)
        read = read.view(kt, b, T, cols).transpose(0, 1)                     # [b, kt, T, cols]
        insum = chunks.sum(-1, keepdim=True).to(read.dtype)                  # [b, kt, T, 1]
        y = flip_recover(cfg, adc_reconstruct(cfg, adc_convert(cfg, read)), insum, flags)
        y = y.reshape(b, kt, T, -1, S)                                       # [b, kt, T, GO, S]
        if exact_f64:
            acc = torch.einsum("bktos,ts->bo", y.to(acc_dtype), coef_f).to(torch.int64)
        else:
            acc = (y.to(torch.int64) * coef.view(1, 1, T, 1, S)).sum(dim=(1, 2, 4))
        total[b0:b0 + block] = acc
    total -= cfg.weight_bias * x.to(torch.int64).sum(-1, keepdim=True)
    return total[:, :layer.out_features]


def _exact_matmul(a: torch.Tensor, b: torch.Tensor, bound: int) -> torch.Tensor:
    """``a @ b`` (batched) for non-negative integer tensors whose every partial sum is at most
    ``bound``: in float32 below 2**24, float64 below 2**53 (both exact), else int64."""
    if bound < (1 << 24):
        return torch.matmul(a.to(torch.float32), b.to(torch.float32)).to(torch.int64)
    if bound < (1 << 53):
        return torch.matmul(a.to(torch.float64), b.to(torch.float64)).to(torch.int64)
    return torch.matmul(a, b)


def matvec(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           *, shift: int = 0, relu: bool = False) -> torch.Tensor:
    """The full datapath for ``x [B, K]`` and ``w [K, N]``: int64 ``[B, N]`` outputs."""
    return _finish(cfg, matvec_acc(program(cfg, w), x), bias, shift, relu)


def _finish(cfg, acc, bias, shift, relu):
    if bias is not None:
        check_range("bias", bias, *cfg.bias_range)
        acc = acc + bias.to(torch.int64)
    return finalize(cfg, acc, shift=shift, relu_enable=relu)


def linear(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           *, shift: int = 0, relu: bool = False) -> torch.Tensor:
    """``torch.nn.functional.linear`` through the datapath: ``x [B, K]``, ``w [N, K]``."""
    return matvec(cfg, x, w.t(), bias, shift=shift, relu=relu)


def conv2d(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           *, stride: int = 1, padding: int = 0, shift: int = 0, relu: bool = False,
           layer: ProgrammedLayer | None = None) -> torch.Tensor:
    """``torch.nn.functional.conv2d`` through the datapath (im2col rows in ``unfold`` order).

    ``x [B, Cin, H, W]``, ``w [Cout, Cin, kh, kw]``; returns int64 ``[B, Cout, Ho, Wo]``.
    Pass ``layer=program(cfg, w.flatten(1).t())`` to reuse the encoded weights across calls.
    """
    if x.dim() != 4 or w.dim() != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d needs x [B, Cin, H, W] and w [Cout, Cin, kh, kw] with equal "
                         f"Cin, not {list(x.shape)} and {list(w.shape)}")
    B, _, H, W = x.shape
    cout, _, kh, kw = w.shape
    ho, wo = conv_out_size(H, kh, stride, padding), conv_out_size(W, kw, stride, padding)
    check_range("inputs", x, cfg.input_min, cfg.input_max)
    # unfold works on floating point; activations of up to 24 bits are exact in float32.
    ftype = torch.float32 if cfg.input_bits <= 24 else torch.float64
    patches = F.unfold(x.to(ftype), (kh, kw), padding=padding, stride=stride)   # [B, K, L]
    patches = patches.transpose(1, 2).reshape(B * ho * wo, -1).to(torch.int64)
    if layer is None:
        layer = program(cfg, w.reshape(cout, -1).t())
    out = _finish(cfg, matvec_acc(layer, patches), bias, shift, relu)          # [B*L, Cout]
    return out.view(B, ho, wo, cout).permute(0, 3, 1, 2).contiguous()
