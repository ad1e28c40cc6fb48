"""``make bench``: the RTL-measured throughput of the sequential and the overlapped (ISAAC)
schedule on ``small``, ``small_drop`` (two crossbar steps per chunk) and ``isaac`` (cycles per
vector, vectors per 1000 cycles), printed and written to
``build/bench/pipeline_throughput.txt``."""

import pytest

from arch.config import load_config
from cosim.sim import BUILD_ROOT, selected_simulators
from cosim.throughput import schedule_throughput, throughput_table

pytestmark = [pytest.mark.cosim, pytest.mark.slow]


def test_pipeline_throughput_table(record_property):
    sims = selected_simulators()
    if not sims:
        pytest.skip("no simulator selected")
    sim = "verilator" if "verilator" in sims else sims[0]
    rows = []
    for name, vectors in (("small", 400), ("small_drop", 400), ("isaac", 40)):
        rows += schedule_throughput(load_config(name), sim, vectors=vectors)
    text = throughput_table(rows)
    print("\n" + text)
    out = BUILD_ROOT / "bench" / "pipeline_throughput.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    for seq, ovl in zip(rows[::2], rows[1::2]):
        # measured equals the schedule's period, and the overlap is faster by its formula
        assert seq.cycles_per_vector == seq.latency + 1
        assert ovl.cycles_per_vector == ovl.latency + 1 < seq.cycles_per_vector
        record_property(f"{ovl.config}_speedup", seq.cycles_per_vector / ovl.cycles_per_vector)
