"""ONNX models as ``torch.fx`` modules the lowering (:func:`golden.graph.lower`) takes.

:func:`load_onnx` reads a ``.onnx`` file with the ``onnx`` package (numpy and protobuf only:
no torchvision, no second torch) and :func:`convert` translates its graph, node by node, into a
:class:`torch.fx.GraphModule` built from plain torch layers: ``Conv`` becomes an
``nn.Conv2d``, ``BatchNormalization`` an ``nn.BatchNorm2d`` (the lowering folds it into the
conv before it), ``Gemm`` and ``MatMul`` an ``nn.Linear``; the stateless operations become
``torch.relu``, ``torch.clamp``, ``F.max_pool2d`` and friends. Initializers become the
layers' parameters and buffers. The result is an ordinary ``nn.Module``: it runs in float, and
``lower`` traces it like any user model.

What is translated (:data:`ONNX_OPS`)::

    Conv                  2-D, any stride, dilation and group; symmetric pads (or auto_pad
                          VALID, or SAME with stride 1); weight (and bias) constant
    BatchNormalization    inference mode; all four statistics constant
    Relu, Clip            Clip's bounds as attributes (opset < 11) or constant inputs
    MaxPool, AveragePool  2-D, symmetric pads, ceil_mode, count_include_pad
    GlobalAveragePool     and ReduceMean over both spatial axes (axes as attribute or input)
    Add                   of two tensors; a constant added to a Conv, Gemm or MatMul output
                          that nothing else reads becomes that layer's bias
    Concat                of tensors
    Flatten               axis 1; Reshape and Squeeze only where they flatten [N, ...] to
                          [N, rest] (or change nothing)
    Gemm, MatMul          activation times a constant matrix (transA 0, alpha and beta folded)
    Identity, Dropout     vanish

A node whose inputs are all constants (``Constant``, and shape arithmetic such as
``Shape -> Gather -> Unsqueeze -> Concat`` feeding a ``Reshape``) is evaluated once here with
``onnx.reference``; ``Shape`` of a tensor is constant when shape inference knows every
dimension.

Everything else is refused with one :class:`OnnxImportError` line naming the node, its
``op_type`` and its index in the graph; an unreadable or invalid file is one line too.
"""

from __future__ import annotations

import math
import operator
import re
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from golden.graph import UnsupportedGraphError

__all__ = ["ONNX_OPS", "OnnxImportError", "load_onnx", "convert"]

#: the ONNX operations :func:`convert` translates (module docstring)
ONNX_OPS = ("Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
            "GlobalAveragePool", "ReduceMean", "Add", "Concat", "Flatten", "Reshape", "Squeeze",
            "Gemm", "MatMul", "Identity", "Dropout", "Constant", "Shape")

#: float32's largest value: Clip bounds beyond it mean "no bound"
_F32_MAX = float(np.finfo(np.float32).max)


class OnnxImportError(UnsupportedGraphError):
    """An ONNX file that cannot be read or whose graph is not translated (one line)."""


class _Refuse(Exception):
    """Raised by a node's translation with the reason; :func:`convert` names the node."""


