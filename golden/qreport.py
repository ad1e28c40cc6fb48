"""The whole ``aqua quantize`` report on the golden model: the interaction-aware search
(:mod:`golden.qsearch`) and its baselines on the same model, calibration and validation data.

* uniform 8-bit: every ``x``, ``w``, ``b`` at 8 bits, ``f0`` fraction bits
  (:func:`golden.qformat.uniform_formats`);
* each layer searched alone, then combined (:func:`golden.qsearch.search` with
  ``interactions=False``);
* PyTorch's static int8 quantization (:func:`golden.qbaseline.torch_ao_int8`);
* power-of-two shift-and-round, fused and unfused, with its quantization operation counts
  (:mod:`golden.qshift`).

Calibration (ranges, ``torch.ao`` observers): :func:`golden.fixedpoint.calibration_images`
(256 training images). Validation: the first ``images`` of the test split (default all 360;
the search selects on these images, so the report also gives the accuracy on a second,
held-out rendering of the test digits, ``cluttered_digits("test", seed=1)``).

Any other model (``zoo:<name>``, ``module:factory``: anything :func:`golden.graph.lower`
takes) is searched on its lowered graph (:func:`golden.qlayers.describe_graph`: every crossbar
layer's input, weights and bias, the adds and pools between them in float), on the same digits
resized to ``size x size``; the torch.ao and shift-and-round baselines need the demo CNN's chain
of convs (``model.convs``, ``model.fc``) and are left out for it, which ``notes`` says. The demo
CNN keeps :func:`golden.qlayers.describe` (the graph gives it the same logits, formats and
accuracies: ``tests/test_anycli.py``) so that its baselines run.

Wall times are gathered under the one key ``timing`` of :meth:`QuantizeReport.to_dict`, so that
two runs' reports without it compare byte for byte.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from golden.fixedpoint import calibration_images
from golden.qbaseline import torch_ao_int8
from golden.qformat import uniform_formats
from golden.qlayers import (accuracy, calibration_ranges, cost_summary, describe, fake_forward,
                            macs)
from golden.qsearch import DEFAULT_BOUND, search
from golden.qshift import quant_op_counts, shift_round

__all__ = ["QuantizeReport", "quantize_report", "chain_shaped", "model_layers", "PAPER",
           "DEFAULT_IMAGES", "HELDOUT_SEED"]

DEFAULT_IMAGES = 360      #: validation images (the whole test split)
HELDOUT_SEED = 1          #: rendering seed of the held-out copy of the test digits

#: the seed papers' figures, for the report
PAPER = {
    "memory_saving_vs_uniform8": 0.53,       # 53 % less memory than uniform 8-bit
    "multiply_saving_vs_uniform8": 0.775,    # 77.5 % cheaper multiplications
    "accuracy_loss_max": 0.01,               # with < 1 % top-1 loss
    "ignoring_interactions_loss_up_to": 0.50,  # up to 50 % loss when layers are searched alone
    "requantizer_area_ratio": 15.0,          # joint-quantization paper, RTL (later session)
    "requantizer_energy_ratio": 9.0,
}

EVALUATION = ("fake quantization in float32 (quantize with round_half_even and saturate, "
              "dequantize); shift-and-round integer-exact in float64")


@dataclass
class QuantizeReport:
    """What :func:`quantize_report` returns; :meth:`to_dict` is the JSON of ``aqua quantize``.

    ``methods`` maps ``searched``, ``uniform8``, ``no_interaction`` and ``torch_ao_int8`` to
    their formats, accuracies and costs; ``shift_round`` the power-of-two integer networks to
    their accuracies and quantizer counts; ``timing`` holds every wall time (seconds);
    ``hardware`` is filled in by ``cosim.quantize`` (the requantizers and the searched layer in
    RTL), or stays ``None``.
    """
    model: str
    bound: float
    validation_images: int
    heldout_images: int
    calibration_images: int
    schedule: str
    float_accuracy: float
    float_heldout_accuracy: float
    layers: list[dict]
    methods: dict
    shift_round: dict
    quant_ops: dict
    paper: dict = field(default_factory=lambda: dict(PAPER))
    evaluation: str = EVALUATION
    timing: dict = field(default_factory=dict)
    hardware: dict | None = None
    notes: list = field(default_factory=list)
    size: int = 32

    def to_dict(self) -> dict:
        """JSON-ready; without ``hardware`` if there is none, without ``notes`` and ``size``
        for the demo CNN at its 32x32 (the report as it always was)."""
        d = dataclasses.asdict(self)
        if d["hardware"] is None:
            del d["hardware"]
        if not d["notes"]:
            del d["notes"]
        if d["size"] == 32:
            del d["size"]
        return d


def chain_shaped(model) -> bool:
    """True for a DemoCNN-like model (``convs``, ``fc``): :func:`golden.qlayers.describe`
    takes it and every baseline runs."""
    return isinstance(model, nn.Module) and hasattr(model, "convs") and hasattr(model, "fc")


def model_layers(model: nn.Module, calib):
    """The search's layers of ``model``: :func:`golden.qlayers.describe` for a
    :func:`chain_shaped` one, else :func:`golden.qlayers.describe_graph` of its lowering
    (``golden.graph.UnsupportedGraphError`` if it has none)."""
    if chain_shaped(model):
        return describe(model, tuple(calib.shape[-2:]))
    from golden.graph import lower
    from golden.qlayers import describe_graph

    return describe_graph(lower(model, calib[:1]))


def quantize_report(model: nn.Module, *, bound: float = DEFAULT_BOUND,
                    images: int = DEFAULT_IMAGES, schedule: str = "greedy",
                    progress: Callable[[int, int], None] | None = None,
                    name: str = "demo CNN", size: int = 32) -> QuantizeReport:
    """Run the search, the baselines and shift-and-round (module docstring) on ``model``
    (named ``name`` in the report) fed the digits at ``size x size``.

    ``progress(done, total)`` is called after every (layer, tensor) step of both searches and
    after each baseline.

    Raises
    ------
    golden.graph.UnsupportedGraphError
        For a model that is neither DemoCNN-shaped nor lowered.
    """
    from golden.netreport import calibration as calibration_at, digits

    start = time.perf_counter()
    calib = calibration_images() if size == 32 else calibration_at(size)
    layers = model_layers(model, calib)
    chain = not hasattr(layers, "graph")
    xv, yv = digits("test", size)
    xv, yv = xv[:images], yv[:images]
    xh, yh = digits("test", size, seed=HELDOUT_SEED)
    ranges = calibration_ranges(layers, calib)
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
                          evaluations=aware.evaluations),
        "uniform8": entry(u8),
        "no_interaction": entry(alone.formats, alone.accuracy, meets_bound=alone.meets_bound,
                                evaluations=alone.evaluations),
    }
    done += 1
    step(0, total, done)
    if not chain:
        notes = ["torch.ao int8 and shift-and-round baselines: not run (they rebuild the demo "
                 "CNN's chain of convs, model.convs and model.fc); the search and its other "
                 "baselines ran on the lowered graph of every crossbar layer"]
        return QuantizeReport(
            model=name, bound=bound, validation_images=len(yv), heldout_images=len(yh),
            calibration_images=len(calib), schedule=schedule, float_accuracy=float_acc,
            float_heldout_accuracy=float_held, layers=_layer_rows(layers),
            methods=methods, shift_round={}, quant_ops={}, notes=notes, size=size,
            timing={"searched_seconds": round(aware.seconds, 2),
                    "no_interaction_seconds": round(alone.seconds, 2),
                    "golden_seconds": round(time.perf_counter() - start, 1)})
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
    return QuantizeReport(
        model=name, bound=bound, validation_images=len(yv), heldout_images=len(yh),
        calibration_images=len(calib), schedule=schedule, float_accuracy=float_acc,
        float_heldout_accuracy=float_held, layers=_layer_rows(layers),
        methods=methods, shift_round=shift, quant_ops=ops, size=size,
        timing={"searched_seconds": round(aware.seconds, 2),
                "no_interaction_seconds": round(alone.seconds, 2),
                "golden_seconds": round(time.perf_counter() - start, 1)})


def _layer_rows(layers) -> list[dict]:
    return [{"name": L.name, "macs": L.macs, "weights": L.weight.numel(),
             "biases": L.bias.numel()} for L in layers]
