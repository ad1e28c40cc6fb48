"""The energy report of a demo-CNN conv layer (``aqua energy``): analytic, per crop, and the RTL
toggle runs beside it; also the cropped crossbar jobs those runs (and the calibration) stream.

For one test image, the layer's input activations come from the integer network
(``golden.fixedpoint.quant_layer``); the crop window is taken on the image
(``golden.crop.kept_window``) and scaled to the layer's map. For the uncropped layer and each
crop vector (all 16, or one), the analytic model (``golden.energy_model``) gives the energy per
event class and per block: the table's events (ADC scaled to the config's width, eDRAM
feature-map traffic) plus the digital logic per operation from the calibration of the config and
table (``configs/energy/calibration/<config>/<table>.toml``; without one, events only, and the
report says so). A per-layer table gives every conv layer uncropped and under its best crop.

Unless ``analytic``, the uncropped layer and the best crop are also co-simulated
(:func:`crop_jobs`: one job per crossbar, cropped activations zero, only computed output
positions streamed); the RTL's event counts are checked equal to the analytic ones and the
digital energy from the RTL's per-bit toggles is reported beside the calibrated estimate.

The *best crop* is the non-trivial crop vector whose cropped layer output is closest (L1) to the
uncropped one: the crop that removes work where this image has nothing to compute.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from arch.geometry import conv_out_size

__all__ = ["crop_jobs", "crop_rows", "digital_by_event", "rtl_runs", "EnergyReport",
           "energy_report", "NCROPS"]

#: crop vectors of ``golden.crop.CROP_VECTORS``
NCROPS = 16


def crop_jobs(cfg, layer, window):
    """``cnn_jobs`` of ``layer`` (one image) under the kept ``window``: cropped activations
    are zero and only the computed output positions are streamed. Returns ``(jobs,
    output_window)``."""
    from golden.crop import crop_activations, output_window

    from .run import cnn_jobs

    _, _, H, W = layer.x.shape
    k = layer.weight.shape[2]
    ow = output_window(window, H, W, k, layer.stride, layer.padding)
    wo = conv_out_size(W, k, layer.stride, layer.padding)
    idx = [oy * wo + ox for oy in range(ow[0], ow[1]) for ox in range(ow[2], ow[3])]
    jobs = cnn_jobs(cfg, dataclasses.replace(layer, x=crop_activations(layer.x, window)))
    for job in jobs:
        job["x"] = job["x"][idx]
    return jobs, ow


def _num(v):
    return float(v.sum()) if hasattr(v, "dtype") else v


def crop_rows(cfg, table, layer, fraction, image_hw, crops, calibration=None):
    """One analytic row per crop index: window, positions, events, pJ per event class and
    block, total, and the L1 change of the layer output."""
    from golden.crop import CROP_VECTORS, cropped_conv2d, kept_window, scale_window
    from golden.energy_model import conv_layer_energy, layer_geometry
    from golden.layer import conv2d

    H0, W0 = image_hw
    geo = layer_geometry(layer)
    conv = dict(stride=layer.stride, padding=layer.padding, shift=layer.shift, relu=layer.relu)
    full_out = conv2d(cfg, layer.x, layer.weight, layer.bias, **conv)
    rows = []
    for i in crops:
        window = scale_window(kept_window(i, fraction, H0, W0), H0, W0, geo.height, geo.width)
        e = conv_layer_energy(cfg, table, geo, window=window, x=layer.x,
                              calibration=calibration)
        err = int((cropped_conv2d(cfg, layer.x, layer.weight, layer.bias, window=window,
                                  **conv) - full_out).abs().sum())
        rows.append({"crop": i, "vector": list(CROP_VECTORS[i]), "window": list(window),
                     "positions": e.events["positions"],
                     "events": {k: _num(v) for k, v in e.events.items()},
                     "by_event": {k: _num(v) for k, v in e.by_event.items()},
                     "by_block": {k: _num(v) for k, v in e.by_block.items()},
                     "total_pj": _num(e.total_pj), "calibration": e.calibration,
                     "l1_error": err})
    return rows


def digital_by_event(row: dict) -> float:
    """pJ of the calibrated digital operations (``digital.<op>``) of an analytic row."""
    return sum(v for k, v in row["by_event"].items() if k.startswith("digital."))


def rtl_runs(cfg, table, layer, rows, *, sim: str = "verilator", seed: int = 0,
             advance=lambda: None) -> dict:
    """Co-simulate the crops of ``rows`` (analytic rows of :func:`crop_rows`): per crop the
    cycles, the waveform, the toggle energy per block and its total, and the calibrated
    estimate. The RTL's events must equal the analytic ones (``RuntimeError`` if not)."""
    from arch.energy import digital_total, toggle_energy
    from golden.crop import check_window

    from .events import rtl_events
    from .toggles import toggle_run

    out = {}
    for r in rows:
        H, W = layer.x.shape[-2:]
        jobs, _ = crop_jobs(cfg, layer, check_window(r["window"], H, W))
        tg, res = toggle_run(cfg, sim, jobs=jobs, seed=seed, bubble=0.0, backpressure=0.0,
                             label=f"energy-l{layer.index}-c{r['crop']}")
        ev = rtl_events(cfg, res.waves)
        mismatch = {k: (v, r["events"][k]) for k, v in ev.items() if v != r["events"][k]}
        if mismatch:
            raise RuntimeError(f"RTL events differ from the analytic model for crop "
                               f"{r['crop']}: {mismatch} (RTL, analytic)")
        te = toggle_energy(table, tg)
        out[r["crop"]] = {"sim": sim, "cycles": tg.cycles, "waves": str(res.waves),
                          "events_match": True, "digital_pj": te,
                          "digital_total_pj": digital_total(te),
                          "calibrated_digital_pj": digital_by_event(r)}
        advance()
    return out