def load_onnx(path) -> fx.GraphModule:
    """The model in the ONNX file ``path`` as an ``nn.Module`` (eval mode).

    Raises
    ------
    OnnxImportError
        For a missing, unreadable or invalid file, or a graph with an operation outside
        :data:`ONNX_OPS` (the message names the node).
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxImportError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - protobuf and the checker raise many kinds
        raise OnnxImportError(f"{path}: not a valid ONNX model ({_one_line(exc)})") from None
    return convert(model, source=str(path))


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def convert(model, source: str = "ONNX model") -> fx.GraphModule:
    """Translate an ``onnx.ModelProto`` into a ``torch.fx.GraphModule`` (module docstring).

    Raises
    ------
    OnnxImportError
        For a graph that is not one float input to one output, or a node outside
        :data:`ONNX_OPS` (named, with its index).
    """
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes are a help (Reshape, Shape), not a must
        pass
    return _Converter(model.graph, list(model.opset_import), source).run()


def _static_shapes(graph) -> dict[str, tuple[int, ...]]:
    """Every value whose dimensions shape inference (or the file) fixed, by name. A symbolic
    first dimension (a dynamic batch, ``dynamic_axes={"x": {0: "N"}}``) counts as 1: every
    translated operation keeps the batch whatever its size, and a Reshape computed from it
    (``x.view(x.size(0), -1)``) is translated only where it flattens [N, ...] to [N, rest]."""
    shapes = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if dims and dims[0] is None:
            dims[0] = 1
        if all(d is not None for d in dims):
            shapes[vi.name] = tuple(dims)
    return shapes


def _module_name(name: str, op_type: str, index: int, taken: set[str]) -> str:
    """A Python identifier for a submodule, from the ONNX node name
    (``/layer1/layer1.0/conv1/Conv`` -> ``layer1_layer1_0_conv1_Conv``)."""
    base = re.sub(r"\W+", "_", name).strip("_") or f"{op_type.lower()}{index}"
    if base[0].isdigit():
        base = f"n{base}"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


class _Converter:
    """One pass over the nodes (ONNX graphs are topologically sorted). ``env`` maps every
    ONNX value name to an ``fx.Node`` (a tensor of the network) or a numpy array (a
    constant: initializers, ``Constant`` and folded nodes)."""

    def __init__(self, graph, opsets, source: str):
        from onnx import numpy_helper

        self.onnx_graph, self.opsets, self.source = graph, opsets, source
        self.root = nn.Module()
        self.fx = fx.Graph()
        self.env: dict[str, fx.Node | np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.shapes = _static_shapes(graph)
        self.taken: set[str] = set()
        #: how many nodes (and graph outputs) read each value
        self.readers: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                if i:
                    self.readers[i] = self.readers.get(i, 0) + 1
        for o in graph.output:
            self.readers[o.name] = self.readers.get(o.name, 0) + 1
        #: fx nodes of layers whose bias a following constant Add may take: node -> module
        self.biasable: dict[fx.Node, nn.Module] = {}

    # -- the walk ------------------------------------------------------------------------------

    def run(self) -> fx.GraphModule:
        g = self.onnx_graph
        inputs = [i for i in g.input if i.name not in self.env]
        if len(inputs) != 1 or len(g.output) != 1:
            raise OnnxImportError(f"{self.source}: the network must have exactly one input "
                                  f"and one output, not {len(inputs)} and {len(g.output)}")
        self.env[inputs[0].name] = self.fx.placeholder("x")
        total = len(g.node)
        for index, node in enumerate(g.node):
            try:
                self._node(node, index)
            except _Refuse as exc:
                raise OnnxImportError(
                    f"{self.source}: ONNX node '{node.name or '(unnamed)'}' ({node.op_type}, "
                    f"node {index} of {total}) is not supported: {exc}") from None
        out = self.env.get(g.output[0].name)
        if not isinstance(out, fx.Node):
            raise OnnxImportError(f"{self.source}: the output '{g.output[0].name}' is a "
                                  f"constant, not computed from the input")
        self.fx.output(out)
        gm = fx.GraphModule(self.root, self.fx, class_name="OnnxModel")
        return gm.eval()

    def _node(self, node, index: int) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _Refuse(f"operator domain '{node.domain}' (only the standard ONNX domain)")
        ins = [self.env.get(i) if i else None for i in node.input]
        missing = [i for i, v in zip(node.input, ins) if i and v is None]
        if missing:
            raise _Refuse(f"reads '{missing[0]}', which no earlier node computes")
        # constants in, constant out: shape arithmetic, Constant, weight transposes
        if node.op_type == "Constant" or (
                any(i is not None for i in ins)
                and all(i is None or isinstance(i, np.ndarray) for i in ins)):
            outs = _fold(node, ins, self.opsets)
        else:
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                raise _Refuse(f"the operation is not one of: {', '.join(ONNX_OPS)}")
            self.node, self.index = node, index
            outs = handler(self, node, ins, _attrs(node))
            if not isinstance(outs, tuple):
                outs = (outs,)
        for name, value in zip(node.output, outs):
            if name:
                self.env[name] = value
        for name in node.output[len(outs):]:
            if name and self.readers.get(name):
                raise _Refuse(f"its output '{name}' is read, but only the first output of "
                              f"{node.op_type} is translated")

    # -- helpers for the handlers ------------------------------------------------------------

    def module(self, m: nn.Module, x: fx.Node) -> fx.Node:
        name = _module_name(self.node.name, self.node.op_type, self.index, self.taken)
        self.root.add_module(name, m)
        return self.fx.call_module(name, (x,))

    def call(self, fn, *args, **kwargs) -> fx.Node:
        return self.fx.call_function(fn, args, kwargs)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def rank(self, name: str) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold(node, ins, opsets) -> tuple[np.ndarray, ...]:
    """Evaluate a node whose inputs are all constants (a ``Constant`` holding a tensor
    directly, anything else with ``onnx.reference`` in a one-node model of the file's
    ``opsets``: an operator's inputs and attributes change between versions)."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant" and len(node.attribute) == 1 and \
            node.attribute[0].name == "value":
        return (numpy_helper.to_array(node.attribute[0].t),)
    feeds = {n: v for n, v in zip(node.input, ins) if n}
    try:
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in feeds.items()],
            [helper.make_empty_tensor_value_info(o) for o in node.output if o])
        model = helper.make_model(graph, opset_imports=opsets)
        outs = ReferenceEvaluator(model).run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - the reference runtime raises many kinds
        raise _Refuse(f"its inputs are constants, but evaluating it failed "
                      f"({_one_line(exc, 120)})") from None
    return tuple(np.asarray(o) for o in outs)


