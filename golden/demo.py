"""The demo CNN's command reports on the golden model: ``aqua demo`` (one layer checked and
timed, the quantized network's accuracy), ``aqua bench`` (every layer timed) and ``aqua train``
(train and save). Each function returns a report dataclass with ``to_dict()``; the commands
only render it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from arch.config import AccelConfig

__all__ = ["DemoReport", "demo_layer", "bench_layers",
           "TrainReport", "train_and_save"]


def _float_inputs(q):
    """Layer ``q``'s dequantized inputs, weights and bias in float32 (as a float net runs)."""
    from golden import fixedpoint as fxp

    return (fxp.from_fixed(q.x, q.x_frac).float(), fxp.from_fixed(q.weight, q.w_frac).float(),
            fxp.from_fixed(q.bias, q.w_frac + q.x_frac).float())


# -- aqua demo ------------------------------------------------------------------------------

@dataclass
class DemoReport:
    """One conv layer of the demo CNN through the golden model on ``cfg``: checked against
    the exact int64 convolution and the float one, timed against torch; the float and the
    quantized network's accuracy. ``rtl`` is filled in by ``cosim.demo`` (or stays ``None``)."""
    config: dict
    layer: int
    shape: str
    in_shape: tuple
    out_shape: tuple
    relu: bool
    row_tiles: int
    groups: int
    vectors: int
    crossbar_latency: int
    w_frac: int
    x_frac: int
    out_frac: int
    shift: int
    weights_clipped: int
    images: int
    lossless: bool
    outputs: int
    mismatches: int
    max_error_lsb: float
    saturated: int
    golden_seconds: float
    torch_seconds: float
    float_accuracy: float
    float_images: int
    quant_accuracy: float | None
    quant_images: int
    rtl: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def demo_layer(cfg: AccelConfig, model, layer: int, images: int, accuracy_images: int, *,
               progress: Callable[[int], None] | None = None) -> DemoReport:
    """Conv layer ``layer`` of ``model`` quantized to ``cfg`` on the first ``images`` test
    images; the quantized network's accuracy on the first ``accuracy_images`` (0: skipped;
    ``progress(images done)`` after each batch).

    Raises
    ------
    golden.fixedpoint.QuantError
        If the model cannot be quantized to ``cfg``.
    """
    import torch.nn.functional as F

    from golden import fixedpoint as fxp
    from golden import layer as golden_layer
    from golden.cnn import CONV_SPECS, evaluate
    from golden.data import cluttered_digits
    from golden.timing import best_time, single_thread

    x_test, y_test = cluttered_digits("test")
    net = fxp.quantize_democnn(cfg, model)
    q = fxp.quant_layer(net, layer, x_test[:images])

    def golden():
        return golden_layer.conv2d(cfg, q.x, q.weight, q.bias, stride=q.stride,
                                   padding=q.padding, shift=q.shift, relu=q.relu)

    # The float layer on the dequantized inputs, as torch runs it (float32, like a float net).
    xf, wf, bf = _float_inputs(q)

    def reference():
        return F.conv2d(xf, wf, bf, stride=q.stride, padding=q.padding)

    t_golden, y = best_time(golden, min_seconds=0.5)
    t_torch, _ = best_time(reference, min_seconds=0.2)

    exact = fxp.exact_reference(cfg, q)
    mismatches = int((y != exact).sum())
    fref = fxp.float_reference(q)
    unsat = (fref > cfg.output_min - 0.5) & (fref < cfg.output_max + 0.5)
    err = (y.double() - fref).abs()
    max_err = float(err[unsat].max()) if bool(unsat.any()) else float("nan")

    float_acc = evaluate(model, x_test, y_test)
    quant_acc = None
    if accuracy_images:
        with single_thread():
            quant_acc = fxp.quant_accuracy(net, x_test[:accuracy_images],
                                           y_test[:accuracy_images], progress=progress)

    mapping = golden_layer.matrix_mapping(cfg, q.weight[0].numel(), q.weight.shape[0])
    row_tiles, groups = mapping.row_tiles, mapping.groups
    return DemoReport(
        config={"name": cfg.name, "description": cfg.description, "rows": cfg.rows,
                "cols": cfg.cols, "cell_bits": cfg.cell_bits, "weight_bits": cfg.weight_bits,
                "weight_encoding": cfg.weight_encoding, "input_bits": cfg.input_bits,
                "adc_bits": cfg.adc_bits, "adc_mode": cfg.adc_mode},
        layer=layer, shape=q.shape, in_shape=tuple(q.x.shape[1:]),
        out_shape=tuple(y.shape[1:]), relu=CONV_SPECS[layer].relu, row_tiles=row_tiles,
        groups=groups, vectors=y.shape[0] * y.shape[2] * y.shape[3],
        crossbar_latency=cfg.latency, w_frac=q.w_frac, x_frac=q.x_frac, out_frac=q.out_frac,
        shift=q.shift, weights_clipped=q.weights_clipped, images=images,
        lossless=cfg.adc_mode == "lossless", outputs=y.numel(), mismatches=mismatches,
        max_error_lsb=max_err, saturated=int((~unsat).sum()), golden_seconds=t_golden,
        torch_seconds=t_torch, float_accuracy=float_acc, float_images=len(x_test),
        quant_accuracy=quant_acc, quant_images=accuracy_images)


