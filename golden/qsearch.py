"""Layer-wise fixed-point post-training search for the demo CNN (issue 7, search half).

For a trained float network shaped like :class:`golden.cnn.DemoCNN` (``convs``, a ReLU after
each, global average pooling, ``fc``; as layers: :func:`golden.qlayers.describe`), choose for
every layer ``l`` a fixed-point format (:class:`golden.qformat.Fmt`: width, fraction bits,
signedness) for

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

With ``interactions=False`` each layer is searched *alone* (all other layers float) against the
full bound, then the per-layer choices are combined (and measured): the baseline that ignores
interactions. The other baselines (uniform 8-bit: :func:`golden.qformat.uniform_formats`;
torch.ao int8: :mod:`golden.qbaseline`; power-of-two shift-and-round: :mod:`golden.qshift`)
and the whole report (:mod:`golden.qreport`) live beside this module.

Accuracy in the search is measured with **fake quantization in float**
(:func:`golden.qlayers.fake_forward`): each tensor is quantized with the named helpers of
:mod:`golden.fixedpoint` (``round_half_even``, ``saturate``) and dequantized (multiplied by
``2**-frac``, exact), and the network runs in float32. Integer-exact arithmetic is not needed
to rank formats; accumulation order and the float32 rounding of sums differ from the hardware's
exact integer sums by far less than one LSB of any searched format.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from golden.qformat import Fmt, LayerFormat, fmt_for
from golden.qlayers import (LayerInfo, accuracy, calibration_ranges, fake_forward, macs,
                            memory_bits, multiply_cost, quantized_params, run_layers)

__all__ = ["search", "SearchResult", "DEFAULT_BOUND", "WIDTHS", "FRAC_OFFSETS", "KIND_ORDER"]

DEFAULT_BOUND = 0.01      #: allowed top-1 loss against float (a fraction: 0.01 = 1 pp)
WIDTHS = tuple(range(2, 17))
#: fractional offsets tried above the no-saturation ``f0``, per tensor kind
FRAC_OFFSETS = {"x": (0, 1, 2), "w": (0, 1), "b": (0,)}
#: order in which a layer's tensors are searched: weights first (they cost memory and
#: multiplies), then bias, then activations
KIND_ORDER = ("w", "b", "x")


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


def search(layers: Sequence[LayerInfo], calib: torch.Tensor, images: torch.Tensor,
           labels: torch.Tensor, *, bound: float = DEFAULT_BOUND, interactions: bool = True,
           widths: Sequence[int] = WIDTHS, schedule: str = "greedy", refine: bool = True,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Choose per-layer formats (see the module docstring for the method).

    Parameters
    ----------
    layers : from :func:`golden.qlayers.describe`
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
        :func:`golden.qreport.quantize_report`, since checking the whole network is an interaction
    progress : ``progress(done, total)`` after every (layer, tensor) step
    """
    if not 0 <= bound < 1:
        raise ValueError(f"bound must be a fraction in [0, 1), not {bound}")
    if schedule not in ("linear", "greedy"):
        raise ValueError(f"schedule must be 'linear' or 'greedy', not {schedule!r}")
    widths = sorted(widths)
    start = time.perf_counter()
    n = len(layers)
    ranges = calibration_ranges(layers, calib)
    with torch.no_grad():
        fl = [None] * n
        float_acc = accuracy(
            run_layers(layers, quantized_params(layers, fl), images, 0, n, fl), labels)
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
                x_start = run_layers(layers, quantized_params(layers, prefix), images, 0, l,
                                     prefix)
        current = LayerFormat()
        for kind in KIND_ORDER:
            cache: dict[int, tuple[float, Fmt]] = {}

            def best_at(bits: int) -> tuple[float, Fmt]:
                nonlocal evaluations
                if bits not in cache:
                    best = None
                    for off in FRAC_OFFSETS[kind]:
                        fmt = fmt_for(ranges[l][kind], bits, off)
                        trial = list(prefix)
                        trial[l] = dataclasses.replace(current, **{kind: fmt})
                        with torch.no_grad():
                            logits = run_layers(layers, quantized_params(layers, trial),
                                                x_start, l, n, trial)
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
                x_in = run_layers(layers, quantized_params(layers, chosen), x_in, l, l + 1,
                                  chosen)
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
                fmt = fmt_for(ranges[l][kind], bits, off)
                trial[l] = dataclasses.replace(formats[l], **{kind: fmt})
                a = accuracy(fake_forward(layers, trial, images), labels)
                evaluations += 1
                if a >= threshold - 1e-12 and (best is None or a > best[0]):
                    best = (a, trial)
            if best is not None:
                acc, formats = best
                break
        else:
            return formats, acc, evaluations

