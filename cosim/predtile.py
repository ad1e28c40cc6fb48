"""Host side of the crop predictor in RTL (``hdl.predictor.Predictor``,
``hdl.predtile.PredTile``): its parameters from the golden integer predictor
(``golden.predictor_hw``), the shipped study's predictor, and what a host sends and expects.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch

from arch.config import CONFIG_DIR
from golden.predictor_hw import INT_KERNELS, PredictorParams, quantize_zeroth

__all__ = ["predictor_kwargs", "build_predictor", "build_predtile", "study_zeroth",
           "study_params", "ZEROTH_FIXTURE", "pixel_words", "predtile_expect",
           "predictor_sources", "run_predictor", "memory_bits", "memory_pj",
           "predictor_energy_path", "measure_predictor", "save_predictor_energy",
           "load_predictor_energy", "predtile_sources", "run_predtile"]

#: the learned 0th layers of the crop study on ``small`` (demo CNN, fraction 0.25), their
#: calibrated thresholds and per-crop energy (``configs/predictor/zeroth_small.json``)
ZEROTH_FIXTURE = CONFIG_DIR / "predictor" / "zeroth_small.json"


def predictor_kwargs(params: PredictorParams) -> dict:
    """The ``Predictor`` constructor's arguments for ``params`` (the same integers)."""
    return dict(height=params.height, width=params.width, channels=params.channels,
                pixel_bits=params.pixel_bits, kernels=INT_KERNELS.tolist(),
                order=list(params.order), weights=params.weight.tolist(),
                biases=params.bias.tolist(), weight_bits=params.weight_bits)


def build_predictor(params: PredictorParams):
    """``hdl.predictor.Predictor`` of ``params``."""
    from hdl.predictor import Predictor
    return Predictor(**predictor_kwargs(params))


@lru_cache(maxsize=None)
def _fixture() -> dict:
    return json.loads(ZEROTH_FIXTURE.read_text())


def study_zeroth(k: int = 1):
    """``(ZerothLayer, {budget: tau}, cost [16])`` of the stored study on ``small``."""
    from golden.predictors import ZerothLayer

    doc = _fixture()
    z = doc["zeroth"][f"top{k}"]
    zl = ZerothLayer(*(torch.tensor(z[n], dtype=torch.float32)
                       for n in ("weight", "bias", "mean", "std")))
    return zl, {float(b): t for b, t in z["tau"].items()}, torch.tensor(doc["cost"],
                                                                         dtype=torch.float64)


def study_params(cfg, input_frac: int, *, k: int = 1, budget: float = 0.01,
                 size: tuple[int, int] = (32, 32), channels: int = 1) -> PredictorParams:
    """The integer predictor of the stored study's ``learned/top{k}`` at ``budget``
    (``aqua.crop_study.RTL_METHOD`` by default) for ``cfg``'s unsigned input pixels."""
    zl, taus, cost = study_zeroth(k)
    return quantize_zeroth(zl, taus[budget], cost, height=size[0], width=size[1],
                           channels=channels, pixel_bits=cfg.input_bits, pixel_frac=input_frac)


def pixel_words(x: torch.Tensor) -> list[list[int]]:
    """``x [C, H, W]`` as row-major pixels, each a list of its channels."""
    return x.permute(1, 2, 0).reshape(-1, x.shape[0]).tolist()


def build_predtile(cfg, geom, params: PredictorParams):
    """``hdl.predtile.PredTile(cfg, geom)`` with the predictor of ``params``."""
    from hdl.predtile import PredTile

    kw = predictor_kwargs(params)
    if (params.height, params.width, params.channels) != (geom.height, geom.width,
                                                          geom.in_channels):
        raise ValueError(f"the predictor is for {params.channels}x{params.height}x"
                         f"{params.width} images, the tile's layer for {geom.in_channels}x"
                         f"{geom.height}x{geom.width}")
    return PredTile(cfg, geom, **{k: kw[k] for k in ("kernels", "order", "weights", "biases",
                                                     "weight_bits")})


