"""Toggle-based energy of a co-simulated ``ConvTile``: per image (crop), per block and class,
beside the analytic model, and the per-operation calibration of the tile's own logic.

One simulation runs the images back to back (``cosim.tile.run_tile`` with waves); the bench
records the start edge and the edge raising ``done`` of each image. The FST is read once into
per-cycle toggles (:func:`cosim.toggles.fst_cycle_toggles`), grouped by block and by whether a
net belongs to a Datapath (``xbar<i>.``) or to the tile itself (AGUs, memory ports, gather, FSM);
an image's energy is the sum over its cycles (start edge to ``done`` edge) **plus the weight
programming** before the first image (each image is charged as a run of its own would be). The
read-out of the output memory between images is not charged. Events are counted over the same
windows (:func:`cosim.events.rtl_tile_events`) and must equal
``golden.energy_model.conv_layer_events`` exactly.

:func:`tile_report` is ``aqua energy --tile``: a demo-CNN conv layer run through the RTL
``ConvTile`` (AGUs, memories, gather, one Datapath per output group), uncropped and under each
crop vector, back to back in one simulation; per crop the toggle-based digital energy per block
and class, the RTL events (held equal to the analytic model), and the analytic estimate
(``conv_layer_energy(..., tile=True)`` with the calibration's ``tile_pj``) with its error.
:func:`calibrate_tile` is ``aqua energy --tile --calibrate``: it fits ``tile_pj`` (the tile's own
logic per operation) on the crops :data:`TILE_FIT_CROPS` of test image :data:`TILE_FIT_IMAGE`
and writes it into the calibration file of the config and table; the report on image 0 then
holds out every crop of that image.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from arch.energy import digital_pj, nnls_fit

from .energy_report import CropRows

__all__ = ["TileEnergyRun", "tile_energy_run", "tile_toggles", "analytic_tile", "fit_tile",
           "TILE_FIT_CROPS", "TILE_FIT_IMAGE", "tile_layer_problem", "tile_rows",
           "TileReport", "tile_report", "TileCalibrationReport", "calibrate_tile"]

#: the calibration of the tile's own logic is fitted on these crops of demo layer 0 on test
#: image :data:`TILE_FIT_IMAGE`; the report's image 0 and the other crops are held out
TILE_FIT_CROPS = (0, 5, 10, 15)
TILE_FIT_IMAGE = 1


def _group(classes):
    """``key -> "block"`` for nets of a Datapath, ``"block.tile"`` for the tile's own."""
    from .toggles import block_of

    def group(key: str) -> str:
        b = block_of(key, classes)
        return b if re.match(r"xbar\d+\.", key) else f"{b}.tile"
    return group


@dataclass
class TileEnergyRun:
    """A co-simulated tile run read into per-image windows (see the module docstring)."""
    run: object                    # cosim.tile.TileRun
    geom: object
    rising: np.ndarray
    per: dict                      # (group, class) -> toggles per cycle
    reg_bits: dict                 # group -> register bits
    windows: list                  # per image: (first cycle, last cycle), indices in rising
    program: tuple                 # the programming cycles (first, last)
    events: list                   # per image: RTL events, programming included
    waves: str

    def digital(self, table, i: int) -> dict[str, dict[str, float]]:
        """pJ per group (``block`` / ``block.tile``) and class of image ``i`` (its cycles and
        the programming): :func:`arch.energy.block_toggle_energy` of each group."""
        from arch.energy import block_toggle_energy

        (a, b), (p, q) = self.windows[i], self.program
        out = {}
        for g in sorted({g for g, _ in self.per}):
            counts = {c: int(arr[a:b + 1].sum() + arr[p:q + 1].sum())
                      for (gg, c), arr in self.per.items() if gg == g}
            out[g] = block_toggle_energy(table, counts, self.reg_bits.get(g, 0),
                                         (b - a + 1) + (q - p + 1))
        return out


