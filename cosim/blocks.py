# amaranth: UnusedElaboratable=no
"""Co-simulation of the single blocks: one :class:`BlockBench` record per block.

A block bench is the hdl component, its ports (read from the component's signature and
layouts), a step model of the block (:mod:`cosim.models`) and a stimulus generator
(:mod:`cosim.stimulus`). :data:`BENCHES` holds one record per block: ``CrossbarMAC``,
``ADCQuantizer``, ``ShiftAdd``, the region-crop AGU and the two requantizers; everything that
runs, describes or checks a block takes its record, never a dispatch on the block's name.

The parent process (pytest or ``aqua cosim``) builds, for one configuration and seed, a *vector
table* with one row per clock cycle: the packed integer driven on every input port, and the
packed integer expected on every output port at the sample point (the read-only phase after the
falling edge at which that row's inputs were driven: combinational outputs show this row's
inputs, registers the state after the preceding rising edge). The generic bench
``cosim.tb_vectors`` replays the table and compares every output port on every cycle, so the
per-cycle Python in the simulator process is a handful of handle reads and writes.

While the table is built, the golden check points of the stimulus (``Rows.check``: values the
golden model computes in one piece) are compared with the step model, so a model cannot
quietly drift from the golden model (:class:`~cosim.models.ModelError`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from amaranth.lib import wiring

from arch.config import AccelConfig
from hdl import (ADCQuantizer, CrossbarMAC, MultiplierRequantizer, RegionCropAGU, ShiftAdd,
                 ShiftRoundRequantizer)

from .models import (REQUANTIZERS, ADCModel, AGUModel, CrossbarModel, ModelError,  # noqa: F401
                     RequantModel, ShiftAddModel, adc_model, requant_value)
from .ports import column, component_ports, pack_columns, pack_port, port_fields  # noqa: F401
from .run import CosimRun, _config_path, run_checked, save_stimulus, verilog_sources
from .stimulus import (AGU_FRACTIONS, AGU_SHAPES, Draw, Rows, adc_rows,  # noqa: F401
                       agu_rows, crossbar_rows, random_accumulators, random_requant_settings,
                       requant_random_rows, requant_rows, shiftadd_rows)

__all__ = ["BlockBench", "BENCHES", "bench", "BLOCK_NAMES", "BENCH_BLOCKS", "REQUANT_BLOCKS",
           "ports", "port_fields", "pack_port", "build_table", "table_from_rows", "run_block",
           "ModelError", "AGUModel", "RequantModel", "CrossbarModel", "ShiftAddModel",
           "adc_model", "requant_rows", "requant_value"]


@dataclass(frozen=True)
class BlockBench:
    """Everything the table bench needs to know about one block.

    Attributes
    ----------
    name : str
        The block's name in :data:`hdl.BLOCKS` (its Verilog module is ``aqua_<name>``).
    component : callable
        ``cfg -> wiring.Component``: the block itself; its ports are its signature's.
    clocked : bool
        Whether the block has ``clk`` and a synchronous ``rst`` (the ADC has neither: a timer
        steps its bench).
    model : callable
        ``cfg -> model`` with ``run(rows) -> {output key: per-cycle values}``
        (:class:`cosim.models.StepModel` for clocked blocks).
    stimulus : callable
        ``(cfg, cycles, draw) -> Rows``: at least ``cycles`` rows of random input values
        over full ranges, with golden check points.
    """
    name: str
    component: Callable[[AccelConfig], wiring.Component]
    clocked: bool
    model: Callable[[AccelConfig], object]
    stimulus: Callable[[AccelConfig, int, Draw], Rows]

    def ports(self, cfg: AccelConfig) -> dict[str, tuple[str, object]]:
        """Verilog port name -> (``"input"``/``"output"``, shape); ``rst`` included for a
        clocked block (``clk`` is driven by the bench, not by the table)."""
        return component_ports(self.component(cfg), clocked=self.clocked)

    def table(self, cfg: AccelConfig, rows: Rows, *, seed: int) -> dict:
        """The vector table for stimulus ``rows``: the step model computes the expected
        outputs, and the golden check points of ``rows`` are verified.

        Returns ``{"block", "config", "seed", "cycles", "inputs": {port: [int]}, "outputs":
        {port: [int]}}``.

        Raises
        ------
        ModelError
            If the step model misses a golden check point.
        """
        all_ports = self.ports(cfg)
        outs = self.model(cfg).run(rows.rows)
        for cycle, port, want in rows.checks:
            have = outs[port][cycle]
            same = have == want if isinstance(want, int) else torch.equal(have, want)
            if not same:
                raise ModelError(f"{self.name} step model, config {cfg.name}, seed {seed}: "
                                 f"{port} at cycle {cycle} is {have}, the golden model says "
                                 f"{want}")
        inputs = {name: shape for name, (d, shape) in all_ports.items() if d == "input"}
        outputs = {name: shape for name, (d, shape) in all_ports.items() if d == "output"}
        return {"block": self.name, "config": cfg.name, "seed": seed, "cycles": len(rows),
                "inputs": pack_columns(inputs, lambda key: column(rows.rows, key)),
                "outputs": pack_columns(outputs, lambda key: outs[key])}

    def build_table(self, cfg: AccelConfig, *, cycles: int, seed: int) -> dict:
        """The table of :meth:`table` for this block's random stimulus of at least
        ``cycles`` cycles drawn with ``seed``."""
        return self.table(cfg, self.stimulus(cfg, cycles, Draw(seed)), seed=seed)

    def run(self, cfg: AccelConfig, sim: str, *, cycles: int, seed: int,
            rerun_with_waves: bool = True, waves: bool = False,
            corrupt: tuple[int, str] | None = None) -> CosimRun:
        """Co-simulate the block under ``sim`` for ``cycles`` random cycles and compare every
        output port on every cycle.

        ``corrupt = (cycle, port)`` flips bit 0 of that expected value: a self-test showing
        that the bench is not vacuous. With ``waves`` the run records a waveform (kept, its
        path in ``run.waves``); otherwise a failing run is repeated with waves on (unless
        ``rerun_with_waves`` is false) and the FST path added to the message.
        """
        t0 = time.perf_counter()
        sources, top = verilog_sources(cfg, self.name)
        table = self.build_table(cfg, cycles=cycles, seed=seed)
        label = f"{self.name}-{seed}-{cycles}"
        if corrupt is not None:
            cycle, port = corrupt
            table["outputs"][port][cycle] ^= 1
            label += f"-corrupt{cycle}{port}"
        path = save_stimulus(table, f"{cfg.name}-{cfg.digest}-{label}")
        params = {"config": str(_config_path(cfg)), "seed": seed, "block": self.name,
                  "table": str(path)}
        run, _ = run_checked(self.name, cfg, sim, sources, top, "cosim.tb_vectors", params,
                             seed=seed, t0=t0, rerun_with_waves=rerun_with_waves, waves=waves)
        return run


def _agu_model(cfg: AccelConfig) -> AGUModel:
    return AGUModel.of(RegionCropAGU(cfg))


def _requant_bench(name: str, component) -> BlockBench:
    def model(cfg: AccelConfig) -> RequantModel:
        return RequantModel(cfg, REQUANTIZERS[name])
    return BlockBench(name, component, True, model, requant_random_rows(name))


#: One record per block the table bench runs, by block name (the names of :data:`hdl.BLOCKS`).
BENCHES: dict[str, BlockBench] = {b.name: b for b in (
    BlockBench("crossbar", CrossbarMAC, True, CrossbarModel, crossbar_rows),
    BlockBench("adc", ADCQuantizer, False, ADCModel, adc_rows),
    BlockBench("shiftadd", ShiftAdd, True, ShiftAddModel, shiftadd_rows),
    BlockBench("agu", RegionCropAGU, True, _agu_model, agu_rows),
    _requant_bench("requant_shift", ShiftRoundRequantizer.from_config),
    _requant_bench("requant_mult", MultiplierRequantizer.from_config),
)}

#: The datapath's blocks (``CrossbarMAC``, ``ADCQuantizer``, ``ShiftAdd``).
BLOCK_NAMES = ("crossbar", "adc", "shiftadd")
#: The two requantizers of ``hdl/requant.py`` (``aqua quantize`` compares them).
REQUANT_BLOCKS = tuple(REQUANTIZERS)
#: Every block the table bench can run.
BENCH_BLOCKS = tuple(BENCHES)


def bench(block: str | BlockBench) -> BlockBench:
    """The record of ``block`` (a name of :data:`BENCHES`, or a record, returned as is)."""
    if isinstance(block, BlockBench):
        return block
    try:
        return BENCHES[block]
    except (KeyError, TypeError):
        raise ValueError(f"block must be one of {', '.join(BENCHES)}, not {block!r}") from None


# -- the same, by block name -------------------------------------------------------------------

def ports(cfg: AccelConfig, block: str | BlockBench) -> dict[str, tuple[str, object]]:
    """:meth:`BlockBench.ports` of ``block``."""
    return bench(block).ports(cfg)


def build_table(cfg: AccelConfig, block: str | BlockBench, *, cycles: int, seed: int) -> dict:
    """:meth:`BlockBench.build_table` of ``block``."""
    return bench(block).build_table(cfg, cycles=cycles, seed=seed)


def table_from_rows(cfg: AccelConfig, block: str | BlockBench, rows: Rows, *,
                    seed: int) -> dict:
    """:meth:`BlockBench.table` of ``block`` for stimulus ``rows``."""
    return bench(block).table(cfg, rows, seed=seed)


def run_block(cfg: AccelConfig, block: str | BlockBench, sim: str, *, cycles: int, seed: int,
              rerun_with_waves: bool = True, waves: bool = False,
              corrupt: tuple[int, str] | None = None) -> CosimRun:
    """:meth:`BlockBench.run` of ``block``."""
    return bench(block).run(cfg, sim, cycles=cycles, seed=seed,
                            rerun_with_waves=rerun_with_waves, waves=waves, corrupt=corrupt)
