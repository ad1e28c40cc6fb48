"""``aqua quantize`` as one library call: the golden report (:mod:`golden.qreport`) and its
hardware section -- the two requantizers (OSU 0.18 um area, gate-level toggle energy, every
cycle against the golden model, :func:`cosim.requant.compare_requantizers`) and the searched
layer 0 in the Datapath RTL, bit for bit against ``golden.layer.conv2d``."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from torch import nn

from arch.config import AccelConfig
from golden import qreport
from golden.qreport import DEFAULT_IMAGES, QuantizeReport
from golden.qsearch import DEFAULT_BOUND

__all__ = ["quantize", "hardware_section"]


def quantize(model: nn.Module, *, bound: float = DEFAULT_BOUND, images: int = DEFAULT_IMAGES,
             schedule: str = "greedy", base: AccelConfig | None = None,
             sims: Sequence[str] = (), progress: Callable[[int, int], None] | None = None,
             say: Callable[[str], None] | None = None) -> QuantizeReport:
    """:func:`golden.qreport.quantize_report`, then, if ``base`` is given, its hardware
    section on the simulators ``sims`` (:func:`hardware_section`; ``say(message)`` before each
    long step). Its wall time goes to ``timing["hardware_seconds"]``.

    Raises
    ------
    gen.synth.LibertyMissing, cosim.sim.SimulatorMissing
        If the cell library or a simulator is not installed.
    """
    report = qreport.quantize_report(model, bound=bound, images=images, schedule=schedule,
                                     progress=progress)
    if base is not None:
        t0 = time.perf_counter()
        report.hardware = hardware_section(base, model, report, sims, say=say)
        report.timing["hardware_seconds"] = round(time.perf_counter() - t0, 1)
    return report


def hardware_section(base: AccelConfig, model: nn.Module, report: QuantizeReport,
                     sims: Sequence[str], *, say: Callable[[str], None] | None = None) -> dict:
    """The two requantizers on ``base`` and the searched layer 0 of ``report`` in the
    Datapath RTL, under every simulator of ``sims``."""
    import torch

    from golden.data import cluttered_digits
    from golden.layer import conv2d
    from golden.qformat import Fmt, LayerFormat
    from golden.qhardware import integer_layer
    from golden.qlayers import describe

    from .requant import compare_requantizers
    from .run import assemble_outputs, cnn_jobs, run_datapath

    say = say or (lambda _msg: None)
    say("requantizers: OSU 0.18 um synthesis and co-simulation (first run builds the "
        "simulators, a few minutes)")
    req = compare_requantizers(base, sims, progress=say)
    formats = [LayerFormat(*(Fmt(**f[k]) for k in "xwb"))
               for f in report.methods["searched"]["formats"]]
    layers = describe(model)
    x, _ = cluttered_digits("test")
    cfg, q = integer_layer(base, layers, formats, 0, x[:1])
    gold = conv2d(cfg, q.x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                  shift=q.shift, relu=q.relu)
    gold = gold.permute(0, 2, 3, 1).reshape(-1, gold.shape[1])
    layer_runs = []
    for sim in sims:
        say(f"searched layer 0 in the Datapath RTL under {sim}")
        jobs = cnn_jobs(cfg, q)
        run = run_datapath(cfg, sim, jobs=jobs, seed=0, label="quantize-l0")
        exact = run.passed and torch.equal(assemble_outputs(cfg, jobs, run.outputs), gold)
        layer_runs.append({"sim": sim, "cycles": run.cycles, "compared": run.compared,
                           "bit_exact": bool(exact), "message": run.message})
    say("hardware section done")
    return {"requantizers": req,
            "searched_layer": {"config": cfg.to_dict(), "shift": q.shift,
                               "outputs": gold.numel(), "runs": layer_runs}}