def predtile_expect(cfg, geom, params: PredictorParams, x: torch.Tensor, layer, fraction,
                    label: str = "") -> dict:
    """What ``PredTile`` must do with image ``x [C, H, W]``: the golden integer predictor's
    crop and row, the tile image under that crop (``cosim.tile.tile_image``: kept pixels,
    expected output map, ``tile_cycles``) and the total cycles (predictor + tile)."""
    from golden.crop import CROP_VECTORS
    from golden.predictor_hw import predict_int, predictor_cycles

    from .tile import tile_image

    crop, det = predict_int(params, x[None], details=True)
    crop, pos = int(crop[0]), int(det["position"][0])
    img = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[crop], fraction=fraction,
                     label=label or f"crop {crop}")
    pc = predictor_cycles(params, pos)
    return {"crop": crop, "position": pos, "tile": img, "predictor_cycles": pc,
            "cycles": pc + img.cycles}


# -- co-simulation of the Predictor and its energy --------------------------------------------

def predictor_sources(params: PredictorParams) -> tuple[list, str]:
    """The Verilog of the ``Predictor`` of ``params`` (written if changed) and its module name,
    under ``build/verilog/predictor/<digest>/``."""
    import hashlib

    from gen.verilog import component_entry, hdl_source_digest, write_if_changed

    from .run import BUILD_ROOT

    kw = predictor_kwargs(params)
    key = hashlib.sha256(json.dumps([kw, hdl_source_digest()], sort_keys=True).encode()).hexdigest()[:12]
    path = BUILD_ROOT / "verilog" / "predictor" / key / "aqua_predictor.v"
    if not path.exists():
        text, _ = component_entry(build_predictor(params), "aqua_predictor")
        write_if_changed(path, text)
    return [path], "aqua_predictor"


def memory_bits(params: PredictorParams) -> dict[str, int]:
    """Bits per access of the predictor's memories: a line-buffer word (the channel sum), a
    cell word (four pooled sums), a weight."""
    return {"linebuf": params.gray_bits, "cell": 4 * params.sum_bits,
            "weight": params.weight_bits}


def memory_pj(table, params: PredictorParams, events: dict) -> float:
    """pJ of the predictor's memory accesses (line buffers, cell memory, weight ROM) per
    access bit at the table's ``edram_read_bit`` / ``edram_write_bit`` (memory arrays have no
    toggles in the waveform; as for the ``ConvTile``, they are charged per access bit)."""
    b = memory_bits(params)
    rd = (events["linebuf_reads"] * b["linebuf"] + events["cell_reads"] * b["cell"]
          + events["weight_reads"] * b["weight"])
    wr = events["linebuf_writes"] * b["linebuf"] + events["cell_writes"] * b["cell"]
    return rd * table.events["edram_read_bit"].pj + wr * table.events["edram_write_bit"].pj


