"""cocotb bench of the crop ``Predictor``: streams images back to back (no reset between
them) and records per image the chosen crop and row, the clock edges from the edge taking
the first pixel to the edge raising ``choice.valid`` (both included), their times (for the
toggle windows) and the events seen on its ports: pixels taken, MAC and DECIDE clocks.

The stimulus (per image the row-major pixel words) comes as a JSON file named in
``AQUA_COSIM_PARAMS``; results go to ``params["results_file"]``."""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

PERIOD_NS = 10
MAC, DECIDE = 2, 3      #: hdl.predictor.PredictorState codes


@cocotb.test()
async def predictor_runs_images(dut):
    params = json.loads(os.environ["AQUA_COSIM_PARAMS"])
    with open(params["stimulus"]) as fh:
        stim = json.load(fh)
    wall = time.perf_counter()
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    for name in ("pix__valid", "pix__payload", "fraction", "choice__ready"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    fall, rise, ro = FallingEdge(dut.clk), RisingEdge(dut.clk), ReadOnly()
    await fall
    dut.fraction.value = stim["fraction"]
    results = []
    for pixels in stim["images"]:
        sent, macs, decides, t_first = 0, 0, 0, None
        while True:
            valid = sent < len(pixels)
            dut.pix__valid.value = int(valid)
            if valid:
                dut.pix__payload.value = pixels[sent]
            await ro
            took = valid and int(dut.pix__ready.value)
            state = int(dut.state.value)
            macs += state == MAC
            decides += state == DECIDE
            await rise
            if took:
                sent += 1
                if t_first is None:
                    t_first = get_sim_time("ns")
            await ro
            if int(dut.choice__valid.value):
                t_choice = get_sim_time("ns")
                break
            await fall
        payload = int(dut.choice__payload.value)
        position = int(dut.position.value)
        await fall
        dut.pix__valid.value = 0
        dut.choice__ready.value = 1
        await fall
        dut.choice__ready.value = 0
        results.append({"crop": payload & 15, "fraction": payload >> 4, "position": position,
                        "edges": int((t_choice - t_first) // PERIOD_NS) + 1,
                        "t_first": t_first, "t_choice": t_choice, "pixels": sent,
                        "macs": macs, "compares": decides})
    with open(params["results_file"], "w") as fh:
        json.dump({"images": results, "wall_s": time.perf_counter() - wall,
                   "cycles": int(get_sim_time("ns") // PERIOD_NS)}, fh)
