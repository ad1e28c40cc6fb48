# amaranth: UnusedElaboratable=no
"""The crop predictor in the Amaranth simulator: on shipped test images (the stored study's
learned 0th layer, quantized) and on random images and parameters, its choice equals
golden.predictor_hw.predict_int and its cycles equal predictor_cycles; several images back to
back without a reset, with bubbles on the pixel stream and back-pressure on the choice."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from arch.config import load_config
from cosim.predtile import build_predictor, pixel_words, study_params
from golden.predictor_hw import (FEATURES, PredictorParams, predict_int, predictor_cycles,
                                 predictor_events)
from hdl.predictor import Predictor, PredictorState

from ._util import seed_for


def simulate(params, images, *, rng=None, fraction=64):
    """Stream ``images [N, C, H, W]``; per image (crop, fraction, edges from the first pixel to
    choice.valid, MAC clocks, pixels taken). With ``rng``: random pixel bubbles and choice
    back-pressure (then edges include the bubbles)."""
    dut = build_predictor(params)
    results = []

    async def bench(ctx):
        ctx.set(dut.fraction, fraction)
        for x in images:
            words = pixel_words(x)
            i, edges, macs, started = 0, 0, 0, False
            while not ctx.get(dut.choice.valid):
                assert edges < 100_000, "no choice"
                valid = i < len(words) and (rng is None or rng.random() < 0.8)
                ctx.set(dut.pix.valid, int(valid))
                if valid:
                    ctx.set(dut.pix.payload.x, words[i])
                took = valid and ctx.get(dut.pix.ready)
                macs += ctx.get(dut.state) == PredictorState.MAC
                started |= took
                await ctx.tick()
                edges += started
                i += int(took)
            ctx.set(dut.pix.valid, 0)
            while rng is not None and rng.random() < 0.5:
                await ctx.tick()
                assert ctx.get(dut.choice.valid)
            ctx.set(dut.choice.ready, 1)
            p = ctx.get(dut.choice.payload)
            results.append((int(p.crop), int(p.fraction), edges, macs, i,
                            int(ctx.get(dut.position))))
            await ctx.tick()
            ctx.set(dut.choice.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_shipped_images_bit_exact_and_in_the_cycle_count():
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_inputs, quantize_democnn
    from golden.cnn import load_democnn

    cfg = load_config("small")
    net = quantize_democnn(cfg, load_democnn())
    params = study_params(cfg, net.input_frac)
    images, _ = cluttered_digits("test")
    x = quant_inputs(net, images[:40])
    want, det = predict_int(params, x, details=True)
    # a cropped image, an uncropped one, and the latest decision in the order
    pick = sorted({int((want != 0).nonzero()[0]), int((want == 0).nonzero()[0]),
                   int(det["position"].argmax())})
    got = simulate(params, x[pick])
    for j, (crop, frac, edges, macs, n, pos) in zip(pick, got):
        p = int(det["position"][j])
        assert (crop, frac, n) == (int(want[j]), 64, 32 * 32), f"test image {j}"
        assert pos == p
        assert edges == predictor_cycles(params, p), f"test image {j}"
        assert macs == predictor_events(params, p)["macs"], f"test image {j}"


def random_params(rng, H, W, C=1, bits=8, R=None):
    R = rng.randrange(0, 5) if R is None else R
    order = rng.sample(range(1, 16), R)
    weight = torch.tensor([[rng.randint(-128, 127) for _ in range(FEATURES)]
                           for _ in range(R)], dtype=torch.int64).reshape(R, FEATURES)
    bias = torch.tensor([rng.randint(-(1 << 20), 1 << 20) for _ in range(R)],
                        dtype=torch.int64)
    return PredictorParams(H, W, C, bits, 8, tuple(order), weight, bias, (0,) * R)


@pytest.mark.parametrize("shape", [(1, 8, 16), (2, 16, 8)])
def test_random_images_with_bubbles(shape):
    seed = seed_for(f"predictor-{shape}")
    rng = random.Random(seed)
    C, H, W = shape
    for R in (0, 3):
        params = random_params(rng, H, W, C, R=R)
        x = torch.tensor([rng.randint(0, 255) for _ in range(4 * C * H * W)]).view(4, C, H, W)
        want, det = predict_int(params, x, details=True)
        # the biases centred on the accumulators, so that some rows pass and some do not
        if R:
            acc = det["acc"] - params.bias
            bias = -acc.median(0).values
            params = PredictorParams(H, W, C, 8, 8, params.order, params.weight, bias, (0,) * R)
            want, det = predict_int(params, x, details=True)
        plain = simulate(params, x)
        for j, (crop, _, edges, _, n, pos) in enumerate(plain):
            assert (crop, n, pos) == (int(want[j]), H * W, int(det["position"][j])), \
                f"image {j}, R {R}, seed {seed}"
            assert edges == predictor_cycles(params, pos), f"image {j}, R {R}, seed {seed}"
        bubbly = simulate(params, x, rng=rng, fraction=3)
        assert [r[0] for r in bubbly] == want.tolist(), f"R {R}, seed {seed}"
        assert {r[1] for r in bubbly} == {3}


def test_parameters_are_validated():
    ok = dict(height=8, width=8, channels=1, pixel_bits=8,
              kernels=[[[0] * 3] * 3] * 4, order=[1], weights=[[0] * 64], biases=[0])
    Predictor(**ok)
    with pytest.raises(ValueError, match="height must be a multiple of 8, not 12"):
        Predictor(**{**ok, "height": 12})
    with pytest.raises(TypeError, match="width must be an integer"):
        Predictor(**{**ok, "width": 8.0})
    with pytest.raises(ValueError, match=r"order must list distinct crops in \[1, 15\]"):
        Predictor(**{**ok, "order": [0]})
    with pytest.raises(ValueError, match=r"weights must lie in \[-128, 127\]"):
        Predictor(**{**ok, "weights": [[128] + [0] * 63]})
    with pytest.raises(ValueError, match="biases must be 1 values, not 0"):
        Predictor(**{**ok, "biases": []})
