"""Post-training fixed-point quantization of a lowered network (:mod:`golden.graph`) and its
integer forward pass through the crossbar golden model.

The method is :mod:`golden.fixedpoint`'s FlexPoint method, generalised from the demo CNN to any
:class:`~golden.graph.Graph`. Every tensor is an integer ``q`` with ``f`` fraction bits
(``q * 2**-f``); ranges come from a float run of the graph on calibration images.

Fusion. An activation (``clamp``: ReLU, ReLU6, hardtanh) whose input is a conv, linear or add
read by nothing else is fused into it: the producer's output range is calibrated *after* the
activation, and the activation is applied after the requantization -- ReLU by the datapath's
ReLU (``docs/arithmetic.md`` section 7), an upper bound ``hi`` (6 for ReLU6) as a digital
``min(q, round_half_even(hi * 2**f))`` in the output's fixed point, a lower bound ``lo != 0``
likewise with ``max``. (Rounding is monotone and maps 0 to 0, so applying them after the
rounding equals rounding the clamped value.) An activation that cannot be fused is the same
integer clamp on its input's fraction bits.

Per node (``f(x)`` is the fraction bits of tensor ``x``; "range" below is the output range
``[cfg.output_min, cfg.output_max]``, intersected with the crossbar input range
``[cfg.input_min, cfg.input_max]`` when the tensor feeds a crossbar layer, as in
``golden.fixedpoint``):

* ``input``: ``f = frac_bits_for(images)`` in the input range; images are ``to_fixed``.
* ``conv`` / ``linear`` (crossbar layers): inputs saturated to the input range; weight fraction
  bits ``fw`` = the most that fit the weight range, bias at ``fw + f(x)`` saturated to
  ``bias_bits``, output fraction bits from the calibrated (post-activation) range, and the
  FlexPoint shift ``fw + f(x) - fo`` brought into ``[shift_min, shift_max]`` by dropping weight
  (too large) or output (too small) fraction bits -- exactly ``golden.fixedpoint``'s rules.
  Every group of a grouped (e.g. depthwise) convolution is its own ``[Cin/g * kh * kw,
  Cout/g]`` matrix on its own crossbars (row tiles, output groups) run through
  :func:`golden.layer.matvec`; a plain conv is the same matrix with ``g = 1``. im2col rows are
  in ``unfold`` order, dilation included.
* ``add``: ``fo = min(f(a), f(b), fcal)`` with ``fcal`` the most fraction bits that hold the
  calibrated sum (post-activation) in range: the smaller-fraction operand's scale wins, and
  fewer bits still if the sum needs the room. Each operand is brought to ``fo`` by one
  :func:`golden.arith.round_shift` (a right shift rounding to nearest, ties toward +infinity,
  the datapath's rounding), the two are added exactly, the fused activation applied, and the
  sum saturated to the range.
* ``cat``: every input brought to ``min`` of their fraction bits the same way (no saturation
  needed: a right shift never leaves the range).
* ``maxpool``: exact on the integers (padding never wins), fraction bits unchanged.
* ``avgpool`` / ``adaptive_avgpool``: exact integer window sums, then ``fo`` from the
  calibrated range: the sum is scaled by ``2**(fo - fi)`` and divided by the window's element
  count rounding half up (:func:`golden.fixedpoint.div_round_half_up`; the same formula as
  :func:`golden.fixedpoint.global_avg_pool`, which this is for a 1x1 output), saturated to the
  range. The count is what PyTorch divides by (``count_include_pad``, ``divisor_override``).
* ``clamp`` (unfused), ``flatten``: integer, fraction bits unchanged.

Two options of :func:`quantize_graph` change these rules. ``tweaks`` (:class:`NodeTweak`,
chosen by the ADC-aware search of :mod:`golden.qadc`, none by default) moves a crossbar layer's
weight and output fraction bits and adds integer corrections to its weights and bias.
``input_offset`` (on by default) gives a crossbar layer whose input may be negative
(:func:`signed_tensors`) on an unsigned-input configuration the offset rule of
``docs/arithmetic.md`` ("Signed activations on unsigned inputs"): the input tensor is a signed
``input_bits`` integer in ``[-c, c - 1]``, ``c = 2**(input_bits - 1)`` (its producer's range, or
the image's, intersected with that), the crossbar is driven with ``x + c`` -- an absent tap
(padding, or a cropped pixel in :mod:`golden.study`) is the logical 0, driven as ``c`` -- and
the programmed bias is ``bias - c * sum of the output's weights``, exact at every position. A
network whose crossbar layers all read ReLU'd tensors and a non-negative image has no such
layer: the option changes nothing for it.

For the demo CNN these rules are ``golden.fixedpoint.quantize_democnn`` and
``quant_forward`` exactly (same fraction bits, same integers): its ``mean((2, 3))`` lowers to a
1x1 adaptive average pool whose fraction bits come from the pooled range in the input range.

Cycles (:func:`mapping_report`): every crossbar of a layer (row tiles x output groups x conv
groups) is its own ``Datapath`` and all work in parallel on one im2col vector, one vector every
``cfg.latency + 1`` clocks (``docs/arithmetic.md`` section 8), so a layer takes
``positions * (cfg.latency + 1)`` cycles per image, and layers run one after another; the
``serial_cycles`` column is the same work on a single time-shared crossbar
(``positions * crossbars * (cfg.latency + 1)``). Digital ops (pooling, adds) are not counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from arch.config import AccelConfig, ConfigError
from arch.geometry import ConvGeometry, Mapping
from golden import layer as _layer
from golden.arith import round_shift
from golden.fixedpoint import (QuantError, bias_range, flexpoint_shift,
                               frac_bits_for, round_half_even, to_fixed)
from golden.graph import Graph, Node, run_float

__all__ = ["QNode", "QGraph", "NodeTweak", "quantize_graph", "calibrate", "signed_tensors",
           "input_offset_of", "crossbar_input", "qforward", "qforward_all", "quant_inputs",
           "LayerMap", "layer_mappings", "NetReport", "net_report", "float_top1",
           "quant_top1", "model_report", "div_round_half_up_t", "avg_pool_int", "adaptive_avg_pool_int",
           "max_pool_int", "QuantError"]

_CHUNK_BYTES = 1 << 26      # cell memory of one golden.layer.matvec call (output groups are cut)


@dataclass(frozen=True, eq=False)
class QNode:
    """A node of the integer network.

    ``frac`` is the fraction bits of its output; ``lo``/``hi`` (``None`` = unbounded) the
    output saturation (``add``, pools) and, for a fused activation, ``act_lo``/``act_hi`` its
    integer bounds in the output's fixed point. Crossbar layers also carry the int64
    ``weight`` and ``bias``, ``w_frac``, ``x_frac``, ``shift`` and ``relu`` (the datapath's
    ReLU, set when the fused activation's lower bound is 0)."""
    name: str
    op: str
    inputs: tuple[str, ...]
    frac: int
    attrs: dict = field(default_factory=dict)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    w_frac: int = 0
    x_frac: int = 0
    shift: int = 0
    relu: bool = False
    act_lo: int | None = None
    act_hi: int | None = None
    lo: int | None = None
    hi: int | None = None
    shape: tuple[int, ...] = ()
    where: str = ""
    describe: str = ""
    weights_clipped: int = 0
    input_offset: int = 0


@dataclass(frozen=True, eq=False)
class NodeTweak:
    """Adjustments of one crossbar layer's formats (the ADC-aware search, :mod:`golden.qadc`):
    ``w_off`` weight and ``out_off`` output fraction bits above the no-saturation choice (more
    resolution, the largest values saturate), and ``bias_delta`` (int64 ``[Cout]``, at the
    accumulator's scale ``w_frac + x_frac``) added to the rounded bias before it is saturated
    to ``bias_bits``, and ``weight_delta`` (int64 ``[Cout]``) added to every quantized weight
    of an output before it is saturated to the weight range. The shift rule of the module
    docstring still applies after the offsets."""
    w_off: int = 0
    out_off: int = 0
    bias_delta: torch.Tensor | None = None
    weight_delta: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class QGraph:
    """A graph quantized to ``cfg``: ``nodes`` in order (the first is the input)."""
    cfg: AccelConfig
    nodes: tuple[QNode, ...]
    output: str
    graph: Graph

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})

    def __getitem__(self, name: str) -> QNode:
        return self._by_name[name]

    @property
    def input_frac(self) -> int:
        return self.nodes[0].frac

    @property
    def crossbar_nodes(self) -> tuple[QNode, ...]:
        return tuple(n for n in self.nodes if n.op in ("conv", "linear"))


