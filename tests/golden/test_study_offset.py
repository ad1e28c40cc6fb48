"""The input offset rule (docs/arithmetic.md, "Signed activations on unsigned inputs") under
crop windows and precision plans: an absent tap (padding, cropped or 0-bit pixel) is the
logical 0, driven as ``c = 2**(Bx-1)``, so the one corrected bias stays exact. The crop study
(golden.study) and the precision study (golden.precision_study) are held bit-exact to the
independent int64 reference of tests/golden/test_graph.py on the logical values; the energy
model counts the driven codes; the ConvTile refuses offset layers; networks whose crossbar
layers read ReLU'd tensors never take the rule."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from arch.config import load_config
from arch.energy import load_energy_table
from arch.geometry import ConvGeometry
from golden import precision as PR
from golden import precision_study as PS
from golden import study as S
from golden.arith import input_chunks
from golden.energy_model import conv_layer_events
from golden.graph import lower
from golden.qnet import qforward, quant_inputs, quantize_graph

from .test_graph import int64_reference

FRACTION = 0.25


class Bottleneck(nn.Module):
    """Every way a crossbar layer reads a tensor that may be negative, on a 16x16 map: the
    normalised image (stem), a linear bottleneck (project, no activation) read by a 3x3 conv
    (mix), a residual add without activation read by a 1x1 conv and, pooled, by the
    classifier; the expansion and the depthwise conv read ReLU'd tensors."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(2, 8, 3, padding=1)              # normalised image: offset
        self.expand = nn.Conv2d(8, 16, 1)                       # relu(stem)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)    # relu(expand)
        self.project = nn.Conv2d(16, 8, 1)                      # relu(dw)
        self.mix = nn.Conv2d(8, 8, 3, stride=2, padding=1)      # the bottleneck: offset
        self.head = nn.Conv2d(8, 8, 1)                          # pooled residual sum: offset
        self.fc = nn.Linear(8, 5)                               # head, no act: offset

    def forward(self, x):
        s = torch.relu(self.stem(x))
        b = self.project(torch.relu(self.dw(torch.relu(self.expand(s)))))
        r = F.max_pool2d(s, 2) + self.mix(b)
        return self.fc(F.adaptive_avg_pool2d(self.head(r), 1).flatten(1))


@functools.lru_cache(maxsize=None)
def _qgraph(config: str = "small", seed: int = 0):
    g = torch.Generator().manual_seed(seed + 10)
    cal = torch.rand(16, 2, 16, 16, generator=g) - 0.5       # a normalised image
    x = torch.rand(3, 2, 16, 16, generator=g) - 0.5
    qg = quantize_graph(load_config(config), lower(Bottleneck(seed).eval(), cal[:1]), cal)
    return qg, x


def _crop_bits(qg, geoms, plan_row):
    """Per cropped crossbar layer, its precision map of a crop: Bx inside the window, 0 out."""
    bx, out = qg.cfg.input_bits, {}
    for q, g, w in zip(qg.crossbar_nodes, geoms, plan_row):
        if w is not None:
            b = torch.zeros(g.height, g.width, dtype=torch.int64)
            b[w[0]:w[1], w[2]:w[3]] = bx
            out[q.name] = b
    return out


def test_the_rule_fires_where_the_structure_says():
    qg, _ = _qgraph()
    c = 1 << (qg.cfg.input_bits - 1)
    # a fused activation names its producer's output: relu = stem, relu_1 = expand, ...
    assert {q.name: q.input_offset for q in qg.crossbar_nodes} == {
        "relu": c, "relu_1": 0, "relu_2": 0, "project": 0, "mix": c, "head": c, "fc": c}
    assert S.input_offsets(qg) == [c, 0, 0, 0, c, c, c]


