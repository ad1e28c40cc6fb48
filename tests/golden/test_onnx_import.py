"""ONNX models through golden.onnx_import: exported from torch models in the test (the legacy
TorchScript exporter, ``dynamo=False``: the dynamo exporter needs onnxscript, not installed)
or built with ``onnx.helper``; the converted module's float outputs equal the original's, it
lowers to the same layer list and runs the quantized golden path to the same integers; every
refusal is one line naming the node. Also ``torchvision:<name>`` (golden.graph.load_model)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from arch.config import load_config  # noqa: E402
from golden.cnn import load_democnn  # noqa: E402
from golden.graph import TORCHVISION, UnsupportedGraphError, load_model, lower  # noqa: E402
from golden.onnx_import import OnnxImportError, convert, load_onnx  # noqa: E402
from golden.qnet import qforward, quantize_graph  # noqa: E402
from golden.zoo import InvertedResidual, _conv_bn_act, build  # noqa: E402


def export(model: nn.Module, shape, path, **kwargs):
    """``torch.onnx.export`` (legacy exporter; its deprecation warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(shape), str(path), dynamo=False, **kwargs)
    return path


class MobileBlocks(nn.Module):
    """mobilenet_v2-like: ReLU6 stem, an inverted residual block with its residual add, a
    strided one, a concat with a 1x1 branch, an average pool without the padding counted and
    ``x.view(x.size(0), -1)`` (a Shape -> Gather -> Concat -> Reshape chain in ONNX)."""

    def __init__(self):
        super().__init__()
        self.stem = _conv_bn_act(3, 16, 3, 2)
        self.block = InvertedResidual(16, 16, 1, 6)
        self.down = InvertedResidual(16, 24, 2, 6)
        self.branch = nn.Sequential(nn.Conv2d(24, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(32 * 2 * 2, 5)

    def forward(self, x):
        x = self.down(self.block(self.stem(x)))
        x = torch.cat([x, self.branch(x)], 1)
        x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return self.fc(x.view(x.size(0), -1))


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """Batch norm statistics away from the identity, so that folding them matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _mobile():
    torch.manual_seed(3)
    return _randomize_bn(MobileBlocks(), 4)


# name, model factory, input shape
MODELS = [
    ("democnn", load_democnn, (1, 1, 32, 32)),
    ("tinyresnet", lambda: build("zoo:tinyresnet"), (1, 1, 32, 32)),
    ("mobile_blocks", _mobile, (1, 3, 16, 16)),
]


def _layers(graph):
    """The lowered layer list: op, geometry and output shape of every node."""
    return [(n.op, n.describe(), n.shape[1:]) for n in graph.nodes]


@pytest.mark.parametrize("name, factory, shape", MODELS, ids=[m[0] for m in MODELS])
def test_exported_models_convert_exactly(tmp_path, name, factory, shape):
    """Batch norm kept as BatchNormalization (TrainingMode.PRESERVE on an eval model): the
    converted module computes what the original computes, lowers to the same layers with the
    same folded weights and gives the same integers on the quantized golden path."""
    model = factory()
    path = export(model, shape, tmp_path / f"{name}.onnx",
                  training=torch.onnx.TrainingMode.PRESERVE)
    conv = load_model(str(path))
    assert isinstance(conv, nn.Module) and not conv.training
    x = torch.rand((6,) + shape[1:], generator=torch.Generator().manual_seed(0)) * 2 - 0.5
    with torch.no_grad():
        want, got = model(x), conv(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    g_torch, g_onnx = lower(model, x[:1]), lower(conv, x[:1])
    assert _layers(g_onnx) == _layers(g_torch)
    for a, b in zip(g_torch.crossbar_nodes, g_onnx.crossbar_nodes):
        torch.testing.assert_close(b.weight, a.weight, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(b.bias, a.bias, atol=1e-6, rtol=1e-6)
    cfg = load_config("small")
    q_torch = qforward(quantize_graph(cfg, g_torch, x), x)
    q_onnx = qforward(quantize_graph(cfg, g_onnx, x), x)
    assert q_onnx.dtype == torch.int64 and torch.equal(q_onnx, q_torch)


@pytest.mark.parametrize("opset", [9, 13, 18])
def test_folded_exports_match_the_onnx_reference(tmp_path, opset):
    """The exporter's usual output (batch norm folded into the convs; Clip's bounds as
    attributes before opset 11, as inputs after; ReduceMean's axes an input from opset 18):
    the converted module equals onnx's own reference runtime on the file, and lowers to the
    torch original's layer list."""
    model = build("zoo:tinyresnet")
    path = export(model, (1, 1, 32, 32), tmp_path / "t.onnx", opset_version=opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops and "Clip" in ops
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = ReferenceEvaluator(str(path))
    (want,) = ref.run(None, {ref.input_names[0]: x[:1].numpy()})
    conv = load_onnx(path)
    with torch.no_grad():
        got = conv(x[:1])
    torch.testing.assert_close(got, torch.from_numpy(want), atol=1e-5, rtol=0)
    assert _layers(lower(conv, x[:1])) == _layers(lower(model, x[:1]))
    demo = export(load_democnn(), (1, 1, 32, 32), tmp_path / "d.onnx", opset_version=opset)
    assert "ReduceMean" in {n.op_type for n in onnx.load(str(demo)).graph.node}
    with torch.no_grad():
        torch.testing.assert_close(load_onnx(demo)(x), load_democnn()(x), atol=1e-5, rtol=0)


def test_dynamic_batch(tmp_path):
    """A symbolic batch (``dynamic_axes``): ``x.view(x.size(0), -1)`` exports as Shape ->
    Gather -> Unsqueeze -> Concat -> Reshape; it becomes a flatten that takes any batch."""
    model = _mobile()
    path = export(model, (1, 3, 16, 16), tmp_path / "dyn.onnx", input_names=["x"],
                  output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert {"Shape", "Gather", "Reshape"} <= set(ops)
    conv = load_onnx(path)
    for batch in (1, 5):
        x = torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch.testing.assert_close(conv(x), model(x), atol=1e-5, rtol=0)
    assert _layers(lower(conv, x[:1])) == _layers(lower(model, x[:1]))


# -- graphs built with onnx.helper ----------------------------------------------------------

def _init(name, a):
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def _model(nodes, inits, in_shape, out_shape=None, opset=13, inputs=None):
    graph = helper.make_graph(
        nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)],
        initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _every_op_model():
    """Conv without bias plus a constant per-channel Add (a bias), Clip with only a min
    input, Identity, MaxPool, AveragePool (pads counted), GlobalAveragePool, Squeeze,
    MatMul + Add, Relu, Dropout, Gemm with transB 0, alpha and beta, Concat of two."""
    r = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "cb"], ["cb_out"], name="conv_bias"),
        helper.make_node("Clip", ["cb_out", "zero", ""], ["r"], name="clip_min"),
        helper.make_node("Identity", ["r"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        helper.make_node("Conv", ["a", "w1"], ["s"], name="side", group=2, strides=[1, 1]),
        helper.make_node("Concat", ["a", "s"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["g"]),
        helper.make_node("Squeeze", ["g", "axes"], ["sq"]),
        helper.make_node("MatMul", ["sq", "m"], ["mm"]),
        helper.make_node("Add", ["mm", "mb"], ["lin"]),
        helper.make_node("Relu", ["lin"], ["h"]),
        helper.make_node("Dropout", ["h"], ["d"]),
        helper.make_node("Gemm", ["d", "gb", "gc"], ["y"], alpha=0.5, beta=2.0),
    ]
    inits = [_init("w", r.normal(size=(8, 4, 3, 3))), _init("cb", r.normal(size=(1, 8, 1, 1))),
             _init("zero", 0.0), _init("w1", r.normal(size=(8, 4, 1, 1))),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
             _init("m", r.normal(size=(16, 6))), _init("mb", r.normal(size=(6,))),
             _init("gb", r.normal(size=(6, 3))), _init("gc", r.normal(size=(3,)))]
    return _model(nodes, inits, [2, 4, 8, 8], [2, 3])


def test_helper_graph_of_every_op_matches_the_reference():
    m = _every_op_model()
    x = np.random.default_rng(1).normal(size=(2, 4, 8, 8)).astype(np.float32)
    (want,) = ReferenceEvaluator(m).run(None, {"x": x})
    conv = convert(m)
    with torch.no_grad():
        got = conv(torch.from_numpy(x))
    torch.testing.assert_close(got, torch.from_numpy(want), atol=1e-5, rtol=0)
    g = lower(conv, torch.from_numpy(x[:1]))
    assert [n.describe() for n in g.nodes] == [
        "input", "conv 4->8 3x3 s1 p1 g1", "clamp [0.0, None]", "maxpool 2 s2",
        "avgpool 3 s1", "conv 8->8 1x1 s1 p0 g2", "cat", "adaptive_avgpool 1", "flatten",
        "linear 16->6", "clamp [0.0, None]", "linear 6->3"]


def test_reshape_chain_and_opset_differences():
    """Reshape to [0, -1] and to a Shape -> Gather -> Unsqueeze -> Concat chain (folded);
    Clip with attribute bounds (opset 6) is ReLU6."""
    shape_chain = [
        helper.make_node("Shape", ["p"], ["sh"]),
        helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["p", "target"], ["f"]),
    ]
    for clip, opset in ((helper.make_node("Clip", ["c"], ["p"], min=0.0, max=6.0), 10),
                        (helper.make_node("Clip", ["c", "zero", "six"], ["p"]), 13)):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), clip, *shape_chain,
                 helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1)]
        if opset < 13:                       # Unsqueeze's axes became an input in 13
            nodes[4] = helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0])
        inits = [_init("w", np.ones((2, 1, 3, 3))), _init("zero", 0.0), _init("six", 6.0),
                 numpy_helper.from_array(np.array(0, np.int64), "i0"),
                 numpy_helper.from_array(np.array([0], np.int64), "ax0"),
                 numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
                 _init("fc", np.arange(36).reshape(2, 18) / 36), _init("fb", [1.0, -1.0])]
        m = _model(nodes, inits, [1, 1, 5, 5], [1, 2], opset=opset)
        x = np.linspace(-1, 2, 25, dtype=np.float32).reshape(1, 1, 5, 5)
        (want,) = ReferenceEvaluator(m).run(None, {"x": x})
        conv = convert(m)
        with torch.no_grad():
            torch.testing.assert_close(conv(torch.from_numpy(x)), torch.from_numpy(want),
                                       atol=1e-5, rtol=0)
        assert [n.describe() for n in lower(conv, torch.from_numpy(x)).nodes][2:4] == \
            ["clamp [0.0, 6.0]", "flatten"]


