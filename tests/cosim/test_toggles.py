"""Switching activity: Icarus and Verilator give the same per-bit toggle counts on the same
stimulus, Verilator's SAIF agrees with its FST, and the RTL's event counts equal the analytic
ones of ``golden.events``."""

import os

import numpy as np
import pytest

from arch.config import load_config
from cosim.events import rtl_events
from cosim.run import random_jobs
from cosim.toggles import (BLOCKS, _toggle_counts, block_of, fst_toggles, normalise,
                           saif_toggles, signal_classes, toggle_run)
from cosim.sim import selected_simulators
from golden.events import jobs_events

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
VECTORS = 200

PORTS = ("clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid", "o__ready",
         "o__payload", "obs", "layer", "wr__valid", "wr__payload")


def test_normalise_names():
    assert normalise("aqua_datapath.crossbar.\\$12 ") == "crossbar.$12"
    assert normalise("aqua_datapath.shiftadd.y.[2]") == "shiftadd.y[2]"
    assert normalise("$rootio.clk") is None
    assert block_of("crossbar.u") == "crossbar" and block_of("phase") == "control"


def test_toggle_counts_collapse_and_window():
    # two changes at one time stamp count once (the last value); x reads as 0
    assert _toggle_counts([0, 5, 5, 10], [0, 3, 1, 0], 2).tolist() == [2, 0]
    assert _toggle_counts([0, 5], ["xx", 2], 2).tolist() == [0, 1]
    # counting from time 7: the state at 7 is the reference
    assert _toggle_counts([0, 5, 10], [0, 3, 0], 2, start=7).tolist() == [1, 1]


def test_saif_parser(tmp_path):
    f = tmp_path / "x.saif"
    f.write_text("(SAIFILE\n (INSTANCE $rootio\n  (NET\n   (clk (T0 1) (T1 1) (TZ 0) (TX 0) "
                 "(TB 0) (TC 9))\n  )\n )\n (INSTANCE top\n  (NET\n   (a\\[1\\] (T0 1) (T1 1) "
                 "(TZ 0) (TX 0) (TB 0) (TC 3))\n  )\n  (INSTANCE sub\n   (NET\n    (b (T0 1) "
                 "(T1 1) (TZ 0) (TX 0) (TB 0) (TC 4))\n   )\n  )\n  (NET\n   (c (T0 1) (T1 1) "
                 "(TZ 0) (TX 0) (TB 0) (TC 5))\n  )\n )\n)\n")
    got = {k: v.tolist() for k, v in saif_toggles(f).items()}
    assert got == {"a": [0, 3], "sub.b": [4], "c": [5]}


@pytest.mark.cosim
def test_simulators_agree_on_toggles_and_events(record_property):
    if len(selected_simulators()) < 2:
        pytest.skip("needs both simulators (SIM=all)")
    cfg = load_config("small")
    jobs = random_jobs(cfg, VECTORS, SEED)
    (ti, ri), (tv, rv) = (toggle_run(cfg, sim, jobs=jobs, seed=SEED)
                          for sim in ("icarus", "verilator"))
    record_property("cycles_compared", ri.stats["compared"] + rv.stats["compared"])
    assert ti.cycles == tv.cycles > VECTORS * cfg.latency
    common = set(ti.bits) & set(tv.bits)
    print(f"signals: icarus {len(ti.bits)}, verilator {len(tv.bits)}, common {len(common)}")
    # every port and every register is seen by both simulators
    classes = ti.classes
    registers = {k for k, c in classes.items() if c == "register"}
    assert registers and registers <= common, sorted(registers - common)[:10]
    assert set(PORTS) <= common
    assert len(common) >= 0.95 * max(len(ti.bits), len(tv.bits))
    bad = [k for k in sorted(common)
           if ti.bits[k].shape != tv.bits[k].shape or (ti.bits[k] != tv.bits[k]).any()]
    assert not bad, [(k, ti.bits[k].tolist(), tv.bits[k].tolist()) for k in bad[:5]]
    assert sum(int(ti.bits[k].sum()) for k in common) > 0
    # attribution: every block's combinational nets switch; the ADC stand-in has no register
    split = tv.by_block_class()
    for b in BLOCKS:
        assert split[b]["comb"] > 0 and (split[b]["register"] > 0) == (b != "adc"), (b, split[b])
    assert split == ti.by_block_class()
    # the events read from either waveform equal the analytic counts exactly
    want = jobs_events(cfg, jobs)
    assert rtl_events(cfg, rv.waves) == want
    assert rtl_events(cfg, ri.waves) == want


@pytest.mark.cosim
def test_verilator_saif_matches_fst():
    """SAIF counts the whole run from time 0, its initial assignment included: per bit it is
    the FST count from time 0, or one more."""
    if "verilator" not in selected_simulators():
        pytest.skip("needs Verilator")
    cfg = load_config("small")
    jobs = random_jobs(cfg, VECTORS // 2, SEED + 1)
    ts, _ = toggle_run(cfg, "verilator", jobs=jobs, seed=SEED + 1, trace="saif")
    _, rf = toggle_run(cfg, "verilator", jobs=jobs, seed=SEED + 1)
    tf = fst_toggles(rf.waves, from_reset=False)
    common = set(ts.bits) & set(tf)
    assert len(common) >= 0.95 * len(tf)
    for k in common:
        d = ts.bits[k] - tf[k]
        assert d.shape == tf[k].shape and ((d == 0) | (d == 1)).all(), (k, d)


@pytest.mark.cosim
@pytest.mark.parametrize("name", ["small_drop", "small_signed"])
def test_events_with_several_row_groups_per_chunk(name):
    """With rows_per_cycle < rows each crossbar step drives a different row group: the DAC
    drives read from the waveform are those of the group the step selects."""
    cfg = load_config(name)
    assert cfg.xbar_steps > 1
    sim = selected_simulators()[-1]
    jobs = random_jobs(cfg, 20, SEED)
    _, run = toggle_run(cfg, sim, jobs=jobs, seed=SEED, label="events")
    assert rtl_events(cfg, run.waves) == jobs_events(cfg, jobs)


@pytest.mark.cosim
def test_events_of_the_overlapped_schedule():
    """ISAAC's pipeline: crossbar steps that share their edge with an ADC step, and the
    sample-and-hold bank loaded once per chunk, read from the waveform equal the analytic
    counts (the same as the sequential schedule's: only the cycles differ)."""
    cfg = load_config("small_pipelined")
    sim = selected_simulators()[0]
    jobs = random_jobs(cfg, 20, SEED)
    _, run = toggle_run(cfg, sim, jobs=jobs, seed=SEED, label="events")
    want = jobs_events(cfg, jobs)
    assert rtl_events(cfg, run.waves) == want
    assert want == jobs_events(load_config("small"), jobs)
    assert want["sample_holds"] == 20 * cfg.input_cycles * cfg.cols


def _verilog(cfg):
    from cosim.run import verilog_sources
    return verilog_sources(cfg, "datapath")[0][0]


def test_register_classes_from_verilog():
    cfg = load_config("small")
    classes = signal_classes(_verilog(cfg))
    regs = {k for k, c in classes.items() if c == "register"}
    assert {"phase", "chunk", "adc_valid"} <= regs
    assert any(k.startswith("crossbar.") for k in regs)
    assert any(k.startswith("shiftadd.") for k in regs)
    assert classes["crossbar.clk"] == "clock"
    assert np.all([block_of(k) in BLOCKS for k in classes])
