"""The arithmetic contract of ``docs/arithmetic.md`` as pure functions over integer tensors.

Every rounding, shift and saturation of the datapath is a named helper here, and it says how it
rounds. All functions take and return ``torch.int64`` tensors (values are widened before any
multiplication); none keeps state.
"""

from __future__ import annotations

import torch

from arch.config import AccelConfig

__all__ = [
    "saturate", "round_shift", "left_shift_clamp", "relu", "check_range",
    "encode_weights", "encode_crossbars", "flag_words", "input_chunks", "chunk_signs",
    "chunk_positions",
    "adc_convert", "adc_reconstruct", "flip_recover", "slice_weights", "finalize",
    "rounding_offset", "float_finalize_exact", "finalize_float",
]


class RangeError(ValueError):
    """An integer tensor holds a value outside the range the hardware can represent."""


def check_range(name: str, t: torch.Tensor, lo: int, hi: int) -> None:
    """Raise :class:`RangeError` naming ``name`` if any element lies outside ``[lo, hi]``."""
    if t.numel():
        tmin, tmax = (int(v) for v in torch.aminmax(t))       # one pass
        if tmin < lo or tmax > hi:
            raise RangeError(f"{name} must lie in [{lo}, {hi}], "
                             f"found values in [{tmin}, {tmax}]")


