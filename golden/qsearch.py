"""Layer-wise fixed-point post-training search for the demo CNN (issue 7, search half).

For a trained float network shaped like :class:`golden.cnn.DemoCNN` (``convs``, a ReLU after
each, global average pooling, ``fc``), choose for every layer ``l`` a fixed-point format
(:class:`Fmt`: width, fraction bits, signedness) for

* its **input activations** ``x`` (the image for layer 0, the pooled features for ``fc``),
* its **weights** ``w`` and its **bias** ``b``,

so that top-1 accuracy on a fixed validation set stays within ``bound`` (default 1 percentage
point) of the float network while memory (``Σ params × bits``) and multiply cost
(``Σ MACs × w bits × x bits``, relative to 8 × 8) are as small as the greedy search finds.

The search (:func:`search`) is *interaction-aware*: layers are visited in order and layer ``l``
is evaluated with layers ``0 .. l-1`` already at their chosen formats (the later layers float).
For each of ``x``, ``w``, ``b`` of the layer the smallest width in ``widths`` (default 2..16)
is taken whose accuracy passes the layer's threshold, found by bisection (accuracy is assumed
to grow with width); for every width a few fractional offsets are tried
(:data:`FRAC_OFFSETS`): ``f0`` is the most fraction bits with which the calibration range fits
(:func:`golden.fixedpoint.frac_bits_for`, no saturation), ``f0 + 1`` ... trade saturation of the
largest values for resolution. The threshold is ``float_acc - bound`` for every layer
(``schedule="greedy"``, the default) or ``float_acc - bound * (l + 1) / L`` for layer ``l`` of
``L`` (``schedule="linear"``: every layer gets its share of the budget). A final refinement
(:func:`_refine`) then narrows single tensors by one bit, cheapest-first by cost saved, while
the whole quantized network still meets the bound. Weights are searched first in each layer
(:data:`KIND_ORDER`). On the demo CNN greedy + refine gave the lowest cost.

Baselines on the same model, calibration and validation data:

* :func:`uniform_formats`: every ``x``, ``w``, ``b`` at 8 bits, ``f0`` fraction bits;
* :func:`search` with ``interactions=False``: each layer searched *alone* (all other layers
  float) against the full bound, then the per-layer choices combined (and measured);
* :func:`torch_ao_int8`: PyTorch's eager-mode static post-training int8 quantization
  (``torch.ao.quantization``, the ``x86`` qconfig: per-channel int8 weights, uint8 activations
  with affine, *non*-power-of-two scales, fbgemm kernels), or, if that cannot run, a clearly
  labelled per-channel int8 fake-quant emulation;
* :func:`shift_round`: power-of-two scales only (integers, shifts and round-half-up), with
  conv + ReLU + requantize fused into one module (the demo CNN has no batch norm), accuracy and
  the number of quantization operations before and after fusion (:func:`quant_op_counts`).

Accuracy in the search is measured with **fake quantization in float**: each tensor is
quantized with the named helpers of :mod:`golden.fixedpoint` (``round_half_even``,
``saturate``) and dequantized (multiplied by ``2**-frac``, exact), and the network runs in
float32. Integer-exact arithmetic is not needed to rank formats; accumulation order and the
float32 rounding of sums differ from the hardware's exact integer sums by far less than one LSB
of any searched format. The fused shift-and-round network (:func:`shift_round`) is evaluated
exactly: its integers are held in float64, where every value it forms is an exact integer.

Calibration (ranges, ``torch.ao`` observers): :func:`golden.fixedpoint.calibration_images`
(256 training images). Validation: the first ``images`` of the test split (default all 360;
the search selects on these images, so the report also gives the accuracy on a second,
held-out rendering of the test digits, ``cluttered_digits("test", seed=1)``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from golden.fixedpoint import (calibration_images, float_layer, frac_bits_for, round_half_even,
                               saturate)

__all__ = ["Fmt", "LayerFormat", "LayerInfo", "describe", "fake_quant", "round_half_up",
           "fake_forward", "accuracy", "macs", "memory_bits", "multiply_cost", "cost_summary",
           "uniform_formats", "search", "SearchResult", "torch_ao_int8", "shift_round",
           "quant_op_counts", "integer_params", "quantize_report", "PAPER", "FRAC_OFFSETS",
           "DEFAULT_BOUND",
           "DEFAULT_IMAGES", "HELDOUT_SEED"]

DEFAULT_BOUND = 0.01      #: allowed top-1 loss against float (a fraction: 0.01 = 1 pp)
DEFAULT_IMAGES = 360      #: validation images (the whole test split)
HELDOUT_SEED = 1          #: rendering seed of the held-out copy of the test digits
_POOL_BITS = 32           #: width of the last conv's output, summed by the pooling
WIDTHS = tuple(range(2, 17))
#: fractional offsets tried above the no-saturation ``f0``, per tensor kind
FRAC_OFFSETS = {"x": (0, 1, 2), "w": (0, 1), "b": (0,)}
#: order in which a layer's tensors are searched: weights first (they cost memory and
#: multiplies), then bias, then activations
KIND_ORDER = ("w", "b", "x")

#: the seed papers' figures, for the report
PAPER = {
    "memory_saving_vs_uniform8": 0.53,       # 53 % less memory than uniform 8-bit
    "multiply_saving_vs_uniform8": 0.775,    # 77.5 % cheaper multiplications
    "accuracy_loss_max": 0.01,               # with < 1 % top-1 loss
    "ignoring_interactions_loss_up_to": 0.50,  # up to 50 % loss when layers are searched alone
    "requantizer_area_ratio": 15.0,          # joint-quantization paper, RTL (later session)
    "requantizer_energy_ratio": 9.0,
}


# -- formats and fake quantization ---------------------------------------------------------

@dataclass(frozen=True)
class Fmt:
    """A fixed-point format: ``bits`` wide, ``frac`` fraction bits (may be negative or larger
    than ``bits``), two's complement if ``signed`` else unsigned. Value = integer × 2**-frac."""
    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self):
        if not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be a positive integer, not {self.bits!r}")

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"

    def to_json(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}


