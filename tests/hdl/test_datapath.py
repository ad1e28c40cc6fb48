# amaranth: UnusedElaboratable=no
"""The Datapath against golden.trace.datapath_trace, every obs field on every cycle.

Weights are programmed through ``wr``, vectors stream through ``i`` with random bubbles and
``o`` sees random back-pressure; between vectors (``OUT`` waiting, ``IDLE``) the registers must
hold. The seed is in every failure message (set ``AQUA_SEED`` to vary it).
"""

import random
from dataclasses import dataclass, field

import pytest
import torch
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings

from arch.config import AccelConfig
from golden.trace import datapath_trace
from hdl import Datapath
from hdl.layouts import Phase, input_layout, obs_layout, output_layout, weight_write_layout

from ..strategies import configs
from ._util import (SMALL_CONFIGS, config, extreme_weights, random_inputs, random_weights,
                    seed_for, to_py, weight_writes)

FIELDS = ("phase", "chunk", "step", "col_sum", "insum", "adc_valid", "adc_code", "acc", "xsum")


@dataclass
class Segment:
    """Weights and layer settings, then a stream of vectors under given handshake odds."""
    w: torch.Tensor
    x: torch.Tensor
    bias: torch.Tensor
    shift: int
    relu: bool
    p_valid: float = 1.0     # chance per cycle that the producer starts presenting a vector
    p_ready: float = 1.0     # chance per cycle that the consumer is ready
    handshakes: list = field(default_factory=list)   # edge index of each input handshake
    latencies: list = field(default_factory=list)    # measured, per vector


def _bias(cfg: AccelConfig, rng: random.Random, kind: str) -> torch.Tensor:
    lo, hi = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
    if kind == "extreme":
        return torch.tensor([rng.choice([lo, hi, 0]) for _ in range(cfg.outputs)])
    span = 1 << max(cfg.bias_bits - 4, 1)
    return torch.tensor([rng.randint(max(lo, -span), min(hi, span))
                         for _ in range(cfg.outputs)])


def _useful_shift(cfg: AccelConfig, rng: random.Random) -> int:
    """A shift that maps the accumulator range roughly onto the output range."""
    sh = cfg.product_bits - cfg.output_bits - rng.randint(0, 3)
    return min(max(sh, cfg.shift_min), cfg.shift_max)


