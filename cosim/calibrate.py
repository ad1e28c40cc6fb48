"""Calibrate the analytic model's digital energy per operation on RTL toggle runs.

A *run* co-simulates the Datapath on the crossbar jobs of one demo-CNN conv layer for one test
image under one crop (``cosim.run.cnn_jobs``, cropped as ``aqua energy`` does: cropped
activations zero, only the computed output positions streamed; at most ``vectors`` vectors,
taken evenly over the positions, so that deep layers stay short). Its waveform gives, per clock
cycle, the register and combinational toggles of every block (:func:`cosim.toggles.
fst_cycle_toggles`), priced with the energy table (plus the clock of every register bit every
cycle); each cycle is put in a *category* by the controller phase its edge acts on:

===========  =================================  ==========================================
category     cycles                             operations fitted (:data:`OPS`)
===========  =================================  ==========================================
``xbar``     ``phase = XBAR``                   ``xbar_step`` per cycle, ``xbar_drive`` per
                                                nonzero DAC level
``adc``      ``phase = ADC``                    ``adc_step`` per cycle, ``adc_drive`` per
                                                nonzero DAC level
``vector``   ``phase = FINAL`` or ``OUT``       ``vector`` per vector
``write``    ``phase = IDLE`` with ``wr.valid``  ``weight_write`` per write
``idle``     other ``IDLE`` cycles              ``idle_cycle`` per cycle
===========  =================================  ==========================================

For every block and category a non-negative least-squares fit (:func:`arch.energy.nnls_fit`)
over the calibration runs gives pJ per operation. The per-cycle split makes the operations
identifiable: summed over a run, crossbar steps, ADC steps and vectors are in a fixed ratio for
one configuration and could not be told apart.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

import numpy as np

from arch.energy import OPS, digital_pj, nnls_fit
from golden.energy_model import Calibration

__all__ = ["CATEGORIES", "CALIBRATION_RUNS", "HELDOUT_RUNS", "RunSpec", "layer_jobs",
           "measure", "fit", "calibrate", "predict", "CalibrationReport", "calibration_report"]

#: category -> the operations fitted on its cycles
CATEGORIES = {"xbar": ("xbar_step", "xbar_drive"), "adc": ("adc_step", "adc_drive"),
              "vector": ("vector",), "write": ("weight_write",), "idle": ("idle_cycle",)}
assert sorted(op for ops in CATEGORIES.values() for op in ops) == sorted(OPS)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    layer: int
    crop: int
    image: int
    vectors: int = 400       # at most this many vectors in the run (evenly spaced positions)


#: fitted on; the held-out runs use other layers, crops and images
CALIBRATION_RUNS = (RunSpec(0, 0, 0), RunSpec(0, 6, 1), RunSpec(1, 0, 2), RunSpec(1, 15, 3),
                    RunSpec(3, 9, 4))
HELDOUT_RUNS = (RunSpec(0, 4, 5), RunSpec(1, 10, 6), RunSpec(2, 0, 7), RunSpec(2, 5, 8),
                RunSpec(3, 3, 9))


def layer_jobs(cfg, net, spec: RunSpec, fraction: float, images):
    """``(jobs, window, layer)``: the cropped jobs of ``spec`` (at most ``spec.vectors``
    vectors in all). The crop window is taken on the image and scaled to the layer's map."""
    from golden.crop import kept_window, scale_window
    from golden.fixedpoint import quant_layer

    from .energy_report import crop_jobs

    layer = quant_layer(net, spec.layer, images[spec.image:spec.image + 1])
    H0, W0 = images.shape[-2:]
    H, W = layer.x.shape[-2:]
    window = scale_window(kept_window(spec.crop, fraction, H0, W0), H0, W0, H, W)
    jobs, _ = crop_jobs(cfg, layer, window)
    n = jobs[0]["x"].shape[0]
    per_job = max(1, spec.vectors // len(jobs))
    if n > per_job:
        idx = np.linspace(0, n - 1, per_job).round().astype(int).tolist()
        for job in jobs:
            job["x"] = job["x"][idx]
    return jobs, window, layer


def _categories(waves, rising: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over cycles of each category."""
    from hdl.layouts import Phase

    from .events import _at, _signals

    sig = _signals(waves, {"phase", "wr__valid"})
    before = rising - 1
    phase = np.asarray(_at(sig["phase"], before))
    wr = np.asarray(_at(sig["wr__valid"], before)).astype(bool)
    idle = phase == Phase.IDLE.value
    return {"xbar": phase == Phase.XBAR.value, "adc": phase == Phase.ADC.value,
            "vector": (phase == Phase.FINAL.value) | (phase == Phase.OUT.value),
            "write": idle & wr, "idle": idle & ~wr}


def measure(cfg, table, jobs, *, sim: str = "verilator", seed: int = 0,
            label: str = "calibrate") -> dict:
    """Co-simulate ``jobs`` and return the run's counts and toggle-based energy:
    ``{"events", "cycles", "counts": {category: cycles}, "pj": {category: {block: pJ}},
    "digital": {block: pJ}}`` (``digital`` = :func:`arch.energy.toggle_energy` per block).
    The run's RTL events are checked equal to the analytic ones."""
    from arch.energy import toggle_energy
    from golden.events import jobs_events

    from .events import rtl_events
    from .toggles import fst_cycle_toggles, toggle_run

    tg, res = toggle_run(cfg, sim, jobs=jobs, seed=seed, bubble=0.0, backpressure=0.0,
                         label=label)
    events = jobs_events(cfg, jobs)
    rtl = rtl_events(cfg, res.waves)
    if rtl != events:
        raise RuntimeError(f"RTL events differ from the analytic model ({label}): {rtl} vs "
                           f"{events}")
    rising, per = fst_cycle_toggles(res.waves, tg.classes)
    cats = _categories(res.waves, rising)
    pj = {cat: cycle_energy(table, per, tg.register_bits(), m) for cat, m in cats.items()}
    te = toggle_energy(table, tg)
    events = {**events, "vectors": events["input_handshakes"],
              "idle_cycles": int(cats["idle"].sum())}
    return {"events": events, "cycles": tg.cycles,
            "counts": {cat: int(m.sum()) for cat, m in cats.items()}, "pj": pj,
            "digital": {b: digital_pj(v) for b, v in te.items()}}


def cycle_energy(table, per: dict, reg_bits: dict[str, int], mask) -> dict[str, float]:
    """``{group: pJ}`` of the cycles ``mask`` selects (a boolean mask or a slice) from the
    per-cycle toggles ``per`` of :func:`cosim.toggles.fst_cycle_toggles`: register toggles,
    combinational and memory-port toggles (priced as combinational) and the clock of the
    group's register bits (``reg_bits``, 0 for groups without registers) on each cycle."""
    from arch.energy import block_toggle_energy

    groups = {g for g, _ in per}
    out = {}
    for g in sorted(groups):
        counts = {c: int(per[(g, c)][mask].sum()) for _, c in per if _ == g}
        n = int(np.ones(len(next(iter(per.values()))), dtype=bool)[mask].sum())
        e = block_toggle_energy(table, counts, reg_bits.get(g, 0), n)
        out[g] = digital_pj(e)
    return out


def _features(m: dict, cat: str) -> list[float]:
    return [float(m["events"][OPS[op]]) for op in CATEGORIES[cat]]


def fit(measurements: list[dict]) -> tuple[dict[str, dict[str, float]], dict]:
    """pJ per operation of each block (``{block: {op: pJ}}``) by NNLS over the runs, and the
    relative RMS residual of each (category, block) fit."""
    blocks = list(measurements[0]["pj"]["xbar"])
    pj = {b: {} for b in blocks}
    residual = {}
    for cat, ops in CATEGORIES.items():
        A = [_features(m, cat) for m in measurements]
        for b in blocks:
            coef, res = nnls_fit(A, [m["pj"][cat][b] for m in measurements])
            pj[b].update(dict(zip(ops, coef)))
            if res is not None:
                residual[f"{cat}.{b}"] = res
    return pj, residual


def predict(cal: Calibration, events: dict) -> float:
    """Total digital pJ the calibration predicts for ``events``."""
    return float(sum(sum(ops.values()) for ops in cal.digital(events).values()))


def _row(spec: RunSpec, window, m: dict, cal: Calibration | None = None) -> dict:
    row = {"layer": spec.layer, "crop": spec.crop, "image": spec.image,
           "window": list(window), "vectors": m["events"]["vectors"], "cycles": m["cycles"],
           "measured_pj": round(sum(m["digital"].values()), 1)}
    if cal is not None:
        # the analytic estimate: no idle cycles (vectors back to back), as conv_layer_events
        pred = predict(cal, {**m["events"], "idle_cycles": 0})
        row["predicted_pj"] = round(pred, 1)
        row["error"] = round(pred / row["measured_pj"] - 1, 4)
    return row


def calibrate(cfg, table, *, sim: str = "verilator", seed: int = 0, fraction: float = 0.25,
              runs=CALIBRATION_RUNS, heldout=HELDOUT_RUNS, advance=lambda: None
              ) -> Calibration:
    """Measure ``runs`` and fit; measure ``heldout`` and record the calibrated estimate's
    error on them. Returns the :class:`Calibration` (its ``provenance`` holds every run)."""
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quantize_democnn

    t0 = time.perf_counter()
    net = quantize_democnn(cfg, load_democnn())
    images, _ = cluttered_digits("test")
    measured = []
    for spec in (*runs, *heldout):
        jobs, window, _ = layer_jobs(cfg, net, spec, fraction, images)
        m = measure(cfg, table, jobs, sim=sim, seed=seed,
                    label=f"cal-l{spec.layer}-c{spec.crop}-i{spec.image}")
        measured.append((spec, window, m))
        advance()
    fitted = [m for _, _, m in measured[:len(runs)]]
    pj, residual = fit(fitted)
    cal = Calibration(cfg.name, cfg.digest, table.name, pj)
    rows = [_row(s, w, m, cal) for s, w, m in measured]
    errors = [abs(r["error"]) for r in rows[len(runs):]]
    provenance = {
        "command": f"aqua energy --calibrate --config {cfg.name} --table {table.name} "
                   f"--sim {sim} --seed {seed} --fraction {fraction}",
        "date": datetime.date.today().isoformat(), "sim": sim, "seed": seed,
        "fraction": fraction, "wall_s": round(time.perf_counter() - t0, 1),
        "fit_residual_rms": {k: round(v, 4) for k, v in residual.items()},
        "heldout_max_abs_error": round(max(errors), 4) if errors else 0.0,
        "heldout_mean_abs_error": round(sum(errors) / len(errors), 4) if errors else 0.0,
        "runs": rows[:len(runs)], "heldout": rows[len(runs):],
    }
    return dataclasses.replace(cal, provenance=provenance)


@dataclasses.dataclass
class CalibrationReport:
    """What ``aqua energy --calibrate`` reports: the fitted calibration and where it was
    written (:func:`calibration_report`)."""
    calibration: Calibration
    path: str

    def to_dict(self) -> dict:
        c = self.calibration
        return {"config": c.config, "digest": c.digest, "table": c.table, "path": self.path,
                "pj": c.pj, "provenance": c.provenance}


def calibration_report(cfg, table, *, sim: str = "verilator", seed: int = 0,
                       fraction: float = 0.25, out=None, advance=lambda: None
                       ) -> CalibrationReport:
    """:func:`calibrate` and write the result to ``out`` or to
    ``golden.energy_model.calibration_path(cfg, table)`` (one file per config and table: a
    calibration for another table is left alone)."""
    from golden.energy_model import save_calibration

    cal = calibrate(cfg, table, sim=sim, seed=seed, fraction=fraction, advance=advance)
    return CalibrationReport(cal, str(save_calibration(cal, out)))