# -- refusals: one line each ------------------------------------------------------------------

def _one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_unsupported_op_names_the_node(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Softmax(1))
    path = export(model, (1, 1, 6, 6), tmp_path / "soft.onnx")
    with pytest.raises(OnnxImportError) as e:
        load_model(str(path))
    msg = _one_line_error(e)
    assert msg.startswith(f"{path}: ONNX node '/2/Softmax' (Softmax, node 2 of 3) is not "
                          f"supported: the operation is not one of: Conv, BatchNormalization")
    assert isinstance(e.value, UnsupportedGraphError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("node, inits, why", [
    (helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up"),
     [_init("scales", [1, 1, 2, 2])], "ONNX node 'up' (Resize, node 0 of 1) is not supported: "
                                      "the operation is not one of"),
    (helper.make_node("Sigmoid", ["x"], ["y"]), [],
     "ONNX node '(unnamed)' (Sigmoid, node 0 of 1) is not supported"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="asym", pads=[0, 0, 1, 1]),
     [_init("w", np.ones((1, 1, 3, 3)))], "(Conv, node 0 of 1) is not supported: asymmetric "
                                          "pads [0, 0, 1, 1]"),
    (helper.make_node("Add", ["x", "k"], ["y"], name="plus"), [_init("k", 1.0)],
     "adds a constant to a tensor"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="wconv"), [],
     "reads 'w', which no earlier node computes"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                      auto_pad="SAME_UPPER"), [], "auto_pad SAME_UPPER with stride [2, 2]"),
    (helper.make_node("ReduceMean", ["x"], ["y"], axes=[1]), [],
     "ReduceMean over axes [1] (only the mean over both spatial axes"),
])
def test_refused_nodes(node, inits, why):
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxImportError) as e:
        convert(m, source="m.onnx")
    msg = _one_line_error(e)
    assert msg.startswith("m.onnx: ") and why in msg, msg


