# amaranth: UnusedElaboratable=no
"""The RTL's FlexPoint output stage at the loader's limit (``acc_bits - shift_min = 62``): the
left shift is exact and then saturated (``docs/arithmetic.md``, section 7), as the reference's
Python integers compute it; and the widths of ``hdl.layouts`` follow the document."""

import re
from pathlib import Path

from amaranth.sim import Simulator

from arch.config import AccelConfig, load_config
from hdl import ShiftAdd
from hdl.layouts import Phase, xsum_bits

from ..golden import reference as ref
from ._util import to_py

# 1 row, 13 one-bit slices, 16-bit inputs: acc_bits = 32, so shift_min can be -30.
EDGE = AccelConfig(name="edge", rows=1, cols=13, cell_bits=1, weight_bits=13, input_bits=16,
                   adc_bits=1, adc_mode="clip", adc_columns_per_cycle=13, output_bits=16,
                   shift_min=-30, shift_max=31)


def test_exact_left_shift_then_saturation():
    cfg = EDGE
    assert cfg.acc_bits == 32 and cfg.acc_bits - cfg.shift_min == 62
    dut = ShiftAdd(cfg)
    hi, lo = 2 ** (cfg.bias_bits - 1) - 1, -2 ** (cfg.bias_bits - 1)
    biases = sorted({0, 1, -1, 2, -2, hi, lo, 2 ** 15, -2 ** 15, 2 ** 15 - 1, -2 ** 15 + 1})
    rec_max = 2 ** cfg.read_bits - 1
    T = cfg.input_cycles

    async def bench(ctx):
        # acc: 0, then one ADC step of the top chunk with every lane at its largest, positive
        # (flag 0) and then negative (flag 1, insum 0): y = -rec.
        for flags, acc_steps in ((0, 0), (0, 1), ((1 << cfg.cols) - 1, 1)):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.rec, [rec_max] * cfg.adc_columns_per_cycle)
            ctx.set(dut.insum, 0)
            ctx.set(dut.flags, flags)
            ctx.set(dut.chunk, T - 1)
            ctx.set(dut.group, 0)
            ctx.set(dut.en, acc_steps)
            await ctx.tick()
            ctx.set(dut.en, 0)
            acc = to_py(ctx.get(dut.acc))[0]
            sign = -1 if flags else 1
            assert acc == acc_steps * sign * rec_max * sum(
                2 ** (cfg.chunk_position(T - 1) + s) for s in range(cfg.slices))
            for sh in range(cfg.shift_min, cfg.shift_max + 1):
                for relu in (0, 1):
                    for b in biases:
                        ctx.set(dut.layer, {"shift": sh, "relu": relu, "bias": [b]})
                        ctx.set(dut.finalize, 1)
                        await ctx.tick()
                        want = ref.output_stage(cfg, acc + b, sh, relu)
                        got = to_py(ctx.get(dut.y))[0]
                        assert got == want, f"acc {acc}, bias {b}, shift {sh}, relu {relu}"
            ctx.set(dut.finalize, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_xsum_width_follows_the_document():
    for cfg in [EDGE] + [load_config(n) for n in ("small", "isaac", "small_signed")]:
        assert xsum_bits(cfg) == (cfg.rows * (2 ** cfg.input_bits - 1)).bit_length() + 2


def test_phase_codes_follow_the_document():
    """The document's ``IDLE = 0``, ``XBAR = 1``, ... are the codes of ``hdl.layouts.Phase``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "arithmetic.md").read_text()
    codes = dict(re.findall(r"`(IDLE|XBAR_ADC|XBAR|ADC|FINAL|OUT) = (\d)`", text))
    assert {name: int(v) for name, v in codes.items()} == {p.name: p.value for p in Phase}
    assert Phase.IDLE.value == 0 and Phase.as_shape().width == 3
