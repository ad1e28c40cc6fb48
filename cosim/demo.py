"""``aqua demo`` as one library call: the golden report (:func:`golden.demo.demo_layer`) and
the first conv layer in RTL on one image, co-simulated every cycle against the golden model
(:func:`rtl_check`)."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, ContextManager

from arch.config import AccelConfig
from golden.demo import DemoReport, demo_layer

__all__ = ["demo", "rtl_check", "AUTO_LIMIT"]

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
              status: Callable[[str], ContextManager] | None = None) -> dict | None:
    """The demo CNN's first conv layer on one image under ``sim`` ("verilator", "icarus",
    "auto": Verilator if present, else Icarus, skipped for crossbars above
    :data:`AUTO_LIMIT` cells; "none": ``None``). ``status(message)`` is entered around the
    co-simulation.

    Returns a dict: ``outcome`` ("too large" for ``auto``, "no simulator" with the
    ``reason``, or "ran" with ``sim``, ``passed``, ``message``, ``vectors``, ``compared``,
    ``wall_seconds``, ``cycles_per_s`` and ``exact``: the RTL feature map equals
    ``golden.layer.conv2d``), and ``rows``, ``cols``.
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
        run, rtl, gold = first_layer_in_rtl(cfg, chosen)
    wall = time.perf_counter() - t0
    return {"outcome": "ran", "rows": cfg.rows, "cols": cfg.cols, "sim": chosen,
            "passed": run.passed, "message": run.message, "vectors": run.vectors,
            "compared": run.compared, "wall_seconds": wall, "cycles_per_s": run.cycles_per_s,
            "exact": bool(run.passed and torch.equal(rtl, gold))}