def test_two_inputs_and_lstm_are_refused():
    m = _model([helper.make_node("Add", ["x", "z"], ["y"])], [], [1, 2], [1, 2],
               inputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2])
                       for n in ("x", "z")])
    with pytest.raises(OnnxImportError, match="exactly one input and one output, not 2 and 1"):
        convert(m)
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2, name="rnn")
    m = helper.make_model(helper.make_graph(
        [lstm], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[_init("W", np.ones((1, 8, 2))), _init("R", np.ones((1, 8, 2)))]))
    with pytest.raises(OnnxImportError, match=r"'rnn' \(LSTM, node 0 of 1\) is not supported"):
        convert(m)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe")
    with pytest.raises(OnnxImportError) as e:
        load_model(str(bad))
    assert _one_line_error(e).startswith(f"{bad}: not a valid ONNX model (")
    good = export(load_democnn(), (1, 1, 32, 32), tmp_path / "d.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(OnnxImportError) as e:
        load_model(str(cut))
    assert _one_line_error(e).startswith(f"{cut}: not a valid ONNX model (")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxImportError, match="not a valid ONNX model"):
        load_model(str(empty))
    with pytest.raises(OnnxImportError, match="no such ONNX file"):
        load_model(str(tmp_path / "nope.onnx"))


def test_import_golden_stays_light():
    """``import golden.graph`` (and the loader) do not import onnx: only reading a file does."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = ("import sys, golden, golden.graph, golden.qnet; "
            "print('onnx' in sys.modules, 'golden.onnx_import' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root, env=env).stdout.split()
    assert out == ["False", "False"]


# -- torchvision:<name> ---------------------------------------------------------------------

# Keys of torchvision's own state dicts (torchvision/models/resnet.py, vgg.py, mobilenetv2.py):
# the re-implementations in golden.zoo must use exactly these names, so that a state dict saved
# from torchvision loads. Counts without BN's num_batches_tracked (torchvision's published
# files have none): resnet18 62 parameters + 20 BN x 2 statistics; vgg11_bn 8 convs x 2 +
# 8 BN x 4 + 3 linear x 2; mobilenet_v2 52 convs + 52 BN x 4 + 1 linear x 2.
TORCHVISION_KEYS = {
    "resnet18": (102, ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                       "layer1.1.bn2.bias", "layer2.0.downsample.0.weight",
                       "layer2.0.downsample.1.running_mean", "layer4.1.conv2.weight",
                       "fc.weight", "fc.bias"]),
    "vgg11_bn": (54, ["features.0.weight", "features.0.bias", "features.1.running_mean",
                      "features.4.weight", "features.25.weight", "features.26.running_var",
                      "classifier.0.weight", "classifier.3.bias", "classifier.6.weight"]),
    "mobilenet_v2": (262, ["features.0.0.weight", "features.0.1.running_var",
                           "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                           "features.1.conv.2.bias", "features.2.conv.0.0.weight",
                           "features.2.conv.1.1.weight", "features.2.conv.2.weight",
                           "features.17.conv.3.running_mean", "features.18.0.weight",
                           "classifier.1.weight", "classifier.1.bias"]),
}


@pytest.mark.parametrize("name", list(TORCHVISION_KEYS))
def test_zoo_state_dicts_use_torchvision_key_names(name):
    count, keys = TORCHVISION_KEYS[name]
    sd = build(name).state_dict()
    mine = [k for k in sd if not k.endswith("num_batches_tracked")]
    assert len(mine) == count and set(keys) <= set(mine)
    first, last = TORCHVISION[name]
    assert sd[first].dim() == 4 and sd[first].shape[1] == 3
    assert sd[last].dim() == 2 and sd[last].shape[0] == 1000


def test_torchvision_spec_is_the_zoo_model():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = load_model("torchvision:resnet18", num_classes=4)
    b = load_model("zoo:resnet18", num_classes=4)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError) as e:
        load_model("torchvision:resnet50")
    assert str(e.value) == (
        "unknown torchvision model 'torchvision:resnet50'; known: torchvision:resnet18, "
        "torchvision:vgg11_bn, torchvision:mobilenet_v2 (built from this project's "
        "re-implementation, random seeded weights or --weights in torchvision's key names)")


def test_torchvision_weights_load_in_torchvision_key_names(tmp_path):
    """A state dict as torchvision publishes it (no num_batches_tracked, 3 channels, 1000
    classes) loads; the model takes its channels and classes from it."""
    torch.manual_seed(7)
    src = build("mobilenet_v2", seed=7)
    _randomize_bn(src, 8)
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "mnv2.pth")
    model = load_model("torchvision:mobilenet_v2", weights=str(tmp_path / "mnv2.pth"),
                       num_classes=10, in_channels=1)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x), src(x))
    assert model(x).shape == (2, 1000)
    with pytest.raises(ValueError, match=r"not a state dict of torchvision's resnet18 in "
                                         r"torchvision's key names \(no 4-D 'conv1.weight'"):
        load_model("torchvision:resnet18", weights=str(tmp_path / "mnv2.pth"))
    del state["features.3.conv.1.1.bias"]
    torch.save(state, tmp_path / "part.pth")
    with pytest.raises(ValueError) as e:
        load_model("torchvision:mobilenet_v2", weights=str(tmp_path / "part.pth"))
    msg = _one_line_error(e)
    assert "not a state dict of torchvision's mobilenet_v2 (RuntimeError:" in msg
    assert "features.3.conv.1.1.bias" in msg
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(ValueError, match="junk.pth: not a state dict"):
        load_model("torchvision:mobilenet_v2", weights=str(tmp_path / "junk.pth"))
    with pytest.raises(ValueError, match="weights go with torchvision:<name> only"):
        load_model("zoo:mobilenet_v2", weights=str(tmp_path / "mnv2.pth"))