# -- fusion and calibration --------------------------------------------------------------------

def _fuse(graph: Graph) -> list[tuple[Node, Node | None]]:
    """(node, fused activation or None) in order; a fused activation's name replaces its
    producer's, so consumers keep their inputs."""
    users = graph.users()
    fused_into: dict[str, Node] = {}
    for n in graph.nodes:
        if n.op == "clamp":
            p = graph[n.inputs[0]]
            if p.op in ("conv", "linear", "add") and users[p.name] == [n.name] \
                    and p.name not in fused_into:
                fused_into[p.name] = n
    skip = {a.name for a in fused_into.values()}
    return [(n, fused_into.get(n.name)) for n in graph.nodes if n.name not in skip]


def _feeds_crossbar(graph: Graph) -> set[str]:
    """Names of nodes whose value reaches a conv or linear layer (through any digital ops)."""
    users = graph.users()
    feeds: set[str] = set()
    for n in reversed(graph.nodes):
        for u in users[n.name]:
            if u == "<output>":
                continue
            if graph[u].op in ("conv", "linear") or u in feeds:
                feeds.add(n.name)
    return feeds


def calibrate(graph: Graph, images: torch.Tensor, batch: int = 64) -> dict[str, tuple[float, float]]:
    """Every node's float value range ``(min, max)`` over ``images`` (the calibration run)."""
    return _calibrate(graph, images, batch)


