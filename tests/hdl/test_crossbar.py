# amaranth: UnusedElaboratable=no
"""CrossbarMAC: weight writes (encoding, slicing, flags), column sums per row group, insum."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from golden.arith import encode_weights
from hdl import CrossbarMAC

from ._util import SMALL_CONFIGS, config, random_weights, seed_for, to_py, weight_writes


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


async def program(ctx, dut, writes):
    for payload in writes:
        ctx.set(dut.wr.valid, 1)
        ctx.set(dut.wr.payload, payload)
        await ctx.tick()
    ctx.set(dut.wr.valid, 0)


async def read_chunk(ctx, dut, levels):
    """Clear, then run every crossbar step; returns (col_sum, insum) after each step."""
    cfg = dut.cfg
    ctx.set(dut.levels, levels)
    ctx.set(dut.clear, 1)
    await ctx.tick()
    ctx.set(dut.clear, 0)
    assert to_py(ctx.get(dut.col_sum)) == [0] * cfg.cols and ctx.get(dut.insum) == 0
    states = []
    for i in range(cfg.xbar_steps):
        ctx.set(dut.step, i)
        ctx.set(dut.en, 1)
        await ctx.tick()
        states.append((to_py(ctx.get(dut.col_sum)), ctx.get(dut.insum)))
    ctx.set(dut.en, 0)
    return states


def expected_states(cfg, cells, levels):
    """Partial column sums and insums after each crossbar step (section 3)."""
    x = torch.tensor(levels, dtype=torch.int64)
    P = cfg.rows_per_cycle
    out = []
    for i in range(cfg.xbar_steps):
        rows = slice(0, (i + 1) * P)
        out.append(((x[rows] @ cells[rows]).tolist(), int(x[rows].sum())))
    return out


@pytest.mark.parametrize("name", SMALL_CONFIGS)
def test_column_sums(name):
    cfg = config(name)
    seed = seed_for(f"test_column_sums[{name}]")
    rng = random.Random(seed)
    w = random_weights(cfg, rng)
    cells, flags = encode_weights(cfg, w)
    cells = cells.reshape(cfg.rows, cfg.cols)
    flag_bits = sum(int(f) << j for j, f in enumerate(flags.reshape(-1).tolist()))
    dut = CrossbarMAC(cfg)
    level_sets = [[cfg.dac_max] * cfg.rows, [0] * cfg.rows]
    level_sets += [[rng.randint(0, cfg.dac_max) for _ in range(cfg.rows)] for _ in range(8)]

    async def bench(ctx):
        assert to_py(ctx.get(dut.col_sum)) == [0] * cfg.cols
        assert ctx.get(dut.insum) == 0 and ctx.get(dut.flags) == 0
        await program(ctx, dut, weight_writes(cfg, w))
        assert ctx.get(dut.flags) == flag_bits, f"seed {seed}"
        for levels in level_sets:
            got = await read_chunk(ctx, dut, levels)
            assert got == expected_states(cfg, cells, levels), f"levels {levels}, seed {seed}"
            # the sums hold while en and clear are low
            await ctx.tick()
            assert (to_py(ctx.get(dut.col_sum)), ctx.get(dut.insum)) == got[-1]

    simulate(dut, bench)


@pytest.mark.parametrize("name", ["small", "small_signed"])
def test_readback_every_cell(name):
    """A one-hot level on row r reads back its stored cells c' (biased, sliced, flipped)."""
    cfg = config(name)
    seed = seed_for(f"test_readback_every_cell[{name}]")
    w = random_weights(cfg, random.Random(seed))
    cells, _ = encode_weights(cfg, w)
    cells = cells.reshape(cfg.rows, cfg.cols).tolist()
    dut = CrossbarMAC(cfg)

    async def bench(ctx):
        await program(ctx, dut, weight_writes(cfg, w))
        for r in range(cfg.rows):
            levels = [1 if k == r else 0 for k in range(cfg.rows)]
            (col_sum, insum), = (await read_chunk(ctx, dut, levels))[-1:]
            assert col_sum == cells[r] and insum == 1, f"row {r}, seed {seed}"

    simulate(dut, bench)


