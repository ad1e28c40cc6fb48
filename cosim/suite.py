"""The co-simulation suite that ``aqua cosim`` runs: every bench on every simulator, one call.

:func:`run_cosim` runs the targets of :data:`TARGETS` (the Datapath, each block of
:data:`cosim.blocks.BENCHES` that the Datapath is built from, the region-crop AGU, and the
``ConvTile`` on every demo CNN layer that fits the crossbar under all 16 crop vectors) and
returns a :class:`CosimReport`: one :class:`CosimRow` per run, the ConvTile's cycles per crop
vector, and the timings kept apart (``to_dict()["timing"]``), so that two runs with the same
seed give the same report apart from that key.

Nothing here prints: the caller renders the report, and may pass a ``progress`` callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from arch.config import AccelConfig

__all__ = ["PATHS", "TARGETS", "TARGET_NAMES", "Target", "CosimOptions", "CosimRow", "CropSweep",
           "CosimReport", "COLUMNS", "run_cosim", "IMA_TARGET"]

#: What each count of a :class:`CosimRow` means (the table's caption and the JSON's
#: ``columns``): one meaning per column, whatever the bench.
COLUMNS = {
    "vectors": "input vectors applied: blocks one per cycle on every input port, Datapath "
               "input-stream transfers, ConvTile pixels taken",
    "path": "how the run was checked: bulk (compiled; every cycle compared inside the "
            "simulator) or cocotb (Python on every clock)",
    "cycles": "clock cycles simulated",
    "cycles_compared": "cycles on which every output was compared with the golden model "
                       "(blocks: every output port; Datapath: the whole obs bus, o.valid and "
                       "i.ready); \"-\" for the ConvTile, which is compared per image",
    "outputs_compared": "output words compared with the golden model: blocks one output port "
                        "on one cycle, Datapath one output-stream transfer, ConvTile one output "
                        "position read back (the ConvTile also checks each image's cycle count, "
                        "error flag and done pulse)",
}


#: How the Datapath and the ConvTile can run (:class:`CosimOptions` ``path``).
PATHS = ("bulk", "cocotb")


@dataclass(frozen=True)
class CosimOptions:
    """What to run: ``targets`` (names of :data:`TARGETS`) on ``sims`` with ``seed``;
    ``vectors`` random input vectors for the Datapath (with input ``bubble`` and output
    ``backpressure`` probabilities), ``cycles`` random cycles per block bench, the ConvTile's
    ``crop_fraction``; with ``waves`` every run records a waveform, kept and named in its
    row. ``path`` chooses how the Datapath and the ConvTile run: ``"bulk"`` (the compiled
    path of :mod:`cosim.bulk`, every cycle compared inside the simulator; the default) or
    ``"cocotb"`` (Python on every clock); ``waves`` takes the cocotb path, which keeps the
    waveform of a passing run. The block benches always run under cocotb."""
    sims: tuple[str, ...]
    seed: int
    targets: tuple[str, ...] = ()
    vectors: int = 400
    cycles: int = 4000
    bubble: float = 0.2
    backpressure: float = 0.2
    crop_fraction: float = 0.25
    waves: bool = False
    path: str = "bulk"
    ima: bool = False         # also the IMATile on the layers larger than a crossbar (bulk)

    def __post_init__(self):
        if not self.targets:
            object.__setattr__(self, "targets", TARGET_NAMES)
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"targets must be among {', '.join(TARGETS)}, not {unknown!r}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, not {self.path!r}")
        for name in ("bubble", "backpressure"):
            p = getattr(self, name)
            if not 0 <= p < 1:
                raise ValueError(f"{name} must lie in [0, 1), not {p}")


@dataclass
class CosimRow:
    """One run of one bench on one simulator (the counts: :data:`COLUMNS`)."""
    block: str
    sim: str
    config: str
    seed: int
    passed: bool
    vectors: int
    cycles: int
    cycles_compared: int | None
    outputs_compared: int
    message: str = ""
    waves: str | None = None           # the waveform, when one was written
    wall_s: float = 0.0                # the whole run: stimulus, build, simulation
    sim_wall_s: float = 0.0            # the simulation loop only
    path: str = "cocotb"               # how it ran: "cocotb" or "bulk" (cosim.bulk)

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.sim_wall_s if self.sim_wall_s else 0.0

    def to_dict(self) -> dict:
        """Everything but the timings (:meth:`timing`)."""
        return {"block": self.block, "sim": self.sim, "config": self.config, "seed": self.seed,
                "path": self.path, "passed": self.passed, "vectors": self.vectors,
                "cycles": self.cycles,
                "cycles_compared": self.cycles_compared,
                "outputs_compared": self.outputs_compared, "message": self.message,
                "waves": self.waves}

    def timing(self) -> dict:
        return {"block": self.block, "sim": self.sim, "wall_s": self.wall_s,
                "sim_wall_s": self.sim_wall_s, "cycles_per_s": self.cycles_per_s}


@dataclass
class CropSweep:
    """A ConvTile run of demo CNN layer ``layer`` under every crop vector: per crop vector the
    kept window, the cycles of the RTL and of ``golden.crop.tile_cycles``, and whether the
    outputs are bit-exact (``rows``, from :func:`cosim.tile.check_tile_run`)."""
    layer: int
    sim: str
    config: str
    fraction: float
    rows: list[dict]
    tile: str = "convtile"      # or "imatile" (cosim.imatile: every pass of each image)

    @property
    def block(self) -> str:
        return f"{self.tile} L{self.layer}"

    def to_dict(self) -> dict:
        return {"block": self.block, "sim": self.sim, "config": self.config,
                "fraction": self.fraction,
                "crop_cycles": [{**r, "window": list(r["window"]) if r["window"] else None}
                                for r in self.rows]}


@dataclass
class CosimReport:
    """Everything :func:`run_cosim` did."""
    config: str
    options: CosimOptions
    rows: list[CosimRow] = field(default_factory=list)
    sweeps: list[CropSweep] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[CosimRow]:
        return [r for r in self.rows if not r.passed]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and not self.failed

    def to_dict(self) -> dict:
        """The report as JSON-ready values; every wall time and speed is under ``timing``, so
        two runs with the same seed differ only there."""
        o = self.options
        return {
            "config": self.config, "seed": o.seed, "simulators": list(o.sims),
            "options": {"targets": list(o.targets), "vectors": o.vectors, "cycles": o.cycles,
                        "bubble": o.bubble, "backpressure": o.backpressure,
                        "crop_fraction": o.crop_fraction, "waves": o.waves, "ima": o.ima},
            "passed": self.passed,
            "columns": dict(COLUMNS),
            "runs": [r.to_dict() for r in self.rows],
            "crop_sweeps": [s.to_dict() for s in self.sweeps],
            "timing": {"wall_s": self.wall_s, "runs": [r.timing() for r in self.rows]},
        }


# -- the targets -------------------------------------------------------------------------------

class _Context:
    """One suite run: the config, the options, and what several runs share."""

    def __init__(self, cfg: AccelConfig, options: CosimOptions):
        self.cfg, self.options = cfg, options
        self._jobs = None

    @property
    def jobs(self) -> list[dict]:
        """The Datapath's random jobs, the same on every simulator."""
        if self._jobs is None:
            from .run import random_jobs
            o = self.options
            self._jobs = random_jobs(self.cfg, o.vectors, o.seed)
        return self._jobs


