"""Any model on the shipped digits through the golden fixed-point path: the network-wide
reports of ``aqua demo --model`` and ``aqua energy --model``.

A model (``democnn``, ``zoo:<name>``, ``module:factory``: any ``nn.Module``
:func:`golden.graph.lower` takes) is lowered to a graph and quantized to a configuration on
the calibration images DemoCNN uses (:func:`quantize_model`, :func:`golden.qnet.quantize_graph`);
images are the shipped cluttered digits (1x32x32, ten classes), resized to ``size x size``
(bilinear) for a model that wants larger inputs (:func:`digits`). Every crossbar layer runs
through the golden crossbar model (:func:`golden.qnet.qforward`); for the demo CNN the integers
are those of ``golden.fixedpoint.quant_forward`` (``tests/golden/test_graph.py``, ``tests/test_anycli.py``).

* :func:`demo_network`: float and quantized top-1 on the first test images, and per crossbar
  layer its crossbars and cycles (:func:`golden.qnet.layer_mappings`).
* :func:`network_energy`: per crossbar layer and per crop vector the analytic energy
  (``golden.energy_model.conv_layer_energy`` on the layer's geometry with its integer inputs;
  a grouped or depthwise conv is ``groups`` layers on their own crossbars, each charged with
  its own input channels), the crossbar count and the cycles (computed output positions times
  ``cfg.latency + 1``: a layer's crossbars work in parallel, layers one after another). The
  crop is on the image and scaled to every layer's map (``golden.study.crop_plan``), as in the
  crop study; the digital nodes (adds, pools) are not charged.
* :func:`conv_layer_of`: a crossbar conv layer of the graph as a
  :class:`golden.fixedpoint.QuantLayer` with its integer inputs -- what the RTL
  (``cosim.run.cnn_jobs``, the ``ConvTile``) takes -- or why it cannot be one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from arch.config import AccelConfig
from golden.timing import single_thread

__all__ = ["digits", "calibration", "quantize_model", "conv_layer_of", "first_conv_layer",
           "tile_layers",
           "NetDemoReport", "demo_network", "NetEnergyReport", "network_energy", "layer_rows"]


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def digits(split: str = "test", size: int = 32, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped cluttered digits (:func:`golden.data.cluttered_digits`) at ``size x size``."""
    from golden.data import cluttered_digits

    x, y = cluttered_digits(split, **kwargs)
    return _resize(x, size), y


def calibration(size: int = 32) -> torch.Tensor:
    """The calibration images of the demo CNN (:func:`golden.fixedpoint.calibration_images`)
    at ``size x size``."""
    from golden.fixedpoint import calibration_images

    return _resize(calibration_images(), size)


def quantize_model(cfg: AccelConfig, model, size: int = 32):
    """``model`` lowered and quantized to ``cfg`` on :func:`calibration` images: a
    :class:`golden.qnet.QGraph`.

    Raises
    ------
    golden.graph.UnsupportedGraphError, golden.fixedpoint.QuantError
        (both ``ValueError``) for a model the crossbar path cannot take.
    """
    from golden.graph import load_model, lower
    from golden.qnet import quantize_graph

    cal = calibration(size)
    return quantize_graph(cfg, lower(load_model(model), cal[:1]), cal)


def conv_layer_of(qg, name: str, images: torch.Tensor):
    """``(layer, None)``: crossbar node ``name`` of ``qg`` as a
    :class:`golden.fixedpoint.QuantLayer` whose ``x`` is its integer input (saturated to the
    input range, as the crossbar sees it) for float ``images``; or ``(None, why)`` if the RTL
    datapath cannot compute it as one conv (grouped, dilated, non-square, a linear layer, or
    a layer with the input offset rule, which runs on the golden path only:
    ``docs/arithmetic.md``, "Signed activations on unsigned inputs").
    A fused activation other than ReLU (ReLU6's upper bound) is digital, after the layer:
    the ``QuantLayer`` is the crossbar part."""
    from golden.fixedpoint import QuantLayer
    from golden.qnet import qforward_all, quant_inputs

    q = qg[name]
    why = _plain_conv_problem(q)
    if why is not None:
        return None, f"'{name}' ({q.describe}) is {why}"
    a = q.attrs
    if q.inputs[0] == qg.nodes[0].name:
        x = quant_inputs(qg, images)
    else:
        x = qforward_all(qg, images)[q.inputs[0]]
    x = torch.clamp(x, qg.cfg.input_min, qg.cfg.input_max)
    index = [n.name for n in qg.crossbar_nodes].index(name)
    return QuantLayer(index=index, kind="conv", weight=q.weight, bias=q.bias, shift=q.shift,
                      relu=q.relu, stride=int(a["stride"][0]), padding=int(a["padding"][0]),
                      w_frac=q.w_frac, x_frac=q.x_frac, out_frac=q.frac,
                      weights_clipped=q.weights_clipped, x=x), None


