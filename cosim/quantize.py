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

__all__ = ["quantize", "hardware_section", "first_layer_problem"]


def quantize(model: nn.Module, *, bound: float = DEFAULT_BOUND, images: int = DEFAULT_IMAGES,
             schedule: str = "greedy", base: AccelConfig | None = None,
             sims: Sequence[str] = (), progress: Callable[[int, int], None] | None = None,
             say: Callable[[str], None] | None = None, name: str = "demo CNN",
             size: int = 32) -> QuantizeReport:
    """:func:`golden.qreport.quantize_report`, then, if ``base`` is given, its hardware
    section on the simulators ``sims`` (:func:`hardware_section`; ``say(message)`` before each
    long step). Its wall time goes to ``timing["hardware_seconds"]``.

    Raises
    ------
    gen.synth.LibertyMissing, cosim.sim.SimulatorMissing
        If the cell library or a simulator is not installed.
    """
    report = qreport.quantize_report(model, bound=bound, images=images, schedule=schedule,
                                     progress=progress, name=name, size=size)
    if base is not None:
        t0 = time.perf_counter()
        report.hardware = hardware_section(base, model, report, sims, say=say, size=size)
        report.timing["hardware_seconds"] = round(time.perf_counter() - t0, 1)
    return report


def first_layer_problem(base: AccelConfig, layers) -> str | None:
    """Why the searched layer 0 of ``layers`` (:func:`golden.qreport.model_layers`) cannot
    run alone in the Datapath RTL, or ``None``: it must be a plain conv (groups 1, square, no
    dilation) whose im2col rows fit one crossbar of ``base`` and whose output (through a ReLU
    at most) is read by layer 1 alone. The demo CNN's layer 0 is."""
    graph = getattr(layers, "graph", None)
    L = layers[0]
    if L.kind != "conv":
        return f"layer 0 ('{L.name}') is a linear layer"
    _, cin, kh, kw = L.weight.shape
    if cin * kh * kw > base.rows:
        return (f"layer 0 ('{L.name}') has {cin * kh * kw} im2col rows, more than one "
                f"crossbar's {base.rows} of '{base.name}'")
    if graph is None:
        return None
    n = graph[L.name]
    a = n.attrs
    if a["groups"] != 1 or kh != kw or a["stride"][0] != a["stride"][1] \
            or a["padding"][0] != a["padding"][1] or a["dilation"] != (1, 1):
        return f"layer 0 ('{L.name}') is not a plain square conv (groups 1, no dilation)"
    users = graph.users()
    out = L.name
    if L.relu:
        out = users[L.name][0]
    if len(layers) < 2 or users[out] != [layers[1].name]:
        return (f"the output of layer 0 ('{L.name}') is not read by crossbar layer 1 alone "
                f"(the searched formats give its output format only then)")
    return None


def hardware_section(base: AccelConfig, model: nn.Module, report: QuantizeReport,
                     sims: Sequence[str], *, say: Callable[[str], None] | None = None,
                     size: int = 32) -> dict:
    """The two requantizers on ``base`` and the searched layer 0 of ``report`` in the
    Datapath RTL, under every simulator of ``sims``; for a model whose layer 0 cannot run
    alone (:func:`first_layer_problem`) ``searched_layer`` is ``{"skipped": why}``."""
    import torch

    from golden.layer import conv2d
    from golden.netreport import calibration, digits
    from golden.qformat import Fmt, LayerFormat
    from golden.qhardware import integer_layer
    from golden.qreport import model_layers

    from .requant import compare_requantizers
    from .run import assemble_outputs, cnn_jobs, run_datapath

    say = say or (lambda _msg: None)
    say("requantizers: OSU 0.18 um synthesis and co-simulation (first run builds the "
        "simulators, a few minutes)")
    req = compare_requantizers(base, sims, progress=say)
    formats = [LayerFormat(*(Fmt(**f[k]) for k in "xwb"))
               for f in report.methods["searched"]["formats"]]
    layers = model_layers(model, calibration(size))
    problem = first_layer_problem(base, layers)
    if problem is not None:
        say(f"searched layer 0 in the Datapath RTL: not run ({problem})")
        return {"requantizers": req, "searched_layer": {"skipped": problem}}
    x, _ = digits("test", size)
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
