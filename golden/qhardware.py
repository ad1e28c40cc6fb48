"""From the searched per-layer formats (``golden.qsearch``, ``golden.qformat``) to a tile
configuration and an integer layer that the Datapath RTL computes bit-exactly.

For conv layer ``l`` with formats ``f = formats[l]`` and output format ``o = formats[l+1].x``
(the next layer's input), :func:`layer_config` derives an :class:`~arch.config.AccelConfig` from
a base tile:

* ``inputs.bits = f.x.bits``, ``inputs.signed = f.x.signed``;
* ``weights.bits``: ``f.w.bits`` (one more if the format is unsigned: the tile stores signed,
  biased weights), rounded up to a multiple of ``crossbar.cell_bits`` -- the same integers;
  ``crossbar.cols`` and ``adc.columns_per_cycle`` are adjusted so that whole weights fit;
* ``output.bits = o.bits + 1`` for an unsigned ``o`` (the ReLU output is saturated to the
  signed ``[-2**o.bits, 2**o.bits - 1]``, of which it uses exactly the unsigned range), else
  ``o.bits``;
* the FlexPoint shift ``f.w.frac + f.x.frac - o.frac`` (:func:`layer_shift`), with
  ``output.shift_min/max`` widened to include it (and narrowed to the accumulator).

:func:`integer_layer` gives the layer's integer inputs (the images quantized to ``formats[0].x``
and run through the earlier layers, each in its own derived configuration through
``golden.layer.conv2d``), weights and bias (:func:`golden.qformat.integer_params`, the very
integers of :func:`golden.qshift.shift_round`), as a :class:`golden.fixedpoint.QuantLayer`
that ``cosim.run.cnn_jobs`` feeds to the RTL.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from arch.config import AccelConfig
from golden.fixedpoint import QuantError, QuantLayer, bias_range, round_half_even, saturate
from golden.qformat import LayerFormat, integer_params
from golden.qlayers import LayerInfo

__all__ = ["layer_config", "layer_shift", "integer_layer"]


def _check_index(layers: Sequence[LayerInfo], formats: Sequence[LayerFormat], index: int):
    convs = [i for i, L in enumerate(layers) if L.kind == "conv"]
    if index not in convs or index + 1 >= len(layers) or layers[index + 1].pool_before:
        ok = [i for i in convs if i + 1 < len(layers) and not layers[i + 1].pool_before]
        raise QuantError(f"layer must be a conv layer whose output another conv layer reads "
                         f"({', '.join(map(str, ok))}), not {index}")
    if len(formats) != len(layers):
        raise QuantError(f"formats must give one LayerFormat per layer ({len(layers)}), "
                         f"not {len(formats)}")


def layer_shift(formats: Sequence[LayerFormat], index: int) -> int:
    """``w.frac + x.frac - next x.frac`` of layer ``index``."""
    f, o = formats[index], formats[index + 1].x
    return f.w.frac + f.x.frac - o.frac


def layer_config(base: AccelConfig, layers: Sequence[LayerInfo],
                 formats: Sequence[LayerFormat], index: int) -> AccelConfig:
    """The configuration that implements layer ``index`` in its formats (module docstring).

    Raises
    ------
    QuantError
        If ``index`` is not a conv layer feeding another conv layer.
    arch.config.ConfigError
        If the derived configuration is invalid (e.g. the ADC of ``base`` becomes too narrow).
    """
    _check_index(layers, formats, index)
    f, o = formats[index], formats[index + 1].x
    b = base.cell_bits
    wbits = f.w.bits + (0 if f.w.signed else 1)
    wbits = -(-wbits // b) * b
    slices = wbits // b
    outputs = max(1, base.cols // slices)
    cols = slices * outputs
    sh = layer_shift(formats, index)
    cfg = base.replace(
        name=f"{base.name}_l{index}", input_bits=f.x.bits, input_signed=f.x.signed,
        weight_bits=wbits, weight_encoding="biased", cols=cols,
        adc_columns_per_cycle=math.gcd(cols, base.adc_columns_per_cycle),
        output_bits=o.bits + (0 if o.signed else 1),
        shift_min=min(0, sh), shift_max=max(0, sh),
        description=f"layer {index} of the demo CNN in its searched formats "
                    f"x={f.x} w={f.w} b={f.b} -> {o}")
    # the base's shift range, narrowed to what the (maybe narrower) accumulator allows
    limit = cfg.acc_bits - 1
    return cfg.replace(shift_min=max(min(base.shift_min, sh), -limit),
                       shift_max=min(max(base.shift_max, sh), limit))


def integer_layer(base: AccelConfig, layers: Sequence[LayerInfo],
                  formats: Sequence[LayerFormat], index: int, images: torch.Tensor
                  ) -> tuple[AccelConfig, QuantLayer]:
    """``(cfg, layer)``: :func:`layer_config` and the integer layer ``index`` with its inputs
    ``x`` for ``images``, ready for ``golden.layer.conv2d`` and ``cosim.run.cnn_jobs``.

    Raises
    ------
    QuantError
        As :func:`layer_config`, or if the bias does not fit the configuration's bias width.
    """
    from golden.layer import conv2d

    _check_index(layers, formats, index)
    f0 = formats[0].x
    x = saturate(round_half_even(images.double() * math.ldexp(1.0, f0.frac)), f0.lo, f0.hi)
    x = x.to(torch.int64)
    for i in range(index + 1):
        cfg = layer_config(base, layers, formats, i)
        L, f = layers[i], formats[i]
        w, b, _ = integer_params(L, f, f.x.frac)
        lo, hi = bias_range(cfg)
        if float(b.min()) < lo or float(b.max()) > hi:
            raise QuantError(f"layer {i}: bias at the accumulator's scale needs more than "
                             f"bias_bits = {cfg.bias_bits} of configuration '{cfg.name}'")
        q = QuantLayer(index=i, kind="conv", weight=w.to(torch.int64), bias=b.to(torch.int64),
                       shift=layer_shift(formats, i), relu=L.relu, stride=L.stride,
                       padding=L.padding, w_frac=f.w.frac, x_frac=f.x.frac,
                       out_frac=formats[i + 1].x.frac, x=x)
        if i == index:
            return cfg, q
        x = conv2d(cfg, x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                   shift=q.shift, relu=q.relu)
    raise AssertionError("unreachable")
