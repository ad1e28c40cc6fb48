"""The crop study: batched crops bit-exact with golden.crop, energies, oracle, predictors."""

from __future__ import annotations

import functools

import pytest
import torch

from arch.config import load_config
from arch.energy import load_energy_table
from golden import predictors as P
from golden import study as S
from golden.cnn import load_democnn
from golden.crop import cropped_conv2d, kept_window
from golden.data import cluttered_digits
from golden.energy_model import conv_layer_energy
from golden.fixedpoint import _between, quant_forward, quant_inputs, quantize_democnn, run_layer


@functools.lru_cache(maxsize=1)
def _setup():
    cfg = load_config("small")
    net = quantize_democnn(cfg, load_democnn())
    x, y = cluttered_digits("test")
    return cfg, net, x[:12], y[:12]


def _reference_logits(net, images, windows):
    """Layer by layer with golden.crop.cropped_conv2d (one crop, the whole batch)."""
    x = quant_inputs(net, images)
    for q, w in zip(net.layers, windows):
        if q.kind == "conv":
            if w is None:
                x = run_layer(net, q, x)
            else:
                x = cropped_conv2d(net.cfg, x, q.weight, q.bias, stride=q.stride,
                                   padding=q.padding, shift=q.shift, relu=q.relu, window=w)
            x = _between(net, q, x)
        else:
            x = run_layer(net, q, x)
    return x


@pytest.mark.parametrize("from_layer", [0, 2])
def test_batched_crops_match_cropped_conv2d(from_layer):
    cfg, net, x, _ = _setup()
    geoms = S.democnn_geometry(net)
    plan = S.crop_plan(geoms, 0.25, from_layer)
    logits = S.crop_forward(net, x[:4], plan)
    assert torch.equal(logits[0], quant_forward(net, x[:4]))
    for c in (1, 6, 9, 15):
        assert torch.equal(logits[c], _reference_logits(net, x[:4], plan[c])), c


def test_plan_scales_the_window_through_later_layers():
    _, net, _, _ = _setup()
    geoms = S.democnn_geometry(net)
    plan = S.crop_plan(geoms, 0.25, 1)
    assert plan[15][0] is None and plan[15][4] is None            # before from_layer; the fc
    assert plan[15][1] == kept_window(15, 0.25, 32, 32) == (8, 24, 8, 24)
    assert plan[15][2] == plan[15][3] == (4, 12, 4, 12)
    assert all(w is None for w in plan[0])
    with pytest.raises(ValueError, match="from_layer must be one of the conv layers"):
        S.crop_plan(geoms, 0.25, 4)


def test_energy_is_the_sum_of_layer_energies_and_crop0_saves_nothing():
    cfg, net, x, _ = _setup()
    table = load_energy_table("isaac32nm")
    geoms = S.democnn_geometry(net)
    plan = S.crop_plan(geoms, 0.25, 0)
    _, inputs = S.crop_forward(net, x[:3], plan, with_inputs=True)
    e = S.crop_energy(cfg, table, geoms, plan, inputs)              # [16, 3, 5]
    c = 9
    by_hand = 0
    for i, g in enumerate(geoms):
        xi = inputs[i][c]
        xi = xi[:, :, None, None] if xi.dim() == 2 else xi
        by_hand = by_hand + conv_layer_energy(cfg, table, g, window=plan[c][i], x=xi).total_pj
    assert torch.allclose(e[c].sum(-1), by_hand, rtol=1e-12)
    plain = [[None] * len(geoms)]
    _, inputs0 = S.crop_forward(net, x[:3], plain, with_inputs=True)
    e0 = S.crop_energy(cfg, table, geoms, plain, inputs0)
    assert torch.equal(e[0], e0[0])                                 # crop 0 = uncropped
    total = e.sum(-1)
    assert bool((total[1:] < total[0]).all())                       # every crop saves some