@dataclass(frozen=True)
class LayerFormat:
    """Formats of one layer's input activations, weights and bias; ``None`` = float."""
    x: Fmt | None = None
    w: Fmt | None = None
    b: Fmt | None = None

    def to_json(self) -> dict:
        return {k: (None if v is None else v.to_json()) for k, v in
                (("x", self.x), ("w", self.w), ("b", self.b))}


def fake_quant(t: torch.Tensor, fmt: Fmt | None) -> torch.Tensor:
    """Quantize ``t`` to ``fmt`` and back: ``saturate(round_half_even(t * 2**f), lo, hi) *
    2**-f`` in ``t``'s dtype (scaling by a power of two is exact); ``None`` returns ``t``.

    >>> fake_quant(torch.tensor([0.3, -0.3, 0.1875, 1.0, -2.0]), Fmt(4, 3)).tolist()
    [0.25, -0.25, 0.25, 0.875, -1.0]
    >>> fake_quant(torch.tensor([-0.5, 0.3, 5.0]), Fmt(2, 1, signed=False)).tolist()
    [0.0, 0.5, 1.5]
    """
    if fmt is None:
        return t
    q = saturate(round_half_even(t * math.ldexp(1.0, fmt.frac)), fmt.lo, fmt.hi)
    return q * math.ldexp(1.0, -fmt.frac)