def _tensor(v, what: str) -> fx.Node:
    if not isinstance(v, fx.Node):
        raise _Refuse(f"{what} must be a tensor computed from the input, not a constant")
    return v


def _const(v, what: str) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise _Refuse(f"{what} must be a constant (an initializer), not computed from the "
                      f"input")
    return v


def _param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(a, dtype=np.float32)), requires_grad=False)


def _sym_pads(pads, n: int = 2) -> tuple[int, ...]:
    """ONNX ``pads`` (all begins, then all ends) as torch's symmetric padding."""
    pads = [int(p) for p in (pads or [0] * (2 * n))]
    if pads[:n] != pads[n:]:
        raise _Refuse(f"asymmetric pads {pads} (begin and end must match)")
    return tuple(pads[:n])


def _padding(a: dict, kernel, dilation, stride) -> tuple[int, int]:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        return _sym_pads(a.get("pads"))
    if auto == "VALID":
        return (0, 0)
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    if all(s == 1 for s in stride) and all(t % 2 == 0 for t in total):
        return tuple(t // 2 for t in total)
    raise _Refuse(f"auto_pad {auto} with stride {list(stride)} and kernel {list(kernel)} "
                  f"pads by the input size (only symmetric padding)")


def _spatial(node_rank, what):
    if node_rank not in (None, 4):
        raise _Refuse(f"only 2-D {what} on [N, C, H, W] tensors")


# -- the handlers: (converter, node, inputs, attributes) -> fx node(s) -------------------------

def _conv(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    w = _const(ins[1], "the weight")
    if w.ndim != 4:
        raise _Refuse(f"a {w.ndim - 2}-D convolution (only 2-D)")
    b = _const(ins[2], "the bias") if len(ins) > 2 and ins[2] is not None else None
    kernel = tuple(int(k) for k in a.get("kernel_shape", w.shape[2:]))
    if kernel != tuple(w.shape[2:]):
        raise _Refuse(f"kernel_shape {list(kernel)} differs from the weight's {list(w.shape)}")
    stride = tuple(int(s) for s in a.get("strides", (1, 1)))
    dilation = tuple(int(d) for d in a.get("dilations", (1, 1)))
    groups = int(a.get("group", 1))
    conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], kernel, stride,
                     _padding(a, kernel, dilation, stride), dilation, groups, bias=True)
    return _weighted(cv, conv, x, w, b)


