"""The crop study on a quantized graph (``golden.study`` with a ``golden.qnet.QGraph``): crop
windows through pools and residual adds, every crossbar layer bit-exact with
``golden.crop.cropped_conv2d``, crop 0 equal to ``qforward``, grouped-conv energy."""

import pytest
import torch
from torch import nn

from arch.config import load_config
from arch.energy import load_energy_table
from arch.geometry import ConvGeometry
from golden import study as S
from golden.crop import cropped_conv2d, kept_window, scale_window
from golden.energy_model import conv_layer_energy
from golden.graph import UnsupportedGraphError, lower
from golden.qnet import qforward, quant_top1, quantize_graph


class AddPool(nn.Module):
    """conv -> maxpool -> (conv + skip) -> depthwise conv -> conv s2 -> pool -> linear."""

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


@pytest.fixture(scope="module")
def qg():
    x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    return quantize_graph(load_config("small"), lower(AddPool(), x[:1]), x)


def test_windows_scale_through_a_pool_and_an_add(qg):
    geoms, groups, names = S.graph_geometry(qg)
    assert [(g.height, g.width) for g in geoms] == [(16, 16), (8, 8), (8, 8), (8, 8), (1, 1)]
    assert groups == [1, 1, 4, 1, 1]
    assert geoms[2] == ConvGeometry(1, 1, 3, 1, 1, 8, 8)        # one depthwise group
    plan = S.crop_plan(geoms, 0.25, 0)
    for c in range(1, 16):
        w0 = kept_window(c, 0.25, 16, 16)
        assert plan[c][0] == w0
        half = scale_window(w0, 16, 16, 8, 8)                    # through the 2x2 max pool
        # c1 reads the pool output, dw reads the add of c1's output and the pool output:
        # one map size, one window
        assert plan[c][1] == plan[c][2] == plan[c][3] == half
        assert plan[c][4] is None                                 # the classifier: 1x1
    assert all(w is None for w in plan[0])


def test_every_crossbar_layer_is_cropped_conv2d(qg):
    """Each conv under each crop equals golden.crop.cropped_conv2d of its own input (per
    group for the depthwise one); crop 0 gives qforward's logits."""
    cfg = qg.cfg
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    geoms, groups, _ = S.graph_geometry(qg)
    plan = S.crop_plan(geoms, 0.25, 0)
    logits, inputs = S.crop_forward(qg, x, plan, with_inputs=True)
    assert torch.equal(logits[0], qforward(qg, x))
    convs = [q for q in qg.crossbar_nodes if q.op == "conv"]
    for li, q in enumerate(convs):
        for c in (0, 5, 15):
            xin = inputs[li][min(c, inputs[li].shape[0] - 1)]
            got = S.crops_conv_node(cfg, q, xin[None], [plan[c][li]])[0]
            w = plan[c][li] or (0, xin.shape[-2], 0, xin.shape[-1])
            g = groups[li]
            cg, og = xin.shape[1] // g, q.weight.shape[0] // g
            want = torch.cat([cropped_conv2d(
                cfg, xin[:, i * cg:(i + 1) * cg], q.weight[i * og:(i + 1) * og],
                q.bias[i * og:(i + 1) * og], stride=q.attrs["stride"][0],
                padding=q.attrs["padding"][0], shift=q.shift, relu=q.relu, window=w)
                for i in range(g)], dim=1)
            assert torch.equal(got, want), (q.name, c)
    # a crop changes the work, and sometimes the answer's integers
    assert not torch.equal(logits[15], logits[0])


def test_grouped_energy_is_the_sum_over_groups(qg):
    cfg, table = qg.cfg, load_energy_table("isaac32nm")
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    geoms, groups, _ = S.graph_geometry(qg)
    plan = S.crop_plan(geoms, 0.25, 0)
    _, inputs = S.crop_forward(qg, x, plan, with_inputs=True)
    e = S.crop_energy(cfg, table, geoms, plan, inputs, groups)
    assert e.shape == (16, 2, 5)
    dw_in = inputs[2][15]                                          # [B, 4, 8, 8]
    want = sum(torch.as_tensor(conv_layer_energy(cfg, table, geoms[2], window=plan[15][2],
                                                 x=dw_in[:, i:i + 1]).total_pj)
               for i in range(4))
    assert torch.allclose(e[15, :, 2], want.to(torch.float64))
    assert (e[15].sum(-1) < e[0].sum(-1)).all()
    # without activations: groups times one group's upper bound
    e0 = S.crop_energy(cfg, table, geoms, plan, None, groups)
    one = conv_layer_energy(cfg, table, geoms[2]).total_pj
    assert float(e0[0, 0, 2]) == pytest.approx(4 * one)


def test_tinyresnet_crop0_is_the_fixed_point_network():
    """The study's uncropped pass is qnet's quantized network: same top-1, same integers."""
    from golden.data import cluttered_digits
    from golden.fixedpoint import calibration_images
    from golden.graph import load_model

    cal = calibration_images()
    qt = quantize_graph(load_config("small"), lower(load_model("zoo:tinyresnet"), cal[:1]), cal)
    x, y = cluttered_digits("test")
    x, y = x[:6], y[:6]
    geoms, _, _ = S.graph_geometry(qt)
    logits = S.crop_forward(qt, x, S.crop_plan(geoms, 0.25, 0))
    assert torch.equal(logits[0], qforward(qt, x))
    assert float((logits[0].argmax(1) == y).float().mean()) == quant_top1(qt, x, y)


def test_refusals(qg):
    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, (1, 3), padding=(0, 1))

        def forward(self, x):
            return self.c(x).flatten(1)

    x = torch.rand(2, 1, 8, 8)
    q = quantize_graph(load_config("small"), lower(Wide(), x[:1]), x)
    with pytest.raises(UnsupportedGraphError, match="crop study's energy model takes square "
                                                    "kernels, equal strides and padding"):
        S.graph_geometry(q)
    geoms, _, _ = S.graph_geometry(qg)
    with pytest.raises(ValueError, match=r"from_layer must be one of the conv layers "
                                         r"\[0, 1, 2, 3\], not 4"):
        S.crop_plan(geoms, 0.25, 4)


def test_cutting_the_maps_into_runs_changes_nothing(qg, monkeypatch):
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    geoms, _, _ = S.graph_geometry(qg)
    plan = S.crop_plan(geoms, 0.25, 0)
    whole = S.crop_forward(qg, x, plan)
    monkeypatch.setattr(S, "_PATCH_BYTES", 1)          # one (crop, image) map per run
    assert torch.equal(S.crop_forward(qg, x, plan), whole)
