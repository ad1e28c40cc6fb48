"""Reusable cocotb drivers, monitors and checkers, shared by every bench.

All components are stepped by one :class:`ClockedLoop`: at each falling edge every component
*drives* its inputs for the next rising edge, then in the read-only phase every component
*samples*. One pair of awaits per clock for the whole bench keeps the per-cycle Python thin.
A handshake seen as ``valid & ready`` in a sample happens at the next rising edge.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from typing import Callable, Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["ClockedLoop", "StreamSource", "StreamSink", "WriteDriver", "TableDriver",
           "TableChecker", "Mismatch", "bubbles", "start_bench", "edge_times", "write_words",
           "read_words", "write_results"]


class Mismatch(AssertionError):
    """A signal differed from the golden model. Carries what is needed to reproduce it."""

    def __init__(self, *, cycle: int, signal: str, expected, actual, context: str = ""):
        self.cycle, self.signal, self.expected, self.actual = cycle, signal, expected, actual
        super().__init__(f"cycle {cycle}: {signal} expected {expected}, got {actual}"
                         + (f" ({context})" if context else ""))


def bubbles(rng: random.Random, probability: float) -> Callable[[], bool]:
    """A pause generator: ``True`` (pause this cycle) with ``probability``."""
    if probability <= 0:
        return lambda: False
    return lambda: rng.random() < probability


class ClockedLoop:
    """Steps ``components`` (objects with ``drive(cycle)`` and ``sample(cycle)``) once per
    clock until ``done()`` is true or ``max_cycles`` pass. With ``clk=None`` (a combinational
    DUT) a cycle is ``period_ns`` of simulated time instead of a clock period."""

    def __init__(self, clk, components: Iterable, *, period_ns: int = 10):
        self.clk = clk
        self.components = list(components)
        self.cycle = 0
        self.period_ns = period_ns

    async def run(self, done: Callable[[], bool], max_cycles: int) -> int:
        # A purely combinational DUT has no clock (``clk=None``): a cycle is then one period
        # of simulated time, driven at its start and sampled in its read-only phase.
        clocked = self.clk is not None
        fall = FallingEdge(self.clk) if clocked else Timer(self.period_ns, unit="ns")
        ro = ReadOnly()
        drivers = [c.drive for c in self.components]
        samplers = [c.sample for c in self.components]
        start = self.cycle
        while not done():
            if self.cycle - start >= max_cycles:
                raise TimeoutError(f"no progress after {max_cycles} cycles (cycle {self.cycle})")
            await fall
            for d in drivers:
                d(self.cycle)
            await ro
            for s in samplers:
                s(self.cycle)
            self.cycle += 1
        await (RisingEdge(self.clk) if clocked else fall)
        return self.cycle - start


class StreamSource:
    """Drives a valid/ready stream with ``items`` (packed integers), inserting bubbles.

    ``fire`` is set in ``sample`` when a transfer happens at the next rising edge; ``sent``
    counts completed transfers."""

    def __init__(self, valid, payload, ready, *, pause: Callable[[], bool] = lambda: False):
        self.valid, self.payload, self.ready, self.pause = valid, payload, ready, pause
        self.queue: deque[int] = deque()
        self.presenting = False
        self.fire = False
        self.sent = 0
        self.was_valid = False
        self.valid.value = 0

    def send(self, items: Iterable[int]):
        self.queue.extend(items)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.presenting

    def drive(self, cycle):
        if self.fire:
            self.presenting = False
            self.sent += 1
        if not self.presenting and self.queue and not self.pause():
            self.payload.value = self.queue.popleft()
            self.presenting = True
            self.valid.value = 1
        elif not self.presenting and self.was_valid:
            self.valid.value = 0
        self.was_valid = self.presenting

    def sample(self, cycle):
        self.fire = self.presenting and bool(self.ready.value)


class StreamSink:
    """Consumes a valid/ready stream with random back-pressure; collects payload integers."""

    def __init__(self, valid, payload, ready, *, pause: Callable[[], bool] = lambda: False):
        self.valid, self.payload, self.ready, self.pause = valid, payload, ready, pause
        self.ready_driven = False
        self.fire = False
        self.received: list[int] = []
        self.ready.value = 0

    def drive(self, cycle):
        ready = not self.pause()
        if ready != self.ready_driven:          # write only changes: each write costs a phase
            self.ready.value = int(ready)
            self.ready_driven = ready

    def sample(self, cycle):
        self.fire = self.ready_driven and bool(self.valid.value)
        if self.fire:
            self.received.append(self.payload.value.to_unsigned())


class WriteDriver:
    """Drives an always-ready write port (``valid`` + ``payload``), one write per clock."""

    def __init__(self, valid, payload):
        self.valid, self.payload = valid, payload
        self.queue: deque[int] = deque()
        self.active = False
        self.valid.value = 0

    def send(self, items: Iterable[int]):
        self.queue.extend(items)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.active

    def drive(self, cycle):
        if self.queue:
            self.payload.value = self.queue.popleft()
            if not self.active:
                self.valid.value = 1
                self.active = True
        elif self.active:
            self.valid.value = 0
            self.active = False

    def sample(self, cycle):
        pass


class TableDriver:
    """Drives input ports from a per-cycle table: ``table[port][cycle]`` is the packed integer
    presented on ``port`` from the falling edge of ``cycle``. Only the ports whose value changes
    are written (each write costs the simulator a phase); the list of writes of every cycle is
    prepared before the run, so ``drive`` is a plain loop over handle assignments."""

    def __init__(self, handles: dict, table: dict[str, list[int]]):
        cycles = {len(v) for v in table.values()}
        if len(cycles) != 1:
            raise ValueError(f"every port needs the same number of cycles, not {cycles}")
        (self.cycles,) = cycles
        columns = [(handles[name], values) for name, values in table.items()]
        self.writes: list[list[tuple[object, int]]] = []
        for c in range(self.cycles):
            # cycle 0 writes every port, so nothing left from before the table is kept
            self.writes.append([(h, v[c]) for h, v in columns if c == 0 or v[c] != v[c - 1]])

    def drive(self, cycle):
        for handle, value in self.writes[cycle]:
            handle.value = value

    def sample(self, cycle):
        pass


class TableChecker:
    """Compares output ports with a per-cycle table of packed integers at every sample point.

    ``describe(port, value)`` splits a packed value into ``{field path: int}`` (see
    :func:`cosim.bits.unpack`); it is called only on a mismatch, to name the first field that
    differs."""

    def __init__(self, handles: dict, table: dict[str, list[int]], *,
                 describe: Callable[[str, int], dict], context: str = ""):
        self.ports = [(name, handles[name], values) for name, values in table.items()]
        self.describe, self.context = describe, context
        self.compared = 0           # cycles at which every port was compared

    def drive(self, cycle):
        pass

    def _fail(self, cycle, signal, expected, actual):
        raise Mismatch(cycle=cycle, signal=signal, expected=expected, actual=actual,
                       context=self.context)

    def sample(self, cycle):
        for name, handle, values in self.ports:
            want = values[cycle]
            value = handle.value
            try:
                got = int(value)
            except ValueError:
                self._fail(cycle, name, "0/1 everywhere", f"unresolved bits (X/Z) {value}")
            if got != want:
                exp, act = self.describe(name, want), self.describe(name, got)
                field = next(k for k in exp if exp[k] != act[k])
                self._fail(cycle, field, exp[field], act[field])
        self.compared += 1


# -- the plumbing of the image benches (tb_convtile, tb_predtile) ------------------------------

async def start_bench(dut, inputs: Iterable[str], period_ns: int) -> tuple[dict, dict, float]:
    """Read the parameters (JSON in ``AQUA_COSIM_PARAMS``) and the stimulus file they name,
    start the clock, zero the ``inputs`` and hold ``rst`` for two clocks. Returns the
    parameters, the stimulus and the wall-clock start (``time.perf_counter``)."""
    params = json.loads(os.environ["AQUA_COSIM_PARAMS"])
    with open(params["stimulus"]) as fh:
        stim = json.load(fh)
    wall = time.perf_counter()
    cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
    for name in inputs:
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    return params, stim, wall


def edge_times(signal) -> list[float]:
    """A list that a background task fills with the time (ns) of every rising edge of
    ``signal``, from now on."""
    times: list[float] = []

    async def watch():
        while True:
            await RisingEdge(signal)
            times.append(get_sim_time("ns"))
    cocotb.start_soon(watch())
    return times


async def write_words(dut, words, fall) -> None:
    """Each of ``words`` on the always-ready ``wr`` stream for one clock (driven after a
    falling edge, held to the next), then ``wr.valid`` low."""
    for word in words:
        dut.wr__valid.value = 1
        dut.wr__payload.value = word
        await fall
    dut.wr__valid.value = 0


async def read_words(dut, addresses, fall) -> list[int]:
    """The output map read through ``rd``: the word for an address set at one falling edge is
    registered at the rising edge and read at the next falling edge."""
    outputs = []
    for word in addresses:
        dut.rd.value = word
        await fall
        outputs.append(int(dut.rd_data.value))
    return outputs


def write_results(params: dict, results: list, wall: float, period_ns: int) -> None:
    """The per-image ``results``, the wall time since ``wall`` and the clocks simulated, as
    JSON to ``params["results_file"]``."""
    with open(params["results_file"], "w") as fh:
        json.dump({"images": results, "wall_s": time.perf_counter() - wall,
                   "cycles": int(get_sim_time("ns") // period_ns)}, fh)
