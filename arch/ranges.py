"""Integer ranges: the one place where the bounds of a ``bits``-wide integer are written down.

Modelled on Brevitas' ``max_int`` / ``min_int``: a signed range is two's complement, a *narrow*
range drops its most negative value (signed) or its largest value (unsigned) so that it is
symmetric around zero, or one code short of full.
"""

from __future__ import annotations

import operator

__all__ = ["int_range", "min_int", "max_int", "bit_length"]


def _bits(bits: int, signed: bool) -> int:
    bits = operator.index(bits)
    if bits < 1:
        raise ValueError(f"an integer needs at least 1 bit, not {bits}")
    return bits


def max_int(bits: int, signed: bool, narrow: bool = False) -> int:
    """The largest ``bits``-wide integer.

    >>> max_int(8, signed=True), max_int(8, signed=True, narrow=True)
    (127, 127)
    >>> max_int(8, signed=False), max_int(8, signed=False, narrow=True)
    (255, 254)
    >>> max_int(1, signed=False), max_int(2, signed=True)
    (1, 1)
    """
    bits = _bits(bits, signed)
    if signed:
        return (1 << (bits - 1)) - 1
    return (1 << bits) - 1 - (1 if narrow else 0)


def min_int(bits: int, signed: bool, narrow: bool = False) -> int:
    """The smallest ``bits``-wide integer.

    >>> min_int(8, signed=True), min_int(8, signed=True, narrow=True)
    (-128, -127)
    >>> min_int(8, signed=False), min_int(8, signed=False, narrow=True)
    (0, 0)
    >>> min_int(2, signed=True), min_int(2, signed=True, narrow=True)
    (-2, -1)
    """
    bits = _bits(bits, signed)
    if signed:
        return -(1 << (bits - 1)) + (1 if narrow else 0)
    return 0


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """``(lo, hi)`` of a ``bits``-wide integer, both included.

    Signed is two's complement; ``narrow`` makes a signed range symmetric (drops ``-2**(b-1)``)
    and an unsigned one a code short (drops ``2**b - 1``).

    >>> int_range(8, signed=True)
    (-128, 127)
    >>> int_range(8, signed=True, narrow=True)
    (-127, 127)
    >>> int_range(8, signed=False)
    (0, 255)
    >>> int_range(8, signed=False, narrow=True)
    (0, 254)
    >>> int_range(1, signed=False), int_range(1, signed=True)
    ((0, 1), (-1, 0))
    >>> int_range(2, signed=True), int_range(2, signed=True, narrow=True)
    ((-2, 1), (-1, 1))
    >>> int_range(0, signed=False)
    Traceback (most recent call last):
    ...
    ValueError: an integer needs at least 1 bit, not 0
    """
    return min_int(bits, signed, narrow), max_int(bits, signed, narrow)


def bit_length(value: int, signed: bool = False) -> int:
    """The fewest bits that hold ``value`` (at least 1): unsigned, or two's complement.

    >>> bit_length(0), bit_length(1), bit_length(255), bit_length(256)
    (1, 1, 8, 9)
    >>> bit_length(127, signed=True), bit_length(-128, signed=True), bit_length(128, signed=True)
    (8, 8, 9)
    >>> bit_length(-1, signed=True), bit_length(0, signed=True)
    (1, 1)
    """
    value = operator.index(value)
    if not signed:
        if value < 0:
            raise ValueError(f"an unsigned integer cannot hold {value}")
        return max(value.bit_length(), 1)
    return max((value if value >= 0 else ~value).bit_length() + 1, 1)
