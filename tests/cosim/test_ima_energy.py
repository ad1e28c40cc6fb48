"""The IMA's own energy events (the reduction adder tree and the partial-sum memory of an
``IMATile``, ``arch.energy.IMA_EVENTS``): counted on the RTL's strobes in the Amaranth
simulator (``cosim.imatile.rtl_ima_events``) they equal ``golden.energy_model.ima_tile_events``
exactly, on ``small``'s demo conv2 (9 row tiles on 8 crossbars: 2 chunks per group, partial
sums written and read; uncropped and under crop 15) and conv1 (5 row tiles, one chunk: no
partial-sum memory) under crop 15; and the analytic counts of whole conv2 images, uncropped and under crop 15."""

import pytest

from arch.config import load_config
from arch.energy import IMA_EVENT_MAP, IMA_EVENTS, ima_event_energy, load_energy_table
from arch.geometry import Mapping
from golden.cnn import CONV_SPECS
from golden.crop import CROP_VECTORS, kept_window
from golden.energy_model import ima_tile_events

FRACTION = 0.25


def _window(geom, crop):
    return kept_window(CROP_VECTORS[crop], FRACTION, geom.height, geom.width)


@pytest.mark.parametrize("index, crop, passes", [
    (2, 15, [0, 1]),       # conv2: chunk 0 writes the partial sums, chunk 1 reads and adds them
    (2, 15, [7]),          # conv2: the last pass (chunk 1 of output group 3)
    (2, 0, [1]),           # conv2 uncropped: a chunk-1 pass reads every position's sum
    (1, 15, [0]),          # conv1: one chunk, no partial-sum memory
])
def test_rtl_ima_events_equal_analytic(index, crop, passes):
    from cosim.imatile import rtl_ima_events

    cfg, geom = load_config("small"), CONV_SPECS[index].geometry
    rtl = rtl_ima_events(cfg, geom, crop=CROP_VECTORS[crop], fraction=FRACTION, passes=passes)
    golden = ima_tile_events(cfg, geom, window=_window(geom, crop), passes=passes)
    assert set(rtl) == set(golden) == set(IMA_EVENTS)
    assert rtl == golden
    assert rtl["vectors"] > 0 and rtl["ima_reduce_adds"] > 0
    if index == 2:
        assert rtl["psum_reads"] == rtl["vectors"] > 0
        assert rtl["psum_writes"] == (rtl["vectors"] // 2 if passes == [0, 1] else 0)
        assert rtl["vectors"] == len(passes) * (256 if crop == 0 else 100)
    else:
        assert rtl["psum_reads"] == rtl["psum_writes"] == 0


def test_conv2_analytic_counts():
    """Whole images of conv2 (8 passes: 4 output groups x 2 chunks, 8 + 1 row tiles of 16
    rows, 4 outputs, 27-bit sums): per vector 4 outputs x (7 adds, or 8 with the partial sum)."""
    cfg, geom = load_config("small"), CONV_SPECS[2].geometry
    plan = Mapping(cfg, geom).ima()
    assert (plan.lanes, plan.span, plan.chunks, plan.passes) == (1, 8, 2, 8)
    word = cfg.outputs * cfg.sum_bits(9)
    full = ima_tile_events(cfg, geom, window=_window(geom, 0))
    assert full == {"vectors": 2048, "ima_reduce_adds": 256 * 4 * (4 * 7 + 4 * 8),
                    "psum_reads": 2048, "psum_read_bits": 2048 * word,
                    "psum_writes": 1024, "psum_write_bits": 1024 * word}
    assert ima_tile_events(cfg, geom) == full
    cropped = ima_tile_events(cfg, geom, window=_window(geom, 15))
    assert cropped == {"vectors": 800, "ima_reduce_adds": 100 * 4 * 60,
                       "psum_reads": 800, "psum_read_bits": 800 * word,
                       "psum_writes": 400, "psum_write_bits": 400 * word}


def test_ima_event_energy():
    cfg, table = load_config("small"), load_energy_table()
    ev = ima_tile_events(cfg, CONV_SPECS[2].geometry)
    e = ima_event_energy(table, ev)
    assert set(e) == set(IMA_EVENT_MAP)
    assert e["ima_reduce_add"]["count"] == 61440
    assert e["ima_reduce_add"]["pj"] == pytest.approx(61440 * 0.07)
    assert e["psum_read_bit"]["pj"] == pytest.approx(ev["psum_read_bits"] * 0.0056)
    assert e["psum_write_bit"]["pj"] == pytest.approx(ev["psum_write_bits"] * 0.0056)
    assert e["psum_read_bit"]["block"] == "memory"
    assert ima_event_energy(table, {})["ima_reduce_add"] == {"count": 0, "block": "shiftadd",
                                                             "pj": 0.0}
