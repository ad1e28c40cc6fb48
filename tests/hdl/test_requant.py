# amaranth: UnusedElaboratable=no
"""ShiftRoundRequantizer and MultiplierRequantizer in Amaranth's simulator against
golden.requant: exhaustive at small widths, random at the configs' widths; latency measured."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden.requant import multiplier_requant, quantize_multiplier, shift_round_requant
from hdl import BLOCKS, MultiplierRequantizer, ShiftRoundRequantizer

from ._util import config, seed_for


def _run(dut, cases, expect):
    """Drive ``cases`` (dicts of port -> value) one per clock; after the clock edge ``y`` must
    be ``expect(case)`` (latency 1). Returns the number of cases checked."""
    checked = []

    async def bench(ctx):
        for case in cases:
            for name, value in case.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            got, want = ctx.get(dut.y), expect(case)
            assert got == want, f"{case}: y = {got}, golden {want}"
            checked.append(case)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return len(checked)


def test_shift_round_exhaustive_8_to_4():
    dut = ShiftRoundRequantizer(8, 4)
    cases = [{"acc": a, "shift": n} for n in range(16) for a in range(-128, 128)]
    n = _run(dut, cases, lambda c: int(shift_round_requant(torch.tensor([c["acc"]]),
                                                           c["shift"], 4)[0]))
    assert n == len(cases)


def test_multiplier_exhaustive_7_to_4_m5():
    dut = MultiplierRequantizer(7, 4, m_bits=5)
    cases = [{"acc": a, "multiplier": m0, "shift": e}
             for m0 in range(16) for e in range(8) for a in range(-64, 64)]
    n = _run(dut, cases, lambda c: int(multiplier_requant(
        torch.tensor([c["acc"]]), c["multiplier"], c["shift"], 4, m_bits=5)[0]))
    assert n == len(cases)


@pytest.mark.parametrize("name", ["small", "isaac"])
def test_config_widths_random(name):
    seed = seed_for(f"test_config_widths_random[{name}]")
    rng = random.Random(seed)
    cfg = config(name)
    A, B = cfg.acc_bits, cfg.output_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    accs = [lo, hi, 0, -1, 1] + [rng.randint(lo, hi) >> rng.randint(0, A - 1)
                                 for _ in range(300)]
    sr = BLOCKS["requant_shift"](cfg)
    cases = [{"acc": a, "shift": rng.randint(0, A)} for a in accs]
    assert _run(sr, cases, lambda c: int(shift_round_requant(
        torch.tensor([c["acc"]]), c["shift"], B)[0])) == len(cases), f"seed {seed}"
    mr = BLOCKS["requant_mult"](cfg)
    cases = []
    for a in accs:
        m0, e = quantize_multiplier(rng.uniform(1e-5, 0.999))
        cases.append({"acc": a, "multiplier": m0 if rng.random() < 0.9 else rng.randint(0, 5),
                      "shift": min(e, A)})
    assert _run(mr, cases, lambda c: int(multiplier_requant(
        torch.tensor([c["acc"]]), c["multiplier"], c["shift"], B)[0])) == len(cases), \
        f"seed {seed}"


def test_latency_is_one():
    dut = ShiftRoundRequantizer(8, 4)
    assert dut.latency == MultiplierRequantizer(8, 4).latency == 1
    seen = []

    async def bench(ctx):
        ctx.set(dut.acc, 100)
        ctx.set(dut.shift, 3)
        seen.append(ctx.get(dut.y))        # before any edge: the reset value
        await ctx.tick()
        seen.append(ctx.get(dut.y))
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 7]                  # round(100 / 8) = 12.5 -> 13, saturated to 7


@pytest.mark.parametrize("args, exc, message", [
    ((8.0, 4), TypeError, "acc_bits must be an integer, not 8.0"),
    ((8, 1), ValueError, "out_bits must be an integer of at least 2, not 1"),
    ((4, 8), ValueError, "out_bits must not exceed acc_bits = 4, not 8"),
])
def test_bad_parameters(args, exc, message):
    with pytest.raises(exc, match=message):
        ShiftRoundRequantizer(*args)


def test_bad_multiplier_width():
    with pytest.raises(ValueError, match="m_bits must be an integer of at least 3, not 2"):
        MultiplierRequantizer(8, 4, m_bits=2)
    with pytest.raises(TypeError, match="cfg must be an AccelConfig"):
        MultiplierRequantizer.from_config("small")
