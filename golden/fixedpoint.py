"""Post-training fixed-point quantization of the demo CNN to one accelerator configuration.

Every tensor is a power-of-two fixed-point number (FlexPoint): an integer ``q`` with ``f``
fraction bits stands for ``q * 2**-f``. For each layer the quantizer chooses

* ``w_frac`` (``fw``): the most fraction bits with which every weight fits the configuration's
  weight range (``weights.bits``, signed for the biased encoding, unsigned otherwise);
* ``x_frac`` (``fx``): for the first layer the most fraction bits with which the image ([0, 1])
  fits the input range; for every later conv layer the previous layer's ``out_frac``; for the
  classifier the most fraction bits with which the calibration's pooled features fit the input
  range (pooling averages 64 pixels, so its result is far smaller than the largest pixel);
* ``out_frac`` (``fo``): the most fraction bits with which the layer's largest output seen on
  :data:`CALIBRATION_IMAGES` training images fits ``output.bits`` (signed) and, if another layer
  reads it, also that layer's input range;
* the bias at the accumulator's scale, ``fw + fx`` fraction bits, saturated to ``bias_bits``;
* the FlexPoint shift ``fw + fx - fo``, which must lie in ``[shift_min, shift_max]``: a shift
  above the range is brought into it by dropping weight fraction bits, one below it by dropping
  output fraction bits (both only lose precision, never range).

The integer network then runs layer by layer through the golden model
(``golden.layer.conv2d`` / ``linear``): the input activations of layer ``l`` are the saturated
outputs of layer ``l - 1``, exactly what the hardware would be fed. Global average pooling, done
digitally between the last conv and the classifier, rescales the exact integer sum to the
classifier's input fraction bits and divides it by the pixel count rounding half up
(:func:`global_avg_pool`, :func:`div_round_half_up`).

Rounding, everywhere: float to integer rounds half to even (:func:`round_half_even`, which is
``torch.round``); integers are then saturated (:func:`saturate`), never wrapped.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from arch.config import AccelConfig
from arch.ranges import int_range
from golden import arith
from golden.arith import saturate
from golden.cnn import CONV_SPECS, DemoCNN
from golden.data import cluttered_digits

__all__ = [
    "QuantError", "round_half_even", "saturate", "to_fixed", "from_fixed", "frac_bits_for",
    "div_round_half_up", "global_avg_pool", "flexpoint_shift", "requantize", "bias_range",
    "QuantLayer", "QuantNet", "quantize_democnn", "quant_layer", "quant_forward",
    "quant_accuracy", "quant_inputs", "run_layer", "program_layer", "exact_reference", "float_reference",
    "calibration_images",
    "CALIBRATION_IMAGES", "CALIBRATION_SEED",
]

CALIBRATION_IMAGES = 256   #: training images used to find each layer's output range
CALIBRATION_SEED = 7       #: rendering seed of the calibration images (not a training seed)
_FRAC_LIMIT = 62           #: fraction bits are searched in [-62, 62]


class QuantError(ValueError):
    """A network that cannot be quantized to a configuration (the message says why)."""


# -- named rounding helpers ----------------------------------------------------------------

def round_half_even(t: torch.Tensor) -> torch.Tensor:
    """Round a float tensor to the nearest integer, ties to even (``torch.round``).

    >>> round_half_even(torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 1.25])).tolist()
    [0.0, 2.0, 2.0, -0.0, -2.0, 1.0]
    """
    return torch.round(t)


def to_fixed(t: torch.Tensor, frac_bits: int, lo: int, hi: int) -> torch.Tensor:
    """Quantize real values to int64 with ``frac_bits`` fraction bits.

    ``saturate(round_half_even(t * 2**frac_bits), lo, hi)``, computed in float64 (scaling by a
    power of two is exact). ``frac_bits`` may be negative.
    """
    scaled = t.to(torch.float64) * math.ldexp(1.0, frac_bits)
    return saturate(round_half_even(scaled), lo, hi).to(torch.int64)


def from_fixed(q: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """The real values (float64) of integers ``q`` with ``frac_bits`` fraction bits (exact for
    ``|q| < 2**53``)."""
    return q.to(torch.float64) * math.ldexp(1.0, -frac_bits)


def frac_bits_for(vmin: float, vmax: float, lo: int, hi: int) -> int:
    """The most fraction bits ``f`` with which every value in ``[vmin, vmax]`` quantizes
    (:func:`to_fixed`) into ``[lo, hi]`` without saturating.

    Values on a side that the range cannot hold at all (negative values when ``lo = 0``) are
    ignored: they saturate whatever ``f`` is. If no value needs room (all zero), the answer is
    the largest searched, 62.

    >>> frac_bits_for(0.0, 1.0, 0, 255)     # 1.0 * 2**7 = 128 fits, 2**8 = 256 does not
    7
    >>> frac_bits_for(-0.5, 0.25, -128, 127)  # -0.5 * 2**8 = -128 fits
    8
    >>> frac_bits_for(0.0, 0.999, -128, 127)  # 0.999 * 2**7 = 127.87 rounds to 128
    6
    """
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmin > vmax:
        raise ValueError(f"need finite vmin <= vmax, not [{vmin}, {vmax}]")
    pos = max(vmax, 0.0) if hi > 0 else 0.0
    neg = max(-vmin, 0.0) if lo < 0 else 0.0

    def fits(f: int) -> bool:
        scale = math.ldexp(1.0, f)
        return round(pos * scale) <= hi and -round(neg * scale) >= lo

    if pos == 0.0 and neg == 0.0:
        return _FRAC_LIMIT
    # Start from an upper bound and walk down, at most a couple of steps: with
    # largest = m * 2**e (0.5 <= m < 1), largest * 2**f >= 2**(e - 1 + f), which exceeds
    # every representable magnitude once e - 1 + f >= bitlength(max(hi, -lo)).
    exponent = math.frexp(max(pos, neg))[1]
    f = max(-_FRAC_LIMIT, min(_FRAC_LIMIT, max(hi, -lo, 1).bit_length() - exponent + 1))
    while f > -_FRAC_LIMIT and not fits(f):
        f -= 1
    if not fits(f):
        raise ValueError(f"values in [{vmin}, {vmax}] do not fit [{lo}, {hi}] "
                         f"with any fraction bits >= {-_FRAC_LIMIT}")
    return f


def div_round_half_up(s: torch.Tensor, n: int) -> torch.Tensor:
    """Integer ``s / n`` rounded to nearest, ties toward +infinity: ``floor((2s + n) / 2n)``.

    >>> div_round_half_up(torch.tensor([5, 6, 7, -5, -6, -7]), 4).tolist()
    [1, 2, 2, -1, -1, -2]
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer, not {n}")
    s = s.to(torch.int64)
    return torch.div(2 * s + n, 2 * n, rounding_mode="floor")


