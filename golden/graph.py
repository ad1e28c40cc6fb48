"""The front end for user CNNs: a PyTorch model lowered to one small network description.

:func:`lower` traces an ``nn.Module`` with ``torch.fx`` (symbolic tracing) or, where that fails
(data-dependent Python in ``forward``), with ``torch.export``, and translates the traced graph
into a :class:`Graph`: a topologically ordered tuple of :class:`Node`, each with an ``op`` from
:data:`OPS`, the names of its inputs, float parameters and its output shape (for the example
input). Batch normalisation is folded into the convolution (or linear layer) before it;
dropout, identity, ``contiguous`` and friends vanish; ``x.view(B, -1)`` and ``x.mean((2, 3))``
become ``flatten`` and a 1x1 adaptive average pool.

Anything else is refused with one :class:`UnsupportedGraphError` (a ``ValueError``) naming the
node, its operation and where it sits in the model (module path and source line when known).

Sources (:func:`load_model`): ``zoo:<name>`` (:mod:`golden.zoo`), ``torchvision:<name>``
(the same re-implementations of torchvision's resnet18, vgg11_bn and mobilenet_v2, with a
state dict in torchvision's key names if given), ``democnn`` (the shipped demo CNN), an
ONNX file (``PATH.onnx``, translated by :mod:`golden.onnx_import`), or an ``nn.Module``
object. TorchScript files are refused (their graphs are not lowered).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["OPS", "Node", "Graph", "UnsupportedGraphError", "lower", "load_model",
           "torchvision_model", "TORCHVISION", "run_float", "SUPPORTED"]

#: The operations of a :class:`Graph`.
OPS = ("input", "conv", "linear", "clamp", "maxpool", "avgpool", "adaptive_avgpool", "add",
       "cat", "flatten")

SUPPORTED = ("conv2d (any stride, padding, dilation, groups), linear, batch norm after a conv "
             "or linear, relu/relu6/hardtanh/clamp, max/avg/adaptive-avg pooling, add of two "
             "tensors, cat along channels, flatten, dropout/identity")


class UnsupportedGraphError(ValueError):
    """A model the crossbar path cannot take (the one-line message names the node)."""


@dataclass(frozen=True, eq=False)
class Node:
    """One operation of a lowered network.

    Attributes
    ----------
    name : str
        Unique name (the traced node's); inputs refer to other nodes by name.
    op : str
        One of :data:`OPS`.
    inputs : tuple of str
    attrs : dict
        ``conv``: ``stride, padding, dilation`` (pairs), ``groups``; ``clamp``: ``lo, hi``
        (floats or ``None``; ReLU is ``(0, None)``, ReLU6 ``(0, 6)``); ``maxpool``/``avgpool``:
        ``kernel, stride, padding, dilation`` (pairs), ``ceil_mode`` (and for ``avgpool``
        ``count_include_pad``, ``divisor_override``); ``adaptive_avgpool``: ``output_size``
        (pair); ``cat``: ``dim``; ``flatten``: ``start_dim``.
    weight, bias : torch.Tensor or None
        Float parameters of ``conv`` (``[Cout, Cin/groups, kh, kw]``) and ``linear``
        (``[N, K]``), batch norm folded in; ``bias`` is never ``None`` for those.
    shape : tuple of int
        Output shape for the example input (batch included).
    where : str
        Module path and source line in the original model.
    """
    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: dict = field(default_factory=dict)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    shape: tuple[int, ...] = ()
    where: str = ""

    def describe(self) -> str:
        """Short geometry, e.g. ``conv 16->32 3x3 s2 p1 g1``."""
        a = self.attrs
        if self.op == "conv":
            co, cig, kh, kw = self.weight.shape
            ci = cig * a["groups"]
            d = "" if a["dilation"] == (1, 1) else f" d{_pair_str(a['dilation'])}"
            return (f"conv {ci}->{co} {kh}x{kw} s{_pair_str(a['stride'])} "
                    f"p{_pair_str(a['padding'])}{d} g{a['groups']}")
        if self.op == "linear":
            return f"linear {self.weight.shape[1]}->{self.weight.shape[0]}"
        if self.op == "clamp":
            return f"clamp [{a['lo']}, {a['hi']}]"
        if self.op in ("maxpool", "avgpool"):
            return f"{self.op} {_pair_str(a['kernel'])} s{_pair_str(a['stride'])}"
        if self.op == "adaptive_avgpool":
            return f"adaptive_avgpool {_pair_str(a['output_size'])}"
        return self.op


def _pair_str(p) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


@dataclass(frozen=True, eq=False)
class Graph:
    """A lowered network: ``nodes`` in topological order, the first is the one ``input``;
    ``output`` names the node whose value the network returns."""
    nodes: tuple[Node, ...]
    output: str
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})

    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]

    @property
    def input(self) -> Node:
        return self.nodes[0]

    def users(self) -> dict[str, list[str]]:
        """For every node, the names of the nodes that read it (the output counts as one)."""
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n.name)
        out[self.output].append("<output>")
        return out

    @property
    def crossbar_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op in ("conv", "linear"))


# -- the float interpreter -------------------------------------------------------------------

def run_float(graph: Graph, x: torch.Tensor, *, record: bool = False):
    """Run ``graph`` in float on ``x``: the output, or with ``record`` every node's value
    (a dict by name)."""
    env: dict[str, torch.Tensor] = {}
    for n in graph.nodes:
        ins = [env[i] for i in n.inputs]
        env[n.name] = _float_op(n, x, ins)
    return env if record else env[graph.output]


def _float_op(n: Node, x, ins):
    a = n.attrs
    if n.op == "input":
        return x
    if n.op == "conv":
        return F.conv2d(ins[0], n.weight, n.bias, a["stride"], a["padding"], a["dilation"],
                        a["groups"])
    if n.op == "linear":
        return F.linear(ins[0], n.weight, n.bias)
    if n.op == "clamp":
        return torch.clamp(ins[0], a["lo"], a["hi"])
    if n.op == "maxpool":
        return F.max_pool2d(ins[0], a["kernel"], a["stride"], a["padding"], a["dilation"],
                            ceil_mode=a["ceil_mode"])
    if n.op == "avgpool":
        return F.avg_pool2d(ins[0], a["kernel"], a["stride"], a["padding"], a["ceil_mode"],
                            a["count_include_pad"], a["divisor_override"])
    if n.op == "adaptive_avgpool":
        if tuple(a["output_size"]) == (1, 1):
            return ins[0].mean(dim=(2, 3), keepdim=True)
        return F.adaptive_avg_pool2d(ins[0], a["output_size"])
    if n.op == "add":
        return ins[0] + ins[1]
    if n.op == "cat":
        return torch.cat(ins, dim=a["dim"])
    if n.op == "flatten":
        return torch.flatten(ins[0], a["start_dim"])
    raise AssertionError(n.op)


# -- lowering ----------------------------------------------------------------------------------

def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


class _Refuse(Exception):
    """Raised inside the translation with a reason; turned into UnsupportedGraphError."""


class _Builder:
    """Collects nodes; aliases (identity ops) and BN folding are resolved here."""

    def __init__(self):
        self.nodes: dict[str, Node] = {}
        self.alias: dict[str, str] = {}
        self.users: dict[str, int] = {}

    def ref(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        if name not in self.nodes:
            raise _Refuse(f"reads '{name}', which is not a tensor of the network")
        return name

    def add(self, name, op, inputs, shape, where, attrs=None, weight=None, bias=None):
        inputs = tuple(self.ref(i) for i in inputs)
        for i in inputs:
            self.users[i] = self.users.get(i, 0) + 1
        self.nodes[name] = Node(name, op, inputs, dict(attrs or {}), weight, bias,
                                tuple(int(s) for s in shape), where)

    def fold_bn(self, name, src, mean, var, gamma, beta, eps, shape, where):
        src = self.ref(src)
        p = self.nodes[src]
        if p.op not in ("conv", "linear") or self.users.get(src, 0) != 0:
            raise _Refuse("batch norm is only folded into a conv or linear layer that "
                          "nothing else reads")
        scale = (gamma if gamma is not None else torch.ones_like(var)) / torch.sqrt(var + eps)
        shift = beta if beta is not None else torch.zeros_like(mean)
        w = p.weight * scale.view(-1, *([1] * (p.weight.dim() - 1)))
        b = (p.bias - mean) * scale + shift
        del self.nodes[src]
        self.nodes[name] = Node(name, p.op, p.inputs, p.attrs, w.detach(), b.detach(),
                                tuple(int(s) for s in shape), p.where)

    def graph(self, output: str, source: str) -> Graph:
        return Graph(tuple(self.nodes.values()), self.ref(output), source)


def _where_fx(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    path = ""
    if node.op == "call_module":
        path = str(node.target)
    elif stack:
        last = list(stack.values())[-1]
        path = last[0] if isinstance(last, tuple) else str(last)
    trace = (node.meta.get("stack_trace") or "").strip().splitlines()
    line = ""
    for t in trace:     # the last frame outside torch itself: the model's own source line
        t = t.strip()
        if t.startswith("File ") and "/torch/" not in t:
            line = t
    if line:
        parts = line.split(",")
        line = (parts[0].replace("File ", "").strip('" ').split("/")[-1] + ":"
                + parts[1].replace("line", "").strip()) if len(parts) > 1 else line
    where = f"module '{path}'" if path else "the top-level forward"
    return f"{where}{' (' + line + ')' if line else ''}"


def _shape(node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            return tuple(int(s) for s in val.shape)
        return ()
    if hasattr(meta, "shape"):
        return tuple(int(s) for s in meta.shape)
    return ()


def _tensor_args(node: fx.Node) -> list[str]:
    return [a.name for a in node.all_input_nodes]


_IDENTITY_MODULES = (nn.Dropout, nn.Dropout2d, nn.Identity)
_IDENTITY_FUNCS = {F.dropout, F.dropout2d, torch.nn.functional.dropout}
_IDENTITY_METHODS = {"contiguous", "clone", "detach", "float"}
_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, torch.nn.functional.relu}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}


def _conv_attrs(stride, padding, dilation, groups, weight) -> dict:
    if isinstance(padding, str):
        kh, kw = weight.shape[-2:]
        d = _pair(dilation)
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and (d[0] * (kh - 1)) % 2 == 0 and (d[1] * (kw - 1)) % 2 == 0:
            padding = (d[0] * (kh - 1) // 2, d[1] * (kw - 1) // 2)
        else:
            raise _Refuse(f"padding '{padding}' is not a symmetric zero padding")
    return dict(stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation),
                groups=int(groups))


def _pool_attrs(kernel, stride, padding, dilation=1, ceil_mode=False) -> dict:
    stride = kernel if stride is None or stride == [] or stride == () else stride
    return dict(kernel=_pair(kernel), stride=_pair(stride), padding=_pair(padding),
                dilation=_pair(dilation), ceil_mode=bool(ceil_mode))


def _clamp_value(v):
    if v is None:
        return None
    if isinstance(v, fx.Node):
        raise _Refuse("clamp bounds must be constants")
    return float(v)


def _spatial_mean(dims, ndim: int) -> bool:
    if isinstance(dims, int):
        dims = (dims,)
    return ndim == 4 and sorted(d % 4 for d in dims) == [2, 3]


def _flatten_like(shape_in, shape_out) -> bool:
    return (len(shape_out) == 2 and len(shape_in) >= 2 and shape_out[0] == shape_in[0]
            and shape_out[1] == math.prod(shape_in[1:]))


def _lower_fx(gm: fx.GraphModule, example: torch.Tensor, source: str) -> Graph:
    from torch.fx.passes.shape_prop import ShapeProp
    ShapeProp(gm).propagate(example)
    modules = dict(gm.named_modules())
    b = _Builder()
    output = None
    shape_nodes: set[str] = set()
    for node in gm.graph.nodes:
        where = _where_fx(node)
        try:
            output = _fx_node(b, node, modules, shape_nodes, output) or output
        except _Refuse as exc:
            raise UnsupportedGraphError(
                f"node '{node.name}' ({_op_desc(node, modules)}) in {where} is not supported: "
                f"{exc}") from None
    return b.graph(output, source)


def _op_desc(node: fx.Node, modules) -> str:
    if node.op == "call_module":
        return f"call_module {type(modules[node.target]).__name__}"
    if node.op == "call_function":
        t = node.target
        return f"call_function {getattr(t, '__module__', '') or ''}.{getattr(t, '__name__', t)}" \
            .replace("_operator.", "operator.").lstrip(".")
    if node.op == "call_method":
        return f"call_method .{node.target}()"
    return f"{node.op} {node.target}"


def _fx_node(b: _Builder, node: fx.Node, modules, shape_nodes, output):
    name, shape, where = node.name, _shape(node), _where_fx(node)
    args = node.args
    if node.op == "placeholder":
        if b.nodes:
            raise _Refuse("the network must have exactly one input")
        b.add(name, "input", (), shape, where)
        return None
    if node.op == "output":
        out = args[0]
        if not isinstance(out, fx.Node):
            raise _Refuse("the network must return a single tensor")
        return out.name
    if node.op == "get_attr":
        raise _Refuse("parameters used outside a module (functional layers) are not lowered")
    if node.op == "call_module":
        m = modules[node.target]
        x = _tensor_args(node)
        if isinstance(m, _IDENTITY_MODULES):
            b.alias[name] = b.ref(x[0])
        elif isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise _Refuse(f"padding mode '{m.padding_mode}' (only zeros)")
            bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
            b.add(name, "conv", x, shape, where,
                  _conv_attrs(m.stride, m.padding, m.dilation, m.groups, m.weight),
                  m.weight.detach().clone(), bias.detach().clone())
        elif isinstance(m, nn.Linear):
            bias = m.bias if m.bias is not None else torch.zeros(m.out_features)
            b.add(name, "linear", x, shape, where, {}, m.weight.detach().clone(),
                  bias.detach().clone())
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.running_mean is None:
                raise _Refuse("batch norm without running statistics")
            b.fold_bn(name, x[0], m.running_mean, m.running_var,
                      None if m.weight is None else m.weight.detach(),
                      None if m.bias is None else m.bias.detach(), m.eps, shape, where)
        elif isinstance(m, nn.ReLU):
            b.add(name, "clamp", x, shape, where, dict(lo=0.0, hi=None))
        elif isinstance(m, nn.ReLU6):
            b.add(name, "clamp", x, shape, where, dict(lo=0.0, hi=6.0))
        elif isinstance(m, nn.Hardtanh):
            b.add(name, "clamp", x, shape, where, dict(lo=float(m.min_val), hi=float(m.max_val)))
        elif isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise _Refuse("max pooling with indices")
            b.add(name, "maxpool", x, shape, where,
                  _pool_attrs(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode))
        elif isinstance(m, nn.AvgPool2d):
            attrs = _pool_attrs(m.kernel_size, m.stride, m.padding, 1, m.ceil_mode)
            attrs.update(count_include_pad=bool(m.count_include_pad),
                         divisor_override=m.divisor_override)
            b.add(name, "avgpool", x, shape, where, attrs)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            b.add(name, "adaptive_avgpool", x, shape, where,
                  dict(output_size=tuple(shape[-2:])))
        elif isinstance(m, nn.Flatten):
            if m.end_dim not in (-1,) or m.start_dim != 1:
                raise _Refuse("only flatten(start_dim=1)")
            b.add(name, "flatten", x, shape, where, dict(start_dim=1))
        else:
            raise _Refuse(f"the operation is not one of: {SUPPORTED}")
        return None
    if node.op == "call_function":
        return _fx_function(b, node, node.target, shape, where, shape_nodes)
    if node.op == "call_method":
        return _fx_method(b, node, node.target, shape, where, shape_nodes)
    raise _Refuse(f"the operation is not one of: {SUPPORTED}")


def _arg(node: fx.Node, i: int, key: str, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(key, default)


def _in_shape(node: fx.Node) -> tuple[int, ...]:
    return _shape(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else ()


def _fx_function(b, node, t, shape, where, shape_nodes):
    name = node.name
    x = _tensor_args(node)
    if t in _IDENTITY_FUNCS:
        b.alias[name] = b.ref(x[0])
    elif t in _RELU_FUNCS:
        b.add(name, "clamp", x[:1], shape, where, dict(lo=0.0, hi=None))
    elif t is F.relu6:
        b.add(name, "clamp", x[:1], shape, where, dict(lo=0.0, hi=6.0))
    elif t is F.hardtanh:
        b.add(name, "clamp", x[:1], shape, where,
              dict(lo=float(_arg(node, 1, "min_val", -1.0)), hi=float(_arg(node, 2, "max_val", 1.0))))
    elif t in (torch.clamp, torch.clip):
        b.add(name, "clamp", x[:1], shape, where,
              dict(lo=_clamp_value(_arg(node, 1, "min")), hi=_clamp_value(_arg(node, 2, "max"))))
    elif t is torch.clamp_min:
        b.add(name, "clamp", x[:1], shape, where, dict(lo=_clamp_value(_arg(node, 1, "min")), hi=None))
    elif t in _ADD_FUNCS:
        if len(x) != 2 or not all(isinstance(a, fx.Node) for a in node.args[:2]) \
                or node.kwargs.get("alpha", 1) != 1:
            raise _Refuse("only the sum of two tensors (no constants, no alpha)")
        if _shape(node.args[0]) != _shape(node.args[1]):
            raise _Refuse("add with broadcasting")
        b.add(name, "add", x, shape, where)
    elif t in (torch.cat, torch.concat):
        dim = _arg(node, 1, "dim", 0)
        if len(shape) != 4 or dim % 4 != 1:
            raise _Refuse("only concatenation of feature maps along channels")
        b.add(name, "cat", [a.name for a in node.args[0]], shape, where, dict(dim=1))
    elif t is torch.flatten:
        _flatten(b, node, shape, where, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
    elif t is F.max_pool2d:
        if _arg(node, 6, "return_indices", False):
            raise _Refuse("max pooling with indices")
        b.add(name, "maxpool", x[:1], shape, where,
              _pool_attrs(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"),
                          _arg(node, 3, "padding", 0), _arg(node, 4, "dilation", 1),
                          _arg(node, 5, "ceil_mode", False)))
    elif t is F.avg_pool2d:
        attrs = _pool_attrs(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"),
                            _arg(node, 3, "padding", 0), 1, _arg(node, 4, "ceil_mode", False))
        attrs.update(count_include_pad=bool(_arg(node, 5, "count_include_pad", True)),
                     divisor_override=_arg(node, 6, "divisor_override"))
        b.add(name, "avgpool", x[:1], shape, where, attrs)
    elif t is F.adaptive_avg_pool2d:
        b.add(name, "adaptive_avgpool", x[:1], shape, where, dict(output_size=tuple(shape[-2:])))
    elif t is torch.mean:
        _mean(b, node, shape, where, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
    elif t is getattr or t is operator.getitem and node.args[0].name in shape_nodes:
        shape_nodes.add(name)
    else:
        raise _Refuse(f"the operation is not one of: {SUPPORTED}")
    return None


def _fx_method(b, node, t, shape, where, shape_nodes):
    name = node.name
    x = _tensor_args(node)
    if t in _IDENTITY_METHODS:
        b.alias[name] = b.ref(x[0])
    elif t in ("relu", "relu_"):
        b.add(name, "clamp", x[:1], shape, where, dict(lo=0.0, hi=None))
    elif t in ("clamp", "clamp_", "clip"):
        b.add(name, "clamp", x[:1], shape, where,
              dict(lo=_clamp_value(_arg(node, 1, "min")), hi=_clamp_value(_arg(node, 2, "max"))))
    elif t in ("add", "add_"):
        if len(x) != 2 or node.kwargs.get("alpha", 1) != 1:
            raise _Refuse("only the sum of two tensors (no constants, no alpha)")
        if _shape(node.args[0]) != _shape(node.args[1]):
            raise _Refuse("add with broadcasting")
        b.add(name, "add", x, shape, where)
    elif t == "flatten":
        _flatten(b, node, shape, where, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
    elif t in ("view", "reshape"):
        src = node.args[0]
        if tuple(shape) == _shape(src):
            b.alias[name] = b.ref(src.name)
        elif _flatten_like(_shape(src), shape):
            b.add(name, "flatten", [src.name], shape, where, dict(start_dim=1))
        else:
            raise _Refuse(f"{t} to {list(shape)} is not a flatten")
    elif t == "mean":
        _mean(b, node, shape, where, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
    elif t == "size" or t == "dim":
        shape_nodes.add(name)
    else:
        raise _Refuse(f"the operation is not one of: {SUPPORTED}")
    return None


def _flatten(b, node, shape, where, start, end):
    src = node.args[0]
    s_in = _shape(src)
    if start % max(len(s_in), 1) == 0 and len(shape) == 1:
        raise _Refuse("flatten over the batch axis")
    if not _flatten_like(s_in, shape):
        if tuple(shape) == s_in:
            b.alias[node.name] = b.ref(src.name)
            return
        raise _Refuse("only flatten(x, 1) of a batch")
    b.add(node.name, "flatten", [src.name], shape, where, dict(start_dim=1))


def _mean(b, node, shape, where, dims, keepdim):
    src = node.args[0]
    if dims is None or not _spatial_mean(dims, len(_shape(src))):
        raise _Refuse("only the mean over both spatial axes")
    pooled = node.name if keepdim else node.name + "_pool"
    pshape = tuple(_shape(src)[:2]) + (1, 1)
    b.add(pooled, "adaptive_avgpool", [src.name], pshape, where, dict(output_size=(1, 1)))
    if not keepdim:
        b.add(node.name, "flatten", [pooled], shape, where, dict(start_dim=1))


# -- torch.export fallback -------------------------------------------------------------------

def _lower_export(model: nn.Module, example: torch.Tensor, source: str) -> Graph:
    ep = torch.export.export(model, (example,))
    sig = ep.graph_signature
    consts = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    state = dict(ep.state_dict)
    state.update(getattr(ep, "constants", {}) or {})
    params: dict[str, torch.Tensor] = {}
    b = _Builder()
    output = None
    aten = torch.ops.aten
    for node in ep.graph.nodes:
        where = _where_fx(node)
        try:
            if node.op == "placeholder":
                if node.name in consts:
                    params[node.name] = state[consts[node.name]].detach()
                elif b.nodes:
                    raise _Refuse("the network must have exactly one input")
                else:
                    b.add(node.name, "input", (), _shape(node), where)
                continue
            if node.op == "output":
                outs = node.args[0]
                if len(outs) != 1:
                    raise _Refuse("the network must return a single tensor")
                output = outs[0].name
                continue
            output = output or None
            _export_node(b, node, params, aten, where)
        except _Refuse as exc:
            raise UnsupportedGraphError(
                f"node '{node.name}' ({node.op} {node.target}) in {where} is not supported: "
                f"{exc}") from None
    return b.graph(output, source)


def _p(params, a):
    return None if a is None else params[a.name]


def _export_node(b, node, params, aten, where):
    t, a, name, shape = node.target, node.args, node.name, _shape(node)
    x = a[0].name if a and isinstance(a[0], fx.Node) else None
    if t in (aten.conv2d.default,):
        w = params[a[1].name]
        bias = _p(params, a[2] if len(a) > 2 else None)
        bias = torch.zeros(w.shape[0]) if bias is None else bias
        attrs = _conv_attrs(a[3] if len(a) > 3 else 1, a[4] if len(a) > 4 else 0,
                            a[5] if len(a) > 5 else 1, a[6] if len(a) > 6 else 1, w)
        b.add(name, "conv", [x], shape, where, attrs, w.clone(), bias.clone())
    elif t is aten.linear.default:
        w = params[a[1].name]
        bias = _p(params, a[2] if len(a) > 2 else None)
        b.add(name, "linear", [x], shape, where, {}, w.clone(),
              (torch.zeros(w.shape[0]) if bias is None else bias).clone())
    elif t in (aten._native_batch_norm_legit_no_training.default, aten.batch_norm.default):
        gamma, beta = _p(params, a[1]), _p(params, a[2])
        mean, var = params[a[3].name], params[a[4].name]
        eps = a[-1] if t is aten._native_batch_norm_legit_no_training.default else a[7]
        b.fold_bn(name, x, mean, var, gamma, beta, float(eps), shape, where)
    elif t is operator.getitem:
        if a[1] != 0:
            raise _Refuse("only the first result of batch norm")
        b.alias[name] = b.ref(x)
    elif t in (aten.relu.default, aten.relu_.default):
        b.add(name, "clamp", [x], shape, where, dict(lo=0.0, hi=None))
    elif t in (aten.hardtanh.default, aten.hardtanh_.default):
        b.add(name, "clamp", [x], shape, where,
              dict(lo=float(a[1]) if len(a) > 1 else -1.0, hi=float(a[2]) if len(a) > 2 else 1.0))
    elif t in (aten.clamp.default, aten.clamp_.default):
        b.add(name, "clamp", [x], shape, where,
              dict(lo=_clamp_value(a[1] if len(a) > 1 else None),
                   hi=_clamp_value(a[2] if len(a) > 2 else None)))
    elif t in (aten.add.Tensor, aten.add_.Tensor):
        if not (len(a) == 2 and isinstance(a[1], fx.Node)) or node.kwargs.get("alpha", 1) != 1:
            raise _Refuse("only the sum of two tensors (no constants, no alpha)")
        b.add(name, "add", [x, a[1].name], shape, where)
    elif t is aten.cat.default:
        if len(shape) != 4 or (a[1] if len(a) > 1 else 0) % 4 != 1:
            raise _Refuse("only concatenation of feature maps along channels")
        b.add(name, "cat", [i.name for i in a[0]], shape, where, dict(dim=1))
    elif t is aten.max_pool2d.default:
        b.add(name, "maxpool", [x], shape, where,
              _pool_attrs(a[1], a[2] if len(a) > 2 else None, a[3] if len(a) > 3 else 0,
                          a[4] if len(a) > 4 else 1, a[5] if len(a) > 5 else False))
    elif t is aten.avg_pool2d.default:
        attrs = _pool_attrs(a[1], a[2] if len(a) > 2 else None, a[3] if len(a) > 3 else 0, 1,
                            a[4] if len(a) > 4 else False)
        attrs.update(count_include_pad=bool(a[5]) if len(a) > 5 else True,
                     divisor_override=a[6] if len(a) > 6 else None)
        b.add(name, "avgpool", [x], shape, where, attrs)
    elif t in (aten.adaptive_avg_pool2d.default,):
        b.add(name, "adaptive_avgpool", [x], shape, where, dict(output_size=tuple(shape[-2:])))
    elif t is aten.mean.dim:
        src_shape = _shape(a[0])
        keep = a[2] if len(a) > 2 else False
        if not _spatial_mean(a[1], len(src_shape)):
            raise _Refuse("only the mean over both spatial axes")
        pooled = name if keep else name + "_pool"
        b.add(pooled, "adaptive_avgpool", [x], src_shape[:2] + (1, 1), where,
              dict(output_size=(1, 1)))
        if not keep:
            b.add(name, "flatten", [pooled], shape, where, dict(start_dim=1))
    elif t in (aten.flatten.using_ints, aten.view.default, aten.reshape.default,
               aten._unsafe_view.default):
        if tuple(shape) == _shape(a[0]):
            b.alias[name] = b.ref(x)
        elif _flatten_like(_shape(a[0]), shape):
            b.add(name, "flatten", [x], shape, where, dict(start_dim=1))
        else:
            raise _Refuse(f"reshape to {list(shape)} is not a flatten")
    elif t in (aten.dropout.default, aten.clone.default, aten.contiguous.default,
               aten.detach.default, aten.alias.default):
        b.alias[name] = b.ref(x)
    else:
        raise _Refuse(f"the operation is not one of: {SUPPORTED}")


# -- entry points ------------------------------------------------------------------------------

def lower(model, example: torch.Tensor | tuple[int, ...] = (1, 1, 32, 32)) -> Graph:
    """Lower ``model`` (an ``nn.Module``, in eval mode) to a :class:`Graph`.

    Parameters
    ----------
    model : nn.Module
    example : torch.Tensor or shape
        An input (or its shape) used to trace shapes; the batch size does not matter.

    Raises
    ------
    UnsupportedGraphError
        For an operation the crossbar path does not take, a TorchScript module, or a model
        that neither ``torch.fx`` nor ``torch.export`` can trace.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedGraphError(
            "TorchScript models are not lowered (their graphs are not translated): pass the "
            "nn.Module itself")
    if not isinstance(model, nn.Module):
        raise UnsupportedGraphError(f"a model must be an nn.Module, not {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        example = torch.zeros(tuple(example))
    was_training = model.training
    model.eval()
    source = type(model).__name__
    try:
        try:
            tracer = fx.Tracer()
            tracer.record_stack_traces = True
            graph = tracer.trace(model)
            gm = fx.GraphModule(tracer.root, graph, source)
        except UnsupportedGraphError:
            raise
        except Exception as fx_exc:  # fx raises many kinds on data-dependent Python
            try:
                with torch.no_grad():
                    return _lower_export(model, example, source)
            except UnsupportedGraphError:
                raise
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:150]
                fx_first = (str(fx_exc).strip().splitlines() or [""])[0][:150]
                raise UnsupportedGraphError(
                    f"{source}: torch.fx cannot trace it ({type(fx_exc).__name__}: {fx_first}) "
                    f"and neither can torch.export ({type(exc).__name__}: {first})") from None
        with torch.no_grad():
            return _lower_fx(gm, example, source)
    finally:
        model.train(was_training)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive: a zip holding a ``code/`` folder (``torch.save`` files do not)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


#: ``torchvision:<name>``: the torchvision models :mod:`golden.zoo` re-implements, each with
#: the keys of its first conv's and its last linear layer's weights (torchvision's names)
TORCHVISION = {"resnet18": ("conv1.weight", "fc.weight"),
               "vgg11_bn": ("features.0.weight", "classifier.6.weight"),
               "mobilenet_v2": ("features.0.0.weight", "classifier.1.weight")}


def load_model(spec, *, weights=None, **kwargs) -> nn.Module:
    """A model from ``spec``: an ``nn.Module`` (returned as is), ``democnn`` (the shipped demo
    CNN), ``zoo:<name>`` (:func:`golden.zoo.build`, ``kwargs`` passed on),
    ``torchvision:<name>`` (:func:`torchvision_model`, ``weights`` and ``kwargs`` passed on)
    or ``PATH.onnx`` (:func:`golden.onnx_import.load_onnx`; ``kwargs`` do not apply).

    Raises
    ------
    UnsupportedGraphError
        For TorchScript files (not lowered), and ONNX files that are unreadable or hold an
        operation :mod:`golden.onnx_import` does not translate.
    ValueError
        For an unknown name, or ``weights`` that do not fit.
    """
    if isinstance(spec, nn.Module):
        return spec
    spec = str(spec)
    if spec.startswith("torchvision:"):
        return torchvision_model(spec, weights=weights, **kwargs)
    if weights is not None:
        raise ValueError(f"{spec}: weights go with torchvision:<name> only")
    if spec == "democnn":
        from golden.cnn import load_democnn
        return load_democnn()
    if spec.startswith("zoo:"):
        from golden.zoo import build
        return build(spec, **kwargs)
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        from golden.onnx_import import load_onnx
        return load_onnx(path)
    if path.is_file():
        if not _is_torchscript(path):
            raise ValueError(f"{spec}: not a model this tool can load (give democnn, "
                             f"zoo:<name>, torchvision:<name>, PATH.onnx or an nn.Module)")
        raise UnsupportedGraphError(
            f"{spec}: TorchScript models are not lowered (their graphs are not translated): "
            f"pass the nn.Module itself")
    raise ValueError(f"unknown model '{spec}' (give democnn, zoo:<name>, torchvision:<name>, "
                     f"PATH.onnx or an nn.Module)")


def torchvision_model(spec: str, *, weights=None, num_classes: int | None = None,
                      in_channels: int | None = None, seed: int = 0) -> nn.Module:
    """``torchvision:<name>`` (eval mode): :mod:`golden.zoo`'s re-implementation of
    torchvision's model, whose state dict keys are torchvision's (``layer1.0.conv1.weight``,
    ``features.0.0.weight``, ...). Without ``weights``, random weights drawn from ``seed``
    (as ``zoo:<name>``); with ``weights`` (a state dict file, or a dict), the model is built
    with the input channels and classes of the state dict (``num_classes`` and
    ``in_channels`` then do not apply) and loads it strictly.

    Raises
    ------
    ValueError
        For a name not in :data:`TORCHVISION` (the message lists the known ones), a file that
        is not a state dict, or a state dict of another model.
    """
    from golden.zoo import build

    name = spec.removeprefix("torchvision:")
    if name not in TORCHVISION:
        raise ValueError(f"unknown torchvision model '{spec}'; known: "
                         f"{', '.join('torchvision:' + k for k in TORCHVISION)} (built from "
                         f"this project's re-implementation, random seeded weights or "
                         f"--weights in torchvision's key names)")
    if weights is None:
        return build(name, num_classes=num_classes, in_channels=in_channels, seed=seed)
    state = weights
    if not isinstance(weights, dict):
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ValueError(f"weights {weights}: no such file") from None
        except Exception as exc:  # torch raises several kinds for a corrupt or foreign file
            raise ValueError(f"weights {weights}: not a state dict ({_first_line(exc)})") \
                from None
        if not isinstance(state, dict):
            raise ValueError(f"weights {weights}: not a state dict (a "
                             f"{type(state).__name__})")
    label = "the state dict" if isinstance(weights, dict) else f"weights {weights}"
    first, last = TORCHVISION[name]
    w_in, w_out = state.get(first), state.get(last)
    if not (isinstance(w_in, torch.Tensor) and w_in.dim() == 4
            and isinstance(w_out, torch.Tensor) and w_out.dim() == 2):
        raise ValueError(f"{label}: not a state dict of torchvision's {name} in torchvision's "
                         f"key names (no 4-D '{first}' and 2-D '{last}')")
    model = build(name, num_classes=int(w_out.shape[0]), in_channels=int(w_in.shape[1]),
                  seed=seed)
    try:
        model.load_state_dict(state)
    except Exception as exc:  # RuntimeError listing missing/unexpected keys and shapes
        raise ValueError(f"{label}: not a state dict of torchvision's {name} "
                         f"({_first_line(exc)})") from None
    return model.eval()


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` on one line: its type and its message's lines joined by "; "."""
    lines = [" ".join(ln.split()) for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: " + "; ".join(lines)
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."
