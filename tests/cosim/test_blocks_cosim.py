"""CrossbarMAC, ADCQuantizer and ShiftAdd alone under Icarus and Verilator: every output port on
every cycle against the step models of ``cosim.models`` (built from ``golden.arith``), each
block run through its ``cosim.blocks.BENCHES`` record."""

import os
import re

import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from arch.config import load_config
from cosim.blocks import BENCHES, BLOCK_NAMES
from cosim.blocks import bench as bench_of
from cosim.sim import selected_simulators

pytestmark = pytest.mark.cosim

CONFIGS = ["small", "small_signed", "small_drop", "small_clip"]
# Cycles per (block, config, simulator). A run costs about one second plus the first build of
# its Verilog (a few seconds for Icarus, 10-20 s for Verilator), so the cycle count is cheap.
CYCLES = {"icarus": 4000, "verilator": 8000}
SEED = int(os.environ.get("AQUA_SEED", "20261128"))


sims = selected_simulators


@pytest.mark.parametrize("sim", sims())
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_block_every_cycle(block, name, sim, record_property):
    cfg = load_config(name)
    print(f"seed {SEED}")
    run = BENCHES[block].run(cfg, sim, cycles=CYCLES[sim], seed=SEED)
    record_property("cycles_compared", run.compared)
    record_property("cycles_per_s", round(run.cycles_per_s))
    assert run.passed, run.message
    # every cycle of the table was driven and every output port compared on it
    assert run.compared == run.cycles == run.vectors >= CYCLES[sim]
    assert run.stats["ports_compared"] == run.compared * sum(
        d == "output" for d, _ in BENCHES[block].ports(cfg).values())


def test_one_record_per_block_with_the_generated_ports():
    """Every bench record is a block of ``hdl.BLOCKS`` under the same name, and its ports (plus
    ``clk`` for a clocked block) are exactly the generated Verilog's, with their directions."""
    from gen.verilog import component_entry
    from hdl import BLOCKS

    cfg = load_config("small")
    assert set(BLOCK_NAMES) <= set(BENCHES)
    for name, bench in BENCHES.items():
        assert bench.name == name and bench.component == BLOCKS[name], name
        _, entry = component_entry(bench.component(cfg), f"aqua_{name}")
        generated = {p["name"]: p["direction"] for p in entry["ports"]}
        ours = {port: d for port, (d, _) in bench.ports(cfg).items()}
        if bench.clocked:
            ours["clk"] = "input"
        assert ours == generated, name
    with pytest.raises(ValueError, match=r"^block must be one of crossbar, adc, shiftadd, agu, "
                                         r"requant_shift, requant_mult, not 'datapath'$"):
        bench_of("datapath")


def _width(shape) -> int:
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_stimulus_toggles_every_input_bit(block, name):
    """Full value ranges: every bit of every input port is 0 on some cycle and 1 on another,
    except a group index that has one legal value (adc_steps = 1). Building the table also
    checks the step model against the golden model at its check points."""
    cfg = load_config(name)
    table = BENCHES[block].build_table(cfg, cycles=CYCLES["icarus"], seed=SEED)
    shapes = BENCHES[block].ports(cfg)
    for port, values in table["inputs"].items():
        full = (1 << _width(shapes[port][1])) - 1
        if port == "group" and cfg.adc_steps == 1:
            assert set(values) == {0}
            continue
        ones = zeros = 0
        for v in values:
            ones |= v
            zeros |= ~v & full
        assert ones == zeros == full, (port, hex(full & ~ones), hex(full & ~zeros))


CORRUPT = [("shiftadd", "small_signed", "acc", "acc[0]"), ("adc", "small", "code", "code[0]")]


# Verilator's traced block builds in `make bench`: the Datapath's failure test leaves a
# Verilator waveform in make test (test_datapath_cosim.py)
@pytest.mark.parametrize("sim", [s if s == "icarus" else pytest.param(s, marks=pytest.mark.slow)
                                 for s in sims()])
@pytest.mark.parametrize("block, name, port, field", CORRUPT)
def test_a_corrupted_expectation_names_cycle_port_field_and_leaves_a_waveform(
        block, name, port, field, sim):
    """The bench is not vacuous: flip bit 0 of one expected value and the run must fail,
    naming the cycle, port and field, both values, config and seed, and the automatic re-run
    with waves must leave an FST file (the ADC has no clock: a timer steps it)."""
    cfg = load_config(name)
    run = BENCHES[block].run(cfg, sim, cycles=400, seed=5, corrupt=(300, port))
    assert not run.passed
    m = re.search(rf"cycle 300: {re.escape(field)} expected (-?\d+), got (-?\d+) "
                  rf"\(config {name}, seed 5\)", run.message)
    assert m, run.message
    assert int(m[1]) ^ 1 == int(m[2])
    assert run.compared == 300
    assert run.waves is not None and run.waves.exists() and run.waves.suffix == ".fst"
    assert run.waves.stat().st_size > 500
