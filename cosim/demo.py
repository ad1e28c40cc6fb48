"""``aqua demo`` as one library call: the golden report (:func:`golden.demo.demo_layer`; for
any model, :func:`golden.netreport.demo_network`) and the first conv layer in RTL on one image,
co-simulated every cycle against the golden model (:func:`rtl_check`)."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, ContextManager

from arch.config import AccelConfig
from golden.demo import DemoReport, demo_layer

__all__ = ["demo", "demo_model", "rtl_check", "AUTO_LIMIT"]

AUTO_LIMIT = 64 * 64      #: ``sim="auto"`` skips crossbars with more cells than this


def demo(cfg: AccelConfig, model, layer: int, images: int, accuracy_images: int, *,
         sim: str = "auto", progress: Callable[[int], None] | None = None,
         status: Callable[[str], ContextManager] | None = None) -> DemoReport:
    """:func:`golden.demo.demo_layer`, then :func:`rtl_check` into ``report.rtl``.

    Raises
    ------
    golden.fixedpoint.QuantError
        If the model cannot be quantized to ``cfg``.
    """
    report = demo_layer(cfg, model, layer, images, accuracy_images, progress=progress)
    report.rtl = rtl_check(cfg, sim, status=status)
    return report


def rtl_check(cfg: AccelConfig, sim: str = "auto", *,
              status: Callable[[str], ContextManager] | None = None,
              layer=None) -> dict | None:
    """The demo CNN's first conv layer on one image under ``sim`` ("verilator", "icarus",
    "auto": Verilator if present, else Icarus, skipped for crossbars above
    :data:`AUTO_LIMIT` cells; "none": ``None``). ``status(message)`` is entered around the
    co-simulation.

    Returns a dict: ``outcome`` ("too large" for ``auto``, "no simulator" with the
    ``reason``, or "ran" with ``sim``, ``passed``, ``message``, ``vectors``, ``compared``,
    ``wall_seconds``, ``cycles_per_s`` and ``exact``: the RTL feature map equals
    ``golden.layer.conv2d``), and ``rows``, ``cols``. ``layer``: another conv layer than
    the demo CNN's first (a ``QuantLayer`` with its inputs, :func:`demo_model`).
    """
    from .sim import SimulatorMissing, ensure_simulator

    if sim == "none":
        return None
    if sim == "auto" and cfg.rows * cfg.cols > AUTO_LIMIT:
        return {"outcome": "too large", "rows": cfg.rows, "cols": cfg.cols}
    candidates = ["verilator", "icarus"] if sim == "auto" else [sim]
    chosen = None
    for name in candidates:
        try:
            ensure_simulator(name)
            chosen = name
            break
        except SimulatorMissing as exc:
            reason = str(exc)
    if chosen is None:
        return {"outcome": "no simulator", "reason": reason, "rows": cfg.rows,
                "cols": cfg.cols}
    import torch

    from .run import first_layer_in_rtl

    status = status or (lambda _msg: contextlib.nullcontext())
    t0 = time.perf_counter()
    with status(f"generating Verilog and co-simulating layer 0 under {chosen}"):
        run, rtl, gold = first_layer_in_rtl(cfg, chosen, layer=layer)
    wall = time.perf_counter() - t0
    return {"outcome": "ran", "rows": cfg.rows, "cols": cfg.cols, "sim": chosen,
            "passed": run.passed, "message": run.message, "vectors": run.vectors,
            "compared": run.compared, "wall_seconds": wall, "cycles_per_s": run.cycles_per_s,
            "exact": bool(run.passed and torch.equal(rtl, gold))}


def demo_model(cfg: AccelConfig, model, *, name: str, size: int = 32, images: int = 16,
               sim: str = "auto", progress: Callable[[int], None] | None = None,
               status: Callable[[str], ContextManager] | None = None):
    """``aqua demo --model``: :func:`golden.netreport.demo_network`, then the model's first
    crossbar layer on one test image in RTL (:func:`rtl_check`) when one crossbar's rows hold
    it and it is a plain conv; else ``report.rtl`` is ``{"outcome": "does not fit",
    "reason": ...}``.

    Raises
    ------
    golden.graph.UnsupportedGraphError, golden.fixedpoint.QuantError
        For a model the crossbar path cannot take.
    """
    from golden.netreport import demo_network, digits, first_conv_layer, quantize_model, \
        tile_layers

    qg = quantize_model(cfg, model, size)
    report = demo_network(cfg, model, name=name, size=size, images=images,
                          progress=progress, qg=qg)
    if sim == "none":
        return report
    _, lname, why = tile_layers(qg)[0]
    if why is not None:
        report.rtl = {"outcome": "does not fit", "reason": f"first layer '{lname}' is {why}"
                      if not why[0].isdigit() else f"first layer '{lname}' has {why}",
                      "rows": cfg.rows, "cols": cfg.cols}
        return report
    x, _ = digits("test", size)
    layer, _ = first_conv_layer(qg, x[:1])
    report.rtl = rtl_check(cfg, sim, status=status, layer=layer)
    return report
