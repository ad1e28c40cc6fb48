"""The generated Datapath under Icarus and Verilator, every cycle against the golden trace."""

import os
import random

import pytest
import torch

from arch.config import load_config
from cosim.run import random_jobs, run_datapath
from cosim.sim import SIMULATORS, selected_simulators

pytestmark = pytest.mark.cosim

# Vectors per (config, simulator) on the cocotb path, which is for the protocol (bubbles,
# back-pressure, every obs field each cycle): ~0.3 million compared cycles in all. The volume
# runs on the compiled bulk path (tests/cosim/test_bulk.py), ~100x faster per cycle. Icarus
# is about 4x slower than Verilator, so it gets fewer.
VECTORS = {
    ("small", "verilator"): 3000, ("small", "icarus"): 600,
    ("small_clip", "verilator"): 1000, ("small_clip", "icarus"): 200,
    ("small_drop", "verilator"): 1000, ("small_drop", "icarus"): 200,
    ("small_signed", "verilator"): 1000, ("small_signed", "icarus"): 200,
}
SEED = int(os.environ.get("AQUA_SEED", "20261128"))


sims = selected_simulators


@pytest.mark.parametrize("sim", sims())
@pytest.mark.parametrize("name", ["small", "small_clip", "small_drop", "small_signed"])
def test_datapath_random_every_cycle(name, sim, record_property):
    cfg = load_config(name)
    n = VECTORS[(name, sim)]
    print(f"seed {SEED}")
    run = run_datapath(cfg, sim, jobs=random_jobs(cfg, n, SEED), seed=SEED)
    record_property("cycles_compared", run.compared)
    assert run.passed, run.message
    assert run.vectors == n
    # every cycle of the stimulus was compared, and the stream ran at least as long as the
    # back-to-back schedule needs
    assert run.compared == run.cycles >= n * (cfg.latency + 1)


def test_simulators_agree_cycle_for_cycle(record_property):
    """Same seed, same stimulus: both simulators take exactly the same number of cycles (the
    golden trace already pins every register of every cycle)."""
    if len(sims()) < 2:
        pytest.skip("needs both simulators (SIM=all)")
    cfg = load_config("small_signed")
    seed = random.Random(SEED).randrange(2 ** 31)
    jobs = random_jobs(cfg, 150, seed)
    runs = [run_datapath(cfg, sim, jobs=jobs, seed=seed) for sim in SIMULATORS]
    assert all(r.passed for r in runs), [r.message for r in runs]
    record_property("cycles_compared", sum(r.compared for r in runs))
    assert runs[0].cycles == runs[1].cycles and runs[0].compared == runs[1].compared


@pytest.mark.parametrize("sim", sims())
def test_a_mismatch_names_cycle_signal_seed_and_leaves_a_waveform(sim):
    """The checker is not vacuous: corrupt one expected value and the run must fail, saying
    where, and the automatic re-run with waves must leave an FST file."""
    cfg = load_config("small")
    run = run_datapath(cfg, sim, jobs=random_jobs(cfg, 6, 5), seed=5, inject_cycle=150)
    assert not run.passed
    assert "cycle 150: obs.acc[0]" in run.message and "seed 5" in run.message
    assert run.waves is not None and run.waves.exists() and run.waves.suffix == ".fst"
    assert run.waves.stat().st_size > 1000


@pytest.mark.parametrize("sim", sims())
def test_real_conv_layer_in_rtl_equals_golden_conv2d(sim, record_property):
    """The demo CNN's first conv layer, quantized to `small`, on one image: its im2col patches
    stream through the RTL, one job per output group, and the assembled output feature map is
    bit-exact with golden.layer.conv2d."""
    from cosim.run import assemble_outputs, cnn_jobs
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_layer, quantize_democnn
    from golden.layer import conv2d

    cfg = load_config("small")
    net = quantize_democnn(cfg, load_democnn())
    images, _ = cluttered_digits("test")
    layer = quant_layer(net, 0, images[:1])
    jobs = cnn_jobs(cfg, layer)
    run = run_datapath(cfg, sim, jobs=jobs, seed=SEED, label="cnn-layer0")
    record_property("cycles_compared", run.compared)
    assert run.passed, run.message
    rtl = assemble_outputs(cfg, jobs, run.outputs)
    golden = conv2d(cfg, layer.x, layer.weight, layer.bias, stride=layer.stride,
                    padding=layer.padding, shift=layer.shift, relu=layer.relu)
    assert torch.equal(rtl, golden.permute(0, 2, 3, 1).reshape(-1, golden.shape[1]))
    assert int(rtl.count_nonzero()) > rtl.numel() // 10     # a real, non-trivial feature map
