# amaranth: UnusedElaboratable=no
"""The Datapath with a per-vector first chunk (per-region precision, docs/arithmetic.md
section 8/9): inputs reduced to p bits (golden.precision.reduce_activations) streamed from chunk
t0 = floor((Bx - p)/d) give golden's output, every obs field on every cycle equals
golden.trace.vector_trace, and the measured latency is (T - t0)*(X + G) + 1
(Datapath.latency_from). With t0 = 0 nothing changes (tests/hdl/test_datapath.py)."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden.arith import flag_words
from golden.precision import reduce_activations
from golden.trace import datapath_trace, first_chunk_edges, vector_trace
from hdl import Datapath

from ._util import SMALL_CONFIGS, config, random_inputs, random_weights, seed_for, to_py

FIELDS = ("phase", "chunk", "step", "col_sum", "insum", "adc_valid", "adc_code", "acc", "xsum")


def vectors(cfg, rng, n):
    """``n`` input vectors, each reduced to a random precision ``p``, with its first chunk
    (the largest exact one, ``floor((Bx - p)/d)``; sometimes a smaller one, also exact)."""
    Bx, d = cfg.input_bits, cfg.dac_bits
    x = random_inputs(cfg, rng, n)
    ps = [Bx, 1, 2] + [rng.randint(1, Bx) for _ in range(n - 3)]
    xs, t0s = [], []
    for v, p in enumerate(ps[:n]):
        xs.append(reduce_activations(cfg, x[v], p))
        t0 = (Bx - p) // d
        t0s.append(t0 if rng.random() < 0.8 else rng.randint(0, t0))
    return torch.stack(xs), t0s


@pytest.mark.parametrize("name", SMALL_CONFIGS)
def test_first_chunk_every_cycle(name):
    cfg = config(name)
    seed = seed_for(f"test_first_chunk_every_cycle[{name}]")
    rng = random.Random(seed)
    where = f"config {name}, seed {seed}"
    w = random_weights(cfg, rng)
    bias = torch.tensor([rng.randint(-50, 50) for _ in range(cfg.outputs)])
    shift = min(max(cfg.product_bits - cfg.output_bits - 1, cfg.shift_min), cfg.shift_max)
    x, t0s = vectors(cfg, rng, 12)
    tr = datapath_trace(cfg, w, x, bias, shift=shift, relu=False)
    dut = Datapath(cfg)
    flags = flag_words(cfg, w)
    measured = []

    async def bench(ctx):
        for r in range(cfg.rows):
            for o in range(cfg.outputs):
                ctx.set(dut.wr.valid, 1)
                ctx.set(dut.wr.payload, {"row": r, "group": o, "value": int(w[r, o]),
                                         "flags": flags[o]})
                await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        ctx.set(dut.layer, {"shift": shift, "relu": 0, "bias": bias.tolist()})
        ctx.set(dut.o.ready, 1)
        for v, t0 in enumerate(t0s):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"x": x[v].tolist(), "first_chunk": t0})
            assert ctx.get(dut.i.ready), f"vector {v} not taken, {where}"
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            exp = vector_trace(cfg, tr, v, t0)
            edges = len(first_chunk_edges(cfg, t0))
            for k in range(edges):
                if k:
                    await ctx.tick()
                got = to_py(ctx.get(dut.obs))
                for f in FIELDS:
                    want = exp[f][k].tolist()
                    assert got[f] == want, (f"vector {v} (first chunk {t0}), after edge {k}: "
                                            f"obs.{f} expected {want}, got {got[f]}; {where}")
            assert ctx.get(dut.o.valid), f"vector {v}: no output after {edges - 1} edges"
            measured.append(edges - 1)
            assert to_py(ctx.get(dut.o.payload))["y"] == tr.out[v].tolist(), f"vector {v}, {where}"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert measured == [dut.latency_from(t) for t in t0s]
    assert measured == [(cfg.input_cycles - t) * (cfg.xbar_steps + cfg.adc_steps) + 1
                        for t in t0s]
    assert len(set(t0s)) > 2, t0s


def test_first_chunk_above_the_last_is_the_last():
    """Out of contract: a first chunk above T - 1 (possible when T is not a power of two) is
    taken as T - 1 (one chunk, latency X + G + 1)."""
    cfg = config("small_signed")                     # T = 5, a 3-bit chunk field
    assert cfg.input_cycles == 5
    dut = Datapath(cfg)
    assert dut.latency_from(7) == dut.latency_from(4) == cfg.xbar_steps + cfg.adc_steps + 1
    lat = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"x": [0] * cfg.rows, "first_chunk": 7})
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert to_py(ctx.get(dut.obs))["chunk"] == 4
        n = 0
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            n += 1
        lat.append(n)                    # edges after the handshake edge

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert lat == [dut.latency_from(7)]