def _plain_conv_problem(q) -> str | None:
    if q.op != "conv":
        return "a linear layer"
    if q.input_offset:
        return (f"a layer reading a signed input through the input offset rule (absent taps "
                f"driven as 2^(Bx-1) = {q.input_offset}), which the ConvTile does not "
                f"implement: golden path only")
    a = q.attrs
    _, _, kh, kw = q.weight.shape
    if a["groups"] != 1 or kh != kw or a["stride"][0] != a["stride"][1] \
            or a["padding"][0] != a["padding"][1] or a["dilation"] != (1, 1):
        return "not a plain square conv (groups 1, no dilation)"
    return None


def tile_layers(qg) -> list[tuple[int, str, str | None]]:
    """Per crossbar layer of ``qg``: ``(index, name, None)`` if one RTL ``ConvTile`` (one
    crossbar's rows, a plain conv) computes it, else ``(index, name, why not)``."""
    from golden.qnet import layer_mappings

    out = []
    for i, (q, m) in enumerate(zip(qg.crossbar_nodes, layer_mappings(qg))):
        why = _plain_conv_problem(q)
        if why is None and m.mapping.row_tiles > 1:
            why = f"{m.geometry.rows} im2col rows, more than one crossbar's {qg.cfg.rows}"
        out.append((i, q.name, why))
    return out


def first_conv_layer(qg, images: torch.Tensor):
    """:func:`conv_layer_of` the first crossbar layer of ``qg``."""
    return conv_layer_of(qg, qg.crossbar_nodes[0].name, images)


def layer_rows(qg) -> list[dict]:
    """Per crossbar layer: name, geometry, conv groups, row tiles, output groups, crossbars,
    utilization, output positions and cycles per image (:func:`golden.qnet.layer_mappings`)."""
    from golden.qnet import layer_mappings

    return [{"layer": m.name, "shape": m.describe, "conv_groups": m.conv_groups,
             "row_tiles": m.mapping.row_tiles, "output_groups": m.mapping.groups,
             "crossbars": m.crossbars, "utilization": m.utilization,
             "positions": m.positions, "cycles": m.cycles}
            for m in layer_mappings(qg)]


def _config_dict(cfg: AccelConfig) -> dict:
    return {"name": cfg.name, "description": cfg.description, "rows": cfg.rows,
            "cols": cfg.cols, "cell_bits": cfg.cell_bits, "weight_bits": cfg.weight_bits,
            "weight_encoding": cfg.weight_encoding, "input_bits": cfg.input_bits,
            "adc_bits": cfg.adc_bits, "adc_mode": cfg.adc_mode, "latency": cfg.latency}


# -- aqua demo --model ------------------------------------------------------------------------

@dataclass
class NetDemoReport:
    """``aqua demo --model``: the whole network through the golden fixed-point model on
    ``config``: float and quantized top-1 on the first ``images`` test images, and per crossbar
    layer its mapping and cycles. ``rtl`` is filled in by ``cosim.demo`` (or stays ``None``)."""
    config: dict
    model: str
    size: int
    layers: list
    crossbars: int
    cycles: int
    images: int
    float_top1: float
    quant_top1: float | None
    weights_clipped: int
    timing: dict = field(default_factory=dict)
    rtl: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def demo_network(cfg: AccelConfig, model, *, name: str, size: int = 32, images: int = 16,
                 progress: Callable[[int], None] | None = None, qg=None) -> NetDemoReport:
    """:class:`NetDemoReport` of ``model`` (quantized to ``cfg`` unless ``qg``, its
    :func:`quantize_model`, is given); ``images = 0`` skips the quantized accuracy.

    Raises
    ------
    golden.graph.UnsupportedGraphError, golden.fixedpoint.QuantError
        As :func:`quantize_model`.
    """
    from golden.qnet import float_top1, quant_top1

    t0 = time.perf_counter()
    qg = quantize_model(cfg, model, size) if qg is None else qg
    x, y = digits("test", size)
    x, y = x[:images], y[:images]
    rows = layer_rows(qg)
    ft = float_top1(qg.graph, x, y) if images else float("nan")
    with single_thread():
        qt = quant_top1(qg, x, y, batch=32, progress=progress) if images else None
    return NetDemoReport(
        config=_config_dict(cfg), model=name, size=size, layers=rows,
        crossbars=sum(r["crossbars"] for r in rows), cycles=sum(r["cycles"] for r in rows),
        images=len(y), float_top1=ft, quant_top1=qt,
        weights_clipped=sum(q.weights_clipped for q in qg.crossbar_nodes),
        timing={"golden_seconds": round(time.perf_counter() - t0, 2)})


# -- aqua energy --model ----------------------------------------------------------------------

def _sum(v, groups: int) -> float:
    """A per-group energy figure summed over the ``groups`` conv groups: a ``[groups]`` tensor
    (the DAC terms, one per group's inputs) is summed, a scalar (the same for every group) is
    multiplied."""
    return float(v.sum()) if isinstance(v, torch.Tensor) else float(v) * groups


