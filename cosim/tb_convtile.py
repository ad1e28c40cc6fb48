"""cocotb bench of the ``ConvTile``: programs the crossbars, then runs images back to back
(no reset between them) and records, per image, the clock edges from the start edge to the edge
raising ``done``, the ``error`` flag and the whole output map read through ``rd``.

The stimulus (packed words, made by ``cosim.tile``) comes as a JSON file named in
``AQUA_COSIM_PARAMS``; the results go to ``params["results_file"]`` and are compared with the
golden model by the host (``cosim.tile.check_tile_run``). Python runs once per clock only while
pixels are streamed and outputs read; during the computation the bench waits on ``done``.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from cosim.components import edge_times, read_words, start_bench, write_results, write_words

PERIOD_NS = 10


@cocotb.test()
async def convtile_runs_images(dut):
    params, stim, wall = await start_bench(dut, ("wr__valid", "wr__payload", "layer", "setup",
                                                 "start", "fmap__valid", "fmap__payload", "rd"),
                                           PERIOD_NS)
    done_at = edge_times(dut.done)

    fall, ro = FallingEdge(dut.clk), ReadOnly()
    await fall
    await write_words(dut, stim["writes"], fall)
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
        outputs = await read_words(dut, img["reads"], fall)      # the whole output map
        results.append({"label": img["label"], "edges": int((done_at[seen] - t_start)
                                                              // PERIOD_NS) + 1,
                        "t_start": t_start, "t_done": done_at[seen],
                        "error": error, "busy_after_done": busy, "sent": sent,
                        "done_pulses": len(done_at) - seen, "outputs": outputs})
        await fall           # done is low again before the next start
    write_results(params, results, wall, PERIOD_NS)