def _weighted(cv, layer: nn.Module, x: fx.Node, w: np.ndarray, b: np.ndarray | None) -> fx.Node:
    """``layer`` (a conv or linear) with weight ``w`` and bias ``b`` (0 when None) applied to
    ``x``; a constant Add after it may still fold into its bias (``cv.biasable``)."""
    layer.weight = _param(w)
    layer.bias = _param(np.zeros(w.shape[0]) if b is None else b)
    out = cv.module(layer, x)
    cv.biasable[out] = layer
    return out


def _batch_norm(cv, node, ins, a):
    if int(a.get("training_mode", 0)):
        raise _Refuse("training_mode 1 (only inference)")
    x = _tensor(ins[0], "the input")
    scale, bias, mean, var = (_const(v, what) for v, what in
                              zip(ins[1:5], ("scale", "bias", "mean", "var")))
    rank = cv.rank(node.input[0])
    bn = (nn.BatchNorm1d if rank in (2, 3) else nn.BatchNorm2d)(
        len(mean), eps=float(a.get("epsilon", 1e-5)))
    bn.weight, bn.bias = _param(scale), _param(bias)
    bn.running_mean.copy_(torch.from_numpy(np.array(mean, dtype=np.float32)))
    bn.running_var.copy_(torch.from_numpy(np.array(var, dtype=np.float32)))
    return cv.module(bn.eval(), x)


def _relu(cv, node, ins, a):
    return cv.call(torch.relu, _tensor(ins[0], "the input"))


def _bound(v, what):
    if v is None:
        return None
    v = _const(v, f"Clip's {what}")
    if v.size != 1:
        raise _Refuse(f"Clip's {what} must be a scalar, not of shape {list(v.shape)}")
    f = float(v.reshape(()))
    return None if math.isinf(f) or abs(f) >= _F32_MAX else f