def by_block(digital: dict) -> dict[str, float]:
    """pJ per block (Datapath and tile nets of a block together) of :meth:`TileEnergyRun.digital`."""
    out: dict[str, float] = {}
    for g, e in digital.items():
        b = g.split(".")[0]
        out[b] = out.get(b, 0.0) + digital_pj(e)
    return out


def by_class(digital: dict) -> dict[str, float]:
    """pJ per class: ``register``, ``comb``, ``memport`` (memory-port toggles), ``clock``."""
    out = dict.fromkeys(("register", "comb", "memport", "clock"), 0.0)
    for e in digital.values():
        mp = e["memport_toggles"] * (e["comb"] / (e["comb_toggles"] + e["memport_toggles"])
                                     if e["comb_toggles"] + e["memport_toggles"] else 0.0)
        out["register"] += e["register"]
        out["comb"] += e["comb"] - mp
        out["memport"] += mp
        out["clock"] += e["clock"]
    return out


def tile_energy_run(cfg, geom, layer, images, sim: str = "verilator", *, seed: int = 0,
                    label: str = "tile-energy") -> TileEnergyRun:
    """Co-simulate ``images`` on ``ConvTile(cfg, geom)`` with waves on, check the outputs
    against the golden model, and read per-image toggles and events."""
    from .events import rtl_tile_events
    from .tile import tile_sources
    from .toggles import fst_cycle_toggles

    bits, run = tile_toggles(cfg, geom, layer, images, sim, seed=seed, label=label)
    waves, classes = bits.source, bits.classes
    verilog = tile_sources(cfg, geom)[0][0]
    group = _group(classes)
    rising, per = fst_cycle_toggles(waves, classes, blocks=(), group=group)
    reg_bits: dict[str, int] = {}
    for key, arr in bits.bits.items():
        if bits.cls(key) == "register":
            reg_bits[group(key)] = reg_bits.get(group(key), 0) + len(arr)
    t = [(int(r["t_start"]), int(r["t_done"])) for r in run.results]
    scale = _time_scale(rising, t[0][0])
    idx = lambda ns: int(np.searchsorted(rising, ns * scale))        # noqa: E731
    windows = [(idx(a), idx(b)) for a, b in t]
    program = (0, windows[0][0] - 1)
    ev = rtl_tile_events(cfg, geom, waves, verilog,
                         [(rising[a], rising[b]) for a, b in [program, *windows]])
    prog = ev[0]
    events = [{**e, "weight_writes": e["weight_writes"] + prog["weight_writes"]}
              for e in ev[1:]]
    return TileEnergyRun(run, geom, rising, per, reg_bits, windows, program, events,
                         str(waves))


def tile_toggles(cfg, geom, layer, images, sim: str, *, seed: int = 0,
                 label: str = "tile-toggles"):
    """``(Toggles, TileRun)``: co-simulate ``images`` on ``ConvTile(cfg, geom)`` with waves on
    (outputs checked against the golden model) and count every net's per-bit toggles, with
    the tile's blocks (:data:`cosim.toggles.TILE_BLOCKS`) and classes (memory ports
    included)."""
    from .tile import run_tile, tile_sources
    from .toggles import TILE_BLOCKS, Toggles, fst_toggles, signal_classes

    run = run_tile(cfg, geom, layer, images, sim, seed=seed, label=label, waves=True)
    if not run.passed:
        raise RuntimeError(f"{sim} tile run failed against the golden model: {run.message}")
    waves = run.waves
    if waves is None:
        raise RuntimeError(f"{sim} wrote no FST for the tile run")
    classes = signal_classes(tile_sources(cfg, geom)[0][0])
    return Toggles(fst_toggles(waves), classes, run.cycles, str(waves), TILE_BLOCKS), run


def _time_scale(rising: np.ndarray, t_ns: int) -> int:
    """Waveform time units per ns (the FST's timescale), from a rising edge at ``t_ns``."""
    for scale in (1, 1000, 1_000_000):
        if np.any(rising == t_ns * scale):
            return scale
    raise RuntimeError(f"no rising edge at {t_ns} ns in the waveform")


