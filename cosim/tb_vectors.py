"""Generic cocotb bench: replays a per-cycle vector table (``cosim.blocks.BlockBench.table``)
on a block and compares every output port with the table on every cycle.

Parameters come as JSON in ``AQUA_COSIM_PARAMS`` (written by ``cosim.blocks.BlockBench.run``):
the config path, the seed, the block name, the table file (``torch.save``: packed integers per
port and cycle) and where to write statistics. Row ``c`` of the table is driven at the falling
edge of cycle ``c`` and the outputs are sampled in the read-only phase that follows, so
combinational outputs show row ``c``'s inputs and registers the state after the preceding rising
edge. A block without a clock (the ADC) is stepped by a timer instead.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import zipfile

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from cosim.components import ClockedLoop, Mismatch, TableChecker, TableDriver


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles builtin containers and numbers only (like ``torch.load(weights_only=True)``,
    stricter: no tensors, no globals at all)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unexpected tensor storage")


def load_table(path: str) -> dict:
    """A table written by ``torch.save``, read without importing torch when it holds only
    plain Python values (it does: packed integers in lists). Importing torch costs about 6 s in
    the simulators' embedded Python, some fifty times the simulation of a few thousand cycles;
    anything else in the file falls back to ``torch.load``."""
    try:
        with zipfile.ZipFile(path) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            with archive.open(name) as fh:
                return _PlainUnpickler(fh).load()
    except (zipfile.BadZipFile, ValueError, pickle.UnpicklingError):
        import torch
        return torch.load(path, weights_only=True)


def _describe(cfg_path: str, block: str):
    """``(port, value) -> {field: int}`` using the block's port layouts (its
    ``cosim.blocks.BENCHES`` record); built on the first mismatch only, since it imports
    Amaranth and the golden model."""
    shapes = {}

    def describe(name, value):
        from arch.config import load_config
        from cosim.blocks import BENCHES
        from cosim.ports import port_fields
        if not shapes:
            cfg = load_config(cfg_path)
            shapes.update({n: s for n, (_, s) in BENCHES[block].ports(cfg).items()})
        return port_fields(name, shapes[name], value)
    return describe


def _handle(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        return None


@cocotb.test()
async def block_matches_golden_every_cycle(dut):
    params = json.loads(os.environ["AQUA_COSIM_PARAMS"])
    seed, block = params["seed"], params["block"]
    table = load_table(params["table"])
    inputs, outputs, cycles = table["inputs"], table["outputs"], table["cycles"]
    config = table["config"]
    dut._log.info("block %s, config %s, seed %d, %d cycles", block, config, seed, cycles)
    handles = {name: getattr(dut, name) for name in [*inputs, *outputs]}

    clk = _handle(dut, "clk")
    if clk is not None:
        # Inputs quiet and reset held for two edges: every register starts at its reset value,
        # which is what the table expects at cycle 0. Inputs change at falling edges only.
        for name in inputs:
            handles[name].value = 0
        dut.rst.value = 1
        cocotb.start_soon(Clock(clk, 10, unit="ns", impl="gpi").start())
        await ClockCycles(clk, 2)

    driver = TableDriver({n: handles[n] for n in inputs}, inputs)
    checker = TableChecker({n: handles[n] for n in outputs}, outputs,
                           describe=_describe(params["config"], block),
                           context=f"block {block}, config {config}, seed {seed}")
    loop = ClockedLoop(clk, [driver, checker])
    t0 = time.perf_counter()

    def write_stats(**extra):
        wall = time.perf_counter() - t0
        stats = {"seed": seed, "config": config, "block": block, "vectors": cycles,
                 "cycles": loop.cycle, "compared": checker.compared,
                 "ports_compared": checker.compared * len(outputs), "wall_s": wall,
                 "cycles_per_s": loop.cycle / wall if wall else 0.0, **extra}
        with open(params["stats_file"], "w") as fh:
            json.dump(stats, fh)

    try:
        await loop.run(lambda: loop.cycle >= cycles, max_cycles=cycles)
    except Mismatch as exc:
        write_stats(mismatch={"cycle": exc.cycle, "signal": exc.signal,
                              "expected": exc.expected, "actual": exc.actual})
        raise
    write_stats()
    assert checker.compared == cycles > 0
