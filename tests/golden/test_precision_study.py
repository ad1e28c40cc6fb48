"""The per-region precision study (golden.precision_study): crop-equivalent plans give the
crop study's logits and energy exactly (DemoCNN and a graph with a pool, a residual add and a
depthwise conv), every layer is plan_conv2d, the chunk counts reach the energy model, and the
precision risk generalises the removed share."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from arch.config import load_config
from arch.energy import load_energy_table
from golden import precision as PR
from golden import precision_study as PS
from golden import predictors as P
from golden import study as S
from golden.cnn import load_democnn
from golden.data import cluttered_digits
from golden.energy_model import conv_layer_energy, conv_layer_events
from golden.fixedpoint import quant_inputs, quantize_democnn
from golden.graph import lower
from golden.qnet import quantize_graph

F = 0.25


@functools.lru_cache(maxsize=1)
def _demo():
    cfg = load_config("small")
    net = quantize_democnn(cfg, load_democnn())
    x, y = cluttered_digits("test")
    return cfg, net, x[:3], y[:3]


class AddPool(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.c0 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        p = self.pool(torch.relu(self.c0(x)))
        s = torch.relu(self.c1(p) + p)
        y = torch.relu(self.c2(torch.relu(self.dw(s))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@functools.lru_cache(maxsize=1)
def _graph():
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    return quantize_graph(load_config("small"), lower(AddPool(), x[:1]), x), x[:3]


def _crop_plans(cfg):
    return [PR.crop_as_plan(c, cfg) for c in range(16)]


@pytest.mark.parametrize("from_layer", [0, 1])
def test_democnn_crop_plans_are_the_crop_study(from_layer):
    cfg, net, x, _ = _demo()
    table = load_energy_table("isaac32nm")
    geoms = S.democnn_geometry(net)
    crops = [0, 5, 10, 15] if from_layer else list(range(16))
    plans = [PR.crop_as_plan(c, cfg) for c in crops]
    windows = PS.plan_windows(geoms, F, from_layer)
    lg, inputs = PS.plans_forward(net, x, plans, windows, with_inputs=True)
    cplan = [S.crop_plan(geoms, F, from_layer)[c] for c in crops]
    lc, cin = S.crop_forward(net, x, cplan, with_inputs=True)
    assert torch.equal(lg, lc)
    e = PS.plan_energy(cfg, table, geoms, plans, windows, inputs)
    ec = S.crop_energy(cfg, table, geoms, cplan, cin)
    assert torch.allclose(e, ec, rtol=1e-12, atol=0)


def test_graph_crop_plans_are_the_crop_study():
    qg, x = _graph()
    cfg = qg.cfg
    table = load_energy_table("isaac32nm")
    geoms, groups, _ = S.graph_geometry(qg)
    plans = _crop_plans(cfg)
    windows = PS.plan_windows(geoms, F, 0)
    lg, inputs = PS.plans_forward(qg, x, plans, windows, with_inputs=True)
    cplan = S.crop_plan(geoms, F, 0)
    lc, cin = S.crop_forward(qg, x, cplan, with_inputs=True)
    assert torch.equal(lg, lc)
    e = PS.plan_energy(cfg, table, geoms, plans, windows, inputs, groups)
    ec = S.crop_energy(cfg, table, geoms, cplan, cin, groups)
    assert torch.allclose(e, ec, rtol=1e-12, atol=0)


def test_democnn_every_layer_is_plan_conv2d():
    """Plans with low bits: the first conv layer's output is plan_conv2d of its input, and the
    full plan is the fixed-point network."""
    cfg, net, x, _ = _demo()
    geoms = S.democnn_geometry(net)
    plans = [(8, 8, 8, 8), (3, 8, 0, 3), (3, 3, 3, 3), (0, 3, 8, 1)]
    windows = PS.plan_windows(geoms, F, 0)
    lg, inputs = PS.plans_forward(net, x, plans, windows, with_inputs=True)
    from golden.fixedpoint import quant_forward
    assert torch.equal(lg[0], quant_forward(net, x))
    q = net.layers[0]
    x0 = quant_inputs(net, x)
    H, W = x0.shape[-2:]
    for c, plan in enumerate(plans):
        bits = PR.bits_map(plan, windows[0], H, W, cfg)
        assert torch.equal(inputs[0][c], PR.reduce_activations(cfg, x0, bits))
        y = PR.plan_conv2d(cfg, x0, q.weight, q.bias, stride=q.stride, padding=q.padding,
                           shift=q.shift, relu=q.relu, bits=bits)
        # the next layer's input is that output between the layers, reduced
        from golden.fixedpoint import _between
        y = _between(net, q, y)
        bits1 = PR.bits_map(plan, windows[1], *y.shape[-2:], cfg)
        assert torch.equal(inputs[1][c], PR.reduce_activations(cfg, y, bits1)), plan
    assert not torch.equal(lg[1], lg[0])


def test_chunks_reach_the_energy_model():
    cfg = load_config("small")
    table = load_energy_table("isaac32nm")
    from arch.geometry import ConvGeometry
    g = ConvGeometry(3, 8, 3, 1, 1, 12, 12)
    win = PR.band_window(F, 12, 12)
    for plan in [(8, 8, 8, 8), (4, 8, 2, 8), (0, 4, 4, 0), (1, 1, 1, 1)]:
        bits = PR.bits_map(plan, win, 12, 12, cfg)
        ch = PR.position_chunks(cfg, PR.position_bits(bits, 3, 1, 1))
        zw = PR.zero_window(plan, win, 12, 12)
        ev = conv_layer_events(cfg, g, window=zw, chunks=ch)
        full = conv_layer_events(cfg, g, window=zw)
        assert ev["vectors"] == full["vectors"] == int((ch > 0).sum()) * ev["crossbars"]
        for k in ("xbar_steps", "row_activations", "sample_holds", "adc_steps",
                  "adc_conversions", "shift_adds"):
            assert ev[k] * cfg.input_cycles * int((ch > 0).sum()) == full[k] * int(ch.sum()), k
        e = conv_layer_energy(cfg, table, g, window=zw, chunks=ch).total_pj
        assert e <= conv_layer_energy(cfg, table, g, window=zw).total_pj
    with pytest.raises(ValueError, match=r"^chunks must be positive exactly on the computed"):
        conv_layer_events(cfg, g, window=(3, 9, 3, 9), chunks=torch.full((12, 12), 8))
    with pytest.raises(ValueError, match=r"^chunks must lie in \[0, 8\]"):
        conv_layer_events(cfg, g, chunks=torch.full((12, 12), 9))
    with pytest.raises(ValueError, match=r"^chunks must be an integer \[12, 12\] map"):
        conv_layer_events(cfg, g, chunks=torch.full((11, 12), 8))


def test_precision_risk_generalises_the_removed_share():
    maps = torch.rand(5, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    maps[4] = 0
    crop = PS.precision_risk(maps, _crop_plans(8), F, 8)
    assert torch.allclose(crop, P.removed_share(maps, F), atol=1e-12)
    plans = PR.plan_vectors(8, 4)
    r = PS.precision_risk(maps, plans, F, 8)
    assert r.shape == (5, 81) and (r[:, 0] == 0).all() and (r[4] == 0).all()
    # half the bits lost on a band is half the risk of cropping it
    assert torch.allclose(r[:, PR.plan_index((4, 8, 8, 8), 8, 4)],
                          r[:, PR.plan_index((0, 8, 8, 8), 8, 4)] / 2, atol=1e-12)
