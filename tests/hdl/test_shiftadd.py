# amaranth: UnusedElaboratable=no
"""ShiftAdd: flip recovery and shift-add against a reference built from golden.arith, and the
output stage (correction, bias, FlexPoint shift, ReLU, saturation) against golden finalize."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden.arith import finalize, flip_recover
from hdl import ShiftAdd
from hdl.layouts import xsum_bits

from ._util import SMALL_CONFIGS, config, seed_for, to_py


def wrap(value: int, bits: int) -> int:
    """Two's complement wrap of a Python int to ``bits`` (what a register of that width does)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class Model:
    """Sections 5 and 6 for one ADC step at a time, with the registers' wrap-around."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.acc = [0] * cfg.outputs
        self.xsum = 0
        self.y = [0] * cfg.outputs

    def step(self, rec, insum, flags, t, g):
        cfg = self.cfg
        N, S = cfg.adc_columns_per_cycle, cfg.slices
        sign = -1 if cfg.chunk_negative(t) else 1
        p = cfg.chunk_position(t)
        for n in range(N):
            j = g * N + n
            f = torch.tensor(bool(flags >> j & 1))
            y = int(flip_recover(cfg, torch.tensor(rec[n]), torch.tensor(insum), f))
            o, s = divmod(j, S)
            self.acc[o] = wrap(self.acc[o] + sign * (y << (p + s * cfg.cell_bits)), cfg.acc_bits)
        if g == 0:
            self.xsum = wrap(self.xsum + sign * (insum << p), xsum_bits(self.cfg))

    def finalize(self, shift, relu, bias):
        cfg = self.cfg
        v = torch.tensor(self.acc) - cfg.weight_bias * self.xsum + torch.tensor(bias)
        self.y = finalize(cfg, v, shift=shift, relu_enable=relu).tolist()


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def check(ctx, dut, model, where):
    assert to_py(ctx.get(dut.acc)) == model.acc, f"acc, {where}"
    assert ctx.get(dut.xsum) == model.xsum, f"xsum, {where}"
    assert to_py(ctx.get(dut.y)) == model.y, f"y, {where}"


@pytest.mark.parametrize("name", SMALL_CONFIGS)
def test_accumulate_and_finalize(name):
    """Random vectors of ADC steps in the order of section 8, then the final step."""
    cfg = config(name)
    seed = seed_for(f"test_accumulate_and_finalize[{name}]")
    rng = random.Random(seed)
    dut = ShiftAdd(cfg)
    model = Model(cfg)
    N, T, G = cfg.adc_columns_per_cycle, cfg.input_cycles, cfg.adc_steps
    bias_max = (1 << (cfg.bias_bits - 1)) - 1

    async def bench(ctx):
        check(ctx, dut, model, "reset")
        for vector in range(6):
            flags = rng.getrandbits(cfg.cols)
            ctx.set(dut.flags, flags)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            model.acc, model.xsum = [0] * cfg.outputs, 0
            check(ctx, dut, model, f"clear, vector {vector}, seed {seed}")
            for t in range(T):
                insum = rng.randint(0, cfg.rows * ((1 << cfg.chunk_width(t)) - 1))
                for g in range(G):
                    rec = [rng.randint(0, (1 << cfg.read_bits) - 1) for _ in range(N)]
                    ctx.set(dut.rec, rec)
                    ctx.set(dut.insum, insum)
                    ctx.set(dut.chunk, t)
                    ctx.set(dut.group, g)
                    ctx.set(dut.en, 1)
                    await ctx.tick()
                    model.step(rec, insum, flags, t, g)
                    check(ctx, dut, model, f"vector {vector}, chunk {t}, group {g}, seed {seed}")
                ctx.set(dut.en, 0)
                await ctx.tick()    # idle cycle: everything holds
                check(ctx, dut, model, f"hold, vector {vector}, chunk {t}, seed {seed}")
            shift = rng.randint(cfg.shift_min, cfg.shift_max)
            relu = rng.random() < 0.5
            bias = [rng.randint(-bias_max - 1, bias_max) for _ in range(cfg.outputs)]
            ctx.set(dut.layer, {"shift": shift, "relu": relu, "bias": bias})
            ctx.set(dut.finalize, 1)
            await ctx.tick()
            ctx.set(dut.finalize, 0)
            model.finalize(shift, relu, bias)
            check(ctx, dut, model, f"finalize, vector {vector}, seed {seed}")

    simulate(dut, bench)


@pytest.mark.parametrize("name", ["small", "small_signed"])
def test_output_stage_rounding_and_saturation(name):
    """With acc = xsum = 0 the value is the bias: sweep small values (every rounding tie), the
    extremes, every shift and both ReLU settings; ``y`` appears one clock after ``finalize``."""
    cfg = config(name)
    dut = ShiftAdd(cfg)
    O = cfg.outputs
    top = (1 << (cfg.bias_bits - 1)) - 1
    values = list(range(-70, 71)) + [-top - 1, -top, top - 1, top,
                                     cfg.output_max << 3, cfg.output_min << 3]
    values += [0] * (-len(values) % O)
    batches = [values[k:k + O] for k in range(0, len(values), O)]

    async def bench(ctx):
        for shift in range(cfg.shift_min, cfg.shift_max + 1):
            for relu in (False, True):
                for bias in batches:
                    ctx.set(dut.layer, {"shift": shift, "relu": relu, "bias": bias})
                    ctx.set(dut.finalize, 1)
                    await ctx.tick()
                    expect = finalize(cfg, torch.tensor(bias), shift=shift,
                                      relu_enable=relu).tolist()
                    assert to_py(ctx.get(dut.y)) == expect, f"bias {bias}, shift {shift}"
        # latency: y changes exactly one edge after finalize, and holds without it
        ctx.set(dut.layer, {"shift": 0, "relu": 0, "bias": [7] * O})
        ctx.set(dut.finalize, 0)
        await ctx.tick()
        assert to_py(ctx.get(dut.y)) != [7] * O
        ctx.set(dut.finalize, 1)
        await ctx.tick()
        assert to_py(ctx.get(dut.y)) == [7] * O
        assert dut.latency == 1

    simulate(dut, bench)


def test_shift_outside_range_is_clamped():
    cfg = config("small")              # shift register is 6 bits: [-32, 31]; range [-4, 20]
    dut = ShiftAdd(cfg)
    lo, hi = -(1 << (cfg.shift_bits - 1)), (1 << (cfg.shift_bits - 1)) - 1
    assert lo < cfg.shift_min and hi > cfg.shift_max
    bias = [5, -5, 1000, -(1 << (cfg.bias_bits - 2))]

    async def bench(ctx):
        for shift, clamped in ((lo, cfg.shift_min), (cfg.shift_min - 1, cfg.shift_min),
                               (hi, cfg.shift_max), (cfg.shift_max + 1, cfg.shift_max)):
            ctx.set(dut.layer, {"shift": shift, "relu": 0, "bias": bias})
            ctx.set(dut.finalize, 1)
            await ctx.tick()
            expect = finalize(cfg, torch.tensor(bias), shift=clamped, relu_enable=False)
            assert to_py(ctx.get(dut.y)) == expect.tolist(), f"shift {shift}"

    simulate(dut, bench)


@pytest.mark.parametrize("bad", ["small", None, 1])
def test_rejects_non_config(bad):
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig \(see "
                                        r"arch.config.load_config\), not "):
        ShiftAdd(bad)


def test_read_only_properties():
    dut = ShiftAdd(config("small"))
    with pytest.raises(AttributeError):
        dut.latency = 2
    with pytest.raises(AttributeError):
        dut.cfg = None