def round_half_up(t: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties toward +infinity: ``floor(t + 0.5)``, what the hardware's
    ``(v + 2**(sh-1)) >> sh`` does (``>>`` floors).

    >>> round_half_up(torch.tensor([0.5, 1.5, -0.5, -1.5, 1.25, -1.75])).tolist()
    [1.0, 2.0, 0.0, -1.0, 1.0, -2.0]
    """
    return torch.floor(t + 0.5)


# -- the network as a list of layers -------------------------------------------------------

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
        h = (h + 2 * p - kh) // s + 1
        w = (w + 2 * p - kw) // s + 1
        out.append(LayerInfo(f"conv{i}", "conv", conv.weight.detach(), conv.bias.detach(), s, p,
                             bool(relu), False, h * w))
    fc = model.fc
    out.append(LayerInfo("fc", "linear", fc.weight.detach(), fc.bias.detach(), 1, 0, False,
                         True, 1))
    return tuple(out)


def _run(layers: Sequence[LayerInfo], qw: Sequence, x: torch.Tensor, start: int,
         stop: int, formats: Sequence[LayerFormat | None]) -> torch.Tensor:
    """Layers ``start .. stop-1`` on ``x`` (the raw input of layer ``start``, before pooling
    and quantization); returns the raw input of layer ``stop`` (or the logits)."""
    for i in range(start, stop):
        L, f = layers[i], formats[i]
        if L.pool_before:
            x = x.mean(dim=(2, 3))
        w, b = qw[i]
        x = float_layer(L, fake_quant(x, f.x if f is not None else None), w, b)
    return x


def _quantized_params(layers, formats):
    return [(fake_quant(L.weight, f.w if f else None), fake_quant(L.bias, f.b if f else None))
            for L, f in zip(layers, formats)]


def fake_forward(layers: Sequence[LayerInfo], formats: Sequence[LayerFormat | None],
                 images: torch.Tensor) -> torch.Tensor:
    """Float logits of the network with every tensor fake-quantized to ``formats``."""
    with torch.no_grad():
        return _run(layers, _quantized_params(layers, formats), images, 0, len(layers), formats)


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


# -- calibration ranges and candidate formats ----------------------------------------------

def _ranges(layers, images) -> list[dict[str, tuple[float, float]]]:
    """Per layer, the float ranges of its (pooled) input on ``images``, weights and bias."""
    out = []
    with torch.no_grad():
        x = images
        for i, L in enumerate(layers):
            xin = x.mean(dim=(2, 3)) if L.pool_before else x
            out.append({"x": (float(xin.min()), float(xin.max())),
                        "w": (float(L.weight.min()), float(L.weight.max())),
                        "b": (float(L.bias.min()), float(L.bias.max()))})
            fl = [None] * len(layers)
            x = _run(layers, _quantized_params(layers, fl), x, i, i + 1, fl)
    return out


def _fmt(rng: tuple[float, float], bits: int, offset: int = 0) -> Fmt:
    """``bits`` wide, unsigned if the range has no negative values, ``f0 + offset`` fraction
    bits (``f0``: the most with which the range fits without saturating)."""
    signed = rng[0] < 0
    probe = Fmt(bits, 0, signed)
    return Fmt(bits, frac_bits_for(rng[0], rng[1], probe.lo, probe.hi) + offset, signed)


def uniform_formats(layers, ranges, bits: int = 8) -> list[LayerFormat]:
    """Every layer's ``x``, ``w`` and ``b`` at ``bits`` bits with the no-saturation ``f0``."""
    return [LayerFormat(*(_fmt(r[k], bits) for k in ("x", "w", "b"))) for r in ranges]


# -- the search ---------------------------------------------------------------------------

@dataclass
class SearchResult:
    """What :func:`search` returns: the chosen formats, their validation accuracy, whether
    it meets the bound, and the number of network evaluations."""
    formats: list[LayerFormat]
    accuracy: float
    float_accuracy: float
    bound: float
    meets_bound: bool
    evaluations: int
    interactions: bool
    seconds: float

    def to_json(self) -> dict:
        return {"formats": [f.to_json() for f in self.formats], "accuracy": self.accuracy,
                "meets_bound": self.meets_bound, "evaluations": self.evaluations,
                "interactions": self.interactions, "seconds": round(self.seconds, 2)}


def search(layers: Sequence[LayerInfo], calib: torch.Tensor, images: torch.Tensor,
           labels: torch.Tensor, *, bound: float = DEFAULT_BOUND, interactions: bool = True,
           widths: Sequence[int] = WIDTHS, schedule: str = "greedy", refine: bool = True,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Choose per-layer formats (see the module docstring for the method).

    Parameters
    ----------
    layers : from :func:`describe`
    calib : float images for the ranges
    images, labels : the validation set the accuracy bound is checked on
    bound : allowed top-1 loss against float, a fraction (0.01 = 1 percentage point)
    interactions : True: layer ``l`` is searched with layers ``< l`` quantized; False: alone,
        every other layer float, against the full bound (the baseline that ignores
        interactions); the combined result is measured either way
    widths : candidate widths, ascending
    schedule : "linear" or "greedy" accuracy thresholds (interaction-aware only)
    refine : after the pass, narrow single tensors by one bit while the *whole* network
        still meets the bound (:func:`_refine`); kept off for the no-interaction baseline by
        :func:`quantize_report`, since checking the whole network is an interaction
    progress : ``progress(done, total)`` after every (layer, tensor) step
    """
    if not 0 <= bound < 1:
        raise ValueError(f"bound must be a fraction in [0, 1), not {bound}")
    if schedule not in ("linear", "greedy"):
        raise ValueError(f"schedule must be 'linear' or 'greedy', not {schedule!r}")
    widths = sorted(widths)
    start = time.perf_counter()
    n = len(layers)
    ranges = _ranges(layers, calib)
    with torch.no_grad():
        fl = [None] * n
        float_acc = accuracy(_run(layers, _quantized_params(layers, fl), images, 0, n, fl),
                             labels)
    chosen: list[LayerFormat | None] = [None] * n
    evaluations = 0
    steps, total = 0, 3 * n
    x_in = images                       # raw input of layer l under the chosen prefix
    for l, L in enumerate(layers):
        if interactions:
            share = (l + 1) / n if schedule == "linear" else 1.0
            threshold = float_acc - bound * share
            prefix = chosen
            x_start = x_in
        else:
            threshold = float_acc - bound
            prefix = [None] * n
            with torch.no_grad():
                x_start = _run(layers, _quantized_params(layers, prefix), images, 0, l, prefix)
        current = LayerFormat()
        for kind in KIND_ORDER:
            cache: dict[int, tuple[float, Fmt]] = {}

            def best_at(bits: int) -> tuple[float, Fmt]:
                nonlocal evaluations
                if bits not in cache:
                    best = None
                    for off in FRAC_OFFSETS[kind]:
                        fmt = _fmt(ranges[l][kind], bits, off)
                        trial = list(prefix)
                        trial[l] = dataclasses.replace(current, **{kind: fmt})
                        with torch.no_grad():
                            logits = _run(layers, _quantized_params(layers, trial), x_start,
                                          l, n, trial)
                        evaluations += 1
                        acc = accuracy(logits, labels)
                        if best is None or acc > best[0]:
                            best = (acc, fmt)
                    cache[bits] = best
                return cache[bits]

            lo, hi = 0, len(widths) - 1      # bisection for the first passing width
            if best_at(widths[hi])[0] < threshold:
                pick = hi
            else:
                while lo < hi:
                    mid = (lo + hi) // 2
                    if best_at(widths[mid])[0] >= threshold:
                        hi = mid
                    else:
                        lo = mid + 1
                pick = lo
            current = dataclasses.replace(current, **{kind: best_at(widths[pick])[1]})
            steps += 1
            if progress is not None:
                progress(steps, total)
        chosen[l] = current
        if interactions:
            with torch.no_grad():
                x_in = _run(layers, _quantized_params(layers, chosen), x_in, l, l + 1, chosen)
    acc = accuracy(fake_forward(layers, chosen, images), labels)
    evaluations += 1
    if refine:
        chosen, acc, extra = _refine(layers, ranges, chosen, images, labels,
                                     float_acc - bound, acc, widths[0])
        evaluations += extra
    return SearchResult(formats=chosen, accuracy=acc, float_accuracy=float_acc, bound=bound,
                        meets_bound=acc >= float_acc - bound - 1e-12, evaluations=evaluations,
                        interactions=interactions, seconds=time.perf_counter() - start)


def _refine(layers, ranges, formats, images, labels, threshold, acc, min_bits):
    """Coordinate descent on the whole network: repeatedly take the single-tensor one-bit
    narrowing (any fractional offset) that saves the most cost (multiply-cost ratio plus
    memory ratio, both against uniform 8-bit) and keeps accuracy >= ``threshold``, until none
    does. Returns ``(formats, accuracy, evaluations)``."""
    formats = list(formats)
    evaluations = 0
    mem8 = 8 * sum(L.params for L in layers)
    mul8 = 64 * sum(macs(layers))

    def cost(fs):
        return memory_bits(layers, fs) / mem8 + multiply_cost(layers, fs) / mul8

    tried: set = set()
    while True:
        base = cost(formats)
        moves = []
        for l in range(len(layers)):
            for kind in KIND_ORDER:
                cur = getattr(formats[l], kind)
                if cur.bits <= min_bits:
                    continue
                trial = list(formats)
                trial[l] = dataclasses.replace(formats[l], **{kind: Fmt(cur.bits - 1, 0)})
                moves.append((cost(trial) - base, l, kind, cur.bits - 1))
        moves.sort(key=lambda m: (m[0], m[1], KIND_ORDER.index(m[2])))
        for _, l, kind, bits in moves:
            key = (tuple(formats), l, kind)
            if key in tried:
                continue
            tried.add(key)
            best = None
            for off in FRAC_OFFSETS[kind]:
                trial = list(formats)
                trial[l] = dataclasses.replace(formats[l], **{kind: _fmt(ranges[l][kind], bits,
                                                                          off)})
                a = accuracy(fake_forward(layers, trial, images), labels)
                evaluations += 1
                if a >= threshold - 1e-12 and (best is None or a > best[0]):
                    best = (a, trial)
            if best is not None:
                acc, formats = best
                break
        else:
            return formats, acc, evaluations


# -- shift-and-round, fused ---------------------------------------------------------------

def quant_op_counts(layers: Sequence[LayerInfo], image_shape=(1, 32, 32)) -> dict:
    """Quantization operations of the integer network, before and after fusion.

    Before fusion a quantize follows every operation: the image, each conv (with its bias),
    each ReLU, the pooling and the classifier. After fusion conv + ReLU + requantize is one
    module with one requantize; the image, the pooling and the classifier keep theirs.
    ``modules`` counts quantizers in the graph, ``elements`` the values quantized per image.
    """
    c, h, w = image_shape
    img = c * h * w
    mod_before = mod_after = 1
    el_before = el_after = img
    for L in layers:
        if L.pool_before:                       # pool output
            mod_before += 1
            mod_after += 1
            el_before += L.weight.shape[1]
            el_after += L.weight.shape[1]
        out = L.weight.shape[0] * L.out_hw
        ops = 2 if L.relu else 1                # layer output (+ ReLU output)
        mod_before += ops
        el_before += ops * out
        mod_after += 1
        el_after += out
    return {"modules_before": mod_before, "modules_after": mod_after,
            "elements_before": el_before, "elements_after": el_after}


def integer_params(L: LayerInfo, f: LayerFormat, x_frac: int
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Layer ``L``'s integer weights (``f.w``) and bias at the accumulator's scale, in float64
    holding exact integers, and the accumulator's fraction bits ``f.w.frac + x_frac``: the
    bias is quantized to ``f.b`` and aligned to the accumulator (exact if the accumulator has
    at least ``f.b.frac`` fraction bits, else rounded half up)."""
    w = saturate(round_half_even(L.weight.double() * math.ldexp(1.0, f.w.frac)), f.w.lo, f.w.hi)
    acc_frac = f.w.frac + x_frac
    b = round_half_up(fake_quant(L.bias.double(), f.b) * math.ldexp(1.0, acc_frac))
    return w, b, acc_frac


def shift_round(layers: Sequence[LayerInfo], formats: Sequence[LayerFormat],
                images: torch.Tensor, *, fused: bool = True) -> torch.Tensor:
    """Integer logits (float64 holding exact integers) of the power-of-two network.

    Weights and bias are integers at ``w.frac`` and ``w.frac + x.frac`` fraction bits (the
    bias is saturated to ``b.bits`` at that scale). Each conv module computes its exact
    accumulator and, fused, applies ReLU and *one* requantize to the next layer's input format:
    a shift by ``w.frac + x.frac - next.frac`` rounding half up (:func:`round_half_up`) and a
    saturation. Unfused, the conv output is first requantized to a *signed* format one bit wider
    with the same fraction bits (it may be negative), then ReLU, then requantized again to the
    unsigned format: with power-of-two scales the second step only saturates, so both give the
    same integers -- fusion saves operations, not accuracy. The pooled
    features are rescaled with one round-half-up to the classifier's input format and
    saturated (the last conv's output keeps ``log2(pixels)`` extra fraction bits at a 32-bit
    accumulator width, so the exact pooled sum is rounded once);
    the classifier's logits stay at accumulator scale. Every value is an integer below ``2**53``.
    """
    n = len(layers)
    with torch.no_grad():
        f0 = formats[0].x
        x = saturate(round_half_even(images.double() * math.ldexp(1.0, f0.frac)), f0.lo, f0.hi)
        xf = f0.frac
        for i, L in enumerate(layers):
            f = formats[i]
            if L.pool_before:       # exact mean at xf, then rescale to this layer's x format
                x = saturate(round_half_up(x.mean(dim=(2, 3)) *
                                           math.ldexp(1.0, f.x.frac - xf)), f.x.lo, f.x.hi)
                xf = f.x.frac
            w, b, acc_frac = integer_params(L, f, xf)
            v = F.conv2d(x, w, b, stride=L.stride, padding=L.padding) if L.kind == "conv" \
                else F.linear(x, w, b)
            if i == n - 1:
                return v * math.ldexp(1.0, -acc_frac)
            nxt = formats[i + 1].x
            if layers[i + 1].pool_before:    # log2(pixels) more fraction bits, accumulator
                k = max(0, math.ceil(math.log2(L.out_hw)))     # width: pooled, then saturated
                nxt = Fmt(_POOL_BITS, nxt.frac + k, nxt.signed)
            sh = acc_frac - nxt.frac
            if not fused:                    # signed, one bit wider: the same values, no clip
                v = saturate(round_half_up(v * math.ldexp(1.0, -sh)),
                             -(1 << nxt.bits), (1 << nxt.bits) - 1)
                sh = 0
            if L.relu:
                v = torch.relu(v)
            x = saturate(round_half_up(v * math.ldexp(1.0, -sh)), nxt.lo, nxt.hi)
            xf = nxt.frac
    raise AssertionError("unreachable")


# -- torch.ao int8 ------------------------------------------------------------------------

class _AoNet(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub
        import copy
        self.quant = QuantStub()
        self.convs = nn.ModuleList(copy.deepcopy(c) for c in model.convs)
        self.relus = nn.ModuleList(nn.ReLU() for _ in model.convs)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = copy.deepcopy(model.fc)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        for c, r in zip(self.convs, self.relus):
            x = r(c(x))
        x = self.pool(x).flatten(1)
        return self.dequant(self.fc(x))


def torch_ao_int8(model: nn.Module, calib: torch.Tensor, images: torch.Tensor,
                  heldout: torch.Tensor | None = None) -> dict:
    """PyTorch eager-mode static PTQ (x86/fbgemm qconfig, conv+ReLU fused) of ``model``;
    returns ``{"method", "logits", "heldout_logits", "warnings"}``. If torch.ao fails, a
    per-channel int8 weight / per-tensor uint8 activation fake-quant emulation is used
    instead and ``method`` says so, with the exception text."""
    from torch.ao import quantization as tq

    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
            torch.backends.quantized.engine = engine
            net = _AoNet(model).eval()
            net.qconfig = tq.get_default_qconfig(engine)
            tq.fuse_modules(net, [[f"convs.{i}", f"relus.{i}"] for i in range(len(net.convs))],
                            inplace=True)
            tq.prepare(net, inplace=True)
            with torch.no_grad():
                net(calib)
            tq.convert(net, inplace=True)
            with torch.no_grad():
                logits = net(images)
                held = net(heldout) if heldout is not None else None
        caught = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
                         for w in rec})
        return {"method": f"torch.ao.quantization eager static PTQ ({engine} qconfig, "
                          f"per-channel int8 weights, uint8 activations, int32 bias)",
                "logits": logits, "heldout_logits": held, "warnings": caught}
    except Exception as exc:  # noqa: BLE001 - reported, then the emulation stands in
        err = f"{type(exc).__name__}: {exc}"
    return {"method": f"EMULATION (torch.ao failed: {err}): per-channel int8 fake quant",
            "logits": _int8_emulation(model, calib, images),
            "heldout_logits": None if heldout is None else
            _int8_emulation(model, calib, heldout), "warnings": caught}


def _int8_emulation(model, calib, images):
    """Per-channel symmetric int8 weights, per-tensor affine uint8 activations (min/max)."""
    layers = describe(model)
    ranges = _ranges(layers, calib)
    with torch.no_grad():
        x = images
        for L, r in zip(layers, ranges):
            if L.pool_before:
                x = x.mean(dim=(2, 3))
            lo, hi = min(r["x"][0], 0.0), max(r["x"][1], 0.0)
            s = max(hi - lo, 1e-12) / 255
            zp = torch.round(torch.tensor(-lo / s))
            x = (saturate(torch.round(x / s) + zp, 0, 255) - zp) * s
            wmax = L.weight.abs().flatten(1).amax(1).clamp(min=1e-12)
            ws = (wmax / 127).view(-1, *([1] * (L.weight.dim() - 1)))
            w = saturate(torch.round(L.weight / ws), -127, 127) * ws
            x = F.conv2d(x, w, L.bias, stride=L.stride, padding=L.padding) \
                if L.kind == "conv" else F.linear(x, w, L.bias)
            if L.relu:
                x = torch.relu(x)
    return x


# -- the whole report ---------------------------------------------------------------------

def quantize_report(model: nn.Module, *, bound: float = DEFAULT_BOUND,
                    images: int = DEFAULT_IMAGES, schedule: str = "greedy",
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """Run the search, the baselines and shift-and-round; a JSON-ready dict."""
    from golden.data import cluttered_digits

    start = time.perf_counter()
    layers = describe(model)
    calib = calibration_images()
    xv, yv = cluttered_digits("test")
    xv, yv = xv[:images], yv[:images]
    xh, yh = cluttered_digits("test", seed=HELDOUT_SEED)
    ranges = _ranges(layers, calib)
    n = len(layers)
    total = 6 * n + 3
    done = 0

    def step(k, _total, base):
        if progress is not None:
            progress(base + k, total)

    aware = search(layers, calib, xv, yv, bound=bound, schedule=schedule,
                   progress=lambda k, t: step(k, t, 0))
    alone = search(layers, calib, xv, yv, bound=bound, interactions=False, refine=False,
                   progress=lambda k, t: step(k, t, 3 * n))
    done = 6 * n
    float_acc = aware.float_accuracy
    fl = [None] * n
    float_held = accuracy(fake_forward(layers, fl, xh), yh)

    def entry(formats, acc=None, **extra):
        acc = accuracy(fake_forward(layers, formats, xv), yv) if acc is None else acc
        e = {"formats": [f.to_json() for f in formats],
             "formats_str": [" ".join(f"{k}={getattr(f, k)}" for k in "xwb") for f in formats],
             "accuracy": acc, "loss_pp": 100 * (float_acc - acc),
             "heldout_accuracy": accuracy(fake_forward(layers, formats, xh), yh)}
        e.update(cost_summary(layers, formats))
        e.update(extra)
        return e

    u8 = uniform_formats(layers, ranges, 8)
    methods = {
        "searched": entry(aware.formats, aware.accuracy, meets_bound=aware.meets_bound,
                          evaluations=aware.evaluations, seconds=round(aware.seconds, 2)),
        "uniform8": entry(u8),
        "no_interaction": entry(alone.formats, alone.accuracy, meets_bound=alone.meets_bound,
                                evaluations=alone.evaluations, seconds=round(alone.seconds, 2)),
    }
    done += 1
    step(0, total, done)
    ao = torch_ao_int8(model, calib, xv, xh)
    params = sum(L.params for L in layers)
    weights = sum(L.weight.numel() for L in layers)
    methods["torch_ao_int8"] = {
        "method": ao["method"], "warnings": ao["warnings"],
        "accuracy": accuracy(ao["logits"], yv), "loss_pp": 100 * (float_acc -
                                                                   accuracy(ao["logits"], yv)),
        "heldout_accuracy": accuracy(ao["heldout_logits"], yh),
        "memory_bits": 8 * weights + 32 * (params - weights),
        "memory_ratio_vs_uniform8": (8 * weights + 32 * (params - weights)) / (8 * params),
        "multiply_cost": 64 * sum(macs(layers)), "multiply_ratio_vs_uniform8": 1.0}
    done += 1
    step(0, total, done)
    ops = quant_op_counts(layers)
    shift = {}
    for name, formats in (("uniform8", u8), ("searched", aware.formats)):
        for fused in (False, True):
            acc = accuracy(shift_round(layers, formats, xv, fused=fused), yv)
            held = accuracy(shift_round(layers, formats, xh, fused=fused), yh)
            shift[f"{name}_{'fused' if fused else 'unfused'}"] = {
                "accuracy": acc, "heldout_accuracy": held,
                "quant_modules": ops["modules_after" if fused else "modules_before"],
                "quant_elements_per_image": ops["elements_after" if fused else
                                                "elements_before"]}
    done += 1
    step(0, total, done)
    return {
        "model": "demo CNN", "bound": bound, "validation_images": len(yv),
        "heldout_images": len(yh), "calibration_images": len(calib), "schedule": schedule,
        "float_accuracy": float_acc, "float_heldout_accuracy": float_held,
        "layers": [{"name": L.name, "macs": L.macs, "weights": L.weight.numel(),
                    "biases": L.bias.numel()} for L in layers],
        "methods": methods, "shift_round": shift, "quant_ops": ops, "paper": PAPER,
        "evaluation": "fake quantization in float32 (quantize with round_half_even and "
                      "saturate, dequantize); shift-and-round integer-exact in float64",
        "seconds": round(time.perf_counter() - start, 1),
    }
