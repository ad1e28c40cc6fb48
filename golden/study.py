"""The AQuA crop study: every image under all 16 crop vectors, the oracle, and energy.

For a batch of ``B`` images the 16 crops run as one batch of ``16 * B`` through the golden
quantized network (:func:`crop_forward`). A crop applies from conv layer ``from_layer`` on: that
layer's input keeps ``kept_window(crop, fraction, H, W)``, every later conv layer the window
scaled proportionally (:func:`golden.crop.scale_window`), exactly as
:func:`golden.crop.cropped_conv2d`: cropped activations are zero and outputs whose receptive
field lies wholly in the cropped area are not computed and read as zero. Only the computed
output positions of each crop are streamed through the crossbar model (one
:func:`golden.layer.matvec` call per layer for all crops), so a crop's work is really saved;
the result is bit-identical to :func:`~golden.crop.cropped_conv2d` (tests hold it so).

Energy of an image under a crop is the sum over the crossbar layers of
``golden.energy_model.conv_layer_energy`` with the layer's kept window and its integer input
activations; the classifier counts as a 1x1 "conv" on a 1x1 map (``kernel = height = width =
1``), uncropped.

**Any network** (a :class:`golden.qnet.QGraph`, the fixed-point lowering of a user's or a zoo
model): the same rules on the graph (:func:`graph_geometry`, :func:`crop_forward`). The crossbar
layers are the graph's ``conv`` and ``linear`` nodes in topological order; layer
``from_layer``'s input map is the base of the crop, and every crossbar layer's input keeps that
window scaled to its own map (:func:`crop_plan`, as above): windows follow the map sizes, so
through a pool or a strided conv they scale by the stride, and the two operands of a residual
add (or the inputs of a concatenation), which have one map size, carry one window by
construction. Each crossbar layer masks its input to its window and computes only the outputs
whose receptive field (its taps, dilation included) meets the window (:func:`output_mask`);
the others are 0. Digital nodes (adds, pools, concatenations, clamps) run as
:func:`golden.qnet.qforward` runs them, on whole maps, and their energy is not counted. A
grouped (depthwise) conv is ``groups`` layers of ``Cin/groups -> Cout/groups`` on their own
crossbars: its energy is the sum over the groups, each with its own input channels.

A crossbar layer with the input offset rule (``golden.qnet``, ``docs/arithmetic.md`` "Signed
activations on unsigned inputs") is cropped on its logical (signed) input: a cropped pixel is
the logical 0 and, like a padding tap, is driven as the offset ``c``, so the layer's one
corrected bias is exact at every computed position; its energy is that of the driven codes
(:func:`crop_energy` with :func:`input_offsets`).

**Oracle.** An image *tolerates* crop ``c`` at top-k if the crop keeps it correct at top-k or it
was not correct uncropped (so choosing any tolerated crop never lowers top-k accuracy). The
oracle takes the tolerated crop of least energy (crop 0, uncropped, is always tolerated).
Top-k ranks break ties in the integer logits toward the lower class, as ``argmax`` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from arch.config import AccelConfig
from arch.geometry import ConvGeometry

from .crop import CROP_VECTORS, Window, kept_window, output_window, scale_window
from .fixedpoint import QuantNet, global_avg_pool, quant_inputs, saturate
from .layer import matvec

__all__ = ["democnn_geometry", "graph_geometry", "crop_plan", "window_masks", "crops_conv2d",
           "crops_conv_node", "output_mask", "input_offsets", "crop_forward", "crop_energy",
           "StudyArrays", "run_crops", "true_ranks", "tolerated", "oracle_choice",
           "summarize_choice", "first_layer_cases", "NCROPS", "layers_forward"]

NCROPS = len(CROP_VECTORS)
_PATCH_BYTES = 1 << 27      #: im2col patches of one crops_conv_node step (maps are cut)


def democnn_geometry(net: QuantNet, height: int = 32, width: int = 32) -> list[ConvGeometry]:
    """The crossbar layers of the quantized demo CNN: its convs, then the classifier."""
    geoms, h, w = [], height, width
    for q in net.layers:
        if q.kind == "conv":
            co, ci, k, _ = q.weight.shape
            g = ConvGeometry(ci, co, k, q.stride, q.padding, h, w)
            h, w = g.out_height, g.out_width
        else:
            g = ConvGeometry.linear(q.weight.shape[1], q.weight.shape[0])
        geoms.append(g)
    return geoms


def graph_geometry(qg) -> tuple[list[ConvGeometry], list[int], list[str]]:
    """The crossbar layers of a quantized graph (:class:`golden.qnet.QGraph`), in order:
    ``(geometries of one conv group, conv groups, node names)``; a ``linear`` node is a 1x1
    "conv" on a 1x1 map.

    Raises
    ------
    golden.graph.UnsupportedGraphError
        For a conv the energy model cannot take (non-square kernel, unequal stride or padding,
        dilation).
    """
    from golden.graph import UnsupportedGraphError

    geoms, groups, names = [], [], []
    for q in qg.crossbar_nodes:
        if q.op == "linear":
            geoms.append(ConvGeometry.linear(int(q.weight.shape[1]), int(q.weight.shape[0])))
            groups.append(1)
        else:
            a = q.attrs
            cout, cin_g, kh, kw = (int(v) for v in q.weight.shape)
            H, W = qg[q.inputs[0]].shape[-2:]
            if not (kh == kw and a["stride"][0] == a["stride"][1]
                    and a["padding"][0] == a["padding"][1] and a["dilation"] == (1, 1)):
                raise UnsupportedGraphError(
                    f"layer '{q.name}' ({q.describe}) in {q.where}: the crop study's energy "
                    f"model takes square kernels, equal strides and padding, no dilation")
            g = int(a["groups"])
            geoms.append(ConvGeometry(cin_g, cout // g, kh, a["stride"][0], a["padding"][0],
                                      int(H), int(W)))
            groups.append(g)
        names.append(q.name)
    return geoms, groups, names


def crop_plan(geoms: Sequence[ConvGeometry], fraction, from_layer: int = 0
              ) -> list[list[Window | None]]:
    """``plan[c][l]``: the kept window of crop ``c`` on the input of crossbar layer ``l`` (None
    = uncropped). Layers before ``from_layer`` and 1x1-map layers (the classifier) are not
    cropped; ``from_layer`` keeps ``kept_window`` of its map, later layers that window scaled.

    Raises
    ------
    ValueError
        If ``from_layer`` is not a cropable (spatial) layer.
    """
    spatial = [i for i, g in enumerate(geoms) if g.height * g.width > 1]
    if from_layer not in spatial:
        raise ValueError(f"from_layer must be one of the conv layers {spatial}, "
                         f"not {from_layer}")
    base = geoms[from_layer]
    plan = []
    for c in range(NCROPS):
        w0 = kept_window(c, fraction, base.height, base.width)
        plan.append([None if i < from_layer or i not in spatial or c == 0 else
                     scale_window(w0, base.height, base.width, g.height, g.width)
                     for i, g in enumerate(geoms)])
    return plan


def window_masks(windows: Sequence[Window | None], H: int, W: int) -> torch.Tensor:
    """Bool ``[len(windows), H, W]``: True inside each window (everywhere for None)."""
    m = torch.zeros(len(windows), H, W, dtype=torch.bool)
    for i, w in enumerate(windows):
        if w is None:
            m[i] = True
        else:
            m[i, w[0]:w[1], w[2]:w[3]] = True
    return m


def _out_windows(g: ConvGeometry, windows):
    return [None if w is None else output_window(w, g.height, g.width, g.kernel, g.stride,
                                                 g.padding) for w in windows]


def crops_conv2d(cfg: AccelConfig, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 *, stride: int, padding: int, shift: int, relu: bool,
                 windows: Sequence[Window | None]) -> torch.Tensor:
    """:func:`golden.crop.cropped_conv2d` of ``x [C, B, Cin, H, W]`` where crop ``c`` has its
    own window ``windows[c]``; only computed output positions go through the crossbar model,
    all crops in one :func:`golden.layer.matvec` call. Returns int64 ``[C, B, Cout, Ho, Wo]``."""
    C, B, cin, H, W = x.shape
    cout, _, k, _ = weight.shape
    g = ConvGeometry(cin, cout, k, stride, padding, H, W)
    ho, wo = g.out_height, g.out_width
    x = x * window_masks(windows, H, W)[:, None, None].to(x.dtype)
    patches = F.unfold(x.reshape(C * B, cin, H, W).to(torch.float32), k, padding=padding,
                       stride=stride)                                      # [CB, K, L]
    patches = patches.view(C, B, cin * k * k, ho * wo).transpose(2, 3)     # [C, B, L, K]
    keep = window_masks(_out_windows(g, windows), ho, wo).view(C, 1, ho * wo).expand(C, B, -1)
    rows = patches[keep].to(torch.int64)                                   # [N, K]
    out = torch.zeros(C, B, ho * wo, cout, dtype=torch.int64)
    if rows.shape[0]:
        out[keep] = matvec(cfg, rows, weight.reshape(cout, -1).t(), bias, shift=shift,
                           relu=relu)
    return out.view(C, B, ho, wo, cout).permute(0, 1, 4, 2, 3)


def _axis_keep(lo: int, hi: int, n_out: int, k: int, s: int, p: int, d: int) -> torch.Tensor:
    """Bool ``[n_out]``: outputs with a tap ``o*s - p + d*j`` (``j < k``) in ``[lo, hi)``."""
    taps = torch.arange(n_out)[:, None] * s - p + d * torch.arange(k)[None]
    return ((taps >= lo) & (taps < hi)).any(1)


def output_mask(window: Window | None, H: int, W: int, kernel, stride, padding,
                dilation=(1, 1)) -> torch.Tensor:
    """Bool ``[Ho, Wo]``: the outputs of a conv (pairs ``kernel``, ``stride``, ``padding``,
    ``dilation``) on an ``H x W`` map computed under ``window`` -- those with a tap in the
    window; all for None. Without dilation it is :func:`golden.crop.output_window`'s
    rectangle."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if window is None:
        return torch.ones(ho, wo, dtype=torch.bool)
    r0, r1, c0, c1 = window
    return (_axis_keep(r0, r1, ho, kh, sh, ph, dh)[:, None]
            & _axis_keep(c0, c1, wo, kw, sw, pw, dw)[None, :])


