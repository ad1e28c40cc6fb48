"""Fixed-point formats of the quantization search (:mod:`golden.qsearch`) and the integers
they give.

A :class:`Fmt` is a power-of-two fixed-point format (width, fraction bits, signedness); a
:class:`LayerFormat` holds one layer's input-activation, weight and bias formats. Each tensor
is quantized with the named helpers of :mod:`golden.fixedpoint` (``round_half_even``,
``saturate``): :func:`fake_quant` quantizes and dequantizes in float (scaling by a power of two
is exact), :func:`integer_params` gives a layer's integer weights and bias, and
:func:`round_half_up` is the hardware's ``(v + 2**(sh-1)) >> sh`` rounding. :func:`fmt_for`
picks the fraction bits for a calibration range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from arch.ranges import int_range
from golden.fixedpoint import frac_bits_for, round_half_even, saturate

__all__ = ["Fmt", "LayerFormat", "fake_quant", "round_half_up", "fmt_for", "uniform_formats",
           "integer_params"]


@dataclass(frozen=True)
class Fmt:
    """A fixed-point format: ``bits`` wide, ``frac`` fraction bits (may be negative or larger
    than ``bits``), two's complement if ``signed`` else unsigned. Value = integer × 2**-frac."""
    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self):
        if not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be a positive integer, not {self.bits!r}")

    @property
    def lo(self) -> int:
        return int_range(self.bits, self.signed)[0]

    @property
    def hi(self) -> int:
        return int_range(self.bits, self.signed)[1]

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"

    def to_json(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}


@dataclass(frozen=True)
class LayerFormat:
    """Formats of one layer's input activations, weights and bias; ``None`` = float."""
    x: Fmt | None = None
    w: Fmt | None = None
    b: Fmt | None = None

    def to_json(self) -> dict:
        return {k: (None if v is None else v.to_json()) for k, v in
                (("x", self.x), ("w", self.w), ("b", self.b))}


def fake_quant(t: torch.Tensor, fmt: Fmt | None) -> torch.Tensor:
    """Quantize ``t`` to ``fmt`` and back: ``saturate(round_half_even(t * 2**f), lo, hi) *
    2**-f`` in ``t``'s dtype (scaling by a power of two is exact); ``None`` returns ``t``.

    >>> fake_quant(torch.tensor([0.3, -0.3, 0.1875, 1.0, -2.0]), Fmt(4, 3)).tolist()
    [0.25, -0.25, 0.25, 0.875, -1.0]
    >>> fake_quant(torch.tensor([-0.5, 0.3, 5.0]), Fmt(2, 1, signed=False)).tolist()
    [0.0, 0.5, 1.5]
    """
    if fmt is None:
        return t
    q = saturate(round_half_even(t * math.ldexp(1.0, fmt.frac)), fmt.lo, fmt.hi)
    return q * math.ldexp(1.0, -fmt.frac)


def round_half_up(t: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties toward +infinity: ``floor(t + 0.5)``, what the hardware's
    ``(v + 2**(sh-1)) >> sh`` does (``>>`` floors).

    >>> round_half_up(torch.tensor([0.5, 1.5, -0.5, -1.5, 1.25, -1.75])).tolist()
    [1.0, 2.0, 0.0, -1.0, 1.0, -2.0]
    """
    return torch.floor(t + 0.5)


def fmt_for(rng: tuple[float, float], bits: int, offset: int = 0) -> Fmt:
    """``bits`` wide, unsigned if the range has no negative values, ``f0 + offset`` fraction
    bits (``f0``: the most with which the range fits without saturating)."""
    signed = rng[0] < 0
    probe = Fmt(bits, 0, signed)
    return Fmt(bits, frac_bits_for(rng[0], rng[1], probe.lo, probe.hi) + offset, signed)


def uniform_formats(layers, ranges, bits: int = 8) -> list[LayerFormat]:
    """Every layer's ``x``, ``w`` and ``b`` at ``bits`` bits with the no-saturation ``f0``
    (``ranges``: :func:`golden.qlayers.calibration_ranges`)."""
    return [LayerFormat(*(fmt_for(r[k], bits) for k in ("x", "w", "b"))) for r in ranges]


def integer_params(L, f: LayerFormat, x_frac: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Layer ``L``'s (a :class:`golden.qlayers.LayerInfo`) integer weights (``f.w``) and
    bias at the accumulator's scale, in float64 holding exact integers, and the accumulator's
    fraction bits ``f.w.frac + x_frac``: the bias is quantized to ``f.b`` and aligned to the
    accumulator (exact if the accumulator has at least ``f.b.frac`` fraction bits, else
    rounded half up)."""
    w = saturate(round_half_even(L.weight.double() * math.ldexp(1.0, f.w.frac)), f.w.lo, f.w.hi)
    acc_frac = f.w.frac + x_frac
    b = round_half_up(fake_quant(L.bias.double(), f.b) * math.ldexp(1.0, acc_frac))
    return w, b, acc_frac