def _calibrate(graph: Graph, images: torch.Tensor, batch: int = 64) -> dict[str, tuple[float, float]]:
    ranges: dict[str, tuple[float, float]] = {}
    with torch.no_grad():
        for i in range(0, len(images), batch):
            env = run_float(graph, images[i:i + batch].to(torch.float32), record=True)
            for k, v in env.items():
                lo, hi = float(v.min()), float(v.max())
                if k in ranges:
                    lo, hi = min(lo, ranges[k][0]), max(hi, ranges[k][1])
                ranges[k] = (lo, hi)
    return ranges


def _fixed_bound(v: float | None, frac: int) -> int | None:
    if v is None:
        return None
    return int(round_half_even(torch.tensor(v * math.ldexp(1.0, frac), dtype=torch.float64)))


# -- quantization ------------------------------------------------------------------------------

def quantize_graph(cfg: AccelConfig, graph: Graph, calibration: torch.Tensor | None, *,
                   batch: int = 64, ranges: dict[str, tuple[float, float]] | None = None,
                   tweaks: dict[str, NodeTweak] | None = None,
                   input_offset: bool = True) -> QGraph:
    """Choose every tensor's fixed-point format for ``cfg`` from a float run on
    ``calibration`` images and quantize weights and biases (module docstring).

    ``ranges`` (:func:`calibrate`) replaces the calibration run; ``tweaks`` maps a crossbar
    layer's name to its :class:`NodeTweak`. With ``input_offset`` (the default) on a
    configuration with unsigned inputs, a crossbar layer whose input may be negative
    (:func:`signed_tensors`) takes the offset rule of ``docs/arithmetic.md`` ("Signed
    activations on unsigned inputs"): its input tensor is a signed ``input_bits`` integer
    ``x``, the crossbar is driven with ``x + 2**(input_bits - 1)`` (an absent tap as the
    logical 0) and the bias carries the exact correction. ``input_offset=False`` saturates
    such an input at 0 (the plain rule).

    Raises
    ------
    QuantError
        If a layer's shift cannot be brought into the configuration's range, or an input
        offset's bias correction does not fit ``bias_bits``.
    """
    if ranges is None:
        ranges = _calibrate(graph, calibration, batch)
    tweaks = tweaks or {}
    feeds = _feeds_crossbar(graph)
    offset = input_offset_of(cfg) if input_offset else 0
    signed = signed_tensors(graph, ranges) if offset else set()
    in_range = (cfg.input_min, cfg.input_max)
    in_signed = (-offset, offset - 1)
    out_full = (cfg.output_min, cfg.output_max)
    out_feed = (max(cfg.output_min, cfg.input_min), min(cfg.output_max, cfg.input_max))
    out_feed_signed = (max(cfg.output_min, -offset), min(cfg.output_max, offset - 1))
    frac: dict[str, int] = {}
    qnodes: list[QNode] = []
    for n, act in _fuse(graph):
        name = act.name if act is not None else n.name
        rng = ranges[name]
        alo = act.attrs["lo"] if act is not None else None
        ahi = act.attrs["hi"] if act is not None else None
        common = dict(name=name, op=n.op, inputs=n.inputs, attrs=n.attrs, shape=n.shape,
                      where=n.where, describe=n.describe() + (f" + {act.describe()}" if act else ""))
        if n.op == "input":
            rin = in_signed if name in signed else in_range
            f = frac_bits_for(rng[0], rng[1], *rin)
            q = QNode(frac=f, lo=rin[0], hi=rin[1], **common)
        elif n.op in ("conv", "linear"):
            feed = out_feed_signed if name in signed else out_feed
            out_range = feed if name in feeds else out_full
            x_off = offset if n.inputs[0] in signed else 0
            q = _quantize_crossbar(cfg, n, frac[n.inputs[0]], rng, out_range, alo, ahi, common,
                                   tweaks.get(name, NodeTweak()), x_off)
        elif n.op == "add":
            dig = (in_signed if name in signed else in_range) if name in feeds else out_full
            fcal = frac_bits_for(rng[0], rng[1], *dig)
            f = min(frac[n.inputs[0]], frac[n.inputs[1]], fcal)
            q = QNode(frac=f, lo=dig[0], hi=dig[1], act_lo=_fixed_bound(alo, f),
                      act_hi=_fixed_bound(ahi, f), **common)
        elif n.op == "cat":
            q = QNode(frac=min(frac[i] for i in n.inputs), **common)
        elif n.op in ("avgpool", "adaptive_avgpool"):
            dig = (in_signed if name in signed else in_range) if name in feeds else out_full
            f = frac_bits_for(rng[0], rng[1], *dig)
            q = QNode(frac=f, lo=dig[0], hi=dig[1], **common)
        elif n.op == "clamp":
            f = frac[n.inputs[0]]
            q = QNode(frac=f, act_lo=_fixed_bound(n.attrs["lo"], f),
                      act_hi=_fixed_bound(n.attrs["hi"], f), **common)
        else:   # maxpool, flatten
            q = QNode(frac=frac[n.inputs[0]], **common)
        frac[name] = q.frac
        qnodes.append(q)
    return QGraph(cfg, tuple(qnodes), graph.output, graph)