def crops_conv_node(cfg: AccelConfig, q, x: torch.Tensor,
                    windows: Sequence[Window | None]) -> torch.Tensor:
    """A quantized graph's conv node (:class:`golden.qnet.QNode`) on ``x [C, B, Cin, H, W]``
    (saturated as :func:`golden.qnet.crossbar_input` does) where crop ``c`` keeps
    ``windows[c]``: the input outside the window is 0, only the outputs of
    :func:`output_mask` go through the crossbar model (each conv group its own matrix, one
    :func:`golden.qnet` matvec call per group for all crops), the others are 0. With the
    input offset rule (``q.input_offset = c``) ``x`` is the logical signed input and every
    im2col row is driven with ``x + c``, a padding or cropped tap (the logical 0) as ``c``
    (``docs/arithmetic.md``, "Signed activations on unsigned inputs"). Returns int64
    ``[C, B, Cout, Ho, Wo]`` before the fused activation's digital clamp."""
    from golden.qnet import _matvec_chunked

    a = q.attrs
    C, B, cin, H, W = x.shape
    cout, cin_g, kh, kw = q.weight.shape
    g = a["groups"]
    cout_g = cout // g
    masks = torch.stack([output_mask(w, H, W, (kh, kw), a["stride"], a["padding"],
                                     a["dilation"]) for w in windows])      # [C, Ho, Wo]
    ho, wo = masks.shape[-2:]
    if any(w is not None for w in windows):
        x = x * window_masks(windows, H, W)[:, None, None].to(x.dtype)
    L = ho * wo
    keep = masks.view(C, 1, L).expand(C, B, -1).reshape(C * B, L)
    xf = x.reshape(C * B, cin, H, W)
    ftype = torch.float32 if cfg.input_bits <= 24 else torch.float64     # unfold is exact
    out = torch.zeros(C * B, L, cout, dtype=torch.int64)
    # maps of the C*B (crop, image) pairs in runs whose im2col patches stay small
    step = max(1, _PATCH_BYTES // (cin_g * kh * kw * L * 16))
    for lo in range(0, C * B, step):
        kp = keep[lo:lo + step]
        for gi in range(g):
            xs = xf[lo:lo + step, gi * cin_g:(gi + 1) * cin_g].to(ftype)
            patches = F.unfold(xs, (kh, kw), dilation=a["dilation"], padding=a["padding"],
                               stride=a["stride"]).transpose(1, 2)          # [n, L, K]
            rows = patches[kp].to(torch.int64) + q.input_offset    # absent taps: 0 + c
            if rows.shape[0]:
                sl = slice(gi * cout_g, (gi + 1) * cout_g)
                wg = q.weight[sl].reshape(cout_g, -1).t()
                out[lo:lo + step, :, sl][kp] = _matvec_chunked(cfg, rows, wg, q.bias[sl],
                                                               q.shift, q.relu)
    return out.view(C, B, ho, wo, cout).permute(0, 1, 4, 2, 3)


def input_offsets(qg) -> list[int]:
    """Per crossbar layer of a quantized graph, in :func:`graph_geometry`'s order, its input
    offset ``c`` (0 for a layer without the offset rule): what :func:`crop_energy` takes."""
    return [int(q.input_offset) for q in qg.crossbar_nodes]


def layers_forward(net, images: torch.Tensor, C: int, prepare: Callable,
                   with_inputs: bool = False):
    """Integer logits ``[C, B, classes]`` of the quantized network (a
    :class:`~golden.fixedpoint.QuantNet` or a :class:`golden.qnet.QGraph`) where every
    crossbar layer's input goes through ``prepare`` first; with ``with_inputs`` also every
    crossbar layer's input as ``prepare`` returned it. The one walk of the crop study
    (:func:`crop_forward`) and the precision study (``golden.precision_study.plans_forward``).

    ``prepare(l, conv, x, offset)`` gets crossbar layer ``l``'s integer input
    ``x [1 or C, B, ...]`` (saturated as :func:`golden.qnet.crossbar_input` does: the logical
    signed values of a layer with the input offset rule, whose offset ``c`` is ``offset``, 0
    for every other layer; ``conv``: a conv layer) and returns the input the layer
    computes on and, for a conv layer, the kept window of each of its leading entries
    (:func:`crops_conv2d`, :func:`crops_conv_node`). Everything else runs once for the
    leading entries it gets; the logits are expanded to ``C``."""
    if not isinstance(net, QuantNet):
        return _graph_forward(net, images, C, prepare, with_inputs)
    cfg = net.cfg
    x = quant_inputs(net, images)[None]                                   # [1, B, ...]
    inputs = []
    for i, q in enumerate(net.layers):
        x, wins = prepare(i, q.kind == "conv", x, 0)
        if with_inputs:
            inputs.append(x)
        if q.kind == "conv":
            x = crops_conv2d(cfg, x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                             shift=q.shift, relu=q.relu, windows=wins)
            if i + 1 < len(net.layers) and net.layers[i + 1].kind == "linear":
                x = global_avg_pool(x, q.out_frac, net.layers[i + 1].x_frac)
            x = saturate(x, cfg.input_min, cfg.input_max)
        else:
            lead = x.shape[:-1]
            x = matvec(cfg, x.reshape(-1, x.shape[-1]), q.weight.t(), q.bias, shift=q.shift,
                       relu=q.relu).view(*lead, -1)
    x = x.expand(C, *x.shape[1:])
    return (x, inputs) if with_inputs else x


def _graph_forward(qg, images: torch.Tensor, C: int, prepare: Callable, with_inputs: bool):
    from golden.qnet import _clamp, _matvec_chunked, _run_node, crossbar_input
    from golden.qnet import quant_inputs as q_inputs

    cfg = qg.cfg
    env: dict[str, torch.Tensor] = {}
    inputs = []
    li = 0
    for q in qg.nodes:
        if q.op == "input":
            env[q.name] = q_inputs(qg, images)[None]                      # [1, B, ...]
            continue
        ins = [env[i] for i in q.inputs]
        if q.op in ("conv", "linear"):
            x, wins = prepare(li, q.op == "conv", crossbar_input(cfg, q, ins[0]),
                              int(q.input_offset))
            li += 1
            if with_inputs:
                inputs.append(x)
            if q.op == "conv":
                y = crops_conv_node(cfg, q, x, wins)
            else:
                y = _matvec_chunked(cfg, x.reshape(-1, x.shape[-1]) + q.input_offset,
                                    q.weight.t(), q.bias, q.shift,
                                    q.relu).view(*x.shape[:-1], -1)
            env[q.name] = _clamp(y, q.act_lo, q.act_hi)
        else:
            lead = max(t.shape[0] for t in ins)
            ins = [t.expand(lead, *t.shape[1:]) for t in ins]
            y = _run_node(qg, q, [t.reshape(-1, *t.shape[2:]) for t in ins],
                          [qg[i].frac for i in q.inputs])
            env[q.name] = y.view(lead, -1, *y.shape[1:])
    x = torch.clamp(env[qg.output], cfg.output_min, cfg.output_max)
    x = x.expand(C, *x.shape[1:])
    return (x, inputs) if with_inputs else x


def crop_forward(net, images: torch.Tensor, plan, *, with_inputs: bool = False):
    """Integer logits ``[C, B, classes]`` of the quantized network (a
    :class:`~golden.fixedpoint.QuantNet` or a :class:`golden.qnet.QGraph`) under each of the
    ``C = len(plan)`` crops; with ``with_inputs`` also every crossbar layer's integer input
    activations ``[C, B, ...]`` (for the energy model; the logical values: a layer with the
    input offset rule is driven with them plus its offset, :func:`input_offsets`). Layers
    before the first cropped one run once and are shared by all crops. For a graph, crop 0
    (uncropped) gives exactly :func:`golden.qnet.qforward`'s logits."""
    C = len(plan)

    def prepare(i, conv, x, offset):
        wins = [plan[c][i] for c in range(C)]
        if x.shape[0] == 1 and any(w is not None for w in wins):
            x = x.expand(C, *x.shape[1:])
        return x, wins if x.shape[0] > 1 else wins[:1]

    return layers_forward(net, images, C, prepare, with_inputs)


def _energy_model():
    from golden import energy_model
    return energy_model


def crop_energy(cfg: AccelConfig, table, geoms: Sequence[ConvGeometry], plan, inputs=None,
                groups: Sequence[int] | None = None,
                offsets: Sequence[int] | None = None) -> torch.Tensor:
    """Energy in pJ, ``[C, B, layers]`` float64 (or ``[C, 1, layers]`` without ``inputs``):
    ``conv_layer_energy`` of every crossbar layer under each crop's window, with that layer's
    integer inputs ``inputs[l] [C or 1, B, ...]`` when given (1x1 layers get ``[B, K, 1, 1]``).
    ``groups[l]`` (default 1) conv groups of ``geoms[l]`` each are their own layer: the energy
    is their sum, each with its own slice of the input channels (without inputs, ``groups``
    times one group's). ``offsets[l]`` (default 0, :func:`input_offsets`) is layer ``l``'s
    input offset ``c``: its DACs are driven with ``inputs[l] + c``, an absent (padding or
    cropped) tap with ``c``.
    """
    groups = [1] * len(geoms) if groups is None else list(groups)
    offsets = [0] * len(geoms) if offsets is None else list(offsets)
    em = _energy_model()
    C = len(plan)
    B = 1 if inputs is None else inputs[0].shape[1]
    out = torch.zeros(C, B, len(geoms), dtype=torch.float64)
    for i, g in enumerate(geoms):
        done = {}
        for c in range(C):
            w, x, key = plan[c][i], None, (plan[c][i], -1)
            if inputs is not None:
                xi = inputs[i]
                x = xi[min(c, xi.shape[0] - 1)]
                x = x[:, :, None, None] if x.dim() == 2 else x
                key = (w, c if xi.shape[0] > 1 else -1)
            if key not in done:
                ng = groups[i]
                if ng > 1 and x is not None:         # [B, g*Cin, H, W] -> [B*g, Cin, H, W]
                    x = x.reshape(x.shape[0] * ng, -1, *x.shape[2:])
                c0 = offsets[i]
                e = em.conv_layer_energy(cfg, table, g, window=w,
                                         x=None if x is None else x + c0, absent=c0)
                pj = torch.as_tensor(e.total_pj, dtype=torch.float64)
                if ng > 1:
                    pj = pj.view(-1, ng).sum(1) if x is not None else pj * ng
                done[key] = pj
            out[c, :, i] = done[key]
    return out


@dataclass
class StudyArrays:
    """Everything measured on one image set: ``logits [N, C, classes]`` (int64 or float),
    ``labels [N]``, ``energy [N, C, layers]`` pJ, and the throughput."""
    logits: torch.Tensor
    labels: torch.Tensor
    energy: torch.Tensor
    seconds: float
    images_per_second: float = field(init=False)

    def __post_init__(self):
        self.images_per_second = len(self.labels) / max(self.seconds, 1e-9)

    @property
    def total_energy(self) -> torch.Tensor:
        """``[N, C]`` pJ per image and crop."""
        return self.energy.sum(-1)


def run_crops(forward: Callable, energy: Callable, images: torch.Tensor, labels: torch.Tensor,
              *, batch: int = 32, progress: Callable[[int], None] | None = None
              ) -> StudyArrays:
    """Run ``forward(images[b]) -> (logits [C, b, classes], inputs)`` and
    ``energy(inputs) -> [C, b, layers]`` batch by batch; ``progress(n)`` after each batch."""
    logits, energies = [], []
    t0 = time.perf_counter()
    for lo in range(0, len(images), batch):
        lg, inputs = forward(images[lo:lo + batch])
        logits.append(lg.transpose(0, 1))
        energies.append(energy(inputs).transpose(0, 1))
        if progress is not None:
            progress(min(batch, len(images) - lo))
    seconds = time.perf_counter() - t0
    return StudyArrays(torch.cat(logits), labels.clone(), torch.cat(energies), seconds)


def true_ranks(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rank of the true class among the logits (0 = top-1), ties toward the lower class:
    ``logits [N, C, K]``, ``labels [N]`` -> ``[N, C]``."""
    own = logits.gather(-1, labels.view(-1, 1, 1).expand(-1, logits.shape[1], 1))
    cls = torch.arange(logits.shape[-1])
    lower = cls.view(1, 1, -1) < labels.view(-1, 1, 1)
    return ((logits > own) | ((logits == own) & lower)).sum(-1)


def tolerated(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``[N, C]`` bool: crop keeps the image correct at top-k, or it was wrong uncropped."""
    return (ranks < k) | (ranks[:, :1] >= k)


def oracle_choice(tol: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Per image the tolerated crop of least energy (``tol``, ``energy`` ``[N, C]``)."""
    return torch.where(tol, energy, torch.full_like(energy, float("inf"))).argmin(1)


def summarize_choice(choice: torch.Tensor, ranks: torch.Tensor, energy: torch.Tensor,
                     extra_pj: torch.Tensor | float = 0.0) -> dict:
    """Accuracy (top-1, top-5) and energy of choosing crop ``choice [N]`` per image, against
    the uncropped network; ``extra_pj`` is a predictor's own energy per image."""
    n = len(choice)
    idx = torch.arange(n)
    r = ranks[idx, choice]
    base = float(energy[:, 0].sum())
    spent = float(energy[idx, choice].sum()) + float(torch.as_tensor(extra_pj).sum()
                                                     if torch.is_tensor(extra_pj)
                                                     else extra_pj * n)
    return {
        "top1": float((r < 1).float().mean()),
        "top5": float((r < 5).float().mean()),
        "top1_uncropped": float((ranks[:, 0] < 1).float().mean()),
        "top5_uncropped": float((ranks[:, 0] < 5).float().mean()),
        "energy_pj_per_image": spent / max(n, 1),
        "energy_saved": 1.0 - spent / base if base else 0.0,
        "cropped_share": float((choice != 0).float().mean()),
    }


def first_layer_cases(net: QuantNet, images: torch.Tensor, crops: Sequence[int], plan
                      ) -> list[dict]:
    """The first conv layer of ``images`` under their chosen ``crops`` as the study runs it,
    for the RTL ``ConvTile`` (``aqua.crop_study.rtl_first_layer``). Per image: its crop, the
    kept window ``plan[crop][0]`` of the first layer's input (the whole map if the layer is not
    cropped), the integer input ``x [1, Cin, H, W]``, the quantized ``layer`` and the golden
    first-layer output (:func:`golden.crop.cropped_conv2d`) the tile must reproduce bit for
    bit."""
    from .crop import cropped_conv2d

    q = net.layers[0]
    x = quant_inputs(net, images)
    cases = []
    for i, c in enumerate(crops):
        w = plan[int(c)][0] or (0, x.shape[-2], 0, x.shape[-1])
        y = cropped_conv2d(net.cfg, x[i:i + 1], q.weight, q.bias, stride=q.stride,
                           padding=q.padding, shift=q.shift, relu=q.relu, window=w)
        cases.append({"crop": int(c), "window": w, "x": x[i:i + 1], "layer": q, "golden": y})
    return cases
