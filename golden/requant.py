"""Two requantizers: an accumulator to a narrow signed output, as pure integer functions.

* :func:`shift_round_requant` -- the FlexPoint / joint-quantization scheme: an arithmetic right
  shift by ``n`` rounding to nearest with ties toward +infinity (:func:`golden.arith.round_shift`,
  the very rounding of the datapath's output stage), then saturation to ``out_bits``.
* :func:`multiplier_requant` -- the integer-only inference scheme of Jacob et al., "Quantization
  and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference" (CVPR 2018),
  as gemmlowp and TensorFlow Lite implement it (``MultiplyByQuantizedMultiplier``): the real
  scale ``s`` in ``(0, 1)`` is ``M0 * 2**-(m-1) * 2**-e`` with a fixed-point multiplier ``M0``
  (``m``-bit signed, non-negative, ``M0 >= 2**(m-2)`` when normalised) and a right shift ``e``;

  1. ``SaturatingRoundingDoublingHighMul(acc, M0)``: the high half of the doubled product,
     ``(acc*M0 + nudge) / 2**(m-1)`` truncated toward zero, with ``nudge = 2**(m-2)`` for a
     non-negative product and ``1 - 2**(m-2)`` otherwise: round to nearest, ties toward
     +infinity (equal to ``(acc*M0 + 2**(m-2)) >> (m-1)``, which is how the RTL forms it);
  2. ``RoundingDivideByPOT(., e)``: ``(q >> e) + (remainder > threshold)`` with
     ``remainder = q & (2**e - 1)`` and ``threshold = (2**e - 1) >> 1`` plus one if ``q < 0``
     (round to nearest, ties away from zero);
  3. saturation to ``out_bits`` (gemmlowp then adds the output zero point, 0 here: symmetric).

  With ``m = 32`` and a 32-bit accumulator this is gemmlowp's code bit for bit; for any
  ``acc_bits`` and ``m`` it is the same formula on wider integers. ``M0`` is non-negative, so
  the ``INT_MIN * INT_MIN`` saturation of step 1 cannot occur.

Both take and return ``torch.int64`` tensors; the products of step 1 (up to ``acc_bits + m``
bits) are formed in Python integers where they might not fit in 63 bits.
"""

from __future__ import annotations

import math

import torch

from arch.ranges import int_range, max_int
from golden.arith import round_shift, saturate

__all__ = ["shift_round_requant", "multiplier_requant", "quantize_multiplier",
           "rounding_doubling_high_mul", "rounding_divide_by_pot"]


def shift_round_requant(acc: torch.Tensor, shift: int, out_bits: int) -> torch.Tensor:
    """``saturate(round_shift(acc, shift), out_bits)`` for ``shift >= 0``.

    >>> shift_round_requant(torch.tensor([5, 6, -6, -5, 1000, -1000]), 2, 8).tolist()
    [1, 2, -1, -1, 127, -128]
    """
    if shift < 0:
        raise ValueError(f"shift must be a non-negative integer, not {shift}")
    return saturate(round_shift(acc, shift), *int_range(out_bits, signed=True))


def _as_int(t) -> list[int]:
    return [int(v) for v in torch.as_tensor(t).reshape(-1).tolist()]


def rounding_doubling_high_mul(a: int, m0: int, m_bits: int) -> int:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` for an ``m_bits`` multiplier
    (``m0 >= 0``): ``(a*m0 + nudge)`` divided by ``2**(m_bits-1)``, truncated toward zero
    (the transcription of gemmlowp's C++; ties go toward +infinity).

    >>> rounding_doubling_high_mul(3, 1 << 30, 32), rounding_doubling_high_mul(-3, 1 << 30, 32)
    (2, -1)
    """
    ab = a * m0
    half = 1 << (m_bits - 2)
    nudge = half if ab >= 0 else 1 - half
    s = ab + nudge
    d = 1 << (m_bits - 1)
    return s // d if s >= 0 else -((-s) // d)


def rounding_divide_by_pot(x: int, e: int) -> int:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**e`` rounded to nearest, ties away from 0.

    >>> [rounding_divide_by_pot(v, 1) for v in (3, -3, 2, -2)]
    [2, -2, 1, -1]
    """
    mask = (1 << e) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if (x & mask) > threshold else 0)


def multiplier_requant(acc: torch.Tensor, multiplier: int, shift: int, out_bits: int, *,
                       m_bits: int = 32) -> torch.Tensor:
    """The gemmlowp requantizer (module docstring): high-mul by ``multiplier``, rounding
    right shift by ``shift``, saturation to signed ``out_bits``.

    >>> M0, e = quantize_multiplier(0.25 * 0.75)     # 0.1875 = 0.75 * 2**-2
    >>> multiplier_requant(torch.tensor([16, 17, -16, 10000]), M0, e, 8).tolist()
    [3, 3, -3, 127]

    Raises
    ------
    ValueError
        If ``multiplier`` is not in ``[0, 2**(m_bits-1) - 1]`` or ``shift`` is negative.
    """
    if not 0 <= multiplier <= max_int(m_bits, signed=True):
        raise ValueError(f"multiplier must lie in [0, {max_int(m_bits, signed=True)}] (a "
                         f"non-negative {m_bits}-bit fixed-point fraction), not {multiplier}")
    if shift < 0:
        raise ValueError(f"shift must be a non-negative integer, not {shift}")
    acc = torch.as_tensor(acc)
    q = [rounding_divide_by_pot(rounding_doubling_high_mul(a, multiplier, m_bits), shift)
         for a in _as_int(acc)]
    return saturate(torch.tensor(q, dtype=torch.int64).view(acc.shape),
                    *int_range(out_bits, signed=True))


def quantize_multiplier(scale: float, m_bits: int = 32) -> tuple[int, int]:
    """TensorFlow Lite's ``QuantizeMultiplier`` for a scale in ``(0, 1)``: ``(M0, e)`` with
    ``scale ~= M0 * 2**-(m_bits-1) * 2**-e`` and ``2**(m_bits-2) <= M0 < 2**(m_bits-1)``.

    >>> quantize_multiplier(0.75, 8)
    (96, 0)
    """
    if not 0 < scale < 1:
        raise ValueError(f"scale must lie in (0, 1), not {scale}")
    frac, exp = math.frexp(scale)          # scale = frac * 2**exp, frac in [0.5, 1)
    m0 = round(frac * (1 << (m_bits - 1)))
    if m0 == 1 << (m_bits - 1):            # frac rounded up to 1.0
        m0 //= 2
        exp += 1
    if exp > 0:                            # scale within half an LSB of 1: the largest M0
        return max_int(m_bits, signed=True), 0
    return m0, -exp
