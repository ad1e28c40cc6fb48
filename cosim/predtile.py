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

__all__ = ["predictor_kwargs", "build_predictor", "study_zeroth", "study_params",
           "ZEROTH_FIXTURE", "pixel_words"]

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

    from gen.verilog import component_entry, write_if_changed

    from .run import BUILD_ROOT

    kw = predictor_kwargs(params)
    key = hashlib.sha256(json.dumps(kw, sort_keys=True).encode()).hexdigest()[:12]
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