def input_offset_of(cfg: AccelConfig) -> int:
    """The input offset ``c = 2**(input_bits - 1)`` of the offset rule on a configuration with
    unsigned inputs (0 when inputs are signed: the crossbar takes them as they are)."""
    return 0 if cfg.input_signed else 1 << (cfg.input_bits - 1)


def signed_tensors(graph: Graph, ranges: dict[str, tuple[float, float]]) -> set[str]:
    """Names of the tensors (after fusion: a fused activation's name) that may be negative:
    the input when its calibrated minimum is negative; a conv, linear or add unless a fused
    activation bounds it below at ``lo >= 0`` (ReLU, ReLU6); an unfused clamp unless
    ``lo >= 0``, else as its input; pools and flatten as their input; a concatenation if any
    input is. A static rule (the network's structure), so unseen data cannot break it."""
    signed: set[str] = set()
    for n, act in _fuse(graph):
        name = act.name if act is not None else n.name
        if n.op == "input":
            neg = ranges[name][0] < 0
        elif n.op in ("conv", "linear", "add"):
            neg = act is None or act.attrs["lo"] is None or act.attrs["lo"] < 0
        elif n.op == "clamp":
            lo = n.attrs["lo"]
            neg = (lo is None or lo < 0) and n.inputs[0] in signed
        else:
            neg = any(i in signed for i in n.inputs)
        if neg:
            signed.add(name)
    return signed


