"""The float network of the quantization search as a list of weight layers, its
fake-quantized forward pass, calibration ranges and cost accounting.

:func:`describe` turns a DemoCNN-like model (``convs``, a ReLU after each, global average
pooling, ``fc``) into :class:`LayerInfo` records; :func:`describe_graph` does so for any
lowered network (:class:`golden.graph.Graph`): its crossbar layers (``conv``, ``linear``) in
order, as a :class:`GraphLayers` that runs as the whole graph (residual adds, pools,
concatenations in float between them; every crossbar layer's input, weights and bias
fake-quantized). On the demo CNN both give the same ranges, formats and accuracies
(``tests/test_anycli.py``).

Accuracy is measured with **fake quantization in float** (:func:`fake_forward`): each tensor
is quantized with :func:`golden.qformat.fake_quant` and dequantized, and the network runs in
float32. Costs:
memory ``Σ params × bits`` (:func:`memory_bits`) and multiplies ``Σ MACs × w bits × x bits``
(:func:`multiply_cost`), both also relative to uniform 8-bit (:func:`cost_summary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from arch.geometry import conv_out_size
from golden.fixedpoint import float_layer
from golden.qformat import LayerFormat, fake_quant

__all__ = ["LayerInfo", "describe", "describe_graph", "GraphLayers", "run_layers",
           "quantized_params", "fake_forward", "accuracy", "calibration_ranges", "macs", "memory_bits", "multiply_cost",
           "cost_summary"]


@dataclass(frozen=True, eq=False)
class LayerInfo:
    """One weight layer: ``kind`` "conv" or "linear"; ``pool_before``: global average pooling
    of its input first (the classifier); ``out_hw``: output pixels per channel (1 for linear)."""
    name: str
    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: int
    relu: bool
    pool_before: bool
    out_hw: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image."""
        return self.weight.numel() * self.out_hw

    @property
    def params(self) -> int:
        return self.weight.numel() + self.bias.numel()


