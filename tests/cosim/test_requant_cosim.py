"""The requantizers co-simulated on the same accumulators, RTL and gate netlist, every cycle
against golden.requant; identical toggle counts under both simulators (slow)."""

import pytest

from arch.config import load_config
from cosim.blocks import REQUANT_BLOCKS, random_accumulators, random_requant_settings
from cosim.requant import calibrated_settings, layer_accumulators, requant_energy, run_requant
from cosim.sim import selected_simulators


@pytest.mark.parametrize("block", REQUANT_BLOCKS)
def test_random_and_layer_stimulus(block, record_property):
    cfg = load_config("small")
    sim = selected_simulators()[0]
    seed = 11
    accs = random_accumulators(cfg, 400, seed)
    run = run_requant(cfg, block, sim, accs, random_requant_settings(cfg, block, len(accs),
                                                                     seed), seed=seed)
    assert run.passed and run.compared == len(accs) + 2, f"seed {seed}: {run.message}"
    layer, shift = layer_accumulators(cfg, 1, 1)
    assert layer.numel() == 16 * 16 * 16 and int(layer.abs().max()) > 1 << 12
    setting = calibrated_settings(cfg, layer, shift)[block]
    setting = {k: v for k, v in setting.items() if k != "scale"}
    gates = run_requant(cfg, block, sim, layer[:300], setting, netlist="gates", waves=True)
    assert gates.passed, gates.message
    energy = requant_energy(cfg, block, gates, "gates")
    assert energy["register_bits"] == cfg.output_bits and energy["comb_toggles"] > 1000
    record_property("cycles_compared", run.compared + gates.compared)


@pytest.mark.slow
def test_toggles_equal_under_both_simulators():
    cfg = load_config("small")
    layer, shift = layer_accumulators(cfg, 1, 1)
    for block in REQUANT_BLOCKS:
        setting = {k: v for k, v in calibrated_settings(cfg, layer, shift)[block].items()
                   if k != "scale"}
        for netlist in ("rtl", "gates"):
            got = [requant_energy(cfg, block, run_requant(cfg, block, sim, layer[:500], setting,
                                                           netlist=netlist, waves=True), netlist)
                   for sim in ("icarus", "verilator")]
            assert got[0] == got[1], (block, netlist)
