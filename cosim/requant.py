"""The two requantizers side by side: the same accumulators through both, every cycle against
``golden.requant``, under Icarus and Verilator, at RTL and as synthesized gates; area on the
OSU 0.18 um cell library and toggle energy.

* **Stimulus** (:func:`layer_accumulators`): the exact accumulators ``v = Σ x·w + bias`` of a
  conv layer of the demo CNN quantized to the configuration (``golden.layer.matvec_acc`` on the
  im2col patches of real test images), channel by channel for each output position -- what a
  requantizer shared by a layer's outputs sees.
* **Settings** (:func:`calibrated_settings`): shift-and-round uses the layer's FlexPoint shift
  ``n``; the multiplier-based requantizer the scale a per-tensor symmetric quantizer calibrates
  (TensorFlow Lite: ``output_max / max|v|``), a non-power-of-two ``M0 * 2**-31 * 2**-e``.
* **Netlists**: the generated RTL, and the generic two-input-gate netlist Yosys makes of it
  (:func:`gen.synth.gate_netlist`): every gate output is a net, so its toggles count the work of
  the multiplier's partial products, not just the product bits the RTL names.
* **Energy**: ``arch.energy.toggle_energy`` with one table for both (register and
  combinational bit toggles, clock per register bit per cycle); the requantizer's input ports
  are driven by the logic before it and left out.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from arch.config import AccelConfig
from arch.ranges import int_range

from .blocks import REQUANT_BLOCKS, ports, requant_rows, table_from_rows
from .run import CosimRun, _config_path, run_checked, save_stimulus, verilog_sources

__all__ = ["layer_accumulators", "calibrated_settings", "run_requant", "requant_energy",
           "compare_requantizers", "NETLISTS"]

NETLISTS = ("rtl", "gates")


def layer_accumulators(cfg: AccelConfig, layer: int = 1, images: int = 1, net=None
                       ) -> tuple[torch.Tensor, int]:
    """Exact accumulators (bias included, before the output shift) of conv layer ``layer`` of
    the demo CNN quantized to ``cfg`` (or of ``net``, a ``golden.fixedpoint.QuantNet``) on the
    first ``images`` test images, flattened ``[position, channel]``; and the layer's shift.

    Raises
    ------
    ValueError
        If ``layer`` is not a conv layer, or an accumulator does not fit ``cfg.acc_bits``.
    """
    import torch.nn.functional as F

    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_layer, quantize_democnn
    from golden.layer import matvec_acc, program

    if net is None:
        net = quantize_democnn(cfg, load_democnn())
    convs = len(net.conv_layers)
    if not 0 <= layer < convs:
        raise ValueError(f"layer must be a conv layer index in 0..{convs - 1}, not {layer}")
    x, _ = cluttered_digits("test")
    q = quant_layer(net, layer, x[:images])
    cout, _, kh, kw = q.weight.shape
    patches = F.unfold(q.x.double(), (kh, kw), padding=q.padding, stride=q.stride)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1]).to(torch.int64)
    acc = matvec_acc(program(net.cfg, q.weight.reshape(cout, -1).t()), patches) + q.bias
    lo, hi = int_range(cfg.acc_bits, signed=True)
    if int(acc.min()) < lo or int(acc.max()) > hi:
        raise ValueError(f"layer {layer}'s accumulators [{int(acc.min())}, {int(acc.max())}] "
                         f"do not fit acc_bits = {cfg.acc_bits}")
    return acc.reshape(-1), q.shift


def calibrated_settings(cfg: AccelConfig, acc: torch.Tensor, shift: int) -> dict[str, dict]:
    """Per-block settings for accumulators ``acc``: ``{"requant_shift": {"shift": n},
    "requant_mult": {"multiplier": M0, "shift": e, "scale": s}}`` (module docstring)."""
    from golden.requant import quantize_multiplier
    peak = max(int(acc.abs().max()), 1)
    scale = min(cfg.output_max / peak, 0.999)
    m0, e = quantize_multiplier(scale)
    return {"requant_shift": {"shift": max(shift, 0)},
            "requant_mult": {"multiplier": m0, "shift": min(e, cfg.acc_bits), "scale": scale}}


def _sources(cfg: AccelConfig, block: str, netlist: str) -> tuple[list[Path], str]:
    sources, top = verilog_sources(cfg, block)
    if netlist == "rtl":
        return sources, top
    if netlist != "gates":
        raise ValueError(f"netlist must be one of {', '.join(NETLISTS)}, not {netlist!r}")
    import hashlib

    from gen.synth import GATES_SCRIPT, gate_netlist
    # named by the RTL and the script it was made with: a change of either makes a new one
    key = hashlib.sha256(sources[0].read_bytes() + GATES_SCRIPT.encode()).hexdigest()[:12]
    out = sources[0].with_name(f"{top}.gates-{key}.v")
    if not out.exists():
        gate_netlist(sources[0], top, out)
    return [out], top


def run_requant(cfg: AccelConfig, block: str, sim: str, accs, settings, *, seed: int = 0,
                netlist: str = "rtl", waves: bool = False, label: str = "requant") -> CosimRun:
    """Co-simulate requantizer ``block`` (``netlist``: RTL or gates) on ``accs`` with
    ``settings`` (one dict per accumulator, or one for all) and compare ``y`` every cycle."""
    if block not in REQUANT_BLOCKS:
        raise ValueError(f"block must be one of {', '.join(REQUANT_BLOCKS)}, not {block!r}")
    t0 = time.perf_counter()
    accs = [int(a) for a in accs]
    if isinstance(settings, dict):
        settings = [settings] * len(accs)
    table = table_from_rows(cfg, block, requant_rows(cfg, block, accs, settings), seed=seed)
    sources, top = _sources(cfg, block, netlist)
    path = save_stimulus(table, f"{cfg.name}-{cfg.digest}-{block}-{netlist}-{label}")
    params = {"config": str(_config_path(cfg)), "seed": seed, "block": block,
              "table": str(path)}
    run, _ = run_checked(block, cfg, sim, sources, top, "cosim.tb_vectors", params, seed=seed,
                         t0=t0, waves=waves)
    return run


def requant_energy(cfg: AccelConfig, block: str, run: CosimRun, netlist: str,
                   table=None) -> dict:
    """Toggle counts and energy (pJ) of a run made with ``waves``, inputs left out."""
    from arch.energy import digital_total, load_energy_table, toggle_energy

    from .toggles import Toggles, fst_toggles, signal_classes
    table = table or load_energy_table()
    sources, _ = _sources(cfg, block, netlist)
    classes = signal_classes(Path(sources[0]))
    for name, (direction, _) in ports(cfg, block).items():
        if direction == "input":
            classes[name] = "input"
    tog = Toggles(fst_toggles(run.waves), classes, run.stats.get("cycles", 0), str(run.waves))
    parts = toggle_energy(table, tog)
    total = {k: sum(p[k] for p in parts.values())
             for k in ("register", "comb", "clock", "register_toggles", "comb_toggles",
                       "register_bits")}
    total["pj"] = digital_total(parts)
    total["cycles"] = tog.cycles
    return total


def compare_requantizers(cfg: AccelConfig, sims, *, layer: int = 1, images: int = 1,
                         net=None, random_cycles: int = 2000, seed: int = 0,
                         progress=None) -> dict:
    """Everything ``aqua quantize`` reports about the two requantizers for ``cfg``.

    For each simulator in ``sims`` and each netlist (RTL, gates): both blocks on random
    stimulus (full-range accumulators, changing settings) and on the layer's accumulators with
    waves on, every cycle against the golden model; area on OSU 0.18 um; energy per run.

    Raises
    ------
    RuntimeError
        If any run disagrees with the golden model (the message names cycle and seed).
    gen.synth.LibertyMissing
        If the OSU 0.18 um liberty is not installed.
    """
    from gen.synth import synth_liberty

    from .blocks import random_accumulators, random_requant_settings
    step = progress or (lambda _msg: None)
    accs, shift = layer_accumulators(cfg, layer, images, net)
    settings = calibrated_settings(cfg, accs, shift)
    rand = random_accumulators(cfg, random_cycles, seed)
    out: dict = {"config": cfg.name, "acc_bits": cfg.acc_bits, "out_bits": cfg.output_bits,
                 "m_bits": 32, "layer": layer, "images": images,
                 "accumulators": len(accs), "random_cycles": len(rand), "seed": seed,
                 "settings": settings, "blocks": {}, "runs": []}
    for block in REQUANT_BLOCKS:
        sources, top = verilog_sources(cfg, block)
        step(f"synthesizing {block} to OSU 0.18 um")
        syn = synth_liberty(sources[0], top)
        out["blocks"][block] = {"area_um2": syn["area_um2"],
                                "sequential_area_um2": syn["sequential_area_um2"],
                                "cells": syn["cells"], "cell_types": syn["cell_types"],
                                "liberty": syn["liberty"], "energy": {}}
        setting = {k: v for k, v in settings[block].items() if k != "scale"}
        rand_settings = random_requant_settings(cfg, block, len(rand), seed + 1)
        for sim in sims:
            for netlist in NETLISTS:
                step(f"{block} ({netlist}) under {sim}")
                for kind, a, s, waves in (("random", rand, rand_settings, False),
                                          ("layer", accs, setting, True)):
                    run = run_requant(cfg, block, sim, a, s, seed=seed, netlist=netlist,
                                      waves=waves, label=f"{kind}{layer}-{images}")
                    out["runs"].append({"block": block, "sim": sim, "netlist": netlist,
                                        "stimulus": kind, "cycles": run.cycles,
                                        "compared": run.compared, "passed": run.passed})
                    if not run.passed:
                        raise RuntimeError(f"{block} ({netlist}) under {sim}, {kind} "
                                           f"stimulus: {run.message}")
                    if waves:
                        out["blocks"][block]["energy"][f"{sim}/{netlist}"] = \
                            requant_energy(cfg, block, run, netlist)
    sr, mr = out["blocks"]["requant_shift"], out["blocks"]["requant_mult"]
    out["area_ratio"] = mr["area_um2"] / sr["area_um2"]
    out["energy_ratio"] = {k: mr["energy"][k]["pj"] / sr["energy"][k]["pj"]
                           for k in sr["energy"]}
    return out