def saturate(v: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Clamp to ``[lo, hi]``: saturation, as the hardware does; never wraps. The one saturate;
    for a ``bits``-wide integer pass ``*arch.ranges.int_range(bits, signed)``.

    >>> saturate(torch.tensor([-200, -128, 127, 200]), *int_range(8, signed=True)).tolist()
    [-128, -128, 127, 127]
    >>> saturate(torch.tensor([-1, 300]), *int_range(8, signed=False)).tolist()
    [0, 255]
    >>> saturate(torch.tensor([-1.5, 0.25, 9.0]), -1, 1).tolist()
    [-1.0, 0.25, 1.0]
    """
    return torch.clamp(v, lo, hi)


def round_shift(v: torch.Tensor, sh: int) -> torch.Tensor:
    """The FlexPoint shift: right by ``sh`` rounding to nearest with ties toward +infinity
    (``(v + 2**(sh-1)) >> sh``, arithmetic shift), or left by ``-sh`` exactly.

    >>> round_shift(torch.tensor([5, 6, 7, -5, -6, -7]), 2).tolist()
    [1, 2, 2, -1, -1, -2]
    >>> round_shift(torch.tensor([3, -3]), -2).tolist()
    [12, -12]
    """
    v = v.to(torch.int64)
    if sh > 0:
        # (v + 2**(sh-1)) >> sh == (v >> sh) + bit sh-1 of v: with v = q*2**sh + r,
        # 0 <= r < 2**sh, both are q + (r >= 2**(sh-1)). This form cannot overflow int64.
        return (v >> sh) + ((v >> (sh - 1)) & 1)
    if sh < 0:
        return v << (-sh)
    return v


def left_shift_clamp(v: torch.Tensor, n: int, bits: int) -> torch.Tensor:
    """Clamp ``v`` to ``[-c, c]``, ``c = (2**(bits-1) >> n) + 1``, so that ``v << n`` followed
    by ReLU and saturation to a signed ``bits`` integer gives what the exact, unbounded
    ``v * 2**n`` gives, and ``v << n`` never leaves int64 (``docs/arithmetic.md``, section 7).

    Why it is exact: ``g(x) = saturate(relu(x), bits)`` is constant on ``x >= 2**(bits-1) - 1``
    and on ``x <= -2**(bits-1)``. Values in ``(-c, c)`` are unchanged. If ``v >= c`` then both
    ``v * 2**n`` and ``c * 2**n`` exceed ``2**(bits-1)`` (because ``c > 2**(bits-1) / 2**n``),
    so ``g`` gives the same value for both; if ``v <= -c``, both ``v * 2**n`` and
    ``-c * 2**n`` lie below ``-2**(bits-1)``, same again. The largest clamped magnitude
    shifted, ``c * 2**n <= 2**(bits-1) + 2**n``, is below ``2**63`` for ``bits <= 62``,
    ``n <= 62``. ``tests/golden/test_arith.py`` holds this against Python integers.

    >>> left_shift_clamp(torch.tensor([-9, -3, 0, 2, 3, 9]), 6, 8).tolist()
    [-3, -3, 0, 2, 3, 3]
    """
    if not (0 <= n <= 62 and 1 <= bits <= 62):
        raise ValueError(f"left_shift_clamp needs 0 <= n <= 62 and 1 <= bits <= 62, "
                         f"not n = {n}, bits = {bits}")
    c = ((1 << (bits - 1)) >> n) + 1
    return v.to(torch.int64).clamp(-c, c)


def relu(v: torch.Tensor, enable: bool = True) -> torch.Tensor:
    return v.clamp_min(0) if enable else v


# -- section 1: weights in cells -------------------------------------------------------------

def slice_weights(cfg: AccelConfig, w: torch.Tensor) -> torch.Tensor:
    """Cells of the (biased) stored weight: ``[..., slices]``, slice 0 = low ``cell_bits``."""
    check_range("weights", w, cfg.weight_min, cfg.weight_max)
    u = w.to(torch.int64) + cfg.weight_bias
    shifts = torch.arange(cfg.slices, dtype=torch.int64) * cfg.cell_bits
    return (u.unsqueeze(-1) >> shifts) & cfg.cell_max


def encode_weights(cfg: AccelConfig, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Program one crossbar: ``w`` is ``[rows, outputs]`` (row-major, as stored).

    Returns
    -------
    cells : int64 ``[rows, outputs, slices]``
        The stored cells ``c'`` (complemented in flagged columns).
    flags : bool ``[outputs, slices]``
        The flipped-column flags; all ``False`` unless ``cfg.flip``.
    """
    if w.dim() != 2 or w.shape[0] != cfg.rows:
        raise ValueError(f"a crossbar holds [{cfg.rows}, outputs] weights, not {list(w.shape)}")
    cells, flags = encode_crossbars(cfg, w.unsqueeze(0))
    return cells[0], flags[0]


def encode_crossbars(cfg: AccelConfig, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_weights` of many crossbars at once: ``w [tiles, rows, outputs]`` gives
    cells ``[tiles, rows, outputs, slices]`` and flags ``[tiles, outputs, slices]`` (a column's
    flag depends on its own cells only)."""
    if w.dim() != 3 or w.shape[1] != cfg.rows:
        raise ValueError(f"crossbars hold [tiles, {cfg.rows}, outputs] weights, "
                         f"not {list(w.shape)}")
    c = slice_weights(cfg, w)
    if cfg.flip:
        flags = 2 * c.sum(1) > cfg.rows * cfg.cell_max
    else:
        flags = torch.zeros(c.shape[:1] + c.shape[2:], dtype=torch.bool)
    cells = torch.where(flags.unsqueeze(1), cfg.cell_max - c, c)
    return cells, flags


def flag_words(cfg: AccelConfig, w: torch.Tensor) -> list[int]:
    """The ``flags`` field of the weight writes of ``w [rows, outputs]``, one integer per
    output (group): bit ``s`` is the flag of slice ``s`` (``hdl.layouts.weight_write_layout``)."""
    _, flags = encode_weights(cfg, w)
    return [sum(int(f) << s for s, f in enumerate(row)) for row in flags.tolist()]


# -- section 2: input chunks -----------------------------------------------------------------

def chunk_positions(cfg: AccelConfig) -> torch.Tensor:
    return torch.tensor([cfg.chunk_position(t) for t in range(cfg.input_cycles)],
                        dtype=torch.int64)


def chunk_signs(cfg: AccelConfig) -> torch.Tensor:
    return torch.tensor([-1 if cfg.chunk_negative(t) else 1 for t in range(cfg.input_cycles)],
                        dtype=torch.int64)


def input_chunks(cfg: AccelConfig, x: torch.Tensor) -> torch.Tensor:
    """DAC levels: ``x [..., rows]`` → ``[..., T, rows]``, chunk 0 holding the LSBs."""
    check_range("inputs", x, cfg.input_min, cfg.input_max)
    xu = x.to(torch.int64) & ((1 << cfg.input_bits) - 1)
    pos = chunk_positions(cfg).view(-1, 1)
    masks = torch.tensor([(1 << cfg.chunk_width(t)) - 1 for t in range(cfg.input_cycles)],
                         dtype=torch.int64).view(-1, 1)
    return (xu.unsqueeze(-2) >> pos) & masks


# -- sections 4 and 5: the ADC and flip recovery ---------------------------------------------

def adc_convert(cfg: AccelConfig, read: torch.Tensor) -> torch.Tensor:
    """ADC code of a column read, per ``cfg.adc_mode`` (section 4).

    ``lossless`` passes the read; ``clip`` saturates at ``2**adc_bits - 1``; ``drop_lsb``
    rounds to nearest (ties up) at ``adc_drop`` bits and then saturates.
    """
    if not read.is_floating_point():
        read = read.to(torch.int64)
    # Integer tensors, or floating-point tensors holding integers exactly (the fast path of
    # golden.layer): floor division by 2**k is the arithmetic shift right by k.
    if cfg.adc_mode == "lossless":
        return read
    if cfg.adc_mode == "clip":
        return read.clamp_max(cfg.adc_code_max)
    k = cfg.adc_drop
    half = (1 << (k - 1)) if k else 0
    return torch.div(read + half, 1 << k, rounding_mode="floor").clamp_max(cfg.adc_code_max)


def adc_reconstruct(cfg: AccelConfig, code: torch.Tensor) -> torch.Tensor:
    """The digital value the shift-add uses for an ADC code: ``code << adc_drop``."""
    if code.is_floating_point():
        return code * (1 << cfg.adc_drop)
    return code.to(torch.int64) << cfg.adc_drop


def flip_recover(cfg: AccelConfig, rec: torch.Tensor, insum: torch.Tensor,
                 flags: torch.Tensor) -> torch.Tensor:
    """Section 5: ``M * insum - rec`` in flagged columns, ``rec`` elsewhere.

    ``rec`` is ``[..., columns...]`` and ``insum`` broadcasts against it."""
    return torch.where(flags, cfg.cell_max * insum - rec, rec)


# -- section 7: the output stage -------------------------------------------------------------

def finalize(cfg: AccelConfig, v: torch.Tensor, *, shift: int, relu_enable: bool) -> torch.Tensor:
    """FlexPoint shift (rounding as :func:`round_shift`), ReLU, saturation to ``output_bits``.

    The result is that of the exact shift of section 7 for any int64 ``v``: a left shift is
    preceded by :func:`left_shift_clamp`, a right shift cannot overflow.
    """
    _check_shift(cfg, shift)
    if shift < 0:
        # the left shift is exact and then saturated: clamp first, so int64 cannot wrap
        v = left_shift_clamp(v, -shift, cfg.output_bits)
    return saturate(relu(round_shift(v, shift), relu_enable), *cfg.output_range)


def _check_shift(cfg: AccelConfig, shift: int) -> None:
    if not cfg.shift_min <= shift <= cfg.shift_max:
        raise ValueError(f"shift must lie in [{cfg.shift_min}, {cfg.shift_max}] "
                         f"(output.shift_min/max), not {shift}")


def rounding_offset(shift: int) -> int:
    """What :func:`round_shift` adds before it shifts right: ``2**(shift-1)``, or 0.

    >>> rounding_offset(3), rounding_offset(0), rounding_offset(-2)
    (4, 0, 0)
    """
    return 1 << (shift - 1) if shift > 0 else 0


def float_finalize_exact(cfg: AccelConfig, bound: int, shift: int, dtype: torch.dtype) -> bool:
    """Whether :func:`finalize_float` in ``dtype`` gives :func:`finalize` exactly for every
    ``|v| <= bound``: ``v + rounding_offset(shift)`` is an integer the float type holds
    (below ``2**24`` in float32, ``2**53`` in float64), and so are both ends of the output
    range (``output_bits - 1`` at most 24, resp. 53)."""
    mant = {torch.float32: 24, torch.float64: 53}.get(dtype)
    return (mant is not None and bound + rounding_offset(shift) < (1 << mant)
            and cfg.output_bits - 1 <= mant)


def finalize_float(cfg: AccelConfig, u: torch.Tensor, *, shift: int, relu_enable: bool
                   ) -> torch.Tensor:
    """:func:`finalize` for a float tensor ``u`` holding ``(v + rounding_offset(shift)) *
    2**-shift`` for integers ``v``, as int64 (``u`` is clamped in place); exact when
    :func:`float_finalize_exact` holds. A product whose operands are scaled by ``2**-shift``
    gives ``u`` directly: scaling by a power of two changes no significand, so the scaled sums
    are exact wherever the unscaled ones are.

    Right shift: ``floor(u)`` is :func:`round_shift`'s ``(v + 2**(sh-1)) >> sh``. Left shift:
    ``u = v * 2**n`` exactly (no float overflows below ``2**53 * 2**62``), so the saturation sees
    the unbounded shifted value, as section 7 demands. ReLU and saturation are one clamp to
    integer ends, which commutes with ``floor``; on a non-negative range the cast to int64
    (which truncates) is the ``floor``.

    >>> cfg = AccelConfig(name="t", rows=2, cols=2, cell_bits=1, weight_bits=2, input_bits=2,
    ...                   adc_bits=3, adc_columns_per_cycle=1, output_bits=8, shift_min=-2,
    ...                   shift_max=4)
    >>> v = torch.tensor([-9, -6, -5, 5, 6, 7, 300])
    >>> u = (v + rounding_offset(2)).to(torch.float32) / 4
    >>> finalize_float(cfg, u, shift=2, relu_enable=False).tolist()
    [-2, -1, -1, 1, 2, 2, 75]
    >>> finalize(cfg, v, shift=2, relu_enable=False).tolist()
    [-2, -1, -1, 1, 2, 2, 75]
    """
    _check_shift(cfg, shift)
    lo, hi = cfg.output_range
    lo = max(lo, 0) if relu_enable else lo
    u = u.clamp_(lo, hi)
    if shift > 0 and lo < 0:
        u = u.floor_()
    return u.to(torch.int64)
