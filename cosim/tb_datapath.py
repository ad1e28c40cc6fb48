"""cocotb bench of ``aqua_datapath``: every register of ``obs`` on every clock, the output
stream and ``i.ready`` are compared with the golden cycle trace (``golden.trace``).

Parameters come as JSON in ``AQUA_COSIM_PARAMS`` (written by :mod:`cosim.run`): the config
path, the seed, the stimulus file, bubble and back-pressure probabilities, and where to write
statistics. The stimulus file (``torch.save``) holds a list of jobs; each job programs the
crossbar, sets the layer registers and streams its input vectors.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
import torch
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from arch.config import load_config
from cosim.bits import field_mask, pack, pack_rows, unpack
from cosim.components import (ClockedLoop, Mismatch, StreamSink, StreamSource, WriteDriver,
                              bubbles)
from golden.arith import flag_words
from golden.trace import PHASE_IDLE, PHASE_OUT, datapath_trace
from hdl.layouts import (input_layout, layer_config_layout, obs_layout, output_layout,
                         weight_write_layout)

BLOCK = 512  # vectors whose golden trace is computed and packed at once


class ExpectedStream:
    """Golden ``obs`` rows and outputs of a job, computed block by block as vectors arrive."""

    def __init__(self, cfg, job):
        self.cfg, self.job = cfg, job
        self.obs_layout, self.out_layout = obs_layout(cfg), output_layout(cfg)
        self.block_start, self.rows, self.outs = -1, None, None

    def _load(self, v):
        start = v - v % BLOCK
        if start == self.block_start:
            return
        job, cfg = self.job, self.cfg
        x = job["x"][start:start + BLOCK]
        tr = datapath_trace(cfg, job["w"], x, job["bias"], shift=job["shift"], relu=job["relu"])
        V, E = tr.vectors, tr.edges
        flat = {f: getattr(tr, f).reshape(V * E, *getattr(tr, f).shape[2:]) for f in tr.fields}
        packed = pack_rows(self.obs_layout, flat)
        self.rows = [packed[i * E:(i + 1) * E] for i in range(V)]
        self.outs = pack_rows(self.out_layout, {"y": tr.out})
        self.block_start = start

    def vector(self, v) -> tuple[list[int], int]:
        self._load(v)
        return self.rows[v - self.block_start], self.outs[v - self.block_start]


class DatapathChecker:
    """Predicts ``obs``, ``o.valid`` and ``i.ready`` for every cycle from the handshakes that
    the source and sink make, and compares them with the DUT."""

    def __init__(self, dut, cfg, source: StreamSource, sink: StreamSink, context: str):
        self.dut, self.cfg, self.source, self.sink = dut, cfg, source, sink
        self.layout = obs_layout(cfg)
        self.phase_mask = field_mask(self.layout, "phase")
        self.phase_off = self.layout["phase"].offset
        self.context = context
        self.expected = 0           # reset state: every register 0, phase IDLE
        self.rows: list[int] | None = None
        self.pos = -1               # edge index within the current vector, -1 when idle
        self.stream: ExpectedStream | None = None
        self.next_vector = 0
        self.pending_outputs: list[tuple[int, int]] = []   # (vector, packed output)
        self.compared = 0
        self.outputs_checked = 0
        self.inject_cycle = -1      # self-test of the checker: corrupt one expectation

    def start_job(self, stream: ExpectedStream):
        self.stream, self.next_vector = stream, 0

    def drive(self, cycle):
        pass

    def _fail(self, cycle, signal, expected, actual):
        raise Mismatch(cycle=cycle, signal=signal, expected=expected, actual=actual,
                       context=self.context)

    def _resolved(self, cycle, signal, handle) -> int:
        value = handle.value
        if not value.is_resolvable:
            bits = str(value)
            self._fail(cycle, signal, "0/1 everywhere", f"unresolved bits (X/Z) {bits}")
        return value.to_unsigned()

    def sample(self, cycle):
        actual = self._resolved(cycle, "obs", self.dut.obs)
        if cycle == self.inject_cycle:
            self.expected ^= 1 << self.layout["acc"].offset
        if actual != self.expected:
            exp, act = unpack(self.layout, self.expected), unpack(self.layout, actual)
            field = next(k for k in exp if exp[k] != act[k])
            self._fail(cycle, f"obs.{field}", exp[field], act[field])
        phase = (self.expected & self.phase_mask) >> self.phase_off
        o_valid = int(self.dut.o__valid.value)
        if o_valid != (phase == PHASE_OUT):
            self._fail(cycle, "o.valid", int(phase == PHASE_OUT), o_valid)
        want_ready = phase == PHASE_IDLE or (phase == PHASE_OUT and self.sink.ready_driven)
        i_ready = int(self.dut.i__ready.value)
        if i_ready != want_ready:
            self._fail(cycle, "i.ready", int(want_ready), i_ready)
        self.compared += 1
        # Outputs: the sink saw a transfer, compare its payload with the golden output.
        if self.sink.fire:
            v, want = self.pending_outputs.pop(0)
            got = self.sink.received[-1]
            if got != want:
                e, a = unpack(output_layout(self.cfg), want), unpack(output_layout(self.cfg), got)
                field = next(k for k in e if e[k] != a[k])
                self._fail(cycle, f"o.payload.{field} (vector {v})", e[field], a[field])
            self.outputs_checked += 1
        # What the next edge will make of the registers.
        if self.source.fire:
            self.rows, out = self.stream.vector(self.next_vector)
            self.pending_outputs.append((self.next_vector, out))
            self.next_vector += 1
            self.pos = 0
            self.expected = self.rows[0]
        elif 0 <= self.pos < len(self.rows) - 1:
            self.pos += 1
            self.expected = self.rows[self.pos]
        elif self.pos >= 0 and self.pos == len(self.rows) - 1 and self.sink.fire:
            self.pos = -1
            self.expected &= ~self.phase_mask     # IDLE = 0, the other registers hold


@cocotb.test()
async def datapath_matches_golden_every_cycle(dut):
    params = json.loads(os.environ["AQUA_COSIM_PARAMS"])
    cfg = load_config(params["config"])
    seed = params["seed"]
    rng = random.Random(seed)
    jobs = torch.load(params["stimulus"], weights_only=True)
    dut._log.info("config %s, seed %d, %d jobs", cfg.name, seed, len(jobs))

    # The C clock: inputs change at falling edges only, so its ordering against Python
    # writes never matters here.
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns", impl="gpi").start())
    dut.rst.value = 1
    dut.wr__valid.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.layer.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0

    source = StreamSource(dut.i__valid, dut.i__payload, dut.i__ready,
                          pause=bubbles(rng, params.get("bubble", 0.0)))
    sink = StreamSink(dut.o__valid, dut.o__payload, dut.o__ready,
                      pause=bubbles(rng, params.get("backpressure", 0.0)))
    writer = WriteDriver(dut.wr__valid, dut.wr__payload)
    checker = DatapathChecker(dut, cfg, source, sink, f"config {cfg.name}, seed {seed}")
    checker.inject_cycle = params.get("inject_cycle", -1)
    loop = ClockedLoop(dut.clk, [writer, source, sink, checker])
    wl, il, ll = weight_write_layout(cfg), input_layout(cfg), layer_config_layout(cfg)
    t0 = time.perf_counter()
    stats = {"seed": seed, "config": cfg.name, "vectors": 0}

    def write_stats(**extra):
        wall = time.perf_counter() - t0
        stats.update(cycles=loop.cycle, compared=checker.compared,
                     outputs=checker.outputs_checked, wall_s=wall,
                     cycles_per_s=loop.cycle / wall if wall else 0.0, **extra)
        with open(params["stats_file"], "w") as fh:
            json.dump(stats, fh)

    async def run_job(job):
        # Program the crossbar: one write per (row, group); the host computes the flags.
        flag_bits = flag_words(cfg, job["w"])
        writes = [pack(wl, row=r, group=o, value=int(job["w"][r, o]), flags=flag_bits[o])
                  for r in range(cfg.rows) for o in range(cfg.outputs)]
        writer.send(writes)
        await loop.run(lambda: writer.idle, max_cycles=len(writes) + 10)
        dut.layer.value = pack(ll, shift=job["shift"], relu=int(job["relu"]),
                               bias=job["bias"].tolist())
        checker.start_job(ExpectedStream(cfg, job))
        n, done = job["x"].shape[0], stats["vectors"] + job["x"].shape[0]
        # first_chunk 0: every chunk streamed (the per-region precision field of the payload)
        source.send(pack_rows(il, {"x": job["x"], "first_chunk": torch.zeros(n)}))
        budget = (n + 2) * (cfg.latency + 2) * 20 + 1000
        await loop.run(lambda: checker.outputs_checked == done, max_cycles=budget)
        stats["vectors"] = done

    try:
        for job in jobs:
            await run_job(job)
    except Mismatch as exc:
        write_stats(mismatch={"cycle": exc.cycle, "signal": exc.signal,
                              "expected": exc.expected, "actual": exc.actual})
        raise
    write_stats()
    if params.get("outputs_file"):
        torch.save(sink.received, params["outputs_file"])
    assert checker.outputs_checked == stats["vectors"] > 0
