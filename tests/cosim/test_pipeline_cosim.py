"""ISAAC's overlapped schedule (``[pipeline] overlap``) in the generated Verilog: the cocotb
per-cycle bench and the compiled bulk path compare every ``obs`` field (the sample-and-hold
bank included) on every cycle with ``golden.trace``, and the throughput gain over the
sequential schedule is measured on the same jobs, not assumed."""

import os

import pytest

from arch.config import load_config
from cosim.bulk import datapath_bulk
from cosim.run import random_jobs, run_datapath
from cosim.sim import selected_simulators

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))


def _sim(prefer: str) -> str:
    sims = selected_simulators()
    if not sims:
        pytest.skip("no simulator selected")
    return prefer if prefer in sims else sims[0]


def test_overlapped_datapath_cocotb_every_cycle():
    cfg = load_config("small_pipelined")
    sim = _sim("icarus")            # the cheaper build; the bulk test below takes Verilator
    run = run_datapath(cfg, sim, jobs=random_jobs(cfg, 30, SEED), seed=SEED)
    assert run.passed, run.message
    assert run.vectors == 30 and run.compared == run.cycles > 30 * (cfg.latency + 1)


def test_overlapped_datapath_bulk_every_cycle_and_measured_gain(record_property):
    """Bulk, bubbles and back-pressure: bit-exact on every cycle. Then the same jobs streamed
    with an always-valid producer and an always-ready consumer on both schedules: the cycles
    the RTL took differ by (T - 1) * min(X, G) per vector, the difference of the latencies."""
    ovl, seq = load_config("small_pipelined"), load_config("small")
    sim = _sim("verilator")
    n = 2000 if sim == "verilator" else 200
    run = datapath_bulk(ovl, sim, jobs=random_jobs(ovl, n, SEED), seed=SEED)
    assert run.passed, run.message
    assert run.vectors == n and run.compared == run.cycles >= n * (ovl.latency + 1)
    record_property("cycles_compared", run.compared)

    jobs = random_jobs(seq, 200, SEED + 1)
    cycles = {}
    for cfg in (seq, ovl):
        r = datapath_bulk(cfg, sim, jobs=jobs, seed=SEED, bubble=0.0, backpressure=0.0)
        assert r.passed, r.message
        cycles[cfg.name] = r.cycles
    vectors = sum(job["x"].shape[0] for job in jobs)
    T, X, G = ovl.input_cycles, ovl.xbar_steps, ovl.adc_steps
    assert cycles["small"] - cycles["small_pipelined"] == vectors * (T - 1) * min(X, G) \
        == vectors * (seq.latency - ovl.latency) > 0