def bias_range(cfg: AccelConfig) -> tuple[int, int]:
    """``(lo, hi)`` of a signed ``cfg.bias_bits`` bias: ``cfg.bias_range``, the one bias
    range."""
    return cfg.bias_range


def flexpoint_shift(cfg: AccelConfig, w_frac: int, x_frac: int, out_frac: int) -> int:
    """The layer's FlexPoint shift ``w_frac + x_frac - out_frac``, checked against the
    configuration.

    Raises
    ------
    QuantError
        If the shift lies outside ``[cfg.shift_min, cfg.shift_max]``.
    """
    sh = w_frac + x_frac - out_frac
    if not cfg.shift_min <= sh <= cfg.shift_max:
        raise QuantError(
            f"FlexPoint shift = weight fraction bits {w_frac} + input fraction bits {x_frac} "
            f"- output fraction bits {out_frac} = {sh} is outside output.shift_min.."
            f"output.shift_max = {cfg.shift_min}..{cfg.shift_max} of configuration "
            f"'{cfg.name}'")
    return sh


def requantize(v: torch.Tensor, shift: int, relu: bool, output_bits: int) -> torch.Tensor:
    """Section 7 of ``docs/arithmetic.md`` on exact int64 sums ``v``: shift right rounding
    half toward +infinity (``(v + 2**(sh-1)) >> sh``; ``>>`` floors) or left exactly, then
    ReLU, then saturate to signed ``output_bits``.

    >>> requantize(torch.tensor([5, 6, -6, -5, 1000]), 2, False, 8).tolist()
    [1, 2, -1, -1, 127]
    """
    v = v.to(torch.int64)
    if shift < 0:   # exact, then saturated: clamp first so that int64 cannot wrap
        v = arith.left_shift_clamp(v, -shift, output_bits)
    return saturate(arith.relu(arith.round_shift(v, shift), relu),
                    *int_range(output_bits, signed=True))