def run(cfg: AccelConfig, segments: list[Segment], seed: int) -> Datapath:
    """Simulate ``segments`` on a fresh Datapath, checking every cycle; fills in the
    handshakes and measured latencies of each segment."""
    dut = Datapath(cfg)
    L = dut.latency
    rng = random.Random(seed)
    zero = {"phase": 0, "chunk": 0, "step": 0, "col_sum": [0] * cfg.cols, "insum": 0,
            "adc_valid": 0, "adc_code": [0] * cfg.adc_columns_per_cycle,
            "acc": [0] * cfg.outputs, "xsum": 0}
    fields = FIELDS
    if cfg.pipeline_overlap:        # the sample-and-hold bank of the overlapped schedule
        zero.update(held=[0] * cfg.cols, held_insum=0)
        fields = FIELDS + ("held", "held_insum")
    where = f"config {cfg.name!r} ({cfg.digest}), seed {seed}"

    def check_obs(ctx, expected, edge, what):
        actual = to_py(ctx.get(dut.obs))
        if actual != expected:
            bad = [f for f in fields if actual[f] != expected[f]]
            details = "; ".join(f"obs.{f}: expected {expected[f]}, got {actual[f]}" for f in bad)
            raise AssertionError(f"after edge {edge} ({what}), {where}: {details}")

    async def bench(ctx):
        edge = 0                       # edges done so far
        expected = dict(zero)
        assert ctx.get(dut.i.ready) == 1 and ctx.get(dut.o.valid) == 0, f"reset, {where}"
        check_obs(ctx, expected, -1, "reset")
        for si, seg in enumerate(segments):
            # -- program the crossbar (only while IDLE): obs must not move
            for payload in weight_writes(cfg, seg.w):
                ctx.set(dut.wr.valid, 1)
                ctx.set(dut.wr.payload, payload)
                await ctx.tick()
                edge += 1
                check_obs(ctx, expected, edge - 1, f"segment {si}, weight write {payload}")
            ctx.set(dut.wr.valid, 0)
            ctx.set(dut.layer, {"shift": seg.shift, "relu": int(seg.relu),
                                "bias": seg.bias.tolist()})

            tr = datapath_trace(cfg, seg.w, seg.x, seg.bias, shift=seg.shift, relu=seg.relu)
            V = seg.x.shape[0]
            cols = {f: getattr(tr, f).tolist() for f in fields}
            trace = [[{f: cols[f][v][k] for f in fields} for k in range(L + 1)]
                     for v in range(V)]
            outs = tr.out.tolist()

            cur, k, idle = None, 0, True     # vector in flight and its edge index
            next_v, presenting, done, seen_valid = 0, False, 0, set()
            while done < V:
                if not presenting and next_v < V and rng.random() < seg.p_valid:
                    presenting = True
                ctx.set(dut.i.valid, int(presenting))
                if presenting:
                    ctx.set(dut.i.payload, {"x": seg.x[next_v].tolist()})
                ready = rng.random() < seg.p_ready
                ctx.set(dut.o.ready, int(ready))

                at_out = not idle and k == L
                i_ready, o_valid = ctx.get(dut.i.ready), ctx.get(dut.o.valid)
                ctx_msg = f"before edge {edge}, segment {si}, vector {cur}, {where}"
                assert i_ready == int(idle or (at_out and ready)), f"i.ready wrong {ctx_msg}"
                assert o_valid == int(at_out), f"o.valid wrong {ctx_msg}"
                if o_valid and cur not in seen_valid:
                    seen_valid.add(cur)
                    seg.latencies.append(edge - 1 - seg.handshakes[cur])
                gave = o_valid and ready
                if gave:
                    y = to_py(ctx.get(dut.o.payload))["y"]
                    assert y == outs[cur], (f"output of vector {cur} at edge {edge}: expected "
                                            f"{outs[cur]}, got {y}; segment {si}, {where}")
                    done += 1
                took = presenting and i_ready

                await ctx.tick()
                if took:
                    seg.handshakes.append(edge)
                    cur, k, idle = next_v, 0, False
                    next_v, presenting = next_v + 1, False
                elif not idle and k < L:
                    k += 1
                elif gave:
                    idle = True
                edge += 1
                if idle:
                    expected = {**expected, "phase": Phase.IDLE.value, "chunk": 0, "step": 0}
                else:
                    expected = trace[cur][k]
                check_obs(ctx, expected, edge - 1,
                          f"segment {si}, vector {cur}, vector edge {k}, idle {idle}")
            ctx.set(dut.o.ready, 0)
            ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return dut


def _segments(cfg: AccelConfig, rng: random.Random) -> list[Segment]:
    return [
        # random weights and inputs, bubbles and back-pressure
        Segment(random_weights(cfg, rng), random_inputs(cfg, rng, 24), _bias(cfg, rng, "small"),
                _useful_shift(cfg, rng), rng.random() < 0.5, p_valid=0.6, p_ready=0.5),
        # the extremes, streamed back to back (throughput check)
        Segment(extreme_weights(cfg, rng), random_inputs(cfg, rng, 4),
                _bias(cfg, rng, "extreme"), cfg.shift_min, False),
        # reprogrammed weights, the largest right shift, ReLU, heavy back-pressure
        Segment(random_weights(cfg, rng), random_inputs(cfg, rng, 12), _bias(cfg, rng, "small"),
                cfg.shift_max, True, p_valid=0.4, p_ready=0.3),
    ]


@pytest.mark.parametrize("name", SMALL_CONFIGS)
def test_datapath_matches_trace(name):
    cfg = config(name)
    seed = seed_for(f"test_datapath_matches_trace[{name}]")
    rng = random.Random(seed)
    segments = _segments(cfg, rng)
    dut = run(cfg, segments, seed)
    latencies = [lat for seg in segments for lat in seg.latencies]
    assert dut.latency == cfg.latency
    assert set(latencies) == {cfg.latency}, f"measured latencies {latencies}, seed {seed}"
    # With an always-valid producer and an always-ready consumer, one vector per latency + 1.
    hs = segments[1].handshakes
    assert [b - a for a, b in zip(hs, hs[1:])] == [cfg.latency + 1] * (len(hs) - 1)