# -- aqua bench -----------------------------------------------------------------------------

def bench_layers(cfgs: list[AccelConfig], model, images: int, *, net_images: int = 0,
                 net_config: AccelConfig | None = None,
                 progress: Callable[[int, int], None] | None = None):
    """Time every layer of ``model`` quantized to each of ``cfgs`` on the first ``images`` test
    images, golden model against the float layer (one thread, best of several runs,
    :func:`golden.timing.time_layer`); with ``net_images`` also zoo:resnet18 at 64x64 under all
    16 crops on ``net_config`` (:func:`golden.timing.time_network`). ``progress(steps done,
    steps)`` after each. Returns a :class:`golden.timing.SpeedReport`.

    Raises
    ------
    golden.fixedpoint.QuantError
        If the model cannot be quantized to a configuration.
    """
    from golden import fixedpoint as fxp
    from golden.data import cluttered_digits
    from golden.timing import SpeedReport, time_layer, time_network

    x_test, _ = cluttered_digits("test")
    nets = [fxp.quantize_democnn(cfg, model) for cfg in cfgs]
    steps = sum(len(n.layers) for n in nets) + (1 if net_images else 0)
    report = SpeedReport(images)
    for net in nets:
        for index in range(len(net.layers)):
            report.layers.append(time_layer(net, index, x_test[:images]))
            if progress is not None:
                progress(len(report.layers), steps)
    if net_images:
        report.net = time_network(net_config or cfgs[0], images=net_images)
        if progress is not None:
            progress(steps, steps)
    return report


# -- aqua train -----------------------------------------------------------------------------

@dataclass
class TrainReport:
    """What :func:`train_and_save` did: optimiser steps, wall time, test accuracy, file."""
    steps: int
    seconds: float
    test_accuracy: float
    path: str
    epochs: int
    seed: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def train_and_save(output: str | Path, *, epochs: int | None = None, seed: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> TrainReport:
    """Train the demo CNN (:func:`golden.cnn.train_democnn`; the shipped model's epochs and
    seed by default; ``progress(step, steps)`` after every step) and write its state dict to
    ``output``.

    Raises
    ------
    OSError
        If ``output`` cannot be written.
    """
    from golden.cnn import TRAIN_EPOCHS, TRAIN_SEED, save_democnn, train_democnn

    epochs = TRAIN_EPOCHS if epochs is None else epochs
    seed = TRAIN_SEED if seed is None else seed
    result = train_democnn(epochs=epochs, seed=seed, progress=progress)
    path = save_democnn(result.model, output)
    return TrainReport(steps=result.steps, seconds=result.seconds,
                       test_accuracy=result.test_accuracy, path=str(path), epochs=epochs,
                       seed=seed)
