"""Any CNN through the crossbar golden path: lowering (golden.graph), quantization and integer
execution (golden.qnet), held to an independent int64 reference and to golden.fixedpoint."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from arch.config import load_config
from golden.cnn import load_democnn
from golden.data import cluttered_digits
from golden.fixedpoint import calibration_images, quant_forward, quantize_democnn
from golden.graph import UnsupportedGraphError, load_model, lower, run_float
from golden.qnet import (layer_mappings, model_report, net_report, qforward, qforward_all,
                         quantize_graph)
from golden.zoo import TinyResNet, build, load_tinyresnet


# -- an independent int64 reference of a quantized graph ---------------------------------------

def _round_right(v, s):
    """v * 2**-s rounded to nearest, ties toward +infinity, in Python-style int64 ops."""
    v = v.to(torch.int64)
    if s == 0:
        return v
    if s > 0:
        return torch.floor_divide(v + (1 << (s - 1)), 1 << s)
    return v * (1 << (-s))


def _sat(v, lo, hi):
    if lo is not None:
        v = torch.maximum(v, torch.tensor(lo))
    if hi is not None:
        v = torch.minimum(v, torch.tensor(hi))
    return v


def _pool_sums_counts(x, a):
    """Window sums by an int64 depthwise convolution with ones, and the element counts."""
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    C = x.shape[1]
    ones = torch.ones(C, 1, kh, kw, dtype=torch.int64)
    assert not a["ceil_mode"]
    sums = F.conv2d(x, ones, stride=(sh, sw), padding=(ph, pw), groups=C)
    valid = F.conv2d(torch.ones(1, 1, *x.shape[-2:], dtype=torch.int64),
                     torch.ones(1, 1, kh, kw, dtype=torch.int64), stride=(sh, sw),
                     padding=(ph, pw))[0, 0]
    counts = valid if not a["count_include_pad"] else torch.full_like(valid, kh * kw)
    if a["divisor_override"]:
        counts = torch.full_like(valid, a["divisor_override"])
    return sums, counts


def _divide(sums, counts, fi, fo):
    num = sums * (1 << max(fo - fi, 0))
    den = counts * (1 << max(fi - fo, 0))
    return torch.floor_divide(2 * num + den, 2 * den)


def _reduce_reference(x, bits, bx, signed):
    """Every pixel of ``x [B, C, H, W]`` reduced to its precision ``bits [H, W]`` (0: the
    logical 0), one precision at a time with Python-style int64 ops (docs/arithmetic.md,
    "Per-region precision")."""
    out = torch.zeros_like(x)
    for p in sorted(set(bits.flatten().tolist())):
        at = (bits == p)[None, None].expand_as(x)
        if p == bx:
            r = x
        elif p == 0:
            r = torch.zeros_like(x)
        else:
            k = bx - p
            lo, hi = (-(1 << (p - 1)), (1 << (p - 1)) - 1) if signed else (0, (1 << p) - 1)
            r = torch.floor_divide(x + (1 << (k - 1)), 1 << k).clamp(lo, hi) * (1 << k)
        out = torch.where(at, r, out)
    return out


def int64_reference(qg, images, bits=None):
    """The quantized graph ``qg`` on ``images`` with plain torch integer ops on int64 and the
    requantization rules written out again (exact for a lossless configuration).

    A crossbar layer with the input offset rule (``q.input_offset = c``) reads its logical
    input saturated to ``[-c, c - 1]`` and adds the logical bias ``bias + c * sum w``.
    ``bits`` (crossbar node name -> int ``[H, W]``, the precision of every input pixel; a crop
    window is ``Bx`` inside and 0 outside) reduces that layer's input and computes only the
    outputs with a tap on a pixel of more than 0 bits, the others 0 (before the fused
    activation's clamp), as golden.study / golden.precision_study define a crop or a plan."""
    cfg = qg.cfg
    env = {}
    for q in qg.nodes:
        ins = [env[i] for i in q.inputs]
        fr = [qg[i].frac for i in q.inputs]
        if q.op == "input":
            v = torch.round(images.double() * 2.0 ** q.frac)
            v = v.clamp(q.lo, q.hi).to(torch.int64)
        elif q.op in ("conv", "linear"):
            c = q.input_offset
            x = ins[0].clamp(-c, c - 1) if c else ins[0].clamp(cfg.input_min, cfg.input_max)
            bias = q.bias + c * q.weight.flatten(1).sum(1)
            pb = None if bits is None else bits.get(q.name)
            if pb is not None:
                x = _reduce_reference(x, pb, cfg.input_bits, bool(c) or cfg.input_signed)
            if q.op == "conv":
                a = q.attrs
                acc = F.conv2d(x, q.weight, stride=a["stride"], padding=a["padding"],
                               dilation=a["dilation"], groups=a["groups"])
                acc = acc + bias.view(1, -1, 1, 1)
            else:
                acc = x @ q.weight.t() + bias
            v = _round_right(acc, q.shift)
            if q.relu:
                v = v.clamp_min(0)
            v = v.clamp(-(1 << (cfg.output_bits - 1)), (1 << (cfg.output_bits - 1)) - 1)
            if pb is not None:
                kh, kw = q.weight.shape[-2:]
                taps = F.conv2d((pb > 0).to(torch.int64)[None, None],
                                torch.ones(1, 1, kh, kw, dtype=torch.int64),
                                stride=a["stride"], padding=a["padding"],
                                dilation=a["dilation"])[0, 0]
                v = torch.where(taps > 0, v, torch.zeros_like(v))
            v = _sat(v, q.act_lo, q.act_hi)
        elif q.op == "add":
            v = _round_right(ins[0], fr[0] - q.frac) + _round_right(ins[1], fr[1] - q.frac)
            v = _sat(_sat(v, q.act_lo, q.act_hi), q.lo, q.hi)
        elif q.op == "cat":
            v = torch.cat([_round_right(t, f - q.frac) for t, f in zip(ins, fr)], 1)
        elif q.op == "maxpool":
            a = q.attrs
            assert a["dilation"] == (1, 1) and not a["ceil_mode"]
            (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
            low = torch.iinfo(torch.int64).min
            xp = F.pad(ins[0], (pw, pw, ph, ph), value=low)
            v = xp.unfold(2, kh, sh).unfold(3, kw, sw).amax(dim=(-2, -1))
        elif q.op == "avgpool":
            sums, counts = _pool_sums_counts(ins[0], q.attrs)
            v = _sat(_divide(sums, counts, fr[0], q.frac), q.lo, q.hi)
        elif q.op == "adaptive_avgpool":
            x = ins[0]
            H, W = x.shape[-2:]
            oh, ow = q.attrs["output_size"]
            rows = []
            for i in range(oh):
                r0, r1 = math.floor(i * H / oh), math.ceil((i + 1) * H / oh)
                cols = []
                for j in range(ow):
                    c0, c1 = math.floor(j * W / ow), math.ceil((j + 1) * W / ow)
                    s = x[..., r0:r1, c0:c1].sum((-2, -1))
                    cols.append(_divide(s, torch.tensor((r1 - r0) * (c1 - c0)), fr[0], q.frac))
                rows.append(torch.stack(cols, -1))
            v = _sat(torch.stack(rows, -2), q.lo, q.hi)
        elif q.op == "clamp":
            v = _sat(ins[0], q.act_lo, q.act_hi)
        elif q.op == "flatten":
            v = ins[0].reshape(ins[0].shape[0], -1)
        else:
            raise AssertionError(q.op)
        env[q.name] = v
    return env[qg.output].clamp(cfg.output_min, cfg.output_max)


@pytest.fixture(scope="module")
def test_images():
    x, y = cluttered_digits("test")
    return x, y


@pytest.fixture(scope="module")
def calibration():
    return calibration_images(64)


# -- the front end -----------------------------------------------------------------------------

def test_tinyresnet_lowers_to_the_expected_graph():
    g = lower(load_tinyresnet())
    ops = [n.op for n in g.nodes]
    assert ops.count("conv") == 9 and ops.count("linear") == 1
    assert ops.count("add") == 3 and "maxpool" in ops and "adaptive_avgpool" in ops
    dw = [n for n in g.nodes if n.op == "conv" and n.attrs["groups"] > 1]
    assert len(dw) == 1 and dw[0].attrs["groups"] == 64 and dw[0].weight.shape == (64, 1, 3, 3)
    assert not any(n.op == "clamp" and n.attrs["hi"] is None and n.attrs["lo"] != 0
                   for n in g.nodes)


@pytest.mark.parametrize("model", ["democnn", "tinyresnet"])
def test_float_graph_matches_the_model(model, test_images):
    m = load_democnn() if model == "democnn" else load_tinyresnet()
    x = test_images[0][:32]
    with torch.no_grad():
        want = m(x)
        got = run_float(lower(m), x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


class _Mixed(nn.Module):
    """Every supported op once: dilation, groups, a 1x3 kernel, ReLU6, hardtanh, clamp, cat,
    average pools (count_include_pad off, adaptive 4 -> 3) and a flattening view."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False)
        self.c = nn.Conv2d(2, 2, (1, 3), padding=(0, 1))
        self.pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        y = F.relu6(self.bn(self.a(x)))
        y = F.hardtanh(self.b(y), 0.0, 2.0) + y
        z = torch.clamp(self.c(x), min=0.0)
        p = F.adaptive_avg_pool2d(self.pool(torch.cat([y, z], 1)), 3)
        return self.fc(p.view(x.shape[0], -1))


def test_every_op_lowers_quantizes_and_equals_int64_reference():
    torch.manual_seed(3)
    m = _Mixed().eval()
    m.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(4, 2, 8, 8)
    g = lower(m, x[:1])
    assert sorted({n.op for n in g.nodes}) == sorted(
        ["input", "conv", "clamp", "add", "cat", "avgpool", "adaptive_avgpool", "flatten",
         "linear"])
    with torch.no_grad():
        assert torch.allclose(run_float(g, x), m(x), atol=1e-5)
    qg = quantize_graph(load_config("small_signed"), g, torch.rand(16, 2, 8, 8))
    assert torch.equal(qforward(qg, x), int64_reference(qg, x))
    assert [lm.conv_groups for lm in layer_mappings(qg)] == [1, 2, 1, 1]


class _Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2.0)


def test_interpolate_is_refused_with_the_node_named():
    with pytest.raises(UnsupportedGraphError) as info:
        lower(_Upsample(), (1, 1, 8, 8))
    msg = str(info.value)
    assert "\n" not in msg
    assert "node 'interpolate'" in msg and "interpolate" in msg and "test_graph.py" in msg


class _Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid())

    def forward(self, x):
        return self.body(x)


def test_refused_module_names_node_op_and_place():
    with pytest.raises(UnsupportedGraphError) as info:
        lower(_Sigmoid(), (1, 1, 8, 8))
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in msg
    assert "node 'body_1'" in msg and "Sigmoid" in msg and "module 'body.1'" in msg


class _BnAlone(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        return self.bn(x)


def test_batch_norm_without_a_conv_is_refused():
    with pytest.raises(UnsupportedGraphError, match="node 'bn'.*folded into a conv"):
        lower(_BnAlone(), (1, 1, 4, 4))


def test_torchscript_and_onnx_are_refused(tmp_path):
    with warnings.catch_warnings():     # torch.jit is deprecated; users still have files
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(_Sigmoid())
    with pytest.raises(UnsupportedGraphError, match="TorchScript"):
        lower(scripted)
    path = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted.save(str(path))
    with pytest.raises(UnsupportedGraphError, match="TorchScript"):
        load_model(str(path))
    torch.save(_Sigmoid().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="not a model this tool can load"):
        load_model(str(tmp_path / "sd.pt"))
    with pytest.raises(UnsupportedGraphError, match="ONNX"):
        load_model(str(tmp_path / "m.onnx"))


class _NeedsExport(nn.Module):
    """``int(x.shape[1])`` stops torch.fx (a Proxy cannot become an int); torch.export
    specialises the shape and traces it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        for _ in range(int(x.shape[1])):
            x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def test_torch_export_fallback():
    torch.manual_seed(0)
    m = _NeedsExport().eval()
    m.bn.running_mean.uniform_(-0.5, 0.5)
    m.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 1, 8, 8)
    g = lower(m, x[:1])
    assert [n.op for n in g.nodes] == ["input", "conv", "clamp", "adaptive_avgpool",
                                       "flatten", "linear"]
    with torch.no_grad():
        assert torch.allclose(run_float(g, x), m(x), atol=1e-5)


# -- quantization and execution --------------------------------------------------------------

@pytest.mark.parametrize("config", ["small", "small_signed"])
def test_democnn_through_the_graph_path_equals_fixedpoint(config, test_images):
    cfg = load_config(config)
    model = load_democnn()
    cal = calibration_images(64)
    qg = quantize_graph(cfg, lower(model), cal)
    net = quantize_democnn(cfg, model, cal)
    convs = qg.crossbar_nodes
    assert [q.shift for q in convs] == [q.shift for q in net.layers]
    assert [q.frac for q in convs] == [q.out_frac for q in net.layers]
    x = test_images[0][:12]
    assert torch.equal(qforward(qg, x, batch=5), quant_forward(net, x))


def test_tinyresnet_lossless_equals_int64_reference(test_images, calibration):
    cfg = load_config("small")
    qg = quantize_graph(cfg, lower(load_tinyresnet()), calibration)
    x = test_images[0][:8]
    assert torch.equal(qforward(qg, x), int64_reference(qg, x))


def test_tinyresnet_accuracy_and_mapping_on_small(test_images, calibration):
    cfg = load_config("small")
    qg = quantize_graph(cfg, lower(load_tinyresnet()), calibration)
    x, y = test_images
    rep = net_report(qg, x[:48], y[:48])
    assert rep.float_top1 >= 0.97
    assert abs(rep.float_top1 - rep.quant_top1) <= 0.01
    dw = [m for m in rep.layers if m.conv_groups > 1]
    assert len(dw) == 1
    m = dw[0]
    # 64 depthwise 3x3 groups: 9 rows of one output each, one 16x16 crossbar per channel.
    assert (m.geometry.rows, m.geometry.out_channels, m.crossbars) == (9, 1, 64)
    assert m.wasted_rows == 64 * (16 - 9)
    assert m.utilization == pytest.approx(9 / (16 * cfg.outputs))
    assert m.cycles == 8 * 8 * (cfg.latency + 1)
    assert rep.crossbars == sum(x.crossbars for x in rep.layers)
    assert "total:" in rep.table()


def test_lossy_config_runs_and_differs_from_lossless(test_images, calibration):
    x = test_images[0][:4]
    model = lower(load_tinyresnet())
    q_drop = quantize_graph(load_config("small_drop"), model, calibration)
    out = qforward(q_drop, x)
    assert out.shape == (4, 10)
    assert not torch.equal(out, int64_reference(q_drop, x))


def test_all_node_values_have_their_shapes(test_images, calibration):
    qg = quantize_graph(load_config("small"), lower(load_tinyresnet()), calibration)
    env = qforward_all(qg, test_images[0][:2])
    for q in qg.nodes:
        assert tuple(env[q.name].shape) == (2,) + q.shape[1:], q.name
        assert env[q.name].dtype == torch.int64


# -- random small graphs ------------------------------------------------------------------------

class _RandomNet(nn.Module):
    """A stack of blocks drawn by hypothesis: conv (+BN) (+ReLU/ReLU6), residual add, pools."""

    def __init__(self, blocks, cin, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.blocks = blocks
        self.mods = nn.ModuleList()
        c = cin
        for kind, cout, k, groups in blocks:
            if kind in ("conv", "res"):
                cout = c if kind == "res" else cout
                groups = groups if c % groups == 0 and cout % groups == 0 else 1
                conv = nn.Conv2d(c, cout, k, padding=k // 2, groups=groups)
                bn = nn.BatchNorm2d(cout)
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.4)
                    conv.bias.copy_(torch.randn(cout, generator=g) * 0.1)
                    bn.running_mean.copy_(torch.randn(cout, generator=g) * 0.1)
                    bn.running_var.copy_(torch.rand(cout, generator=g) + 0.5)
                    bn.weight.copy_(torch.rand(cout, generator=g) + 0.5)
                    bn.bias.copy_(torch.randn(cout, generator=g) * 0.1)
                self.mods.append(nn.Sequential(conv, bn))
                c = cout
            else:
                self.mods.append(nn.Identity())
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        for (kind, _, _, act), m in zip(self.blocks, self.mods):
            if kind == "conv":
                x = torch.relu(m(x))
            elif kind == "res":
                x = F.relu6(x + m(x))
            elif kind == "max":
                x = F.max_pool2d(x, 2)
            elif kind == "avg":
                x = F.avg_pool2d(x, 3, 1, 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


_block = st.tuples(st.sampled_from(["conv", "res", "max", "avg"]), st.integers(1, 6),
                   st.sampled_from([1, 3]), st.sampled_from([1, 2]))


@settings(max_examples=20)
@given(blocks=st.lists(_block, min_size=1, max_size=4), cin=st.integers(1, 3),
       seed=st.integers(0, 1000), config=st.sampled_from(["small", "small_signed"]))
def test_random_graphs_equal_int64_reference(blocks, cin, seed, config):
    model = _RandomNet(blocks, cin, seed).eval()
    g = torch.Generator().manual_seed(seed + 1)
    cal = torch.rand(8, cin, 8, 8, generator=g)
    x = torch.rand(3, cin, 8, 8, generator=g)
    qg = quantize_graph(load_config(config), lower(model, x[:1]), cal)
    assert torch.equal(qforward(qg, x), int64_reference(qg, x))


# -- the zoo --------------------------------------------------------------------------------------

def test_zoo_names():
    assert isinstance(build("zoo:tinyresnet"), TinyResNet)
    with pytest.raises(ValueError, match="unknown zoo model 'zoo:nope'"):
        build("zoo:nope")


@pytest.mark.parametrize("name, params", [("resnet18", 11_689_512), ("vgg11_bn", 132_868_840),
                                          ("mobilenet_v2", 3_504_872)])
def test_zoo_models_have_torchvision_parameter_counts(name, params):
    assert sum(p.numel() for p in build(name).parameters()) == params


def test_model_report_entry_point():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    g = torch.Generator().manual_seed(2)
    cal = torch.rand(8, 1, 8, 8, generator=g)
    x = torch.rand(6, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    rep = model_report(model, load_config("small"), x, y, calibration=cal)
    assert rep.float_top1 == 1.0 and rep.images == 6
    assert [m.crossbars for m in rep.layers] == [1, 1]
    assert rep.cycles == (64 + 1) * (load_config("small").latency + 1)