# A sixth of the profile's examples: 10 by default, 166 with HYPOTHESIS_PROFILE=thorough.
@settings(max_examples=max(4, settings.default.max_examples // 6), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(max_rows=8))
def test_datapath_random_configs(cfg):
    seed = seed_for("test_datapath_random_configs") + int(cfg.digest[:6], 16)
    rng = random.Random(seed)
    segments = [Segment(random_weights(cfg, rng), random_inputs(cfg, rng, 4),
                        _bias(cfg, rng, "small"), _useful_shift(cfg, rng), rng.random() < 0.5,
                        p_valid=0.7, p_ready=0.7)]
    run(cfg, segments, seed)
    assert set(segments[0].latencies) == {cfg.latency}


@pytest.mark.parametrize("name", ["small_pipelined", "small_signed"])
def test_overlapped_datapath_matches_trace(name):
    """ISAAC's pipeline ([pipeline] overlap): every obs field, the sample-and-hold bank
    included, on every cycle; the measured latency and throughput are the overlapped
    schedule's, lower than the sequential one's by (T - 1) * min(X, G) per vector."""
    cfg = config(name).replace(name=f"{name}-overlap", pipeline_overlap=True)
    seq = cfg.replace(pipeline_overlap=False)
    seed = seed_for(f"test_overlapped_datapath_matches_trace[{name}]")
    rng = random.Random(seed)
    segments = _segments(cfg, rng)
    dut = run(cfg, segments, seed)
    latencies = [lat for seg in segments for lat in seg.latencies]
    assert set(latencies) == {dut.latency} == {cfg.latency}, f"seed {seed}"
    hs = segments[1].handshakes
    period = {b - a for a, b in zip(hs, hs[1:])}
    assert period == {cfg.latency + 1}, f"measured periods {period}, seed {seed}"
    # measured, against the sequential Datapath run on the same vectors
    seq_segments = [Segment(segments[1].w, segments[1].x, segments[1].bias, segments[1].shift,
                            segments[1].relu)]
    run(seq, seq_segments, seed)
    hs_seq = seq_segments[0].handshakes
    T, X, G = cfg.input_cycles, cfg.xbar_steps, cfg.adc_steps
    saved = (hs_seq[-1] - hs_seq[0]) - (hs[-1] - hs[0])
    assert saved == (len(hs) - 1) * (T - 1) * min(X, G), f"seed {seed}"


@settings(max_examples=max(4, settings.default.max_examples // 6), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(max_rows=8, overlap=True))
def test_overlapped_datapath_random_configs(cfg):
    seed = seed_for("test_overlapped_datapath_random_configs") + int(cfg.digest[:6], 16)
    rng = random.Random(seed)
    segments = [Segment(random_weights(cfg, rng), random_inputs(cfg, rng, 4),
                        _bias(cfg, rng, "small"), _useful_shift(cfg, rng), rng.random() < 0.5,
                        p_valid=0.7, p_ready=0.7)]
    run(cfg, segments, seed)
    assert set(segments[0].latencies) == {cfg.latency}


def test_overlapped_ports():
    cfg = config("small_pipelined")
    members = Datapath(cfg).signature.members
    assert members["obs"].shape == obs_layout(cfg)
    assert [name for name, _ in obs_layout(cfg)][-2:] == ["held", "held_insum"]
    assert "held" not in dict(obs_layout(config("small")))


def test_ports_match_layouts():
    cfg = config("small")
    dut = Datapath(cfg)
    members = dut.signature.members
    assert members["i"].signature.members["payload"].shape == input_layout(cfg)
    assert members["o"].signature.members["payload"].shape == output_layout(cfg)
    assert members["wr"].signature.members["payload"].shape == weight_write_layout(cfg)
    assert members["wr"].signature.always_ready
    assert members["obs"].shape == obs_layout(cfg)
    assert dut.cfg is cfg


@pytest.mark.parametrize("bad", ["small", None, 16])
def test_rejects_non_config(bad):
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig \(see "
                                        r"arch.config.load_config\), not "):
        Datapath(bad)


def test_properties_are_read_only():
    dut = Datapath(config("small"))
    with pytest.raises(AttributeError):
        dut.latency = 3
    with pytest.raises(AttributeError):
        dut.cfg = config("small_clip")