def test_write_details():
    """Writes replace one group of one row (low slice in the group's column 0), set the
    group's flags, ignore groups beyond the last output, and flagged columns read c XOR M."""
    cfg = config("small_signed")        # 6 outputs: groups 6 and 7 do not exist
    dut = CrossbarMAC(cfg)
    S, M = cfg.slices, cfg.cell_max

    async def bench(ctx):
        await program(ctx, dut, [{"row": 0, "group": 1, "value": 0b101_011, "flags": 0b10}])
        assert ctx.get(dut.flags) == 0b10 << (1 * S)
        (col_sum, _), = (await read_chunk(ctx, dut, [1] + [0] * (cfg.rows - 1)))[-1:]
        expect = [0] * cfg.cols
        expect[1 * S + 0] = 0b011                # low slice, not flagged
        expect[1 * S + 1] = 0b101 ^ M            # high slice, flagged: complemented
        # every other column of row 0 still holds 0 (reset), complemented where flagged
        assert col_sum == expect
        await program(ctx, dut, [{"row": 0, "group": 7, "value": 63, "flags": 0b11},
                                 {"row": 0, "group": 6, "value": 63, "flags": 0b11}])
        assert ctx.get(dut.flags) == 0b10 << (1 * S)
        (again, _), = (await read_chunk(ctx, dut, [1] + [0] * (cfg.rows - 1)))[-1:]
        assert again == expect

    simulate(dut, bench)


def test_biased_encoding():
    cfg = config("small")
    dut = CrossbarMAC(cfg)
    values = [cfg.weight_min, -1, 0, 1, cfg.weight_max]

    async def bench(ctx):
        for value in values:
            await program(ctx, dut, [{"row": 3, "group": 2, "value": value, "flags": 0}])
            levels = [1 if r == 3 else 0 for r in range(cfg.rows)]
            (col_sum, _), = (await read_chunk(ctx, dut, levels))[-1:]
            u = value + cfg.weight_bias
            got = col_sum[2 * cfg.slices:3 * cfg.slices]
            assert got == [(u >> (s * cfg.cell_bits)) & cfg.cell_max
                           for s in range(cfg.slices)], f"value {value}"

    simulate(dut, bench)


def test_clear_wins_over_en_and_latency():
    cfg = config("small_drop")          # 2 crossbar steps
    dut = CrossbarMAC(cfg)
    w = torch.full((cfg.rows, cfg.outputs), cfg.weight_max)

    async def bench(ctx):
        await program(ctx, dut, weight_writes(cfg, w))
        ctx.set(dut.levels, [1] * cfg.rows)
        full = expected_states(cfg, encode_weights(cfg, w)[0].reshape(cfg.rows, -1),
                               [1] * cfg.rows)[-1]
        # measured latency: steps from the first one until the full sums
        steps = 0
        while (to_py(ctx.get(dut.col_sum)), ctx.get(dut.insum)) != full:
            ctx.set(dut.step, steps)
            ctx.set(dut.en, 1)
            await ctx.tick()
            steps += 1
        assert steps == dut.latency == cfg.xbar_steps
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert to_py(ctx.get(dut.col_sum)) == [0] * cfg.cols and ctx.get(dut.insum) == 0

    simulate(dut, bench)


@pytest.mark.parametrize("bad", ["small", None, 3.0])
def test_rejects_non_config(bad):
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig \(see "
                                        r"arch.config.load_config\), not "):
        CrossbarMAC(bad)


def test_read_only_properties():
    dut = CrossbarMAC(config("small"))
    assert dut.latency == 1
    with pytest.raises(AttributeError):
        dut.latency = 2
    with pytest.raises(AttributeError):
        dut.cfg = None
