"""arch.ranges: the one integer-range helper, against the definition of two's complement."""

from __future__ import annotations

import doctest

import pytest

import arch.ranges
from arch.config import load_config
from arch.ranges import bit_length, int_range, max_int, min_int


def test_doctests():
    assert doctest.testmod(arch.ranges).failed == 0


@pytest.mark.parametrize("bits", range(1, 17))
def test_int_range_is_every_bit_pattern(bits):
    unsigned = list(range(1 << bits))
    signed = [u - (1 << bits) if u >> (bits - 1) else u for u in unsigned]
    assert int_range(bits, signed=False) == (min(unsigned), max(unsigned))
    assert int_range(bits, signed=True) == (min(signed), max(signed))
    # narrow: a signed range symmetric around 0, an unsigned one a code short
    assert int_range(bits, signed=True, narrow=True) == (-max(signed), max(signed))
    assert int_range(bits, signed=False, narrow=True) == (0, max(unsigned) - 1)
    assert (min_int(bits, True), max_int(bits, True)) == int_range(bits, True)


@pytest.mark.parametrize("bits, err", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                       ("8", TypeError)])
def test_int_range_refuses_bad_widths(bits, err):
    with pytest.raises(err):
        int_range(bits, signed=True)


def test_int_range_message_is_pinned():
    with pytest.raises(ValueError, match=r"^an integer needs at least 1 bit, not 0$"):
        int_range(0, signed=False)


@pytest.mark.parametrize("value", [*range(-300, 300), 2 ** 40, -(2 ** 40) - 1])
def test_bit_length_is_the_smallest_range_that_holds_the_value(value):
    b = bit_length(value, signed=True)
    lo, hi = int_range(b, signed=True)
    assert lo <= value <= hi
    if b > 1:
        lo, hi = int_range(b - 1, signed=True)
        assert not lo <= value <= hi
    if value >= 0:
        b = bit_length(value)
        assert value <= max_int(b, signed=False)
        assert b == 1 or value > max_int(b - 1, signed=False)


def test_config_ranges_use_int_range():
    cfg = load_config("small")
    assert (cfg.output_min, cfg.output_max) == int_range(cfg.output_bits, signed=True)
    assert cfg.bias_range == int_range(cfg.bias_bits, signed=True)
    assert cfg.acc_range == int_range(cfg.acc_bits, signed=True)
    assert (cfg.input_min, cfg.input_max) == int_range(cfg.input_bits, cfg.input_signed)
    assert (cfg.weight_min, cfg.weight_max) == int_range(cfg.weight_bits, signed=True)
    assert cfg.weight_bias == -cfg.weight_min == 1 << (cfg.weight_bits - 1)
    signed_in = load_config("small_signed")
    assert signed_in.input_signed
    assert signed_in.input_range == (-(1 << (signed_in.input_bits - 1)),
                                     (1 << (signed_in.input_bits - 1)) - 1)
    unsigned_w = cfg.replace(weight_encoding="unsigned")
    assert unsigned_w.weight_range == (0, (1 << cfg.weight_bits) - 1)
    assert unsigned_w.weight_bias == 0