def analytic_tile(cfg, table, layer, window, calibration=None):
    """``golden.energy_model.conv_layer_energy(..., tile=True)`` of ``layer`` (one image)
    under the kept ``window``."""
    from golden.energy_model import conv_layer_energy, layer_geometry

    return conv_layer_energy(cfg, table, layer_geometry(layer), window=window, x=layer.x,
                             calibration=calibration, tile=True)


def fit_tile(table, runs: list[TileEnergyRun], images: list[list[int]]):
    """``({block: {op: pJ}}, residuals)``: NNLS of the tile's own energy per group
    (``agu.tile``, ``memory.tile``, ``control.tile``) over the images ``images[j]`` of
    ``runs[j]``, against the counts of :data:`golden.energy_model.TILE_OPS`."""
    from arch.energy import TILE_OPS

    rows, ys = [], {}
    for r, idx in zip(runs, images):
        for i in idx:
            rows.append([float(r.events[i][TILE_OPS[op]]) for op in TILE_OPS])
            d = r.digital(table, i)
            for g, e in d.items():
                if g.endswith(".tile"):
                    ys.setdefault(g.split(".")[0], []).append(digital_pj(e))
    pj, residual = {}, {}
    for b, y in ys.items():
        coef, residual[b] = nnls_fit(rows, y)
        pj[b] = dict(zip(TILE_OPS, coef))
    return pj, residual


def tile_layer_problem(cfg, index: int) -> str | None:
    """Why demo conv layer ``index`` cannot run on one ``ConvTile`` of ``cfg`` (it needs more
    than one crossbar's rows), or ``None`` if it can."""
    from golden.cnn import CONV_SPECS

    from .tile import demo_layers_for

    if index in demo_layers_for(cfg):
        return None
    sp = CONV_SPECS[index]
    return (f"--tile: layer {index} needs {sp.geometry.rows} crossbar rows, "
            f"{cfg.name} has {cfg.rows}; layers that fit: "
            f"{', '.join(map(str, demo_layers_for(cfg))) or 'none'}")


def _check_tile_layer(cfg, index: int) -> None:
    problem = tile_layer_problem(cfg, index)
    if problem:
        raise ValueError(problem)


def _images(cfg, index, image, crops, fraction, source=None):
    from golden.crop import CROP_VECTORS

    from .tile import demo_tile_layer, tile_image

    layer, geom, x = demo_tile_layer(cfg, index, image) if source is None else source
    imgs = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=fraction,
                       label=f"crop {c}") for c in crops]
    return layer, geom, imgs


def tile_rows(cfg, table, index, image, crops, fraction, sim, seed, calibration=None,
              source=None):
    """One row per crop: window, RTL events (checked equal to the analytic ones), toggle
    digital pJ per block and class, analytic pJ per event and block, and the error of the
    calibrated digital estimate. Returns ``(rows, TileEnergyRun)``. ``source``: ``(layer,
    geom, x [Cin, H, W])`` of another model's layer instead of demo conv layer ``index``."""
    from arch.energy import event_energy

    layer, geom, imgs = _images(cfg, index, image, crops, fraction, source)
    label = f"energy-tile-l{index}" if source is None else f"energy-tile-model-l{index}"
    r = tile_energy_run(cfg, geom, layer, imgs, sim, seed=seed, label=label)
    rows = []
    for i, (c, img) in enumerate(zip(crops, imgs)):
        e = analytic_tile(cfg, table, layer, img.window, calibration)
        ev = {k: int(v.sum()) if hasattr(v, "sum") else v for k, v in e.events.items()}
        bad = {k: (v, ev[k]) for k, v in r.events[i].items() if v != ev[k]}
        if bad:
            raise RuntimeError(f"tile RTL events differ from the analytic model for crop {c}: "
                               f"{bad} (RTL, analytic)")
        d = r.digital(table, i)
        analog = {k: float(v) for k, v in e.by_event.items() if not k.startswith("digital.")}
        est = sum(float(v) for k, v in e.by_event.items() if k.startswith("digital."))
        tog_block = by_block(d)
        tog = sum(tog_block.values())
        ev_block = {b: 0.0 for b in e.by_block}
        for x in event_energy(table, ev, cfg, tile=True).values():
            ev_block[x["block"]] += float(x["pj"])
        rows.append({
            "crop": c, "window": list(img.window), "cycles": r.run.rows[i]["cycles_rtl"],
            "l1_error": int((img.expected - imgs[0].expected).abs().sum()),
            "events": r.events[i], "events_match": True, "analog_pj": analog,
            "toggle_digital_by_block": tog_block, "toggle_digital_by_class": by_class(d),
            "toggle_total_pj": sum(analog.values()) + tog,
            "toggle_by_block": {b: ev_block.get(b, 0.0) + tog_block.get(b, 0.0)
                                for b in e.by_block},
            "analytic_digital_pj": est, "analytic_total_pj": float(e.total_pj),
            "analytic_by_block": {b: float(v) for b, v in e.by_block.items()},
            "digital_error": est / tog - 1 if est else None,
            "calibration": e.calibration})
    return rows, r


