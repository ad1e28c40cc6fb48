"""Timing for the golden model's benchmarks: the best of several single-threaded runs
(``aqua demo``, ``aqua bench``), and ``aqua bench``'s measurements: every layer of the demo
CNN against the float layer and the speed target of its path, and a zoo network's whole-graph
fixed-point forward under all crops against its float forward (:class:`SpeedReport`).

Importing this module imports no torch (``aqua --help`` stays fast); the functions do."""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["best_time", "single_thread", "INTEGER_TARGET", "BITSERIAL_TARGET", "LayerTiming",
           "NetTiming", "SpeedReport", "time_layer", "time_network"]


def best_time(fn: Callable[[], object], *, min_seconds: float = 0.2, max_runs: int = 50,
              clock: Callable[[], float] = time.perf_counter) -> tuple[float, object]:
    """Run ``fn`` at least once and until ``min_seconds`` have passed (at most ``max_runs``
    times), on one torch thread; return the fastest run's time in seconds by ``clock`` (wall
    time by default) and the last result.

    One thread, because on a small, shared machine a multi-threaded torch kernel waits for a
    busy core at every barrier and its time jumps by orders of magnitude; single-threaded
    times are stable and compare like with like. On a machine shared with other jobs pass
    ``clock=time.thread_time``: the CPU time of the (one) computing thread, which does not
    count the time the thread waits for a core (``aqua bench`` does).
    """
    with single_thread():
        return _best_time(fn, min_seconds, max_runs, clock)


@contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block (see :func:`best_time` for why)."""
    import torch        # here, so that importing this module (``aqua --help``) stays fast

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _best_time(fn, min_seconds, max_runs, clock=time.perf_counter):
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    result = None
    while runs == 0 or (time.perf_counter() - start < min_seconds and runs < max_runs):
        t0 = clock()
        result = fn()
        best = min(best, clock() - t0)
        runs += 1
    return best, result


# -- aqua bench: the golden model against its bounds ------------------------------------------

#: The speed targets of issue 12 (part E), as multiples of the float layer's time: a layer on
#: the exact integer path (golden.layer.adc_is_identity) at most INTEGER_TARGET; a bit-serial
#: (lossy ADC) layer at most BITSERIAL_TARGET times its bound T*S (the bit-plane x slice
#: products the crossbar model forms for each float product).
INTEGER_TARGET = 3.0
BITSERIAL_TARGET = 1.5
#: The clock of ``aqua bench``: CPU time of the computing thread (torch runs on one thread), so
#: that the ratios hold on a machine shared with other jobs (wall time there counts the waits).
CLOCK = time.thread_time


@dataclass
class LayerTiming:
    """One layer of the demo CNN quantized to ``config``: the float layer (float32 torch, one
    thread) and the golden model, best of several runs each (seconds of :data:`CLOCK`), and
    the target the golden time is held to (``target`` times the float time)."""
    config: str
    index: int
    shape: str
    row_tiles: int
    groups: int
    path: str                   # "integer" or "bit-serial" (golden.layer's choice)
    outputs: int
    float_seconds: float
    golden_seconds: float
    bound: int                  # T * S
    target: float               # allowed golden / float ratio

    @property
    def ratio(self) -> float:
        return self.golden_seconds / self.float_seconds

    @property
    def met(self) -> bool:
        return self.ratio <= self.target

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ratio": self.ratio,
                "ratio_over_bound": self.ratio / self.bound, "met": self.met}


@dataclass
class NetTiming:
    """A zoo network's whole-graph fixed-point forward under all crops (batched as the crop
    study runs it: golden.study.crop_forward) against its float forward pass."""
    model: str
    config: str
    size: int
    images: int
    crops: int
    golden_seconds: float
    float_seconds: float

    @property
    def golden_images_per_second(self) -> float:
        """Images per second, each image under all ``crops`` crops."""
        return self.images / self.golden_seconds

    @property
    def float_images_per_second(self) -> float:
        return self.images / self.float_seconds

    @property
    def ratio(self) -> float:
        """How many times slower per image the golden model (all crops) is than float."""
        return self.golden_seconds / self.float_seconds

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self),
                "golden_images_per_second": self.golden_images_per_second,
                "float_images_per_second": self.float_images_per_second,
                "ratio": self.ratio}


@dataclass
class SpeedReport:
    """What ``aqua bench`` measured: every layer on every configuration, and the network."""
    images: int
    layers: list[LayerTiming] = field(default_factory=list)
    net: NetTiming | None = None

    def to_dict(self) -> dict:
        return {"images": self.images, "layers": [r.to_dict() for r in self.layers],
                "net": None if self.net is None else self.net.to_dict()}


def time_layer(net, index: int, images) -> LayerTiming:
    """Layer ``index`` of the quantized demo CNN ``net`` on ``images``: golden model
    (``golden.fixedpoint.run_layer``, weights programmed once) against the float32 layer on the dequantized operands."""
    import torch.nn.functional as F

    from golden import fixedpoint as fxp
    from golden.layer import adc_is_identity, matrix_mapping

    cfg = net.cfg
    q = fxp.quant_layer(net, index, images)
    xf = fxp.from_fixed(q.x, q.x_frac).float()
    wf = fxp.from_fixed(q.weight, q.w_frac).float()
    bf = fxp.from_fixed(q.bias, q.w_frac + q.x_frac).float()
    if q.kind == "conv":
        def ref():
            return F.conv2d(xf, wf, bf, stride=q.stride, padding=q.padding)
    else:
        def ref():
            return F.linear(xf, wf, bf)
    # the weights programmed once, as the crossbars keep them across inputs
    programmed = fxp.program_layer(net, q)
    t_golden, y = best_time(lambda: fxp.run_layer(net, q, q.x, programmed), min_seconds=0.3,
                            clock=CLOCK)
    t_float, _ = best_time(ref, min_seconds=0.2, clock=CLOCK)
    n_out = q.weight.shape[0]
    mapping = matrix_mapping(cfg, q.weight[0].numel(), n_out)
    bound = cfg.input_cycles * cfg.slices
    integer = adc_is_identity(cfg)
    return LayerTiming(config=cfg.name, index=index, shape=q.shape, row_tiles=mapping.row_tiles,
                       groups=mapping.groups, path="integer" if integer else "bit-serial",
                       outputs=y.numel(), float_seconds=t_float, golden_seconds=t_golden,
                       bound=bound,
                       target=INTEGER_TARGET if integer else BITSERIAL_TARGET * bound)


def time_network(cfg, *, model: str = "resnet18", size: int = 64, images: int = 32,
                 fraction: float = 0.25, seed: int = 0) -> NetTiming:
    """``zoo:<model>`` (random weights, 3 input channels, 10 classes) at ``size x size``,
    quantized to ``cfg`` on the same ``images`` random images it is timed on: the golden
    fixed-point forward under all 16 crops of ``golden.crop.CROP_VECTORS`` (crop fraction
    ``fraction``, from the image: ``golden.study.crop_forward``, one batch, as the crop study
    runs a batch) and the float forward of the same model (torch, float32), one thread each."""
    import torch

    from golden import study
    from golden.graph import lower
    from golden.qnet import quantize_graph
    from golden.zoo import build

    net = build(model, num_classes=10, in_channels=3)
    x = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with single_thread(), torch.no_grad():
        qg = quantize_graph(cfg, lower(net, x[:1]), x)
        geoms, _, _ = study.graph_geometry(qg)
        plan = study.crop_plan(geoms, fraction, 0)
        t_golden, _ = _best_time(lambda: study.crop_forward(qg, x, plan), 0.0, 1, CLOCK)
        t_float, _ = _best_time(lambda: net(x), 0.5, 20, CLOCK)
    return NetTiming(model=f"zoo:{model}", config=cfg.name, size=size, images=images,
                     crops=len(plan), golden_seconds=t_golden, float_seconds=t_float)