@pytest.mark.parametrize("config,seed", [("small", 0), ("small", 1), ("medium", 2)])
def test_every_crop_is_bit_exact_against_the_int64_reference(config, seed):
    """All 16 crops of the study (from the image, and from the bottleneck's 3x3 conv on)
    equal the int64 reference on the logical values with the cropped pixels at 0; crop 0 is
    qforward."""
    print(f"seed {seed}")
    qg, x = _qgraph(config, seed)
    geoms, _, names = S.graph_geometry(qg)
    for from_layer in (0, names.index("mix")):
        plan = S.crop_plan(geoms, FRACTION, from_layer)
        logits = S.crop_forward(qg, x, plan)
        assert torch.equal(logits[0], qforward(qg, x))
        for c in range(S.NCROPS):
            want = int64_reference(qg, x, bits=_crop_bits(qg, geoms, plan[c]))
            assert torch.equal(logits[c], want), (from_layer, c)
        assert not torch.equal(logits[15], logits[0])       # the crop really changes things


def test_a_cropped_pixel_is_the_logical_zero_driven_as_the_offset():
    """One offset conv: under a window, a cropped or padding tap contributes exactly what a
    logical 0 does -- the same as the uncropped layer on the input with the cropped pixels
    set to 0, at every computed position; the plain clip-at-0 reading (absent tap driven as
    the code 0) would differ."""
    qg, x = _qgraph()
    cfg, q = qg.cfg, qg["relu"]                         # the stem, reading the image
    xin = torch.clamp(quant_inputs(qg, x), -q.input_offset, q.input_offset - 1)
    w = (4, 12, 0, 10)
    got = S.crops_conv_node(cfg, q, xin[None], [w])[0]
    zeroed = torch.zeros_like(xin)
    zeroed[..., 4:12, 0:10] = xin[..., 4:12, 0:10]
    full = S.crops_conv_node(cfg, q, zeroed[None], [None])[0]
    mask = S.output_mask(w, 16, 16, (3, 3), (1, 1), (1, 1))
    assert torch.equal(got, torch.where(mask, full, torch.zeros_like(full)))
    assert not mask.all() and (got[..., ~mask] == 0).all()


@pytest.mark.parametrize("config,seed", [("small", 0), ("medium", 2)])
def test_precision_plans_are_bit_exact_against_the_int64_reference(config, seed):
    """Plans reduce an offset layer's logical input with the signed rule; every plan equals
    the int64 reference, and a crop-equivalent plan gives the crop study's logits."""
    print(f"seed {seed}")
    qg, x = _qgraph(config, seed)
    cfg = qg.cfg
    bx = cfg.input_bits
    low = bx // 2
    geoms, _, _ = S.graph_geometry(qg)
    windows = PS.plan_windows(geoms, FRACTION, 0)
    plans = [(bx, bx, bx, bx), (low, bx, 0, bx), (1, low, low, 0), (0, 0, bx, 3),
             (low, low, low, low), (0, bx, bx, 0)]
    logits = PS.plans_forward(qg, x, plans, windows)
    assert torch.equal(logits[0], qforward(qg, x))
    for i, p in enumerate(plans):
        bits = {q.name: PR.bits_map(p, w, g.height, g.width, bx)
                for q, g, w in zip(qg.crossbar_nodes, geoms, windows) if w is not None}
        assert torch.equal(logits[i], int64_reference(qg, x, bits=bits)), p
    crops = S.crop_forward(qg, x, S.crop_plan(geoms, FRACTION, 0))
    assert PR.crop_as_plan(9, bx) == plans[5]
    assert torch.equal(logits[5], crops[9])


def test_signed_reduction_is_the_unsigned_reduction_of_the_driven_code():
    """Exhaustive at 8 bits: for 1 <= p <= 8 the signed reduction of x equals the unsigned
    reduction of the driven code x + c, minus c; p = 0 is the logical 0."""
    cfg = load_config("small")
    c = 1 << (cfg.input_bits - 1)
    x = torch.arange(-c, c)
    for p in range(cfg.input_bits + 1):
        got = PR.reduce_activations(cfg, x, p, offset=c)
        if p == 0:
            assert (got == 0).all()
            continue
        assert torch.equal(got, PR.reduce_activations(cfg, x + c, p) - c), p
        assert ((got + c) % (1 << (cfg.input_bits - p)) == 0).all()
    with pytest.raises(ValueError, match="offset must be 2\\*\\*\\(input_bits - 1\\) = 128"):
        PR.reduce_activations(cfg, x, 4, offset=64)


