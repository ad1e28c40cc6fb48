# amaranth: UnusedElaboratable=no
# (``from_config`` is a factory: the block it returns is elaborated, or not, by its caller.)
"""Two requantizers from a signed accumulator to a signed narrow output (``golden.requant``):
shift-and-round, and a fixed-point multiplier followed by a rounding shift (gemmlowp)."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from arch.config import AccelConfig
from arch.ranges import int_range

from ._common import check_config

__all__ = ["ShiftRoundRequantizer", "MultiplierRequantizer", "shift_port_bits"]


def _check_width(name: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, not {value}")
    return value


def shift_port_bits(acc_bits: int) -> int:
    """Width of the ``shift`` port: enough for shifts ``0 .. acc_bits`` (a shift of
    ``acc_bits`` or more rounds every accumulator to 0)."""
    return acc_bits.bit_length()


def _saturate(m: Module, value, out_bits: int, target):
    lo, hi = int_range(out_bits, signed=True)
    m.d.sync += target.eq(Mux(value > hi, hi, Mux(value < lo, lo, value)))


class _Requantizer(wiring.Component):
    """Ports and parameters shared by both requantizers."""

    def __init__(self, acc_bits: int, out_bits: int, extra: dict):
        self._acc_bits = _check_width("acc_bits", acc_bits, 2)
        self._out_bits = _check_width("out_bits", out_bits, 2)
        if out_bits > acc_bits:
            raise ValueError(f"out_bits must not exceed acc_bits = {acc_bits}, not {out_bits}")
        super().__init__({
            "acc":   In(signed(acc_bits)),
            **extra,
            "shift": In(unsigned(shift_port_bits(acc_bits))),
            "y":     Out(signed(out_bits)),
        })

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    @property
    def out_bits(self) -> int:
        return self._out_bits

    @property
    def latency(self) -> int:
        """Clocks from ``acc`` (and the settings) to ``y``: 1 (the output register)."""
        return 1


class ShiftRoundRequantizer(_Requantizer):
    """``y = saturate((acc + 2**(shift-1)) >> shift, out_bits)`` (``acc`` when ``shift = 0``),
    registered: :func:`golden.requant.shift_round_requant`, the rounding of the datapath's
    FlexPoint output stage.

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator (``cfg.acc_bits`` from :meth:`from_config`).
    out_bits : int
        Width of the signed output (``cfg.output_bits``).

    Members
    -------
    acc : ``In(signed(acc_bits))``
        The accumulator.
    shift : ``In(unsigned(shift_port_bits(acc_bits)))``
        Right shift ``n``, held per layer.
    y : ``Out(signed(out_bits))``
        The requantized value of the previous cycle's ``acc`` (register, 0 after reset).

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If a width is below 2 or ``out_bits > acc_bits``.
    """

    def __init__(self, acc_bits: int, out_bits: int):
        super().__init__(acc_bits, out_bits, {})

    @classmethod
    def from_config(cls, cfg: AccelConfig) -> "ShiftRoundRequantizer":
        cfg = check_config(cfg)
        return cls(cfg.acc_bits, cfg.output_bits)

    def elaborate(self, platform):
        # (acc + 2**(n-1)) >> n == ((acc >> (n-1)) + 1) >> 1 for n > 0: a variable shift and an
        # increment, no variable constant (the same trick as the ShiftAdd output stage).
        m = Module()
        right = Signal(range(1 << len(self.shift)))
        m.d.comb += right.eq(self.shift - 1)
        rounded = Mux(self.shift == 0, self.acc, ((self.acc >> right) + 1) >> 1)
        _saturate(m, rounded, self.out_bits, self.y)
        return m


class MultiplierRequantizer(_Requantizer):
    """gemmlowp's ``MultiplyByQuantizedMultiplier``, registered
    (:func:`golden.requant.multiplier_requant`): ``h = (acc * multiplier + 2**(m-2)) >>
    (m-1)`` (``SaturatingRoundingDoublingHighMul``, ties toward +infinity), then
    ``(h >> shift) + (h mod 2**shift > threshold)`` (``RoundingDivideByPOT``, ties away from
    zero), then saturation to ``out_bits``.

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator.
    out_bits : int
        Width of the signed output.
    m_bits : int
        Width of the fixed-point multiplier ``M0`` as gemmlowp counts it (a signed ``m``-bit
        Q0.(m-1) fraction, non-negative, so the port is ``m - 1`` bits); default 32.

    Members
    -------
    acc : ``In(signed(acc_bits))``
        The accumulator.
    multiplier : ``In(unsigned(m_bits - 1))``
        ``M0``, held per layer (:func:`golden.requant.quantize_multiplier`).
    shift : ``In(unsigned(shift_port_bits(acc_bits)))``
        Right shift ``e`` after the multiplication, held per layer.
    y : ``Out(signed(out_bits))``
        The requantized value of the previous cycle's ``acc`` (register, 0 after reset).

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If a width is below 2 (``m_bits`` below 3) or ``out_bits > acc_bits``.
    """

    def __init__(self, acc_bits: int, out_bits: int, m_bits: int = 32):
        self._m_bits = _check_width("m_bits", m_bits, 3)
        super().__init__(acc_bits, out_bits, {"multiplier": In(unsigned(m_bits - 1))})

    @classmethod
    def from_config(cls, cfg: AccelConfig, m_bits: int = 32) -> "MultiplierRequantizer":
        cfg = check_config(cfg)
        return cls(cfg.acc_bits, cfg.output_bits, m_bits)

    @property
    def m_bits(self) -> int:
        return self._m_bits

    def elaborate(self, platform):
        # The doubling high-mul's sign-dependent nudge and truncation toward zero are together
        # a floor division with a +2**(m-2) rounding term, so one adder and a constant shift.
        m = Module()
        mb, A = self._m_bits, self.acc_bits
        prod = Signal(signed(A + mb))
        m.d.comb += prod.eq(self.acc * self.multiplier)
        high = Signal(signed(A + 1))
        m.d.comb += high.eq((prod + (1 << (mb - 2))) >> (mb - 1))
        width = len(high)
        mask = Signal(unsigned(width))
        m.d.comb += mask.eq((Const(1, width + 1) << self.shift) - 1)
        rem = Signal(unsigned(width))
        m.d.comb += rem.eq(high.as_unsigned() & mask)
        threshold = Signal(unsigned(width + 1))
        m.d.comb += threshold.eq((mask >> 1) + high[-1])
        q = Signal(signed(A + 2))
        m.d.comb += q.eq((high >> self.shift) + (rem > threshold))
        _saturate(m, q, self.out_bits, self.y)
        return m