def run_predictor(cfg, params: PredictorParams, pixels: torch.Tensor, sim: str = "verilator",
                  *, table=None, fraction_code: int = 64, label: str = "predictor") -> dict:
    """Co-simulate the ``Predictor`` of ``params`` on ``pixels [N, C, H, W]`` back to back
    under ``sim`` (with waves when ``table`` is given) and compare with the golden model: per
    image the crop, row, cycles (``predictor_cycles``) and port events against
    ``predictor_events``; with ``table`` also the measured energy per image: the digital logic
    from the waveform's toggles over the image's cycles (``arch.energy.block_toggle_energy``:
    register, combinational and clock) plus the memories per access bit (:func:`memory_pj`).
    Returns a JSON-able dict with ``passed`` and ``message``."""
    import numpy as np

    from arch.energy import block_toggle_energy, digital_pj
    from golden.predictor_hw import predict_int, predictor_cycles, predictor_events

    from .run import _config_path, save_stimulus
    from .sim import run_bench
    from .toggles import classify, fst_cycle_toggles, fst_toggles, signal_classes

    sources, top = predictor_sources(params)
    words = [[w[0] if params.channels == 1 else _pack(w, params.pixel_bits)
              for w in pixel_words(x)] for x in pixels]
    stim_path = save_stimulus({"fraction": fraction_code, "images": words}, f"{label}-{sim}",
                              as_json=True)
    results_file = stim_path.with_suffix(f".{sim}.results.json")
    results_file.unlink(missing_ok=True)
    res = run_bench(sim=sim, sources=sources, toplevel=top, test_module="cosim.tb_predictor",
                    params={"config": str(_config_path(cfg)), "stimulus": str(stim_path),
                            "results_file": str(results_file)}, waves=table is not None)
    if not results_file.exists():
        return {"passed": False, "message": "the bench wrote no results; log tail:\n"
                + "\n".join(res.log.strip().splitlines()[-15:]), "images": []}
    doc = json.loads(results_file.read_text())
    want, det = predict_int(params, pixels, details=True)
    rows, problems = [], []
    per = rising = reg_bits = None
    if table is not None and res.waves is not None:
        classes = signal_classes(sources[0])
        rising, per = fst_cycle_toggles(res.waves, classes, blocks=(),
                                        group=lambda key: "predictor")
        reg_bits = sum(len(a) for k, a in fst_toggles(res.waves).items()
                       if classify(k, classes) == "register" and not k.startswith("$auto$"))
        scale = next(s for s in (1, 1000, 1_000_000)
                     if np.any(rising == doc["images"][0]["t_first"] * s))
    for i, r in enumerate(doc["images"]):
        pos = int(det["position"][i])
        ev = predictor_events(params, pos)
        row = {"image": i, "crop": r["crop"], "crop_golden": int(want[i]), "position": pos,
               "cycles_rtl": r["edges"], "cycles_golden": predictor_cycles(params, pos),
               "events": ev}
        if (r["crop"], r["position"]) != (int(want[i]), pos):
            problems.append(f"image {i}: crop {r['crop']} (row {r['position']}), golden "
                            f"{int(want[i])} (row {pos})")
        if r["edges"] != row["cycles_golden"]:
            problems.append(f"image {i}: {r['edges']} cycles, predictor_cycles says "
                            f"{row['cycles_golden']}")
        rtl_ev = {k: r[k] for k in ("pixels", "macs", "compares")}
        if rtl_ev != {k: ev[k] for k in rtl_ev}:
            problems.append(f"image {i}: RTL events {rtl_ev}, predictor_events {ev}")
        if per is not None:
            a = int(np.searchsorted(rising, r["t_first"] * scale))
            b = int(np.searchsorted(rising, r["t_choice"] * scale))
            counts = {c: int(arr[a:b + 1].sum()) for (_, c), arr in per.items()}
            dig = block_toggle_energy(table, counts, reg_bits, b - a + 1)
            row["digital_pj"] = digital_pj(dig)
            row["memory_pj"] = memory_pj(table, params, ev)
            row["pj"] = row["digital_pj"] + row["memory_pj"]
            row["toggles"] = counts
        rows.append(row)
    passed = res.passed and not problems and len(rows) == len(pixels)
    return {"sim": sim, "passed": passed, "message": "; ".join(problems[:3]),
            "images": rows, "register_bits": reg_bits, "sim_wall_s": doc["wall_s"],
            "cycles": doc["cycles"], "waves": str(res.waves) if res.waves else None}


def _pack(channels: list[int], bits: int) -> int:
    return sum(int(v) << (bits * i) for i, v in enumerate(channels))


# -- the measured cost per image, stored per config and table ---------------------------------

def predictor_energy_path(cfg, table):
    """``configs/predictor/energy-<config>-<table>.toml``: the predictor's cost measured in RTL
    (:func:`measure_predictor`)."""
    name = lambda x: x if isinstance(x, str) else x.name                   # noqa: E731
    return CONFIG_DIR / "predictor" / f"energy-{name(cfg)}-{name(table)}.toml"