def _clip(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    if "min" in a or "max" in a:            # opset < 11: bounds are attributes
        lo, hi = (_bound(np.asarray(a[k], np.float32), k) if k in a else None
                  for k in ("min", "max"))
    else:                                   # opset >= 11: optional constant inputs
        lo = _bound(ins[1] if len(ins) > 1 else None, "min")
        hi = _bound(ins[2] if len(ins) > 2 else None, "max")
    if lo is None and hi is None:
        return x
    return cv.call(torch.clamp, x, lo, hi)


def _pool_common(cv, node, a):
    _spatial(cv.rank(node.input[0]), "pooling")
    kernel = tuple(int(k) for k in a["kernel_shape"])
    if len(kernel) != 2:
        raise _Refuse(f"{len(kernel)}-D pooling (only 2-D)")
    stride = tuple(int(s) for s in a.get("strides", (1, 1)))
    dilation = tuple(int(d) for d in a.get("dilations", (1, 1)))
    return kernel, stride, _padding(a, kernel, dilation, stride), dilation, \
        bool(a.get("ceil_mode", 0))


def _max_pool(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    kernel, stride, padding, dilation, ceil = _pool_common(cv, node, a)
    if int(a.get("storage_order", 0)):
        raise _Refuse("storage_order 1")
    return cv.call(F.max_pool2d, x, kernel, stride, padding, dilation, ceil_mode=ceil)


def _avg_pool(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    kernel, stride, padding, dilation, ceil = _pool_common(cv, node, a)
    if dilation != (1, 1):
        raise _Refuse(f"dilations {list(dilation)} (average pooling takes none)")
    return cv.call(F.avg_pool2d, x, kernel, stride, padding, ceil_mode=ceil,
                   count_include_pad=bool(a.get("count_include_pad", 0)))


def _global_avg_pool(cv, node, ins, a):
    _spatial(cv.rank(node.input[0]), "pooling")
    return cv.call(F.adaptive_avg_pool2d, _tensor(ins[0], "the input"), 1)


def _reduce_mean(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    axes = a.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:       # opset >= 18
        axes = _const(ins[1], "the axes").reshape(-1).tolist()
    rank = cv.rank(node.input[0])
    if axes is None or rank not in (None, 4) or sorted(int(d) % 4 for d in axes) != [2, 3]:
        raise _Refuse(f"ReduceMean over axes {axes} (only the mean over both spatial axes "
                      f"of [N, C, H, W])")
    return cv.call(torch.mean, x, dim=(2, 3), keepdim=bool(a.get("keepdims", 1)))


def _add(cv, node, ins, a):
    tensors = [v for v in ins if isinstance(v, fx.Node)]
    if len(tensors) == 2:
        return cv.call(operator.add, *tensors)
    x, c = (ins[0], ins[1]) if isinstance(ins[0], fx.Node) else (ins[1], ins[0])
    layer = cv.biasable.get(x)
    src = x.name
    onnx_src = node.input[0] if isinstance(ins[0], fx.Node) else node.input[1]
    if layer is None or cv.readers.get(onnx_src, 0) != 1:
        raise _Refuse("adds a constant to a tensor (only a bias right after a Conv, Gemm or "
                      "MatMul that nothing else reads)")
    n = layer.bias.shape[0]
    c = np.asarray(c, dtype=np.float32)
    ok_shapes = {(n,), (1, n)} if isinstance(layer, nn.Linear) else \
        {(n, 1, 1), (1, n, 1, 1)}
    if c.size == 1:
        c = np.full(n, float(c.reshape(())), np.float32)
    elif c.shape not in ok_shapes:
        raise _Refuse(f"a constant of shape {list(c.shape)} added to {src} (only a per-channel "
                      f"bias)")
    with torch.no_grad():
        layer.bias += torch.tensor(c.reshape(n))
    del cv.biasable[x]
    return x


def _concat(cv, node, ins, a):
    xs = [_tensor(v, "every input") for v in ins]
    axis = int(a["axis"])
    rank = cv.rank(node.input[0])
    if rank is not None and axis < 0:
        axis += rank
    return cv.call(torch.cat, xs, dim=axis)


def _flatten(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    axis, rank = int(a.get("axis", 1)), cv.rank(node.input[0])
    if axis < 0 and rank is not None:
        axis += rank
    if axis != 1:
        raise _Refuse(f"Flatten with axis {a.get('axis', 1)} (only axis 1: [N, rest])")
    return cv.call(torch.flatten, x, 1)


def _flatten_or_identity(cv, node, x, in_shape, out_shape, what):
    if in_shape is not None and tuple(out_shape) == tuple(in_shape):
        return x
    if in_shape is not None and len(in_shape) >= 2 and \
            tuple(out_shape) == (in_shape[0], math.prod(in_shape[1:])):
        return cv.call(torch.flatten, x, 1)
    raise _Refuse(f"{what} from {list(in_shape) if in_shape else '?'} to {list(out_shape)} "
                  f"is not a flatten [N, ...] -> [N, rest]")


def _reshape(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    target = _const(ins[1], "the shape").reshape(-1).astype(np.int64).tolist()
    in_shape = cv.shape(node.input[0])
    if in_shape is None:
        if target == [0, -1]:        # batch kept, the rest flattened, whatever the sizes
            return cv.call(torch.flatten, x, 1)
        raise _Refuse(f"Reshape to {target} of a tensor of unknown shape (only [0, -1])")
    if not int(a.get("allowzero", 0)):
        target = [in_shape[i] if t == 0 and i < len(in_shape) else t
                  for i, t in enumerate(target)]
    try:
        out_shape = np.empty(in_shape, dtype=np.uint8).reshape(target).shape
    except ValueError:
        raise _Refuse(f"Reshape of {list(in_shape)} to {target} does not fit") from None
    return _flatten_or_identity(cv, node, x, in_shape, out_shape, "Reshape")


def _squeeze(cv, node, ins, a):
    x = _tensor(ins[0], "the input")
    in_shape = cv.shape(node.input[0])
    axes = a.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:       # opset >= 13
        axes = _const(ins[1], "the axes").reshape(-1).tolist()
    if in_shape is None:
        raise _Refuse("Squeeze of a tensor of unknown shape")
    r = len(in_shape)
    axes = [int(d) % r for d in axes] if axes is not None else \
        [i for i, d in enumerate(in_shape) if d == 1]
    out_shape = tuple(d for i, d in enumerate(in_shape) if i not in axes)
    return _flatten_or_identity(cv, node, x, in_shape, out_shape, "Squeeze")


def _linear(cv, x, weight_nk: np.ndarray, bias_n: np.ndarray | None, what: str) -> fx.Node:
    rank = cv.rank(cv.node.input[0])
    if rank not in (None, 2):
        raise _Refuse(f"{what} of a rank-{rank} tensor (only [N, features])")
    n, k = weight_nk.shape
    lin = nn.Linear(k, n)
    return _weighted(cv, lin, x, weight_nk, bias_n)


def _gemm(cv, node, ins, a):
    if int(a.get("transA", 0)):
        raise _Refuse("transA 1 (the activation must be the left operand as is)")
    x = _tensor(ins[0], "the first operand A")
    b = _const(ins[1], "the second operand B").astype(np.float32)
    if b.ndim != 2:
        raise _Refuse(f"B of shape {list(b.shape)} (only a matrix)")
    w = (b if int(a.get("transB", 0)) else b.T) * np.float32(a.get("alpha", 1.0))
    n = w.shape[0]
    bias = None
    if len(ins) > 2 and ins[2] is not None:
        c = _const(ins[2], "C").astype(np.float32) * np.float32(a.get("beta", 1.0))
        if c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1):
            raise _Refuse(f"C of shape {list(c.shape)} (only a bias [N] or [1, N])")
        bias = np.broadcast_to(c.reshape(-1), (n,))
    return _linear(cv, x, w, bias, "Gemm")


def _matmul(cv, node, ins, a):
    x = _tensor(ins[0], "the first operand")
    b = _const(ins[1], "the second operand").astype(np.float32)
    if b.ndim != 2:
        raise _Refuse(f"a second operand of shape {list(b.shape)} (only a matrix)")
    return _linear(cv, x, b.T, None, "MatMul")


def _identity(cv, node, ins, a):
    return _tensor(ins[0], "the input")


def _shape_of(cv, node, ins, a):
    shape = cv.shape(node.input[0])
    if shape is None:
        raise _Refuse("Shape of a tensor whose dimensions shape inference does not fix")
    start, end = int(a.get("start", 0)), a.get("end")
    return np.array(shape[start:None if end is None else int(end)], dtype=np.int64)


def _dropout(cv, node, ins, a):
    if len(ins) > 2 and ins[2] is not None and bool(_const(ins[2], "training_mode").any()):
        raise _Refuse("training_mode true (only inference)")
    return _tensor(ins[0], "the input")


_HANDLERS = {
    "Conv": _conv, "BatchNormalization": _batch_norm, "Relu": _relu, "Clip": _clip,
    "MaxPool": _max_pool, "AveragePool": _avg_pool, "GlobalAveragePool": _global_avg_pool,
    "ReduceMean": _reduce_mean, "Add": _add, "Concat": _concat, "Flatten": _flatten,
    "Reshape": _reshape, "Squeeze": _squeeze, "Gemm": _gemm, "MatMul": _matmul,
    "Identity": _identity, "Dropout": _dropout, "Shape": _shape_of,
}