@dataclass
class NetEnergyReport:
    """What ``aqua energy --model`` reports (:func:`network_energy`); :meth:`to_dict` is its
    JSON. ``layers``: per crossbar layer its mapping (:func:`layer_rows`) and ``pj`` per crop
    (in the order of ``crops``), ``by_block`` uncropped; ``crops``: per crop vector the
    network's total pJ, cycles, the image's predicted class and whether it is the uncropped
    one. ``best_crop``: the cheapest crop that keeps the image's class (the oracle for this
    image). Everything but ``timing`` is the same for two runs with the same arguments."""
    config: str
    table: str
    model: str
    size: int
    image: int
    fraction: float
    calibration: str | None
    calibration_status: str
    layers: list
    crops: list
    best_crop: int
    crossbars: int
    timing: dict = field(default_factory=dict)

    @property
    def full(self) -> dict:
        return self.crops[0]

    @property
    def best(self) -> dict:
        return next(c for c in self.crops if c["crop"] == self.best_crop)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def network_energy(cfg: AccelConfig, table, model, *, name: str, size: int = 32,
                   image: int = 0, crop: int | None = None, fraction: float = 0.25,
                   qg=None) -> NetEnergyReport:
    """Energy, crossbars and cycles of every crossbar layer of ``model`` (quantized to ``cfg``
    unless ``qg`` is given) on test image ``image``, uncropped and under crop ``crop``
    (``None``: all 16; see the module docstring).

    Raises
    ------
    golden.graph.UnsupportedGraphError, golden.fixedpoint.QuantError
        As :func:`quantize_model`, or for a conv the energy model cannot take
        (``golden.study.graph_geometry``).
    ValueError
        For a crop or image index out of range.
    """
    from golden import study as S
    from golden.crop import CROP_VECTORS
    from golden.energy_model import calibration_status, conv_layer_energy, load_calibration

    t0 = time.perf_counter()
    if crop is not None and not 0 <= crop < S.NCROPS:
        raise ValueError(f"crop must be a crop vector index 0..{S.NCROPS - 1}, not {crop}")
    x, _ = digits("test", size)
    if not 0 <= image < x.shape[0]:
        raise ValueError(f"image must lie in [0, {x.shape[0] - 1}], not {image}")
    qg = quantize_model(cfg, model, size) if qg is None else qg
    geoms, groups, names = S.graph_geometry(qg)
    offsets = S.input_offsets(qg)
    crops = list(range(S.NCROPS)) if crop is None else sorted({0, crop})
    plan = [S.crop_plan(geoms, fraction, 0)[c] for c in crops]
    with single_thread():
        logits, inputs = S.crop_forward(qg, x[image:image + 1], plan, with_inputs=True)
    cal = load_calibration(cfg, table)
    per_vector = cfg.latency + 1
    rows = layer_rows(qg)
    totals = [0.0] * len(crops)
    cycles = [0] * len(crops)
    for li, (g, ng, row) in enumerate(zip(geoms, groups, rows)):
        row["pj"] = []
        row["positions_per_crop"] = []
        for ci in range(len(crops)):
            xi = inputs[li]
            xc = xi[min(ci, xi.shape[0] - 1)]                 # [1, C, H, W] or [1, K]
            xc = xc[:, :, None, None] if xc.dim() == 2 else xc
            xc = xc.reshape(ng, -1, *xc.shape[2:])           # one image per conv group
            e = conv_layer_energy(cfg, table, g, window=plan[ci][li], x=xc + offsets[li],
                                  calibration=cal, absent=offsets[li])
            pj = _sum(e.total_pj, ng)
            row["pj"].append(pj)
            row["positions_per_crop"].append(int(e.events["positions"]))
            totals[ci] += pj
            cycles[ci] += int(e.events["positions"]) * per_vector
            if ci == 0:
                row["by_block"] = {b: _sum(v, ng) for b, v in e.by_block.items()}
                row["by_event"] = {k: _sum(v, ng) for k, v in e.by_event.items()}
    pred = logits[:, 0].argmax(-1).tolist()
    crop_rows = [{"crop": c, "vector": list(CROP_VECTORS[c]), "total_pj": totals[i],
                  "saved": 1 - totals[i] / totals[0] if totals[0] else 0.0,
                  "cycles": cycles[i], "predicted": int(pred[i]),
                  "same_class": pred[i] == pred[0]} for i, c in enumerate(crops)]
    keep = [r for r in crop_rows if r["same_class"]]
    best = min(keep, key=lambda r: (r["total_pj"], r["crop"]))
    return NetEnergyReport(
        config=cfg.name, table=table.name, model=name, size=size, image=image,
        fraction=fraction, calibration=(cal.path or cal.config) if cal else None,
        calibration_status=calibration_status(cal, cfg, table), layers=rows, crops=crop_rows,
        best_crop=best["crop"], crossbars=sum(r["crossbars"] for r in rows),
        timing={"wall_s": round(time.perf_counter() - t0, 2)})