# -- the quantized network -----------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class QuantLayer:
    """One layer of the integer network, ready for ``golden.layer.conv2d`` / ``linear``.

    Attributes
    ----------
    index : int
        Position in the network: ``0 .. len(CONV_SPECS) - 1`` are the convolutions, the last
        index the linear classifier.
    kind : {"conv", "linear"}
    weight : torch.Tensor
        int64, ``[Cout, Cin, kh, kw]`` (conv) or ``[Nout, K]`` (linear), in the configuration's
        weight range.
    bias : torch.Tensor
        int64 ``[Cout]`` at the accumulator's scale (``w_frac + x_frac`` fraction bits).
    shift : int
        FlexPoint shift ``w_frac + x_frac - out_frac``.
    relu : bool
    stride, padding : int
        Convolution geometry (1 and 0 for the linear layer).
    w_frac, x_frac, out_frac : int
        Fraction bits of weights, input activations and outputs.
    weights_clipped : int
        Weights that saturated (non-zero only for negative weights of an unsigned encoding).
    x : torch.Tensor or None
        The layer's integer input activations for a batch of images (``[B, Cin, H, W]`` or
        ``[B, K]``), filled in by :func:`quant_layer`.
    """
    index: int
    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    shift: int
    relu: bool
    stride: int
    padding: int
    w_frac: int
    x_frac: int
    out_frac: int
    weights_clipped: int = 0
    x: torch.Tensor | None = None

    @property
    def shape(self) -> str:
        """Human-readable geometry, e.g. ``conv 8->16 3x3 s2 p1``."""
        if self.kind == "linear":
            return f"linear {self.weight.shape[1]}->{self.weight.shape[0]}"
        co, ci, kh, kw = self.weight.shape
        return f"conv {ci}->{co} {kh}x{kw} s{self.stride} p{self.padding}"


@dataclass(frozen=True, eq=False)
class QuantNet:
    """The demo CNN quantized to ``cfg``: ``layers`` are the convolutions then the classifier;
    ``input_frac`` is the fraction bits of the quantized image."""
    cfg: AccelConfig
    layers: tuple[QuantLayer, ...]
    input_frac: int

    @property
    def conv_layers(self) -> tuple[QuantLayer, ...]:
        return tuple(q for q in self.layers if q.kind == "conv")