def test_energy_counts_the_driven_codes_absent_taps_included():
    """conv_layer_events(x=x + c, absent=c): the DAC counts are those of the explicit driven
    im2col rows of the computed positions, a padding or cropped tap driven as c."""
    cfg = load_config("small")
    c = 1 << (cfg.input_bits - 1)
    g = ConvGeometry(2, 3, 3, 1, 1, 8, 8)
    x = torch.randint(-c, c, (2, 2, 8, 8), generator=torch.Generator().manual_seed(3))
    for w in ((0, 8, 0, 8), (2, 7, 1, 5)):
        ev = conv_layer_events(cfg, g, window=w, x=x + c, absent=c)
        kept = torch.zeros_like(x)
        kept[..., w[0]:w[1], w[2]:w[3]] = x[..., w[0]:w[1], w[2]:w[3]]
        rows = F.unfold(kept.double(), 3, padding=1).long() + c         # [B, K, L]
        mask = S.output_mask(w, 8, 8, (3, 3), (1, 1), (1, 1)).flatten()
        lv = input_chunks(cfg, rows[:, :, mask].transpose(1, 2))          # [B, P, T, K]
        assert torch.equal(ev["dac_drives"], (lv != 0).sum((1, 2, 3))), w
        assert torch.equal(ev["dac_level_sum"], lv.sum((1, 2, 3))), w
        plain = conv_layer_events(cfg, g, window=w, x=x + c)
        assert (plain["dac_drives"] < ev["dac_drives"]).all()


def test_crop_and_plan_energy_take_the_offsets():
    qg, x = _qgraph()
    cfg, table = qg.cfg, load_energy_table("isaac32nm")
    geoms, groups, _ = S.graph_geometry(qg)
    plan = S.crop_plan(geoms, FRACTION, 0)
    _, inputs = S.crop_forward(qg, x[:2], plan, with_inputs=True)
    assert int(inputs[0].min()) < 0                     # logical, signed inputs
    e = S.crop_energy(cfg, table, geoms, plan, inputs, groups, S.input_offsets(qg))
    assert e.shape == (16, 2, 7) and (e > 0).all()
    assert (e[15].sum(-1) < e[0].sum(-1)).all()
    bx = cfg.input_bits
    windows = PS.plan_windows(geoms, FRACTION, 0)
    plans = [(bx,) * 4, (0, bx, bx, 0)]
    _, pin = PS.plans_forward(qg, x[:2], plans, windows, with_inputs=True)
    pe = PS.plan_energy(cfg, table, geoms, plans, windows, pin, groups, S.input_offsets(qg))
    assert torch.allclose(pe[0], e[0]) and torch.allclose(pe[1], e[9])


def test_the_tile_refuses_offset_layers():
    from golden.netreport import conv_layer_of, tile_layers

    qg, x = _qgraph()
    why = dict((name, w) for _, name, w in tile_layers(qg))
    assert why["relu"] == ("a layer reading a signed input through the input offset rule "
                           "(absent taps driven as 2^(Bx-1) = 128), which the ConvTile does "
                           "not implement: golden path only")
    assert why["relu_1"] is None                        # the 1x1 expansion reads relu(stem)
    layer, msg = conv_layer_of(qg, "relu", x[:1])
    assert layer is None and msg.startswith("'relu' (") and msg.endswith("golden path only")


def test_relu_networks_never_take_the_rule():
    """DemoCNN and zoo:tinyresnet read ReLU'd tensors and a non-negative image: no layer takes
    the rule, and their integers are those of input_offset=False (through the crop study
    too)."""
    from golden.fixedpoint import calibration_images
    from golden.graph import load_model

    cal = calibration_images()
    x = cal[:4]
    cfg = load_config("small")
    for name in ("democnn", "zoo:tinyresnet"):
        g = lower(load_model(name), cal[:1])
        on, off = quantize_graph(cfg, g, cal), quantize_graph(cfg, g, cal, input_offset=False)
        assert all(q.input_offset == 0 for q in on.crossbar_nodes), name
        assert on.nodes[0].lo == cfg.input_min and on.nodes[0].hi == cfg.input_max
        assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
                   for a, b in zip(on.crossbar_nodes, off.crossbar_nodes)), name
        assert torch.equal(qforward(on, x), qforward(off, x)), name
    geoms, _, _ = S.graph_geometry(on)
    plan = S.crop_plan(geoms, FRACTION, 0)
    assert torch.equal(S.crop_forward(on, x, plan), S.crop_forward(off, x, plan))


