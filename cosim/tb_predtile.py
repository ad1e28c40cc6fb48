"""cocotb bench of ``PredTile`` (predictor + frame buffer + ConvTile): programs the tile, then
streams whole images back to back (no reset between them) and records per image the clock
edges from the edge taking its first pixel to the edge raising ``done`` (both included), the
chosen crop (``choice``), ``error`` and the whole output map read through ``rd``.

Stimulus: a JSON file named in ``AQUA_COSIM_PARAMS`` (``writes``, ``layer``, ``fraction``,
per image ``pixels`` and ``reads``); results go to ``params["results_file"]``."""

from __future__ import annotations

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from cosim.components import edge_times, read_words, start_bench, write_results, write_words

PERIOD_NS = 10


@cocotb.test()
async def predtile_runs_images(dut):
    params, stim, wall = await start_bench(dut, ("wr__valid", "wr__payload", "layer", "fraction",
                                                 "pix__valid", "pix__payload", "rd"), PERIOD_NS)
    done_at = edge_times(dut.done)

    fall, rise, ro = FallingEdge(dut.clk), RisingEdge(dut.clk), ReadOnly()
    await fall
    await write_words(dut, stim["writes"], fall)
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
        outputs = await read_words(dut, img["reads"], fall)
        results.append({"edges": int((done_at[seen] - t_first) // PERIOD_NS) + 1,
                        "crop": choice & 15, "fraction": choice >> 4, "error": error,
                        "sent": sent, "done_pulses": len(done_at) - seen,
                        "outputs": outputs})
        await fall
    write_results(params, results, wall, PERIOD_NS)
