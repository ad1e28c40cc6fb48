"""golden.requant against independent readings with exact rationals (fractions.Fraction)."""

import math
import random
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from golden.requant import (multiplier_requant, quantize_multiplier, rounding_divide_by_pot,
                            rounding_doubling_high_mul, shift_round_requant)


def _floor_half_up(q: Fraction) -> int:
    return math.floor(q + Fraction(1, 2))


def _half_away(q: Fraction) -> int:
    return int(math.copysign(math.floor(abs(q) + Fraction(1, 2)), q)) if q else 0


def _sat(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def naive_shift_round(a: int, n: int, bits: int) -> int:
    return _sat(_floor_half_up(Fraction(a, 1 << n)), bits)


def naive_multiplier(a: int, m0: int, e: int, bits: int, m_bits: int) -> int:
    high = _floor_half_up(Fraction(a * m0, 1 << (m_bits - 1)))    # ties toward +inf
    return _sat(_half_away(Fraction(high, 1 << e)), bits)          # ties away from zero


def test_shift_round_exhaustive_small():
    accs = torch.arange(-512, 512)
    for n in range(12):
        got = shift_round_requant(accs, n, 6).tolist()
        assert got == [naive_shift_round(a, n, 6) for a in range(-512, 512)], n


def test_shift_round_refuses_negative_shift():
    with pytest.raises(ValueError, match="shift must be a non-negative integer, not -1"):
        shift_round_requant(torch.tensor([1]), -1, 8)


@pytest.mark.parametrize("m_bits", [4, 6])
def test_multiplier_exhaustive_small(m_bits):
    accs = list(range(-128, 128))
    for m0 in range(1 << (m_bits - 1)):
        for e in range(5):
            got = multiplier_requant(torch.tensor(accs), m0, e, 5, m_bits=m_bits).tolist()
            want = [naive_multiplier(a, m0, e, 5, m_bits) for a in accs]
            assert got == want, (m0, e)


@given(a=st.integers(-(1 << 31), (1 << 31) - 1), m0=st.integers(0, (1 << 31) - 1),
       e=st.integers(0, 31))
def test_gemmlowp_int32(a, m0, e):
    """m = 32 on 32-bit accumulators: gemmlowp's two steps, each against exact rationals."""
    high = rounding_doubling_high_mul(a, m0, 32)
    assert high == _floor_half_up(Fraction(a * m0, 1 << 31))
    assert -(1 << 31) <= high < (1 << 31)
    assert rounding_divide_by_pot(high, e) == _half_away(Fraction(high, 1 << e))
    got = int(multiplier_requant(torch.tensor([a]), m0, e, 8)[0])
    assert got == naive_multiplier(a, m0, e, 8, 32)


def test_multiplier_gemmlowp_values():
    """Values worked by hand from gemmlowp's C++ (nudge 1 - 2**30 for negative products)."""
    assert rounding_doubling_high_mul(-3, 1 << 30, 32) == -1          # -1.5 -> -1
    assert rounding_doubling_high_mul(3, 1 << 30, 32) == 2            # 1.5 -> 2
    assert [rounding_divide_by_pot(v, 2) for v in (6, -6, 5, -5, 7, -7)] == [2, -2, 1, -1, 2, -2]


def test_multiplier_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"multiplier must lie in \[0, 127\]"):
        multiplier_requant(torch.tensor([1]), 128, 0, 8, m_bits=8)
    with pytest.raises(ValueError, match="shift must be a non-negative integer, not -2"):
        multiplier_requant(torch.tensor([1]), 1, -2, 8)


def test_quantize_multiplier_random():
    seed = 20240611
    rng = random.Random(seed)
    for _ in range(500):
        scale = rng.uniform(1e-6, 0.999)
        m0, e = quantize_multiplier(scale)
        assert (1 << 30) <= m0 < (1 << 31), seed
        assert abs(m0 * 2.0 ** (-31 - e) - scale) <= 2.0 ** (-32 - e), (seed, scale)
    assert quantize_multiplier(1 - 1e-12, 8) == (127, 0)
    with pytest.raises(ValueError, match=r"scale must lie in \(0, 1\), not 1.5"):
        quantize_multiplier(1.5)