class CropRows:
    """A report with one row per crop (``crops``, uncropped first) and ``best_crop``."""
    crops: list
    best_crop: int

    @property
    def full(self) -> dict:
        return self.crops[0]

    @property
    def best(self) -> dict:
        return next(r for r in self.crops if r["crop"] == self.best_crop)


@dataclass
class EnergyReport(CropRows):
    """What ``aqua energy`` reports on one layer (:func:`energy_report`); :meth:`to_dict` is its
    JSON. Everything but ``timing`` is the same for two runs with the same arguments."""
    config: str
    table: object                       # arch.energy.EnergyTable
    fraction: float
    image: int
    layer: int
    shape: str
    map: list
    calibration: str | None             # the calibration file, or None
    calibration_status: str             # the file, or "none for ...: not counted"
    crops: list                         # analytic rows (crop_rows)
    best_crop: int
    layers: list                        # every conv layer: uncropped and its best crop
    rtl: dict                           # crop -> RTL toggle run (rtl_runs); {} if analytic
    timing: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": self.config, "table": self.table.to_dict(),
                "fraction": self.fraction, "image": self.image, "layer": self.layer,
                "shape": self.shape, "map": self.map, "calibration": self.calibration,
                "calibration_status": self.calibration_status, "crops": self.crops,
                "best_crop": self.best_crop, "layers": self.layers,
                "rtl": {str(k): v for k, v in self.rtl.items()}, "timing": self.timing}


def _best(rows):
    return min(rows[1:], key=lambda r: (r["l1_error"], r["total_pj"]))


def energy_report(cfg, table, *, layer: int = 0, crop: int | None = None,
                  fraction: float = 0.25, image: int = 0, analytic: bool = False,
                  sim: str = "verilator", seed: int = 0, advance=lambda: None
                  ) -> EnergyReport:
    """The energy of demo conv layer ``layer`` on test image ``image``, uncropped and under
    crop ``crop`` (``None``: all 16), analytic and (unless ``analytic``) from RTL toggles of the
    uncropped layer and the best crop. ``advance`` is called after each toggle run.

    Raises
    ------
    ValueError
        For a layer, crop or image index out of range.
    """
    from golden.cnn import CONV_SPECS, load_democnn
    from golden.data import cluttered_digits
    from golden.energy_model import calibration_status, load_calibration
    from golden.fixedpoint import quant_layer, quantize_democnn

    t0 = time.perf_counter()
    if not 0 <= layer < len(CONV_SPECS):
        raise ValueError(f"layer must be a conv layer of the demo CNN, 0..{len(CONV_SPECS) - 1}, "
                         f"not {layer}")
    if crop is not None and not 0 <= crop < NCROPS:
        raise ValueError(f"crop must be a crop vector index 0..{NCROPS - 1}, not {crop}")
    x, _ = cluttered_digits("test")
    if not 0 <= image < x.shape[0]:
        raise ValueError(f"image must lie in [0, {x.shape[0] - 1}], not {image}")
    cal = load_calibration(cfg, table)
    net = quantize_democnn(cfg, load_democnn())
    img = x[image:image + 1]
    hw = tuple(img.shape[-2:])
    layers = [quant_layer(net, i, img) for i in range(len(CONV_SPECS))]
    q = layers[layer]
    rows = crop_rows(cfg, table, q, fraction, hw,
                     range(NCROPS) if crop is None else sorted({0, crop}), cal)
    best = _best(rows) if crop is None else rows[-1]
    per_layer = []
    for ql in layers:                     # every conv layer: uncropped and its best crop
        lr = crop_rows(cfg, table, ql, fraction, hw, range(NCROPS), cal)
        b = _best(lr)
        per_layer.append({"layer": ql.index, "shape": ql.shape, "full_pj": lr[0]["total_pj"],
                          "best_crop": b["crop"], "best_pj": b["total_pj"]})
    rtl = {} if analytic else rtl_runs(cfg, table, q, (rows[0], best), sim=sim, seed=seed,
                                       advance=advance)
    return EnergyReport(cfg.name, table, fraction, image, layer, q.shape,
                        list(q.x.shape[-2:]), rows[0]["calibration"],
                        calibration_status(cal, cfg, table), rows, best["crop"], per_layer,
                        rtl, {"wall_s": round(time.perf_counter() - t0, 2)})