@dataclass
class TileReport(CropRows):
    """What ``aqua energy --tile`` reports (:func:`tile_report`); :meth:`to_dict` is its JSON.
    Everything but ``timing`` is the same for two runs with the same arguments."""
    config: str
    table: str
    layer: int
    image: int
    fraction: float
    sim: str
    seed: int
    cycles: int
    waves: str
    crops: list
    best_crop: int
    tile_calibration: dict
    calibration_status: str
    has_tile_pj: bool
    timing: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": self.config, "table": self.table, "layer": self.layer,
                "image": self.image, "fraction": self.fraction, "sim": self.sim,
                "seed": self.seed, "cycles": self.cycles, "waves": self.waves,
                "crops": self.crops, "best_crop": self.best_crop,
                "tile_calibration": self.tile_calibration,
                "calibration_status": self.calibration_status, "timing": self.timing}


def tile_report(cfg, table, *, layer: int = 0, crop: int | None = None, image: int = 0,
                fraction: float = 0.25, sim: str = "verilator", seed: int = 0,
                source=None) -> TileReport:
    """Demo conv layer ``layer`` on test image ``image`` through the RTL ``ConvTile``,
    uncropped and under crop ``crop`` (``None``: all 16), in one simulation (see the module
    docstring). ``ValueError`` if the layer does not fit one crossbar of ``cfg``. ``source``:
    ``(layer, geom, x [Cin, H, W])``, another model's conv layer (``layer`` is then its index
    among that model's crossbar layers, for the report), checked by the caller to fit."""
    from golden.energy_model import calibration_status, load_calibration

    t0 = time.perf_counter()
    if source is None:
        _check_tile_layer(cfg, layer)
    cal = load_calibration(cfg, table)
    crops = list(range(16)) if crop is None else sorted({0, crop})
    rows, r = tile_rows(cfg, table, layer, image, crops, fraction, sim, seed, cal, source)
    full = rows[0]
    # the best crop as in the analytic report: smallest L1 change of the layer output
    best = min(rows[1:], key=lambda x: (x["l1_error"], x["toggle_total_pj"])) \
        if len(rows) > 1 else full
    fit = cal.provenance.get("tile", {}) if cal else {}
    fitted = {(int(i), int(c)) for i, c in fit.get("fitted", [])}
    for row in rows:
        row["held_out"] = (image, row["crop"]) not in fitted
    return TileReport(cfg.name, table.name, layer, image, fraction, sim, seed, r.run.cycles,
                      r.waves, rows, best["crop"], fit, calibration_status(cal, cfg, table),
                      bool(cal is not None and cal.tile_pj),
                      {"wall_s": round(time.perf_counter() - t0, 1)})


@dataclass
class TileCalibrationReport:
    """What ``aqua energy --tile --calibrate`` reports (:func:`calibrate_tile`)."""
    pj: dict                       # block -> op -> pJ
    residual: dict                 # block -> relative RMS residual
    path: str

    def to_dict(self) -> dict:
        return {"pj": self.pj, "residual": self.residual, "path": self.path}