def calibration_images(n: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """The first ``n`` images of a training rendering reserved for calibration."""
    x, _ = cluttered_digits("train", seed=CALIBRATION_SEED, copies=1)
    return x[:n]


def _quantize_layer(cfg: AccelConfig, index: int, kind: str, weight: torch.Tensor,
                    bias: torch.Tensor, x_frac: int, out_lo: float, out_hi: float,
                    out_range: tuple[int, int], relu: bool, stride: int,
                    padding: int) -> QuantLayer:
    wlo, whi = cfg.weight_range
    w = weight.detach().to(torch.float64)
    w_frac = frac_bits_for(float(w.min()), float(w.max()), wlo, whi)
    out_frac = frac_bits_for(out_lo, out_hi, *out_range)
    sh = w_frac + x_frac - out_frac
    if sh > cfg.shift_max:        # fewer weight fraction bits: coarser weights, same range
        w_frac -= sh - cfg.shift_max
    elif sh < cfg.shift_min:      # fewer output fraction bits: coarser outputs, same range
        out_frac -= cfg.shift_min - sh
    shift = flexpoint_shift(cfg, w_frac, x_frac, out_frac)
    qw = to_fixed(w, w_frac, wlo, whi)
    clipped = int((round_half_even(w * math.ldexp(1.0, w_frac)) != qw).sum())
    qb = to_fixed(bias.detach(), w_frac + x_frac, *bias_range(cfg))
    return QuantLayer(index=index, kind=kind, weight=qw, bias=qb, shift=shift, relu=relu,
                      stride=stride, padding=padding, w_frac=w_frac, x_frac=x_frac,
                      out_frac=out_frac, weights_clipped=clipped)


def quantize_democnn(cfg: AccelConfig, model: DemoCNN,
                     calibration: torch.Tensor | None = None) -> QuantNet:
    """Choose every layer's fixed-point format for ``cfg`` and quantize weights and biases.

    Parameters
    ----------
    cfg : AccelConfig
    model : DemoCNN
        The trained float network.
    calibration : torch.Tensor, optional
        Float images ``[N, 1, 32, 32]`` whose activations set the output ranges; default
        :func:`calibration_images`.

    Returns
    -------
    QuantNet

    Raises
    ------
    QuantError
        If a layer's shift cannot be brought into the configuration's range.
    """
    if calibration is None:
        calibration = calibration_images()
    in_range = (cfg.input_min, cfg.input_max)
    out_full = (cfg.output_min, cfg.output_max)
    # Outputs that another crossbar layer reads must also fit its input range.
    out_feed = (max(cfg.output_min, cfg.input_min), min(cfg.output_max, cfg.input_max))
    input_frac = frac_bits_for(float(calibration.min()), float(calibration.max()), *in_range)

    layers: list[QuantLayer] = []
    x_frac = input_frac
    with torch.no_grad():
        a = calibration.to(torch.float32)
        for i, (spec, conv) in enumerate(zip(CONV_SPECS, model.convs)):
            a = conv(a)
            if spec.relu:
                a = torch.relu(a)
            q = _quantize_layer(cfg, i, "conv", conv.weight, conv.bias, x_frac,
                                float(a.min()), float(a.max()), out_feed, spec.relu,
                                spec.geometry.stride, spec.geometry.padding)
            layers.append(q)
            x_frac = q.out_frac
        # The pooled features are much smaller than the largest pixel: give them their own
        # fraction bits (global_avg_pool rescales), or most of them round to 0 or 1 LSB.
        pooled = a.mean(dim=(2, 3))
        x_frac = frac_bits_for(float(pooled.min()), float(pooled.max()), *in_range)
        logits = model.fc(pooled)
        layers.append(_quantize_layer(cfg, len(layers), "linear", model.fc.weight,
                                      model.fc.bias, x_frac, float(logits.min()),
                                      float(logits.max()), out_full, False, 1, 0))
    return QuantNet(cfg=cfg, layers=tuple(layers), input_frac=input_frac)


def run_layer(net: QuantNet, q: QuantLayer, x: torch.Tensor, programmed=None) -> torch.Tensor:
    """Layer ``q`` of ``net`` on integer inputs ``x`` through the golden model (int64 out).
    ``programmed``: its weights programmed once (:func:`program_layer`) for repeated calls."""
    from golden import layer

    if q.kind == "conv":
        return layer.conv2d(net.cfg, x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                            shift=q.shift, relu=q.relu, layer=programmed)
    return layer.linear(net.cfg, x, q.weight, q.bias, shift=q.shift, relu=q.relu,
                        layer=programmed)


def program_layer(net: QuantNet, q: QuantLayer):
    """Layer ``q``'s weights programmed onto ``net``'s crossbars
    (:func:`golden.layer.program`), for :func:`run_layer`'s ``programmed``."""
    from golden import layer

    w = q.weight.flatten(1).t() if q.kind == "conv" else q.weight.t()
    return layer.program(net.cfg, w)


def global_avg_pool(y: torch.Tensor, in_frac: int, out_frac: int) -> torch.Tensor:
    """Mean over the last two axes of integers ``y`` with ``in_frac`` fraction bits, as an
    integer with ``out_frac`` fraction bits: the exact sum, scaled by ``2**(out_frac -
    in_frac)`` and divided by the pixel count with :func:`div_round_half_up` (so it is exact
    up to one rounding). Not saturated.

    >>> global_avg_pool(torch.tensor([[[[1, 2], [3, 5]]]]), 0, 2).tolist()   # 11/4 = 2.75
    [[11]]
    >>> global_avg_pool(torch.tensor([[[[1, 2], [3, 5]]]]), 0, 0).tolist()   # 2.75 -> 3
    [[3]]
    """
    h, w = y.shape[-2:]
    s = y.to(torch.int64).sum(dim=(-2, -1))
    n = h * w
    if out_frac >= in_frac:
        return div_round_half_up(s << (out_frac - in_frac), n)
    return div_round_half_up(s, n << (in_frac - out_frac))


def _between(net: QuantNet, q: QuantLayer, y: torch.Tensor) -> torch.Tensor:
    """The digital step from conv layer ``q``'s output to the next layer's input: the global
    average pool before the classifier (to the classifier's input fraction bits), and
    saturation to the input range."""
    cfg = net.cfg
    if q.index == len(CONV_SPECS) - 1:
        y = global_avg_pool(y, q.out_frac, net.layers[q.index + 1].x_frac)
    return saturate(y, cfg.input_min, cfg.input_max)


def _batches(n: int, batch: int):
    return [(i, min(i + batch, n)) for i in range(0, n, batch)]


def quant_inputs(net: QuantNet, images: torch.Tensor) -> torch.Tensor:
    """The quantized image: ``to_fixed(images, input_frac)`` in the input range."""
    return to_fixed(images, net.input_frac, net.cfg.input_min, net.cfg.input_max)


def quant_layer(net: QuantNet, index: int, images: torch.Tensor, *,
                progress: Callable[[int], None] | None = None) -> QuantLayer:
    """Layer ``index`` of ``net`` with ``x`` set to its integer input activations for
    ``images``, obtained by running layers ``0 .. index - 1`` through the golden model.

    Raises
    ------
    IndexError
        If ``index`` is not a layer of ``net``.
    """
    if not 0 <= index < len(net.layers):
        raise IndexError(f"layer index must be in 0..{len(net.layers) - 1}, not {index}")
    x = quant_inputs(net, images)
    for q in net.layers[:index]:
        x = _between(net, q, run_layer(net, q, x))
        if progress is not None:
            progress(q.index)
    return dataclasses.replace(net.layers[index], x=x)


def quant_forward(net: QuantNet, images: torch.Tensor, *, batch: int = 64,
                  progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Integer logits (int64 ``[N, 10]``, ``out_frac`` of the last layer) of the quantized
    network, every crossbar layer run through the golden model.

    ``progress(done)`` is called with the number of images finished after each batch.
    """
    outs = []
    for lo, hi in _batches(len(images), batch):
        x = quant_inputs(net, images[lo:hi])
        for q in net.layers:
            x = run_layer(net, q, x)
            if q.kind == "conv":
                x = _between(net, q, x)
        outs.append(x)
        if progress is not None:
            progress(hi)
    return torch.cat(outs) if outs else torch.zeros(0, 10, dtype=torch.int64)


def quant_accuracy(net: QuantNet, images: torch.Tensor, labels: torch.Tensor, **kwargs) -> float:
    """Top-1 accuracy of the quantized network (ties in the integer logits go to the lowest
    class, as ``argmax`` does)."""
    logits = quant_forward(net, images, **kwargs)
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else 0.0


# -- references for checking the golden model on one layer --------------------------------

def exact_reference(cfg: AccelConfig, q: QuantLayer) -> torch.Tensor:
    """What a lossless crossbar must produce for layer ``q`` on ``q.x``: the exact int64
    convolution (or matrix product) plus bias, then :func:`requantize`."""
    if q.x is None:
        raise ValueError("layer has no input activations; get it from quant_layer()")
    x = q.x.to(torch.int64)
    if q.kind == "conv":
        v = F.conv2d(x, q.weight, stride=q.stride, padding=q.padding) + q.bias[:, None, None]
    else:
        v = x @ q.weight.T + q.bias
    return requantize(v, q.shift, q.relu, cfg.output_bits)


def float_reference(q: QuantLayer) -> torch.Tensor:
    """Layer ``q`` in float64 on the dequantized inputs, weights and bias, expressed in output
    LSBs (multiplied by ``2**out_frac``), ReLU applied, neither rounded nor saturated."""
    if q.x is None:
        raise ValueError("layer has no input activations; get it from quant_layer()")
    x = from_fixed(q.x, q.x_frac)
    w = from_fixed(q.weight, q.w_frac)
    b = from_fixed(q.bias, q.w_frac + q.x_frac)
    return float_layer(q, x, w, b) * math.ldexp(1.0, q.out_frac)


def float_layer(q, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The float convolution or linear map of layer ``q`` (anything with ``kind``, ``stride``,
    ``padding`` and ``relu``), then its ReLU."""
    if q.kind == "conv":
        y = F.conv2d(x, w, b, stride=q.stride, padding=q.padding)
    else:
        y = F.linear(x, w, b)
    return torch.relu(y) if q.relu else y
