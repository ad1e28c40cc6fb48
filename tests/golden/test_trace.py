"""The cycle trace: every register after every edge equals the naive edge-by-edge reading."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from arch.config import config_names, load_config
from golden.layer import matvec, matvec_acc, program
from golden.trace import datapath_trace, schedule, stream_cycles

from ..strategies import configs
from . import reference as ref

SMALL = [n for n in config_names() if not n.startswith("isaac")]


def check_against_reference(cfg, seed, vectors=3, shift=2, relu=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (vectors, cfg.rows), generator=gen)
    x[0, 0], x[-1, -1] = cfg.input_min, cfg.input_max
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (cfg.rows, cfg.outputs), generator=gen)
    bias = torch.randint(-20, 21, (cfg.outputs,), generator=gen).clamp(
        -(2 ** (cfg.bias_bits - 1)), 2 ** (cfg.bias_bits - 1) - 1)
    tr = datapath_trace(cfg, w, x, bias, shift=shift, relu=relu)
    assert tr.edges == cfg.latency + 1
    for v in range(vectors):
        states, out = ref.simulate_vector(cfg, w.tolist(), x[v].tolist(), bias.tolist(),
                                          shift, relu)
        assert len(states) == tr.edges
        for k, state in enumerate(states):
            assert set(state) == set(tr.fields)
            for field in tr.fields:
                got = getattr(tr, field)[v, k].tolist()
                assert got == state[field], f"seed={seed} vector {v} edge {k} field {field}"
        assert tr.out[v].tolist() == out, f"seed={seed}"
    return tr, w, x, bias


@pytest.mark.parametrize("name", SMALL)
def test_shipped_configs_against_reference(name):
    check_against_reference(load_config(name), seed=11)


@settings(max_examples=25)
@given(cfg=configs(max_rows=8), seed=st.integers(0, 2 ** 31), relu=st.booleans(),
       shift=st.integers(-3, 8))
def test_random_configs_against_reference(cfg, seed, relu, shift):
    shift = max(cfg.shift_min, min(shift, cfg.shift_max))
    check_against_reference(cfg, seed, vectors=2, shift=shift, relu=relu)


@settings(max_examples=25)
@given(cfg=configs(max_rows=8, overlap=True), seed=st.integers(0, 2 ** 31),
       relu=st.booleans(), shift=st.integers(-3, 8))
def test_random_overlapped_configs_against_reference(cfg, seed, relu, shift):
    shift = max(cfg.shift_min, min(shift, cfg.shift_max))
    check_against_reference(cfg, seed, vectors=2, shift=shift, relu=relu)


@pytest.mark.parametrize("name", config_names())
def test_trace_summed_equals_layer_model(name):
    cfg = load_config(name)
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (16, cfg.rows), generator=gen)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (cfg.rows, cfg.outputs), generator=gen)
    bias = torch.randint(-99, 100, (cfg.outputs,), generator=gen)
    tr = datapath_trace(cfg, w, x, bias, shift=3, relu=False)
    assert torch.equal(tr.out, matvec(cfg, x, w, bias, shift=3))
    final_acc = tr.acc[:, -1] - cfg.weight_bias * tr.xsum[:, -1:]
    assert torch.equal(final_acc, matvec_acc(program(cfg, w), x))
    assert torch.equal(tr.xsum[:, -1], x.sum(1))


def test_schedule_length_and_counts_come_from_the_config():
    cfg = load_config("isaac")
    sch = schedule(cfg)
    assert len(sch) == cfg.latency + 1 == 16 * (1 + 16) + 2
    assert int((sch.kind == 1).sum()) == cfg.input_cycles * cfg.xbar_steps
    assert int((sch.kind == 2).sum()) == cfg.input_cycles * cfg.adc_steps
    assert stream_cycles(cfg, 10) == 10 * 274


@pytest.mark.parametrize("name", ["small", "isaac"])
def test_overlapped_schedule_saves_min_x_g_per_chunk_after_the_first(name):
    """The overlapped schedule: a crossbar read of chunk 0, T - 1 stages of max(X, G) edges,
    the ADC of the last chunk; every crossbar and ADC step exactly once, the sample-and-hold
    loaded once per chunk, at the chunk's last crossbar step."""
    seq = load_config(name)
    cfg = seq.replace(name=f"{name}_pipelined", pipeline_overlap=True)
    T, X, G = cfg.input_cycles, cfg.xbar_steps, cfg.adc_steps
    sch = schedule(cfg)
    assert len(sch) == cfg.latency + 1 == X + (T - 1) * max(X, G) + G + 2
    assert seq.latency - cfg.latency == (T - 1) * min(X, G)
    assert sorted(v for v in sch.xbar.tolist() if v >= 0) == list(range(T * X))
    assert sorted(v for v in sch.adc.tolist() if v >= 0) == list(range(T * G))
    assert [v for v in sch.hold.tolist() if v >= 0] == list(range(T))
    held_at = [k for k, v in enumerate(sch.hold.tolist()) if v >= 0]
    assert all(sch.xbar[k] % X == X - 1 for k in held_at)
    # the ADC of chunk t ends no later than the edge that overwrites its held sums
    for t in range(T - 1):
        last_adc = max(k for k, v in enumerate(sch.adc.tolist()) if v >= 0 and v // G == t)
        assert last_adc <= held_at[t + 1]
    assert stream_cycles(cfg, 10) == 10 * (cfg.latency + 1)