def calibrate_tile(cfg, table, *, layer: int = 0, fraction: float = 0.25,
                   sim: str = "verilator", seed: int = 0, out=None) -> TileCalibrationReport:
    """Fit ``tile_pj`` on :data:`TILE_FIT_CROPS` of image :data:`TILE_FIT_IMAGE`; write it
    into the calibration file of ``cfg`` and ``table`` (its Datapath part unchanged), or to
    ``out``.

    Raises
    ------
    ValueError
        If the layer does not fit one crossbar, or there is no Datapath calibration of
        ``cfg`` and ``table`` yet.
    """
    import dataclasses
    import datetime

    from golden.energy_model import load_calibration, save_calibration

    _check_tile_layer(cfg, layer)
    cal = load_calibration(cfg, table)
    if cal is None:
        raise ValueError(f"--tile --calibrate needs the Datapath calibration of {cfg.name} "
                         f"under table {table.name} first: run `aqua energy --calibrate "
                         f"--config {cfg.name} --table {table.name}`")
    q, geom, imgs = _images(cfg, layer, TILE_FIT_IMAGE, TILE_FIT_CROPS, fraction)
    r = tile_energy_run(cfg, geom, q, imgs, sim, seed=seed, label=f"cal-tile-l{layer}")
    pj, residual = fit_tile(table, [r], [list(range(len(imgs)))])
    prov = {**cal.provenance, "tile": {
        "command": f"aqua energy --tile --calibrate --config {cfg.name} --layer {layer} "
                   f"--sim {sim} --seed {seed} --fraction {fraction}",
        "date": datetime.date.today().isoformat(), "layer": layer,
        "fitted": [[TILE_FIT_IMAGE, c] for c in TILE_FIT_CROPS],
        "fit_residual_rms": {k: round(v, 4) for k, v in residual.items()}}}
    cal = dataclasses.replace(cal, tile_pj=pj, provenance=prov)
    return TileCalibrationReport(pj, residual, str(save_calibration(cal, out)))


def model_tile_report(cfg, table, qg, *, layer: int | None = None, crop: int | None = None,
                      image: int = 0, fraction: float = 0.25, sim: str = "verilator",
                      seed: int = 0, size: int = 32):
    """:func:`tile_report` of a crossbar layer of any model (``qg``, a
    :class:`golden.qnet.QGraph` of the shipped digits at ``size``): crossbar layer ``layer``
    (default: the first one a ``ConvTile`` computes, :func:`golden.netreport.tile_layers`).
    Returns ``(report or None, analytic_only)`` where ``analytic_only`` lists ``(index, name,
    why)`` of the layers no ``ConvTile`` computes. ``ValueError`` if ``layer`` is one of them.
    """
    from golden.netreport import conv_layer_of, digits, tile_layers

    from .tile import tile_geometry

    layers = tile_layers(qg)
    analytic_only = [t for t in layers if t[2] is not None]
    fits = [i for i, _, why in layers if why is None]
    if layer is None:
        if not fits:
            return None, analytic_only
        layer = fits[0]
    if not 0 <= layer < len(layers):
        raise ValueError(f"--layer must be a crossbar layer of the model, 0..{len(layers) - 1}, "
                         f"not {layer}")
    if layers[layer][2] is not None:
        raise ValueError(f"--tile: layer {layer} ('{layers[layer][1]}') does not fit one "
                         f"ConvTile: {layers[layer][2]}; layers that fit: "
                         f"{', '.join(map(str, fits)) or 'none'}")
    x, _ = digits("test", size)
    q, _ = conv_layer_of(qg, layers[layer][1], x[image:image + 1])
    source = (q, tile_geometry(q, *q.x.shape[-2:]), q.x[0])
    rep = tile_report(cfg, table, layer=layer, crop=crop, image=image, fraction=fraction,
                      sim=sim, seed=seed, source=source)
    return rep, analytic_only