def _waves(run) -> str | None:
    return str(run.waves) if run.waves else None


def _single(cfg: AccelConfig) -> list:
    return [None]


def _bulk(o: CosimOptions) -> bool:
    return o.path == "bulk" and not o.waves


def _run_datapath(ctx: _Context, sim: str, _unit) -> tuple[CosimRow, None]:
    o = ctx.options
    if _bulk(o):
        from .bulk import datapath_bulk
        run = datapath_bulk(ctx.cfg, sim, jobs=ctx.jobs, seed=o.seed, bubble=o.bubble,
                            backpressure=o.backpressure)
    else:
        from .run import run_datapath
        run = run_datapath(ctx.cfg, sim, jobs=ctx.jobs, seed=o.seed, bubble=o.bubble,
                           backpressure=o.backpressure, waves=o.waves)
    return CosimRow(path=run.stats.get("path", "cocotb"), block=run.block, sim=sim, config=run.config, seed=run.seed,
                    passed=run.passed, vectors=run.vectors, cycles=run.cycles,
                    cycles_compared=run.compared, outputs_compared=run.stats.get("outputs", 0),
                    message=run.message, waves=_waves(run), wall_s=run.wall_s,
                    sim_wall_s=run.sim_wall_s), None


def _block_runner(name: str):
    def run_block(ctx: _Context, sim: str, _unit) -> tuple[CosimRow, None]:
        from .blocks import BENCHES
        o = ctx.options
        run = BENCHES[name].run(ctx.cfg, sim, cycles=o.cycles, seed=o.seed, waves=o.waves)
        return CosimRow(block=run.block, sim=sim, config=run.config, seed=run.seed,
                        passed=run.passed, vectors=run.vectors, cycles=run.cycles,
                        cycles_compared=run.compared,
                        outputs_compared=run.stats.get("ports_compared", 0),
                        message=run.message, waves=_waves(run), wall_s=run.wall_s,
                        sim_wall_s=run.sim_wall_s), None
    return run_block


def _tile_layers(cfg: AccelConfig) -> list[int]:
    from .tile import demo_layers_for
    return demo_layers_for(cfg)


