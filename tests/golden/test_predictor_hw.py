"""The integer crop predictor (golden.predictor_hw): exact against an independent float64
reference, its choice rule equal to golden.predictors.choose on its own logits, and its
agreement with the float learned 0th layer on the shipped test images."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from arch.config import load_config
from cosim.predtile import study_params, study_zeroth
from golden import predictors as P
from golden.predictor_hw import (FEATURES, PredictorParams, crop_order, features_int,
                                 logit_threshold, predict_int, predictor_cycles,
                                 predictor_events, quantize_zeroth)

SEED = 20261202


def test_features_equal_the_float_conv_and_sum_pool():
    rng = torch.Generator().manual_seed(SEED)
    x = torch.randint(0, 256, (5, 3, 16, 24), generator=rng)
    ref = F.conv2d(x.double().sum(1, keepdim=True), P.KERNELS.double(), stride=2, padding=1)
    ref = F.avg_pool2d(ref.abs(), (2, 3), divisor_override=1).flatten(1)   # 8x12 -> 4x4 cells
    assert torch.equal(features_int(x), ref.to(torch.int64))


def test_choice_is_choose_on_its_own_logits():
    """With risk = 1 - sigmoid(acc) and tau = 1/2 (threshold 0), the integer choice is
    golden.predictors.choose's: the first passing crop in cost order, else crop 0."""
    rnd = random.Random(SEED)
    cost = torch.tensor([100.0] + [rnd.choice([50.0, 60.0, 70.0, 150.0]) for _ in range(15)])
    order = crop_order(cost)
    assert all(cost[c] <= cost[0] for c in order) and 0 not in order
    R = len(order)
    w = torch.randint(-128, 128, (R, FEATURES), generator=torch.Generator().manual_seed(SEED))
    x = torch.randint(0, 256, (64, 1, 16, 16), generator=torch.Generator().manual_seed(SEED))
    acc = features_int(x) @ w.t()
    # each row passes on about 15 % of the images, so some images pass none
    bias = -acc.double().quantile(0.85, dim=0).to(torch.int64)
    params = PredictorParams(16, 16, 1, 8, 8, tuple(order), w, bias, (0,) * R)
    got, det = predict_int(params, x, details=True)
    logits = torch.full((64, 16), -1e9, dtype=torch.float64)
    logits[:, list(order)] = det["acc"].double()
    risk = 1 - torch.sigmoid(logits)
    risk[:, 0] = 0
    assert 0 < int((got != 0).sum()) < 64
    assert torch.equal(got, P.choose(risk, cost, 0.5))


def test_thresholds():
    assert logit_threshold(0.5) == 0.0
    assert logit_threshold(0.1) == pytest.approx(math.log(9))
    assert logit_threshold(-1.0) == math.inf and logit_threshold(1.0) == -math.inf
    zl, _, cost = study_zeroth(1)
    kw = dict(height=32, width=32, channels=1, pixel_bits=8, pixel_frac=7)
    assert quantize_zeroth(zl, -1.0, cost, **kw).rows == 0          # never crop
    always = quantize_zeroth(zl, 1.0, cost, **kw)
    assert not always.weight.any() and not always.bias.any()
    assert torch.equal(predict_int(always, torch.zeros(2, 1, 32, 32, dtype=torch.int64)),
                       torch.full((2,), always.order[0]))
    with pytest.raises(ValueError, match="height must be a positive multiple of 8, not 30"):
        quantize_zeroth(zl, 0.1, cost, **{**kw, "height": 30})


def test_quantized_weights_fit_and_rows_scale():
    cfg = load_config("small")
    p = study_params(cfg, 7)
    assert p.rows == 15 and int(p.weight.abs().max()) <= 127
    assert all(int(r.abs().max()) >= 64 for r in p.weight)      # each row uses its range
    assert p.acc_bits <= 32


# Agreement of the integer predictor with the float ZerothLayer on the 360 shipped test
# images (measured 2026-12-02, 8-bit weights: top-1 at 1 pp 98.6 %, top-5 unchanged 96.1 %,
# top-5 at 1 pp 98.9 %; 10 bits 99.2 / 97.8 / 98.6 %, so 8 bits is at the input-rounding
# floor). The differences come from the quantized pixels (7 fraction bits) and the weights.
@pytest.mark.parametrize("k, budget, floor", [(1, 0.01, 0.975), (5, 0.0, 0.95),
                                              (5, 0.01, 0.975)])
def test_agrees_with_the_float_predictor(k, budget, floor):
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_inputs, quantize_democnn

    cfg = load_config("small")
    net = quantize_democnn(cfg, load_democnn())
    zl, taus, cost = study_zeroth(k)
    images, _ = cluttered_digits("test")
    want = P.choose(zl.risk(images), cost, taus[budget])
    got = predict_int(study_params(cfg, net.input_frac, k=k, budget=budget),
                      quant_inputs(net, images))
    agree = float((got == want).double().mean())
    assert agree >= floor, f"top{k}@{budget}: {agree:.4f}"
    assert (got != 0).any()


def test_cycles_and_events():
    p = PredictorParams(32, 32, 1, 8, 8, (3, 5), torch.zeros(2, 64, dtype=torch.int64),
                        torch.zeros(2, dtype=torch.int64), (0, 0))
    assert [predictor_cycles(p, i) for i in range(3)] == [1024 + 1 + 65, 1024 + 1 + 130] * 1 \
        + [1024 + 1 + 130]
    e = predictor_events(p, 2)
    assert e["macs"] == 128 and e["compares"] == 2 and e["conv_outputs"] == 4 * 256
    empty = PredictorParams(32, 32, 1, 8, 8, (), torch.zeros(0, 64, dtype=torch.int64),
                            torch.zeros(0, dtype=torch.int64), ())
    assert predictor_cycles(empty, 0) == 1024 and predictor_events(empty, 0)["macs"] == 0