def measure_predictor(cfg, table, *, images: int = 8, sim: str = "verilator") -> dict:
    """Co-simulate the stored study's integer predictor (:func:`study_params`, the demo CNN's
    input pixels) on ``images`` shipped test images chosen for distinct evaluated row counts
    (then the first ones), and fit the measured pJ per image as ``load_pj + row_pj * rows``
    (``rows = min(position + 1, R)``, :func:`arch.energy.nnls_fit`). Raises ``RuntimeError``
    if the RTL disagrees with the golden model."""
    from arch.energy import nnls_fit
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_inputs, quantize_democnn
    from golden.predictor_hw import predict_int

    net = quantize_democnn(cfg, load_democnn())
    params = study_params(cfg, net.input_frac)
    x = quant_inputs(net, cluttered_digits("test")[0])
    _, det = predict_int(params, x, details=True)
    pos = det["position"].tolist()
    first = {}
    for i, p in enumerate(pos):
        first.setdefault(p, i)
    pick = sorted(first.values())[:images]
    pick += [i for i in range(len(pos)) if i not in pick][:images - len(pick)]
    pick = sorted(pick)
    run = run_predictor(cfg, params, x[pick], sim, table=table)
    if not run["passed"]:
        raise RuntimeError(f"the RTL predictor disagrees with the golden model: "
                           f"{run['message']}")
    R = params.rows
    rows = [min(r["position"] + 1, R) for r in run["images"]]
    coef, residual = nnls_fit([[1, n] for n in rows], [r["pj"] for r in run["images"]])
    return {"config": cfg.name, "table": table.name, "sim": sim, "images": [int(i) for i in pick],
            "height": params.height, "width": params.width, "rows": R,
            "load_pj": coef[0], "row_pj": coef[1], "fit_residual": residual or 0.0,
            "pj": [r["pj"] for r in run["images"]],
            "digital_pj": [r["digital_pj"] for r in run["images"]],
            "memory_pj": [r["memory_pj"] for r in run["images"]],
            "cycles": [r["cycles_rtl"] for r in run["images"]]}


def save_predictor_energy(doc: dict, path=None):
    """Write :func:`measure_predictor`'s result as TOML (atomically, only if changed)."""
    from gen.verilog import write_if_changed

    path = path or predictor_energy_path(doc["config"], doc["table"])
    lines = ["# The crop predictor's cost per image, measured in RTL (python -m cosim.predtile);",
             "# pJ per image = load_pj + row_pj * rows evaluated (docs/arithmetic.md, 10)."]
    for k, v in doc.items():
        lines.append(f"{k} = {json.dumps(v)}")
    write_if_changed(path, "\n".join(lines) + "\n")
    return path


def load_predictor_energy(cfg, table, size=(32, 32)) -> dict | None:
    """The stored measurement for ``cfg`` and ``table`` (objects or names) on ``size`` images,
    or None."""
    import tomllib

    path = predictor_energy_path(cfg, table)
    if not path.exists():
        return None
    doc = tomllib.loads(path.read_text())
    if (doc.get("height"), doc.get("width")) != tuple(size):
        return None
    return {**doc, "path": str(path.relative_to(CONFIG_DIR.parent))}


def main(argv=None) -> int:
    """``python -m cosim.predtile [--config small] [--table isaac32nm] [--sim verilator]``:
    measure and store the predictor's cost (:func:`measure_predictor`)."""
    import argparse

    from arch.config import load_config
    from arch.energy import load_energy_table

    ap = argparse.ArgumentParser(prog="python -m cosim.predtile", description=main.__doc__)
    ap.add_argument("--config", default="small")
    ap.add_argument("--table", default="isaac32nm")
    ap.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--images", type=int, default=8)
    a = ap.parse_args(argv)
    doc = measure_predictor(load_config(a.config), load_energy_table(a.table),
                            images=a.images, sim=a.sim)
    print(f"{save_predictor_energy(doc)}: load {doc['load_pj'] / 1e3:.2f} nJ + "
          f"{doc['row_pj']:.1f} pJ per row (residual {doc['fit_residual']:.2e})")
    return 0


def predtile_sources(cfg, geom, params: PredictorParams) -> tuple[list, str]:
    """The Verilog of ``PredTile(cfg, geom)`` with ``params`` (written if changed)."""
    import hashlib

    from gen.verilog import component_entry, hdl_source_digest, write_if_changed

    from .run import BUILD_ROOT

    key = hashlib.sha256(json.dumps([cfg.digest, geom.to_dict(), predictor_kwargs(params), hdl_source_digest()],
                                    sort_keys=True).encode()).hexdigest()[:12]
    path = BUILD_ROOT / "verilog" / cfg.name / "predtile" / key / "aqua_predtile.v"
    if not path.exists():
        text, _ = component_entry(build_predtile(cfg, geom, params), "aqua_predtile")
        write_if_changed(path, text)
    return [path], "aqua_predtile"