def _run_tile(ctx: _Context, sim: str, index: int) -> tuple[CosimRow, CropSweep]:
    o = ctx.options
    if _bulk(o):
        from .bulk import crop_sweep_bulk
        run = crop_sweep_bulk(ctx.cfg, index, sim, fraction=o.crop_fraction, seed=o.seed)
    else:
        from .tile import crop_sweep
        run = crop_sweep(ctx.cfg, index, sim, fraction=o.crop_fraction, seed=o.seed,
                         waves=o.waves)
    checked = [img for img, r in zip(run.images, run.rows) if r["outputs_equal"] is not None]
    row = CosimRow(path=getattr(run, "path", "cocotb"), block=f"convtile L{index}", sim=sim, config=run.config, seed=run.seed,
                   passed=run.passed, vectors=sum(r.get("sent", 0) for r in run.results),
                   cycles=run.cycles, cycles_compared=None,
                   outputs_compared=sum(img.out_height * img.out_width for img in checked),
                   message=run.message, waves=run.waves, wall_s=run.wall_s,
                   sim_wall_s=run.sim_wall_s)
    return row, CropSweep(layer=index, sim=sim, config=run.config, fraction=o.crop_fraction,
                          rows=run.rows)


def _ima_layers(cfg: AccelConfig) -> list[int]:
    from .imatile import ima_demo_layers
    return ima_demo_layers(cfg)


def _run_ima_tile(ctx: _Context, sim: str, index: int) -> tuple[CosimRow, CropSweep]:
    """The IMATile always takes the bulk path (it has no cocotb bench)."""
    from .imatile import ima_crop_sweep_bulk

    o = ctx.options
    run = ima_crop_sweep_bulk(ctx.cfg, index, sim, fraction=o.crop_fraction, seed=o.seed)
    row = CosimRow(path="bulk", block=f"imatile L{index}", sim=sim, config=run.config,
                   seed=run.seed, passed=run.passed,
                   vectors=sum(r.get("sent", 0) for r in run.results), cycles=run.cycles,
                   cycles_compared=None,
                   outputs_compared=sum(img.out_height * img.out_width for img in run.images)
                   if run.passed else 0,
                   message=run.message, waves=run.waves, wall_s=run.wall_s,
                   sim_wall_s=run.sim_wall_s)
    return row, CropSweep(layer=index, sim=sim, config=run.config, fraction=o.crop_fraction,
                          rows=run.rows, tile="imatile")


@dataclass(frozen=True)
class Target:
    """One entry of ``aqua cosim --blocks``: ``units(cfg)`` lists its runs per simulator (one,
    or one per demo CNN layer for the ConvTile); ``run(ctx, sim, unit)`` makes one run and
    returns its row (and, for the ConvTile, its crop sweep)."""
    name: str
    help: str
    units: Callable[[AccelConfig], list]
    run: Callable[[_Context, str, object], tuple[CosimRow, CropSweep | None]]


#: Everything ``aqua cosim`` can run, in the order it runs them.
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("datapath", "the whole Datapath, every register every cycle", _single,
           _run_datapath),
    *(Target(name, f"the {name} block alone, every output port every cycle", _single,
             _block_runner(name))
      for name in ("crossbar", "adc", "shiftadd", "agu")),
    Target("convtile", "the ConvTile on every demo CNN layer that fits the crossbar, under "
                       "all 16 crop vectors", _tile_layers, _run_tile),
)}
TARGET_NAMES = tuple(TARGETS)
#: Run after the targets when :class:`CosimOptions` ``ima`` is set (``aqua cosim --ima``): the
#: multi-crossbar builds are long, so it is opt-in.
IMA_TARGET = Target("imatile", "the IMATile on every demo CNN layer larger than one crossbar, "
                               "every pass, under all 16 crop vectors (bulk path)",
                    _ima_layers, _run_ima_tile)


def run_cosim(cfg: AccelConfig, options: CosimOptions, *,
              progress: Callable[..., None] | None = None) -> CosimReport:
    """Run ``options.targets`` on ``options.sims`` for ``cfg``: target by target, simulator by
    simulator (and layer by layer for the ConvTile).

    ``progress(n=1, total=None)`` (the CLI's progress helper) is called once with ``(0,
    total)`` when the number of runs is known, then after every run.

    Raises
    ------
    cosim.sim.SimulatorMissing
        If a simulator of ``options.sims`` is not installed (before anything runs).
    ValueError
        If ``options.crop_fraction`` is not a crop fraction the ConvTile takes.
    """
    from golden.crop import fraction_code

    from .sim import ensure_simulator

    t0 = time.perf_counter()
    for sim in options.sims:
        ensure_simulator(sim)
    if "convtile" in options.targets or options.ima:
        fraction_code(options.crop_fraction)
    ctx = _Context(cfg, options)
    plan = [(TARGETS[name], TARGETS[name].units(cfg)) for name in options.targets]
    if options.ima:
        plan.append((IMA_TARGET, IMA_TARGET.units(cfg)))
    if progress is not None:
        progress(0, total=sum(len(units) for _, units in plan) * len(options.sims))
    report = CosimReport(config=cfg.name, options=options)
    for target, units in plan:
        for sim in options.sims:
            for unit in units:
                row, sweep = target.run(ctx, sim, unit)
                report.rows.append(row)
                if sweep is not None:
                    report.sweeps.append(sweep)
                if progress is not None:
                    progress()
    report.wall_s = time.perf_counter() - t0
    return report