def test_ranks_and_oracle():
    logits = torch.tensor([[[5, 5, 1], [0, 9, 1]], [[1, 2, 3], [3, 2, 1]]])
    labels = torch.tensor([1, 2])
    ranks = S.true_ranks(logits, labels)
    # ties go to the lower class, as argmax: class 1 ties class 0 -> rank 1
    assert ranks.tolist() == [[1, 0], [0, 2]]
    assert (ranks[:, :, None] == 0).squeeze(-1).tolist() == [
        [bool(logits[0, j].argmax() == 1) for j in range(2)],
        [bool(logits[1, j].argmax() == 2) for j in range(2)]]
    tol = S.tolerated(ranks, 1)
    assert tol.tolist() == [[True, True], [True, False]]           # image 0 was wrong uncropped
    energy = torch.tensor([[10.0, 4.0], [10.0, 3.0]])
    choice = S.oracle_choice(tol, energy)
    assert choice.tolist() == [1, 0]
    s = S.summarize_choice(choice, ranks, energy)
    assert s["top1"] == s["top1_uncropped"] + 0.5 and s["energy_saved"] == pytest.approx(0.3)


def test_oracle_beats_every_predictor_on_real_images():
    cfg, net, x, y = _setup()
    table = load_energy_table("isaac32nm")
    geoms = S.democnn_geometry(net)
    plan = S.crop_plan(geoms, 0.25, 0)
    arr = S.run_crops(lambda b: S.crop_forward(net, b, plan, with_inputs=True),
                      lambda inp: S.crop_energy(cfg, table, geoms, plan, inp), x, y, batch=6)
    ranks = S.true_ranks(arr.logits, arr.labels)
    energy = arr.total_energy
    cost = energy.mean(0)
    assert (ranks[:, 0] == 0).float().mean() == S.summarize_choice(
        torch.zeros(len(y), dtype=torch.long), ranks, energy)["top1"]
    for k in (1, 5):
        orc = S.summarize_choice(S.oracle_choice(S.tolerated(ranks, k), energy), ranks, energy)
        assert orc[f"top{k}"] >= orc[f"top{k}_uncropped"]
        for m in P.METRICS:
            risk = P.metric_risk(x, m, 0.25)
            for tau in (0.0, 0.1, 0.3, 1.0):
                pred = S.summarize_choice(P.choose(risk, cost, tau), ranks, energy)
                # never more accurate and cheaper at once than the oracle
                assert not (pred[f"top{k}"] >= orc[f"top{k}"]
                            and pred["energy_saved"] > orc["energy_saved"] + 1e-12)


@pytest.mark.parametrize("metric", P.METRICS)
def test_metric_keeps_the_corner_with_the_object(metric):
    img = torch.zeros(1, 1, 32, 32)
    img[0, 0, 2:12, 2:12] = torch.rand(10, 10, generator=torch.Generator().manual_seed(1)) > 0.5
    risk = P.metric_risk(img, metric, 0.25)
    cost = torch.tensor([16.0 - bin(c).count("1") for c in range(16)])   # more sides, cheaper
    c = int(P.choose(risk, cost, 1e-6)[0])
    assert c == 0b0101                                            # crop bottom and right only


def test_choose_and_calibrate():
    risk = torch.tensor([[0.0, 0.1, 0.5], [0.0, 0.2, 0.05]], dtype=torch.float64)
    cost = torch.tensor([3.0, 2.0, 1.0])
    assert P.choose(risk, cost, 0.06).tolist() == [0, 2]
    assert P.choose(risk, cost, -1).tolist() == [0, 0]
    ranks = torch.tensor([[0, 0, 1], [0, 0, 0]])                 # crop 2 breaks image 0
    assert P.calibrate(risk, ranks, cost, 1) == pytest.approx(0.2)


def test_zeroth_layer_is_deterministic_and_learns():
    x, _ = cluttered_digits("test")
    x = x[:60]
    tol = torch.zeros(60, 16, dtype=torch.bool)
    tol[:, 0] = True
    tol[:30, 5] = True
    z1 = P.train_zeroth(x, tol, steps=100)
    z2 = P.train_zeroth(x, tol, steps=100)
    assert torch.equal(z1.weight, z2.weight)
    r = z1.risk(x)
    assert r.shape == (60, 16) and bool((r[:, 0] == 0).all())
    assert float(r[:30, 5].mean()) < float(r[30:, 5].mean())


def test_first_layer_cases_are_the_golden_cropped_layer():
    cfg, net, x, _ = _setup()
    plan = S.crop_plan(S.democnn_geometry(net), 0.25, 0)
    cases = S.first_layer_cases(net, x[:2], [15, 0], plan)
    assert cases[0]["window"] == (8, 24, 8, 24) and cases[1]["window"] == (0, 32, 0, 32)
    q = net.layers[0]
    assert torch.equal(cases[1]["golden"], run_layer(net, q, quant_inputs(net, x[1:2])))
