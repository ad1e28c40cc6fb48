# amaranth: UnusedElaboratable=no
"""hdl.ima.IMA: crossbars in partial-sum mode and their reduction, against the golden model
(``golden.layer.matvec_acc`` per crossbar, section 6's sum, ``golden.arith.finalize``), in
every ADC mode; the latency is measured; the parameters are validated."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden.arith import finalize
from golden.layer import matvec_acc, program
from hdl import Datapath
from hdl.ima import IMA

from ._util import config, random_weights, seed_for, to_py, weight_writes


def test_parameters_are_validated():
    cfg = config("small")
    with pytest.raises(TypeError, match="cfg must be an AccelConfig"):
        IMA("small", 1, 2, 2)
    with pytest.raises(TypeError, match="lanes must be an integer, not 1.0"):
        IMA(cfg, 1.0, 2, 2)
    with pytest.raises(ValueError, match="span must be a positive integer, not 0"):
        IMA(cfg, 1, 0, 2)
    with pytest.raises(TypeError, match="partial must be a bool, not 1"):
        Datapath(cfg, partial=1)
    ima = IMA(cfg, 2, 3, 5)
    assert (ima.lanes, ima.span, ima.crossbars, ima.latency) == (2, 3, 6, cfg.latency)
    assert ima.sum_bits == cfg.sum_bits(5) == cfg.acc_bits + 3
    assert "partial" in Datapath(cfg, partial=True).signature.members
    assert "partial" not in Datapath(cfg).signature.members


@pytest.mark.parametrize("name", ["small", "small_clip", "small_drop", "small_signed"])
def test_reduction_equals_golden_sum(name):
    """Two lanes of two crossbars: per lane ``Σ partial (+ psum unless first)``, and, when
    last, the output stage of ``sum + bias``; four vectors cover first/last combinations."""
    cfg = config(name)
    seed = seed_for(f"test_reduction_equals_golden_sum[{name}]")
    rng = random.Random(seed)
    lanes, span, kt = 2, 2, 4
    dut = IMA(cfg, lanes, span, kt)
    O, R, n = cfg.outputs, cfg.rows, lanes * span
    ws = [random_weights(cfg, rng) for _ in range(n)]
    sb = cfg.sum_bits(kt)
    lo, hi = -(1 << (cfg.bias_bits - 2)), (1 << (cfg.bias_bits - 2)) - 1
    vectors = []
    for first, last in ((1, 1), (1, 0), (0, 0), (0, 1)):
        xs = torch.tensor([[rng.randint(cfg.input_min, cfg.input_max) for _ in range(R)]
                           for _ in range(n)])
        psum = torch.tensor([rng.randint(-(1 << (sb - 3)), (1 << (sb - 3)) - 1)
                             for _ in range(lanes * O)])
        bias = torch.tensor([rng.randint(lo, hi) for _ in range(lanes * O)])
        parts = torch.stack([matvec_acc(program(cfg, ws[s]), xs[s:s + 1])[0]
                             for s in range(n)])                        # [n, O]
        total = parts.view(lanes, span, O).sum(1).reshape(-1) + (0 if first else psum)
        shift = min(max(cfg.product_bits - cfg.output_bits, cfg.shift_min), cfg.shift_max)
        y = finalize(cfg, total + (bias if last else 0), shift=shift, relu_enable=bool(last))
        vectors.append((first, last, xs, psum, bias, shift, total, y))
    where = f"config {name}, seed {seed}"
    latencies = []

    async def bench(ctx):
        for s in range(n):
            for payload in weight_writes(cfg, ws[s]):
                ctx.set(dut.wr.valid, 1)
                ctx.set(dut.wr.payload, {"xbar": s, "w": payload})
                await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        ctx.set(dut.o.ready, 1)
        for k, (first, last, xs, psum, bias, shift, total, y) in enumerate(vectors):
            ctx.set(dut.layer, {"shift": shift, "relu": last, "bias": bias.tolist(),
                                "first": first, "last": last})
            ctx.set(dut.psum, psum.tolist())
            ctx.set(dut.i.payload, {"xbar": [{"x": xs[s].tolist()} for s in range(n)]})
            ctx.set(dut.i.valid, 1)
            assert ctx.get(dut.i.ready) == 1
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            edges = 1
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                edges += 1
            latencies.append(edges - 1)
            got = to_py(ctx.get(dut.o.payload))
            assert got["sum"] == total.tolist(), f"vector {k} sum, {where}"
            if last:
                assert got["y"] == y.tolist(), f"vector {k} y, {where}"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert latencies == [dut.latency] * len(vectors)