# -- zoo:mobilenet_v2 on isaac ---------------------------------------------------------------------

def _float_cropped(graph, x, windows):
    """The float graph with crossbar layer ``l``'s input zeroed outside ``windows[l]`` and its
    outputs with no tap in the window zeroed (before the activation): the crop's float twin."""
    from golden.graph import _float_op

    env, li = {}, 0
    for n in graph.nodes:
        ins = [env[i] for i in n.inputs]
        w = None
        if n.op in ("conv", "linear"):
            w, li = windows[li], li + 1
        if w is None:
            env[n.name] = _float_op(n, x, ins)
            continue
        a, (H, W) = n.attrs, ins[0].shape[-2:]
        m = torch.zeros(H, W)
        m[w[0]:w[1], w[2]:w[3]] = 1
        y = F.conv2d(ins[0] * m, n.weight, n.bias, a["stride"], a["padding"], a["dilation"],
                     a["groups"])
        env[n.name] = y * S.output_mask(w, H, W, n.weight.shape[-2:], a["stride"],
                                        a["padding"], a["dilation"])
    return env[graph.output]


def test_mobilenet_v2_cropped_and_planned_is_bit_exact_and_keeps_its_negatives():
    """zoo:mobilenet_v2 (random weights, seed 0, 10 classes) on isaac, 64x64, calibrated on
    the seeded images of tests/golden/test_graph_zoo.py: 17 of its 53 crossbar layers take
    the rule (the linear bottleneck outputs and residual sums read by the next block's first
    layer or by the last 1x1 conv). Under crop 15 and under a precision plan the study's
    logits equal the int64 reference bit for bit; against the float network under the same
    crop the relative output error is ~1e-7 with the rule and ~0.7 with the clip at 0
    (measured 1.8e-7 and 0.73)."""
    from golden.timing import single_thread

    with single_thread():           # ~20 s on one thread; threads only fight on a busy box
        _mobilenet_v2_cropped_and_planned()


def _mobilenet_v2_cropped_and_planned():
    from golden.zoo import build

    cfg = load_config("isaac")
    model = build("mobilenet_v2", num_classes=10)
    cal = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    graph = lower(model, cal[:1])
    qg = quantize_graph(cfg, graph, cal)
    c = 1 << (cfg.input_bits - 1)
    offsets = S.input_offsets(qg)
    assert len(offsets) == 53 and offsets.count(c) == 17 and offsets.count(0) == 36
    # the last 1x1 conv reads the last bottleneck; the classifier reads its ReLU6'd pool
    assert offsets[-2:] == [c, 0]
    geoms, _, _ = S.graph_geometry(qg)
    bx = cfg.input_bits
    # crop 15 from the image
    row = S.crop_plan(geoms, FRACTION, 0)[15]
    got = cropped = S.crop_forward(qg, x, [row])[0]
    assert torch.equal(got, int64_reference(qg, x, bits=_crop_bits(qg, geoms, row)))
    with torch.no_grad():
        fref = _float_cropped(graph, x, row).double()
    errs = {}
    for on in (True, False):
        q = qg if on else quantize_graph(cfg, graph, cal, input_offset=False)
        y = (got if on else S.crop_forward(q, x, [row])[0]).double() * 2.0 ** -q[q.output].frac
        errs[on] = float((y - fref).pow(2).sum() / fref.pow(2).sum())
    print(f"mobilenet_v2 crop 15 relative error: offset rule {errs[True]:.3g}, "
          f"clip at 0 {errs[False]:.3g}")
    assert errs[True] < 1e-5 and errs[False] > 0.1
    # a precision plan (top at 8 bits, left cropped, right at 12 bits)
    plan = (bx, 8, 0, 12)
    windows = PS.plan_windows(geoms, FRACTION, 0)
    got = PS.plans_forward(qg, x, [plan], windows)[0]
    bits = {q.name: PR.bits_map(plan, w, g.height, g.width, bx)
            for q, g, w in zip(qg.crossbar_nodes, geoms, windows) if w is not None}
    assert torch.equal(got, int64_reference(qg, x, bits=bits))
    assert not torch.equal(got, cropped)
