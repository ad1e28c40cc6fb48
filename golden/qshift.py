"""The searched formats as an integer network: power-of-two scales only, shifts and
round-half-up, conv + ReLU + requantize fused into one module (the demo CNN has no batch
norm); and the number of quantization operations before and after fusion.

:func:`shift_round` is evaluated exactly: its integers are held in float64, where every value
it forms is an exact integer (below ``2**53``).

Why this is not :func:`golden.fixedpoint.quant_forward` (the demo's integer network): both
shift with round-half-up and saturate, but they differ in arithmetic --

* formats: here every layer has its own :class:`~golden.qformat.LayerFormat` (widths 2..16,
  unsigned activations after a ReLU); there one configuration fixes every width and the
  fraction bits come from the configuration's ranges;
* bias: here the bias is first quantized to its own format ``b`` (round half even, saturate to
  ``b.bits``) and then aligned to the accumulator rounding half up
  (:func:`golden.qformat.integer_params`); there the float bias is rounded once, half to even,
  to the accumulator's scale and saturated to the configuration's ``bias_bits``;
* requantize: here straight to the next layer's input format (unsigned after a ReLU);
  there to the signed ``output.bits``, then saturated to the input range;
* pooling: here the last conv's output keeps ``log2(pixels)`` more fraction bits at a 32-bit
  width, the exact mean is rounded once to the classifier's format and saturated; there the
  pooled sum of ``output.bits`` values is rescaled and divided with ``div_round_half_up``;
* crossbar: here the accumulator is the exact convolution; there every layer goes through the
  crossbar model (``golden.layer``), whose ADC may be lossy.

:func:`golden.qhardware.integer_layer` runs the same integers as this module for the conv
layers that feed conv layers, through ``golden.layer.conv2d`` in a configuration derived per
layer (for a lossless configuration that is the fused formula here;
``tests/cosim/test_qhardware.py`` holds it to it).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from arch.ranges import int_range
from golden.fixedpoint import round_half_even, saturate
from golden.qformat import Fmt, LayerFormat, integer_params, round_half_up
from golden.qlayers import LayerInfo

__all__ = ["shift_round", "quant_op_counts", "POOL_BITS"]

POOL_BITS = 32            #: width of the last conv's output, summed by the pooling


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
                nxt = Fmt(POOL_BITS, nxt.frac + k, nxt.signed)
            sh = acc_frac - nxt.frac
            if not fused:                    # signed, one bit wider: the same values, no clip
                v = saturate(round_half_up(v * math.ldexp(1.0, -sh)),
                             *int_range(nxt.bits + 1, signed=True))
                sh = 0
            if L.relu:
                v = torch.relu(v)
            x = saturate(round_half_up(v * math.ldexp(1.0, -sh)), nxt.lo, nxt.hi)
            xf = nxt.frac
    raise AssertionError("unreachable")