def describe(model: nn.Module, image_hw: tuple[int, int] = (32, 32)) -> tuple[LayerInfo, ...]:
    """The weight layers of a DemoCNN-like ``model``: ``model.convs`` (``Conv2d``, each
    followed by a ReLU unless ``model.relu`` says otherwise), global average pooling,
    ``model.fc`` (``Linear``)."""
    relus = getattr(model, "relu", None)
    if relus is None:
        from golden.cnn import CONV_SPECS, DemoCNN
        relus = [s.relu for s in CONV_SPECS] if isinstance(model, DemoCNN) else \
            [True] * len(model.convs)
    h, w = image_hw
    out = []
    for i, (conv, relu) in enumerate(zip(model.convs, relus)):
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"convs[{i}] must be a Conv2d, not {type(conv).__name__}")
        (kh, kw), (s, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
        h, w = conv_out_size(h, kh, s, p), conv_out_size(w, kw, s, p)
        out.append(LayerInfo(f"conv{i}", "conv", conv.weight.detach(), conv.bias.detach(), s, p,
                             bool(relu), False, h * w))
    fc = model.fc
    out.append(LayerInfo("fc", "linear", fc.weight.detach(), fc.bias.detach(), 1, 0, False,
                         True, 1))
    return tuple(out)


class GraphLayers(tuple):
    """The crossbar layers of a lowered network (:func:`describe_graph`), a tuple of
    :class:`LayerInfo` with the ``graph`` they run in. A graph is not a chain, so
    :func:`run_layers` runs it whole: its "state" between layers is the images."""
    graph: object

    def __new__(cls, layers, graph):
        obj = super().__new__(cls, layers)
        obj.graph = graph
        return obj


def _fused_relu(graph, name: str) -> bool:
    """True if the only reader of node ``name`` is a ReLU (``clamp [0, None]``)."""
    users = graph.users()[name]
    if len(users) != 1 or users[0] == "<output>":
        return False
    u = graph[users[0]]
    return u.op == "clamp" and u.attrs["lo"] == 0 and u.attrs["hi"] is None


def describe_graph(graph) -> GraphLayers:
    """The crossbar layers (``conv``, ``linear``) of ``graph`` (a :class:`golden.graph.Graph`,
    batch norm folded) in order. ``stride``/``padding`` are the first of their pairs (the
    whole pair is in the graph); ``relu`` says a plain ReLU alone reads the output;
    ``out_hw`` is the output positions per image (grouped convs: ``weight.numel() * out_hw``
    is still the MACs)."""
    out = []
    for n in graph.crossbar_nodes:
        conv = n.op == "conv"
        out.append(LayerInfo(
            n.name, n.op, n.weight.detach(), n.bias.detach(),
            int(n.attrs["stride"][0]) if conv else 1, int(n.attrs["padding"][0]) if conv else 0,
            _fused_relu(graph, n.name), False, int(n.shape[-2] * n.shape[-1]) if conv else 1))
    return GraphLayers(out, graph)


def _graph_forward(layers: GraphLayers, qw: Sequence, x: torch.Tensor,
                   formats: Sequence[LayerFormat | None]) -> torch.Tensor:
    """The whole graph in float on images ``x``; crossbar layer ``i`` takes its input
    fake-quantized to ``formats[i].x`` and the parameters ``qw[i]``."""
    from golden.graph import _float_op

    index = {L.name: i for i, L in enumerate(layers)}
    env: dict[str, torch.Tensor] = {}
    graph = layers.graph
    for n in graph.nodes:
        ins = [env[i] for i in n.inputs]
        i = index.get(n.name)
        if i is None:
            env[n.name] = _float_op(n, x, ins)
            continue
        f = formats[i]
        xi = fake_quant(ins[0], f.x if f is not None else None)
        w, b = qw[i]
        if n.op == "conv":
            a = n.attrs
            env[n.name] = F.conv2d(xi, w, b, a["stride"], a["padding"], a["dilation"],
                                   a["groups"])
        else:
            env[n.name] = F.linear(xi, w, b)
    return env[graph.output]


def run_layers(layers: Sequence[LayerInfo], qw: Sequence, x: torch.Tensor, start: int,
               stop: int, formats: Sequence[LayerFormat | None]) -> torch.Tensor:
    """Layers ``start .. stop-1`` on ``x`` (the raw input of layer ``start``, before pooling
    and quantization) with the (fake-quantized) parameters ``qw`` (:func:`quantized_params`);
    returns the raw input of layer ``stop`` (or the logits).

    For :class:`GraphLayers` ``x`` is always the images: a prefix (``stop`` before the last
    layer) returns them unchanged, and ``stop = len(layers)`` runs the whole graph with every
    layer's ``formats`` (those before ``start`` included)."""
    if isinstance(layers, GraphLayers):
        return x if stop < len(layers) else _graph_forward(layers, qw, x, formats)
    for i in range(start, stop):
        L, f = layers[i], formats[i]
        if L.pool_before:
            x = x.mean(dim=(2, 3))
        w, b = qw[i]
        x = float_layer(L, fake_quant(x, f.x if f is not None else None), w, b)
    return x


def quantized_params(layers, formats):
    """Every layer's ``(weight, bias)`` fake-quantized to its format (``None``: float)."""
    return [(fake_quant(L.weight, f.w if f else None), fake_quant(L.bias, f.b if f else None))
            for L, f in zip(layers, formats)]


def fake_forward(layers: Sequence[LayerInfo], formats: Sequence[LayerFormat | None],
                 images: torch.Tensor) -> torch.Tensor:
    """Float logits of the network with every tensor fake-quantized to ``formats``."""
    with torch.no_grad():
        return run_layers(layers, quantized_params(layers, formats), images, 0, len(layers),
                          formats)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (a fraction)."""
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else 0.0


# -- cost accounting ----------------------------------------------------------------------

def macs(layers: Sequence[LayerInfo]) -> list[int]:
    """Multiply-accumulates per image of each layer."""
    return [L.macs for L in layers]


def memory_bits(layers: Sequence[LayerInfo], formats: Sequence[LayerFormat]) -> int:
    """``Σ weights × w bits + biases × b bits`` (activations are not stored parameters)."""
    return sum(L.weight.numel() * f.w.bits + L.bias.numel() * f.b.bits
               for L, f in zip(layers, formats))


def multiply_cost(layers: Sequence[LayerInfo], formats: Sequence[LayerFormat]) -> int:
    """``Σ MACs × w bits × x bits`` per image (a bit-serial / array multiplier's area-time)."""
    return sum(L.macs * f.w.bits * f.x.bits for L, f in zip(layers, formats))


def cost_summary(layers, formats) -> dict:
    """Memory and multiply cost of ``formats`` and their ratios to uniform 8-bit."""
    mem, mul = memory_bits(layers, formats), multiply_cost(layers, formats)
    mem8 = 8 * sum(L.params for L in layers)
    mul8 = 64 * sum(macs(layers))
    return {"memory_bits": mem, "memory_ratio_vs_uniform8": mem / mem8,
            "multiply_cost": mul, "multiply_ratio_vs_uniform8": mul / mul8}


# -- calibration ----------------------------------------------------------------------------

def calibration_ranges(layers, images) -> list[dict[str, tuple[float, float]]]:
    """Per layer, the float ranges of its (pooled) input on ``images``, weights and bias."""
    if isinstance(layers, GraphLayers):
        return _graph_ranges(layers, images)
    out = []
    with torch.no_grad():
        x = images
        for i, L in enumerate(layers):
            xin = x.mean(dim=(2, 3)) if L.pool_before else x
            out.append({"x": (float(xin.min()), float(xin.max())),
                        "w": (float(L.weight.min()), float(L.weight.max())),
                        "b": (float(L.bias.min()), float(L.bias.max()))})
            fl = [None] * len(layers)
            x = run_layers(layers, quantized_params(layers, fl), x, i, i + 1, fl)
    return out


def _graph_ranges(layers: GraphLayers, images, batch: int = 64):
    from golden.graph import run_float

    graph = layers.graph
    src = [graph[L.name].inputs[0] for L in layers]
    lo = [float("inf")] * len(layers)
    hi = [float("-inf")] * len(layers)
    with torch.no_grad():
        for k in range(0, len(images), batch):
            env = run_float(graph, images[k:k + batch], record=True)
            for i, name in enumerate(src):
                lo[i] = min(lo[i], float(env[name].min()))
                hi[i] = max(hi[i], float(env[name].max()))
    return [{"x": (lo[i], hi[i]),
             "w": (float(L.weight.min()), float(L.weight.max())),
             "b": (float(L.bias.min()), float(L.bias.max()))} for i, L in enumerate(layers)]
