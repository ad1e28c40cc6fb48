"""Switching activity and events of the ``ConvTile``: Icarus and Verilator count the same
per-bit toggles on one small crop window of the demo CNN's layer 0, every net is attributed to
the tile's blocks and classes (memory ports among them), and the events read from the RTL
waveform equal ``golden.energy_model.conv_layer_events`` exactly."""

import os

import pytest

from arch.config import load_config
from cosim.sim import selected_simulators
from cosim.tile import demo_tile_layer, tile_image
from cosim.tile_energy import tile_energy_run, tile_toggles
from cosim.toggles import TILE_BLOCKS, block_of, memory_ports, signal_classes
from golden.crop import CROP_VECTORS, kept_window
from golden.energy_model import conv_layer_events, layer_geometry

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
WINDOW = (10, 14, 3, 9)          # a 4x6 kept window: 48 positions, ~3,200 cycles


def small_run(cfg):
    layer, geom, x = demo_tile_layer(cfg, 0)
    return layer, geom, [tile_image(cfg, geom, x, layer, window=WINDOW, label="window")]


def analytic(cfg, layer, window):
    ev = conv_layer_events(cfg, layer_geometry(layer), window=window, x=layer.x)
    return {k: int(v.sum()) if hasattr(v, "sum") else v for k, v in ev.items()}


def test_tile_memory_ports_and_attribution():
    from cosim.tile import tile_sources

    cfg = load_config("small")
    _, geom, _ = small_run(cfg)
    verilog = tile_sources(cfg, geom)[0][0]
    ports = memory_ports(verilog)
    assert set(ports) == {"fmap_mem", "out_mem"}
    assert set(ports["fmap_mem"]) == {"write", "read"} and "write" in ports["out_mem"]
    for port in (ports["fmap_mem"]["write"], ports["fmap_mem"]["read"],
                 ports["out_mem"]["write"]):
        assert len(port["en"]) == 1 and port["addr"] and port["data"]
    classes = signal_classes(verilog)
    # the input memory is written with the loaded pixel reduced to its band's precision
    # (hdl.convtile, per-region precision; the fmap payload itself before that change)
    assert ports["fmap_mem"]["write"]["data"] == {"reduced_0"}
    assert classes["reduced_0"] == "memport"
    assert block_of("reduced_0", classes) == "memory"
    assert block_of("xbar1.crossbar.col_sum") == "crossbar"
    assert block_of("xbar0.adc.code") == "adc" and block_of("xbar0.shiftadd.acc") == "shiftadd"
    assert block_of("xbar0.phase") == "control" and block_of("staging") == "control"
    assert block_of("agu_in.row") == "agu" and block_of("agu_out.linear") == "agu"
    # the Datapath's own attribution is unchanged
    assert block_of("crossbar.u") == "crossbar" and block_of("phase") == "control"


def events_sim() -> str:
    """Icarus when selected: its traced ConvTile builds in a second, Verilator's in two
    minutes, and event counts do not depend on the simulator."""
    return "icarus" if "icarus" in selected_simulators() else "verilator"


@pytest.mark.slow            # (the Verilator build of the traced ConvTile: `make bench`)
def test_simulators_agree_on_tile_toggles():
    if len(selected_simulators()) < 2:
        pytest.skip("needs both simulators (SIM=all)")
    cfg = load_config("small")
    layer, geom, images = small_run(cfg)
    (ti, _), (tv, _) = (tile_toggles(cfg, geom, layer, images, sim, seed=SEED)
                        for sim in ("icarus", "verilator"))
    common = set(ti.bits) & set(tv.bits)
    print(f"seed {SEED}; signals: icarus {len(ti.bits)}, verilator {len(tv.bits)}, "
          f"common {len(common)}; cycles {tv.cycles}")
    assert ti.cycles == tv.cycles > 3000
    registers = {k for k, c in ti.classes.items() if c == "register"}
    assert registers and registers <= common, sorted(registers - common)[:10]
    assert len(common) >= 0.99 * max(len(ti.bits), len(tv.bits))
    bad = [k for k in sorted(common)
           if ti.bits[k].shape != tv.bits[k].shape or (ti.bits[k] != tv.bits[k]).any()]
    assert not bad, [(k, ti.bits[k].tolist(), tv.bits[k].tolist()) for k in bad[:5]]
    split = tv.by_block_class()
    assert split == ti.by_block_class()
    assert set(split) == set(TILE_BLOCKS)
    for b in TILE_BLOCKS:                 # every block switches; the ADC has no register
        assert split[b]["comb"] + split[b]["memport"] > 0, (b, split[b])
        assert (split[b]["register"] > 0) == (b not in ("adc", "memory")), (b, split[b])
    assert split["memory"]["memport"] > 0 and split["memory"]["comb"] == 0
    assert not any(k.startswith(("fmap_mem[", "out_mem[")) for k in common)   # no array bits


def test_tile_events_equal_analytic():
    """One small window: the RTL's events (Datapaths summed, memory enables) equal the
    analytic layer model, weight programming included."""
    cfg = load_config("small")
    layer, geom, images = small_run(cfg)
    r = tile_energy_run(cfg, geom, layer, images, events_sim(), seed=SEED)
    want = analytic(cfg, layer, WINDOW)
    got = r.events[0]
    assert {k: want[k] for k in got} == got
    assert got["positions"] == 6 * 8 and got["gather_reads"] == 48 * 9
    assert got["fmap_writes"] == 24 and got["weight_writes"] == 2 * 16 * 4


@pytest.mark.slow
def test_tile_events_equal_analytic_across_crops():
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg, 0)
    crops = (0, 3, 6, 9, 12, 15)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25)
              for c in crops]
    r = tile_energy_run(cfg, geom, layer, images, "verilator", seed=SEED)
    for c, got in zip(crops, r.events):
        want = analytic(cfg, layer, kept_window(CROP_VECTORS[c], 0.25, 32, 32))
        assert {k: want[k] for k in got} == got, c
