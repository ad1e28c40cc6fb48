"""cocotb bench of ``PredTile`` (predictor + frame buffer + ConvTile): programs the tile, then
streams whole images back to back (no reset between them) and records per image the clock
edges from the edge taking its first pixel to the edge raising ``done`` (both included), the
chosen crop (``choice``), ``error`` and the whole output map read through ``rd``.

Stimulus: a JSON file named in ``AQUA_COSIM_PARAMS`` (``writes``, ``layer``, ``fraction``,
per image ``pixels`` and ``reads``); results go to ``params["results_file"]``."""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

PERIOD_NS = 10


@cocotb.test()
async def predtile_runs_images(dut):
    params = json.loads(os.environ["AQUA_COSIM_PARAMS"])
    with open(params["stimulus"]) as fh:
        stim = json.load(fh)
    wall = time.perf_counter()
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    for name in ("wr__valid", "wr__payload", "layer", "fraction", "pix__valid",
                 "pix__payload", "rd"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    done_at: list[float] = []

    async def watch_done():
        while True:
            await RisingEdge(dut.done)
            done_at.append(get_sim_time("ns"))
    cocotb.start_soon(watch_done())

    fall, rise, ro = FallingEdge(dut.clk), RisingEdge(dut.clk), ReadOnly()
    await fall
    for word in stim["writes"]:
        dut.wr__valid.value = 1
        dut.wr__payload.value = word
        await fall
    dut.wr__valid.value = 0
    dut.layer.value = stim["layer"]
    dut.fraction.value = stim["fraction"]
    results = []
    for img in stim["images"]:
        seen, sent, t_first = len(done_at), 0, None
        pixels = img["pixels"]
        while sent < len(pixels):
            dut.pix__valid.value = 1
            dut.pix__payload.value = pixels[sent]
            await ro
            ready = int(dut.pix__ready.value)
            await rise
            if ready and t_first is None:
                t_first = get_sim_time("ns")
            sent += ready
            await fall
        dut.pix__valid.value = 0
        while len(done_at) == seen:
            await RisingEdge(dut.done)
            await ro
        await fall
        error, choice = int(dut.error.value), int(dut.choice.value)
        outputs = []
        for word in img["reads"]:
            dut.rd.value = word
            await fall
            outputs.append(int(dut.rd_data.value))
        results.append({"edges": int((done_at[seen] - t_first) // PERIOD_NS) + 1,
                        "crop": choice & 15, "fraction": choice >> 4, "error": error,
                        "sent": sent, "done_pulses": len(done_at) - seen,
                        "outputs": outputs})
        await fall
    with open(params["results_file"], "w") as fh:
        json.dump({"images": results, "wall_s": time.perf_counter() - wall,
                   "cycles": int(get_sim_time("ns") // PERIOD_NS)}, fh)
