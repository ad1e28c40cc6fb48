"""Events of the RTL ConvTile under a mixed precision plan: read from the Verilator waveform,
they equal ``golden.energy_model.conv_layer_events`` with the plan's kept window, its reduced
inputs and its per-position chunk counts (``chunks = T_pos``): the per-chunk events are
charged per chunk actually streamed, and the DAC counts are those of the reduced inputs."""

import os

import pytest

from arch.config import load_config
from cosim.sim import selected_simulators
from cosim.tile import demo_tile_layer, plan_image, plan_positions
from cosim.tile_energy import tile_energy_run
from golden.energy_model import conv_layer_events, layer_geometry
from golden.precision import reduce_activations

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
# top and bottom cropped, left 0 bits, right band at 3 bits, bands of 3/8: a 8x20 kept window,
# 210 positions, the 11 columns of outputs over the right band alone stream 3 of 8 chunks
PLAN, FRACTION = (0, 0, 0, 3), 0.375


def test_plan_tile_events_equal_analytic():
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg, 0)
    img = plan_image(cfg, geom, x, layer, PLAN, FRACTION, label="mixed plan")
    # Icarus when selected: its traced ConvTile builds in a second (Verilator's in two
    # minutes), and event counts do not depend on the simulator
    sim = "icarus" if "icarus" in selected_simulators() else "verilator"
    r = tile_energy_run(cfg, geom, layer, [img], sim, seed=SEED)
    bits, window, chunks = plan_positions(cfg, geom, PLAN, FRACTION, 32, 32)
    assert window == (12, 20, 12, 32)
    assert sorted(set(chunks.unique().tolist())) == [0, 3, 8]
    ev = conv_layer_events(cfg, layer_geometry(layer), window=window,
                           x=reduce_activations(cfg, layer.x, bits), chunks=chunks)
    want = {k: int(v.sum()) if hasattr(v, "sum") else v for k, v in ev.items()}
    got = r.events[0]
    print(f"seed {SEED}; RTL events {got}")
    assert {k: want[k] for k in got} == got
    groups = 2
    assert got["positions"] == 10 * 21
    assert got["xbar_steps"] == groups * 10 * (10 * 8 + 11 * 3) * cfg.xbar_steps
    # fewer chunks than the crop of the same window would stream
    crop = conv_layer_events(cfg, layer_geometry(layer), window=window, x=layer.x)
    assert got["adc_conversions"] < crop["adc_conversions"]
