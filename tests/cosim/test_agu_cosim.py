"""RegionCropAGU under Icarus and Verilator: every output port on every cycle against the step
model of ``cosim.models`` (itself held to ``golden.crop.agu_sequence`` / ``agu_cycles`` run by
run), over all 16 crop vectors, several map shapes, kernels, strides, paddings and fractions,
scaled windows, back-pressure and invalid setups."""

import os
import re

import pytest

from arch.config import load_config
from cosim.blocks import BENCHES
from cosim.stimulus import AGU_FRACTIONS, AGU_SHAPES, Draw
from cosim.sim import selected_simulators

pytestmark = pytest.mark.cosim

AGU = BENCHES["agu"]
CYCLES = 6000
SEED = int(os.environ.get("AQUA_SEED", "20261128"))


sims = selected_simulators


def test_stimulus_covers_every_crop_and_toggles_every_input_bit():
    cfg = load_config("small")
    rows = AGU.stimulus(cfg, CYCLES, Draw(SEED))
    assert sorted(set(rows.crops[:16])) == list(range(16))     # the first round: all 16
    assert len(rows.crops) > 16
    assert len({k for _, _, k, _, _ in AGU_SHAPES}) > 1 and len(AGU_FRACTIONS) > 3
    table = AGU.build_table(cfg, cycles=CYCLES, seed=SEED)
    outputs = table["outputs"]
    assert 16 <= sum(outputs["done"]) and any(outputs["error"])   # runs ended, some rejected
    for port, (direction, shape) in AGU.ports(cfg).items():
        if direction != "input":
            continue
        width = shape.size if hasattr(shape, "size") else 1
        full = (1 << width) - 1
        ones = zeros = 0
        for v in table["inputs"][port]:
            ones |= v
            zeros |= ~v & full
        assert ones == zeros == full, port


@pytest.mark.parametrize("sim", sims())
def test_agu_every_cycle(sim, record_property):
    cfg = load_config("small")
    print(f"seed {SEED}")
    run = AGU.run(cfg, sim, cycles=CYCLES, seed=SEED)
    record_property("cycles_compared", run.compared)
    assert run.passed, run.message
    assert run.compared == run.cycles == run.vectors >= CYCLES
    assert run.stats["ports_compared"] == run.compared * sum(
        d == "output" for d, _ in AGU.ports(cfg).values())


@pytest.mark.parametrize("sim", sims())
def test_a_corrupted_address_is_caught(sim):
    cfg = load_config("small")
    run = AGU.run(cfg, sim, cycles=400, seed=5, corrupt=(300, "addr__payload"),
                    rerun_with_waves=False)
    assert not run.passed
    assert re.search(r"cycle 300: addr__payload\.row expected \d+, got \d+ "
                     r"\(config small, seed 5\)", run.message), run.message
    assert run.compared == 300
