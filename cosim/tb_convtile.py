"""cocotb bench of the ``ConvTile``: programs the crossbars, then runs images back to back
(no reset between them) and records, per image, the clock edges from the start edge to the edge
raising ``done``, the ``error`` flag and the whole output map read through ``rd``.

The stimulus (packed words, made by ``cosim.tile``) comes as a JSON file named in
``AQUA_COSIM_PARAMS``; the results go to ``params["results_file"]`` and are compared with the
golden model by the host (``cosim.tile.check_tile_run``). Python runs once per clock only while
pixels are streamed and outputs read; during the computation the bench waits on ``done``.
"""

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
async def convtile_runs_images(dut):
    params = json.loads(os.environ["AQUA_COSIM_PARAMS"])
    with open(params["stimulus"]) as fh:
        stim = json.load(fh)
    wall = time.perf_counter()
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    for name in ("wr__valid", "wr__payload", "layer", "setup", "start", "fmap__valid",
                 "fmap__payload", "rd"):
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

    fall, ro = FallingEdge(dut.clk), ReadOnly()
    await fall
    for word in stim["writes"]:
        dut.wr__valid.value = 1
        dut.wr__payload.value = word
        await fall
    dut.wr__valid.value = 0
    dut.layer.value = stim["layer"]

    results = []
    for img in stim["images"]:
        seen = len(done_at)
        dut.setup.value = img["setup"]
        dut.start.value = 1
        await RisingEdge(dut.clk)
        t_start = get_sim_time("ns")
        await fall
        dut.start.value = 0
        sent, pixels = 0, img["pixels"]
        while sent < len(pixels) and len(done_at) == seen:
            dut.fmap__valid.value = 1
            dut.fmap__payload.value = pixels[sent]
            await ro
            ready = int(dut.fmap__ready.value)
            await fall
            sent += ready
        dut.fmap__valid.value = 0
        while len(done_at) == seen:
            await RisingEdge(dut.done)
            await ro
        await fall
        error = int(dut.error.value)
        busy = int(dut.busy.value)
        # read the whole output map: the word for an address set at one falling edge is
        # registered at the rising edge and read at the next falling edge
        outputs = []
        for word in img["reads"]:
            dut.rd.value = word
            await fall
            outputs.append(int(dut.rd_data.value))
        results.append({"label": img["label"], "edges": int((done_at[seen] - t_start)
                                                              // PERIOD_NS) + 1,
                        "t_start": t_start, "t_done": done_at[seen],
                        "error": error, "busy_after_done": busy, "sent": sent,
                        "done_pulses": len(done_at) - seen, "outputs": outputs})
        await fall           # done is low again before the next start
    with open(params["results_file"], "w") as fh:
        json.dump({"images": results, "wall_s": time.perf_counter() - wall,
                   "cycles": int(get_sim_time("ns") // PERIOD_NS)}, fh)