def _quantize_crossbar(cfg, n: Node, x_frac, rng, out_range, alo, ahi, common,
                       tweak: NodeTweak = NodeTweak(), x_off: int = 0) -> QNode:
    wlo, whi = cfg.weight_min, cfg.weight_max
    w = n.weight.detach().to(torch.float64)
    w_frac = frac_bits_for(float(w.min()), float(w.max()), wlo, whi) + tweak.w_off
    out_frac = frac_bits_for(rng[0], rng[1], *out_range) + tweak.out_off
    sh = w_frac + x_frac - out_frac
    if sh > cfg.shift_max:        # fewer weight fraction bits: coarser weights, same range
        w_frac -= sh - cfg.shift_max
    elif sh < cfg.shift_min:      # fewer output fraction bits: coarser outputs, same range
        out_frac -= cfg.shift_min - sh
    try:
        shift = flexpoint_shift(cfg, w_frac, x_frac, out_frac)
    except QuantError as exc:
        raise QuantError(f"layer '{n.name}' ({n.describe()}): {exc}") from None
    qw = to_fixed(w, w_frac, wlo, whi)
    clipped = int((round_half_even(w * math.ldexp(1.0, w_frac)) != qw).sum())
    if tweak.weight_delta is not None:
        d = tweak.weight_delta.to(torch.int64).view(-1, *([1] * (qw.dim() - 1)))
        qw = torch.clamp(qw + d, wlo, whi)
    blo, bhi = bias_range(cfg)
    if tweak.bias_delta is None and not x_off:
        qb = to_fixed(n.bias.detach(), w_frac + x_frac, blo, bhi)
    else:
        qb = to_fixed(n.bias.detach(), w_frac + x_frac, -(1 << 62), 1 << 62)
        if tweak.bias_delta is not None:
            qb = qb + tweak.bias_delta.to(torch.int64)
        qb = torch.clamp(qb, blo, bhi)
        if x_off:
            # the offset rule: sum_k w*(x + c) + (b - c*sum_k w) = sum_k w*x + b, exactly
            hw = qb - x_off * qw.flatten(1).sum(1)
            if int(hw.min()) < blo or int(hw.max()) > bhi:
                raise QuantError(
                    f"layer '{n.name}' ({n.describe()}): the input offset's bias correction "
                    f"(bias - {x_off} * sum of weights) reaches [{int(hw.min())}, "
                    f"{int(hw.max())}], outside the {cfg.bias_bits}-bit bias range "
                    f"[{blo}, {bhi}] of configuration '{cfg.name}'")
            qb = hw
    relu = alo == 0.0
    return QNode(frac=out_frac, weight=qw, bias=qb, w_frac=w_frac, x_frac=x_frac, shift=shift,
                 relu=relu, act_lo=None if relu else _fixed_bound(alo, out_frac),
                 act_hi=_fixed_bound(ahi, out_frac), weights_clipped=clipped,
                 input_offset=x_off, **common)


# -- integer helpers ---------------------------------------------------------------------------