def run_predtile(cfg, geom, layer, params: PredictorParams, pixels: torch.Tensor, sim: str,
                 *, fraction=0.25, labels=None) -> dict:
    """Predict -> crop -> compute for ``pixels [N, C, H, W]`` back to back on ``PredTile``
    under ``sim``: per image the RTL's crop against ``predict_int``, its output map against
    the golden cropped conv under that crop (``cosim.tile.tile_image``), and its cycles
    against ``predictor_cycles + tile_cycles``. Returns a JSON-able dict (``passed``,
    ``message``, per image ``crop``, ``cycles_rtl``/``cycles_golden``, ``bit_exact``)."""
    from golden.crop import fraction_code
    from hdl.layouts import tile_output_layout, tile_read_layout

    from .bits import pack_rows, unpack
    from .run import _config_path, save_stimulus
    from .sim import run_bench
    from .tile import tile_layer, tile_writes

    labels = list(range(len(pixels))) if labels is None else list(labels)
    sources, top = predtile_sources(cfg, geom, params)
    Ho, Wo = geom.out_height, geom.out_width
    rr, cc = torch.meshgrid(torch.arange(Ho), torch.arange(Wo), indexing="ij")
    reads = pack_rows(tile_read_layout(geom), {"row": rr.reshape(-1), "col": cc.reshape(-1)})
    want = [predtile_expect(cfg, geom, params, x, layer, fraction) for x in pixels]
    stim = {"writes": tile_writes(cfg, geom, layer.weight),
            "layer": tile_layer(cfg, geom, layer.bias, layer.shift, layer.relu),
            "fraction": fraction_code(fraction),
            "images": [{"pixels": [_pack(w, cfg.input_bits) for w in pixel_words(x)],
                        "reads": reads} for x in pixels]}
    stim_path = save_stimulus(stim, f"predtile-{cfg.name}", as_json=True)
    results_file = stim_path.with_suffix(f".{sim}.results.json")
    results_file.unlink(missing_ok=True)
    res = run_bench(sim=sim, sources=sources, toplevel=top, test_module="cosim.tb_predtile",
                    params={"config": str(_config_path(cfg)), "stimulus": str(stim_path),
                            "results_file": str(results_file)})
    if not results_file.exists():
        return {"passed": False, "message": "the bench wrote no results; log tail:\n"
                + "\n".join(res.log.strip().splitlines()[-15:]), "images": []}
    doc = json.loads(results_file.read_text())
    layout = tile_output_layout(cfg, geom)
    rows, problems = [], []
    for i, e, r in zip(labels, want, doc["images"]):
        got = torch.tensor([[unpack(layout, w)[f"y[{o}]"] for o in range(geom.out_channels)]
                            for w in r["outputs"]], dtype=torch.int64).t().reshape(
            geom.out_channels, Ho, Wo)
        exact = bool(torch.equal(got, e["tile"].expected))
        rows.append({"image": i, "crop": r["crop"], "crop_golden": e["crop"],
                     "window": list(e["tile"].window), "cycles_rtl": r["edges"],
                     "cycles_golden": e["cycles"], "predictor_cycles": e["predictor_cycles"],
                     "tile_cycles": e["tile"].cycles, "bit_exact": exact})
        where = f"test image {i}"
        if r["crop"] != e["crop"]:
            problems.append(f"{where}: crop {r['crop']}, golden {e['crop']}")
        if r["edges"] != e["cycles"]:
            problems.append(f"{where}: {r['edges']} cycles, golden {e['cycles']}")
        if r["error"] or r["done_pulses"] != 1 or r["sent"] != pixels.shape[-2] * pixels.shape[-1]:
            problems.append(f"{where}: error {r['error']}, {r['done_pulses']} done pulses, "
                            f"{r['sent']} pixels taken")
        if not exact:
            problems.append(f"{where}: output map differs from the golden cropped conv")
    passed = res.passed and not problems and len(rows) == len(pixels)
    return {"sim": sim, "config": cfg.name, "passed": passed,
            "message": "; ".join(problems[:3]) + ("" if passed else f" (config {cfg.name})"),
            "images": rows, "cycles": doc["cycles"], "sim_wall_s": doc["wall_s"]}


if __name__ == "__main__":
    raise SystemExit(main())