def div_round_half_up_t(s: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Elementwise ``s / n`` rounded to nearest, ties toward +infinity, for positive integer
    tensors ``n``: ``floor((2s + n) / 2n)`` (:func:`golden.fixedpoint.div_round_half_up` with a
    per-element divisor).

    >>> div_round_half_up_t(torch.tensor([5, -5, 7]), torch.tensor([4, 4, 2])).tolist()
    [1, -1, 4]
    """
    s = s.to(torch.int64)
    n = n.to(torch.int64)
    return torch.div(2 * s + n, 2 * n, rounding_mode="floor")


def _rescale_divide(s: torch.Tensor, n: torch.Tensor, fi: int, fo: int) -> torch.Tensor:
    """``s * 2**(fo - fi) / n`` rounded half up, as golden.fixedpoint.global_avg_pool does."""
    if fo >= fi:
        return div_round_half_up_t(s << (fo - fi), n)
    return div_round_half_up_t(s, n << (fi - fo))


def max_pool_int(x: torch.Tensor, a: dict) -> torch.Tensor:
    """Max pooling of integers (exact: float64 holds every value below 2**53; padding is
    -infinity and never wins)."""
    return F.max_pool2d(x.to(torch.float64), a["kernel"], a["stride"], a["padding"],
                        a["dilation"], ceil_mode=a["ceil_mode"]).to(torch.int64)


def _axis_counts(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> torch.Tensor:
    counts = []
    for i in range(out):
        start = i * s - p
        end = min(start + k, size + p)
        if not include_pad:
            start, end = max(start, 0), min(end, size)
        counts.append(end - start)
    return torch.tensor(counts, dtype=torch.int64)


def avg_pool_int(x: torch.Tensor, a: dict, fi: int, fo: int) -> torch.Tensor:
    """``avg_pool2d`` of integers with ``fi`` fraction bits as integers with ``fo``: exact
    window sums (float64, exact below 2**53), divided as PyTorch does (``count_include_pad``,
    ``divisor_override``) rounding half up after rescaling (:func:`_rescale_divide`)."""
    sums = F.avg_pool2d(x.to(torch.float64), a["kernel"], a["stride"], a["padding"],
                        a["ceil_mode"], True, 1).to(torch.int64)
    ho, wo = sums.shape[-2:]
    if a["divisor_override"]:
        n = torch.full((ho, wo), int(a["divisor_override"]), dtype=torch.int64)
    else:
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        inc = a["count_include_pad"]
        n = (_axis_counts(x.shape[-2], ho, kh, sh, ph, inc)[:, None]
             * _axis_counts(x.shape[-1], wo, kw, sw, pw, inc)[None, :])
    return _rescale_divide(sums, n, fi, fo)


def adaptive_avg_pool_int(x: torch.Tensor, size: tuple[int, int], fi: int, fo: int) -> torch.Tensor:
    """``adaptive_avg_pool2d`` of integers: window ``i`` of an axis of length ``L`` pooled to
    ``O`` is ``[floor(i*L/O), ceil((i+1)*L/O))``; exact sums, divided like
    :func:`avg_pool_int`."""
    H, W = x.shape[-2:]
    oh, ow = size
    x = x.to(torch.int64)
    out = torch.empty(*x.shape[:-2], oh, ow, dtype=torch.int64)
    for i in range(oh):
        r0, r1 = (i * H) // oh, -(-(i + 1) * H // oh)
        for j in range(ow):
            c0, c1 = (j * W) // ow, -(-(j + 1) * W // ow)
            s = x[..., r0:r1, c0:c1].sum(dim=(-2, -1))
            out[..., i, j] = _rescale_divide(s, torch.tensor((r1 - r0) * (c1 - c0)), fi, fo)
    return out


def _clamp(v: torch.Tensor, lo: int | None, hi: int | None) -> torch.Tensor:
    if lo is None and hi is None:
        return v
    return torch.clamp(v, lo, hi)


# -- crossbar layers ---------------------------------------------------------------------------

def _matvec_chunked(cfg: AccelConfig, x: torch.Tensor, wmat: torch.Tensor, bias: torch.Tensor,
                    shift: int, relu: bool) -> torch.Tensor:
    """:func:`golden.layer.matvec` on ``x [B, K]``, ``wmat [K, N]``, cut into runs of whole
    output groups (``cfg.outputs`` columns) so that the encoded cells stay small. Output groups
    are separate crossbars, so the cut changes nothing."""
    K, N = wmat.shape
    padded_rows = -(-K // cfg.rows) * cfg.rows
    per_group = padded_rows * cfg.outputs * cfg.slices * 8
    step = max(1, _CHUNK_BYTES // per_group) * cfg.outputs
    if step >= N:
        return _layer.matvec(cfg, x, wmat, bias, shift=shift, relu=relu)
    return torch.cat([_layer.matvec(cfg, x, wmat[:, c:c + step], bias[c:c + step],
                                    shift=shift, relu=relu) for c in range(0, N, step)], dim=1)


def crossbar_input(cfg: AccelConfig, q: QNode, x: torch.Tensor) -> torch.Tensor:
    """A crossbar layer's input tensor saturated to what it may hold: the input range, or
    with the offset rule the signed ``input_bits`` range (the offset is added to the im2col
    rows, padding taps included, by :func:`_conv_int`)."""
    if q.input_offset:
        return torch.clamp(x, -q.input_offset, q.input_offset - 1)
    return torch.clamp(x, cfg.input_min, cfg.input_max)


def _conv_int(cfg: AccelConfig, q: QNode, x: torch.Tensor) -> torch.Tensor:
    a = q.attrs
    B, C, H, W = x.shape
    cout, cin_g, kh, kw = q.weight.shape
    g = a["groups"]
    cout_g = cout // g
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    ftype = torch.float32 if cfg.input_bits <= 24 else torch.float64   # unfold is exact
    outs = []
    for gi in range(g):
        xs = x[:, gi * cin_g:(gi + 1) * cin_g].to(ftype)
        patches = F.unfold(xs, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
        patches = patches.transpose(1, 2).reshape(B * ho * wo, -1).to(torch.int64)
        if q.input_offset:      # a padding tap is the signed value 0, driven as 0 + c
            patches = patches + q.input_offset
        wg = q.weight[gi * cout_g:(gi + 1) * cout_g].reshape(cout_g, -1).t()
        outs.append(_matvec_chunked(cfg, patches, wg, q.bias[gi * cout_g:(gi + 1) * cout_g],
                                    q.shift, q.relu))
    out = torch.cat(outs, dim=1)
    return out.view(B, ho, wo, cout).permute(0, 3, 1, 2).contiguous()


def _run_node(qg: QGraph, q: QNode, ins: list[torch.Tensor], fracs: list[int]) -> torch.Tensor:
    cfg = qg.cfg
    if q.op in ("conv", "linear"):
        x = crossbar_input(cfg, q, ins[0])
        if q.op == "conv":
            y = _conv_int(cfg, q, x)
        else:
            y = _matvec_chunked(cfg, x + q.input_offset, q.weight.t(), q.bias, q.shift, q.relu)
        return _clamp(y, q.act_lo, q.act_hi)
    if q.op == "add":
        s = round_shift(ins[0], fracs[0] - q.frac) + round_shift(ins[1], fracs[1] - q.frac)
        return _clamp(_clamp(s, q.act_lo, q.act_hi), q.lo, q.hi)
    if q.op == "cat":
        return torch.cat([round_shift(v, f - q.frac) for v, f in zip(ins, fracs)], dim=1)
    if q.op == "maxpool":
        return max_pool_int(ins[0], q.attrs)
    if q.op == "avgpool":
        return _clamp(avg_pool_int(ins[0], q.attrs, fracs[0], q.frac), q.lo, q.hi)
    if q.op == "adaptive_avgpool":
        return _clamp(adaptive_avg_pool_int(ins[0], q.attrs["output_size"], fracs[0], q.frac),
                      q.lo, q.hi)
    if q.op == "clamp":
        return _clamp(ins[0], q.act_lo, q.act_hi)
    if q.op == "flatten":
        return torch.flatten(ins[0], 1)
    raise AssertionError(q.op)


# -- execution ---------------------------------------------------------------------------------

def quant_inputs(qg: QGraph, images: torch.Tensor) -> torch.Tensor:
    """The quantized images: ``to_fixed(images, input_frac)`` in the input range."""
    first = qg.nodes[0]
    return to_fixed(images, qg.input_frac, first.lo, first.hi)


def qforward_all(qg: QGraph, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every node's integer output (int64) for one batch of float ``images``."""
    env: dict[str, torch.Tensor] = {}
    for q in qg.nodes:
        if q.op == "input":
            env[q.name] = quant_inputs(qg, images)
            continue
        env[q.name] = _run_node(qg, q, [env[i] for i in q.inputs],
                                [qg[i].frac for i in q.inputs])
    return env


def qforward(qg: QGraph, images: torch.Tensor, *, batch: int = 64,
             progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """The integer output (int64, ``qg[qg.output].frac`` fraction bits) of the quantized
    network on float ``images``, in batches; the output saturated to the output range.
    ``progress(done)`` is called with the images finished after each batch."""
    cfg = qg.cfg
    outs = []
    for lo in range(0, len(images), batch):
        env = qforward_all(qg, images[lo:lo + batch])
        outs.append(torch.clamp(env[qg.output], cfg.output_min, cfg.output_max))
        if progress is not None:
            progress(min(lo + batch, len(images)))
    return torch.cat(outs)


def quant_top1(qg: QGraph, images: torch.Tensor, labels: torch.Tensor, **kwargs) -> float:
    """Top-1 accuracy of the quantized network (ties go to the lowest class)."""
    if not len(labels):
        return 0.0
    return float((qforward(qg, images, **kwargs).argmax(1) == labels).float().mean())


def float_top1(graph: Graph, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy of the float graph (batch norm folded)."""
    if not len(labels):
        return 0.0
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out = run_float(graph, images[i:i + batch].to(torch.float32))
            correct += int((out.argmax(1) == labels[i:i + batch]).sum())
    return correct / len(labels)


# -- mapping and report ------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerMap:
    """One crossbar layer on ``cfg``'s crossbars.

    ``geometry`` is the layer of one conv group (``arch.geometry.ConvGeometry``; a
    non-square kernel or stride, or a dilated one, is given as the equivalent ``linear`` of
    its im2col rows, which maps identically); ``mapping`` is its ``Mapping``;
    ``conv_groups`` copies of it make the layer (depthwise: one per channel)."""
    name: str
    describe: str
    geometry: ConvGeometry
    mapping: Mapping
    conv_groups: int
    positions: int
    cycles: int
    serial_cycles: int

    @property
    def crossbars(self) -> int:
        return self.conv_groups * self.mapping.crossbars

    @property
    def used_cells(self) -> int:
        """Weights actually stored (rows x outputs of every group)."""
        return self.conv_groups * self.geometry.rows * self.geometry.out_channels

    @property
    def wasted_rows(self) -> int:
        """Crossbar rows that hold none of the layer's weights, summed over its crossbars:
        ``conv_groups * output_groups * (row_tiles * cfg.rows - rows)`` (the zero padding
        of the last row tile; a depthwise 3x3 group uses 9 rows of its crossbar)."""
        m = self.mapping
        return self.conv_groups * m.groups * (m.padded_rows - self.geometry.rows)

    @property
    def utilization(self) -> float:
        """Used weight cells over the cells of the layer's crossbars (``rows * outputs``)."""
        return self.used_cells / (self.crossbars * self.mapping.cfg.rows
                                  * self.mapping.cfg.outputs)


def _geometry(n, in_shape) -> ConvGeometry:
    if n.op == "linear":
        return ConvGeometry.linear(int(n.weight.shape[1]), int(n.weight.shape[0]))
    a = n.attrs
    cout, cin_g, kh, kw = n.weight.shape
    g = a["groups"]
    square = (kh == kw and a["stride"][0] == a["stride"][1]
              and a["padding"][0] == a["padding"][1] and a["dilation"] == (1, 1))
    if square:
        try:
            return ConvGeometry(int(cin_g), int(cout // g), int(kh), a["stride"][0],
                                a["padding"][0], int(in_shape[-2]), int(in_shape[-1]))
        except ConfigError:
            pass
    return ConvGeometry.linear(int(cin_g * kh * kw), int(cout // g))


def layer_mappings(qg: QGraph) -> list[LayerMap]:
    """Crossbars and cycles of every crossbar layer (module docstring for the formula)."""
    cfg = qg.cfg
    per_vector = cfg.latency + 1
    out = []
    for q in qg.crossbar_nodes:
        in_shape = qg[q.inputs[0]].shape
        geom = _geometry(q, in_shape)
        m = Mapping(cfg, geom)
        g = q.attrs.get("groups", 1) if q.op == "conv" else 1
        positions = q.shape[-2] * q.shape[-1] if q.op == "conv" else 1
        xbars = g * m.crossbars
        out.append(LayerMap(q.name, q.describe, geom, m, g, positions, positions * per_vector,
                            positions * xbars * per_vector))
    return out


@dataclass(frozen=True)
class NetReport:
    """What :func:`net_report` returns."""
    config: str
    source: str
    layers: tuple[LayerMap, ...]
    float_top1: float
    quant_top1: float
    images: int
    seconds: float

    @property
    def crossbars(self) -> int:
        return sum(m.crossbars for m in self.layers)

    @property
    def cycles(self) -> int:
        return sum(m.cycles for m in self.layers)

    def table(self) -> str:
        """A plain-text table, one line per crossbar layer, and the totals."""
        lines = [f"{'layer':<28} {'shape':<42} {'grp':>4} {'tiles':>5} {'outg':>4} "
                 f"{'xbars':>6} {'util':>5} {'positions':>9} {'cycles':>9}"]
        for m in self.layers:
            lines.append(f"{m.name[:28]:<28} {m.describe[:42]:<42} {m.conv_groups:>4} "
                         f"{m.mapping.row_tiles:>5} {m.mapping.groups:>4} {m.crossbars:>6} "
                         f"{m.utilization:>5.0%} {m.positions:>9} {m.cycles:>9}")
        lines.append(f"total: {self.crossbars} crossbars, {self.cycles} cycles per image; "
                     f"top-1 float {self.float_top1:.2%}, quantized ({self.config}) "
                     f"{self.quant_top1:.2%} on {self.images} images")
        return "\n".join(lines)


def net_report(qg: QGraph, images: torch.Tensor, labels: torch.Tensor, *,
               batch: int = 64) -> NetReport:
    """Per-layer crossbar mapping and cycles, and float vs quantized top-1 on ``images``."""
    start = time.perf_counter()
    ft = float_top1(qg.graph, images, labels)
    qt = quant_top1(qg, images, labels, batch=batch)
    return NetReport(qg.cfg.name, qg.graph.source, tuple(layer_mappings(qg)), ft, qt,
                     len(labels), time.perf_counter() - start)


def model_report(model, cfg: AccelConfig, images: torch.Tensor, labels: torch.Tensor, *,
                 calibration: torch.Tensor | None = None, batch: int = 64) -> NetReport:
    """Lower, quantize and run ``model`` in one call: the entry point for ``--model``.

    Parameters
    ----------
    model : str or nn.Module
        ``democnn``, ``zoo:<name>`` or a module (:func:`golden.graph.load_model`).
    cfg : AccelConfig
    images, labels : torch.Tensor
        Float images ``[N, C, H, W]`` and int64 labels for the top-1 figures.
    calibration : torch.Tensor, optional
        Float images for the ranges; default :func:`golden.fixedpoint.calibration_images`
        (the cluttered digits, 1x32x32).

    Raises
    ------
    golden.graph.UnsupportedGraphError, QuantError
        (both ``ValueError``) for a model the crossbar path cannot take.
    """
    from golden.fixedpoint import calibration_images
    from golden.graph import load_model, lower
    if calibration is None:
        calibration = calibration_images()
    qg = quantize_graph(cfg, lower(load_model(model), calibration[:1]), calibration, batch=batch)
    return net_report(qg, images, labels, batch=batch)
