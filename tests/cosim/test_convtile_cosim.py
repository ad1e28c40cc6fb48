"""The ConvTile under Icarus and Verilator on the demo CNN's real trained layers: conv0 on
``small`` and the middle layer conv1 (8 -> 16 channels, stride 2) on ``medium``, under each of
the 16 crop vectors, back to back in one simulation per layer. For every crop the output memory
is bit-exact with ``golden.crop.cropped_conv2d``, the cycle count equals
``golden.crop.tile_cycles``, so the cycles saved against the uncropped run equal the predicted
saving. Icarus runs the 80-row crossbar at under 100 cycles/s: its sweep of conv1 is slow-marked
(``make bench``)."""

import os

import pytest

from arch.config import load_config
from cosim.sim import selected_simulators
from cosim.tile import crop_sweep, demo_tile_layer, run_tile, tile_image
from golden.crop import crop_counts

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
ALL = list(range(16))


def check_sweep(run, cfg, index, record_property, crops=ALL):
    print(f"seed {run.seed}")
    record_property("cycles_compared", run.cycles)
    assert run.passed, run.message
    assert [r["label"][:7] for r in run.rows] == [f"crop {c:2d}" for c in crops]
    assert all(r["outputs_equal"] and not r["error"] for r in run.rows)
    base = run.rows[0]
    assert base["window"] == (0, 32, 0, 32)
    layer, geom, x = demo_tile_layer(cfg, index)
    period = max(cfg.latency + 1, geom.taps + 2)
    for r, img in zip(run.rows, run.images):
        assert r["cycles_rtl"] == r["cycles_golden"]
        # the cycles the RTL saved against the uncropped run are the predicted saving: one per
        # pixel not loaded and one vector period per output position not computed (counted by
        # golden.crop.crop_counts, independently of tile_cycles)
        counts = crop_counts(cfg, geom.in_channels, geom.out_channels, 32, 32, geom.kernel,
                             geom.stride, geom.padding, img.window)
        r0, r1, c0, c1 = img.window
        skipped = 32 * 32 - (r1 - r0) * (c1 - c0)
        assert base["cycles_rtl"] - r["cycles_rtl"] == \
            skipped + (counts.positions_full - counts.positions) * period
        # (ReLU layers of a real network are sparse: conv1 keeps ~12% nonzero uncropped)
        assert len(img.expected.unique()) > 10, r["label"]


@pytest.mark.parametrize("sim", selected_simulators())
def test_conv0_all_crops(sim, record_property):
    cfg = load_config("small")
    # the uncropped and the all-sides crop through cocotb: all 16 run on the bulk path
    # (test_bulk.py::test_convtile_small_conv0_all_crops_bulk), and through cocotb on Icarus
    # in `make bench` (test_all_crops_icarus)
    crops = [0, 15]
    run = crop_sweep(cfg, 0, sim, crops=crops, seed=SEED)
    check_sweep(run, cfg, 0, record_property, crops)


# conv1 on the compiled bulk path in `make test`; through cocotb in `make bench`: its Verilator
# build with VPI access to every signal is the suite's longest (conv0 runs through cocotb above).
@pytest.mark.parametrize("path", ["bulk", pytest.param("cocotb", marks=pytest.mark.slow)])
def test_conv1_all_crops_verilator(path, record_property):
    if "verilator" not in selected_simulators():
        pytest.skip("SIM excludes verilator")
    from cosim.bulk import crop_sweep_bulk

    cfg = load_config("medium")
    sweep = crop_sweep_bulk if path == "bulk" else crop_sweep
    run = sweep(cfg, 1, "verilator", seed=SEED)
    check_sweep(run, cfg, 1, record_property)
    assert len(run.rows) == 16 and getattr(run, "path", "cocotb") == path


@pytest.mark.slow
@pytest.mark.parametrize("index,name", [(0, "small"), (1, "medium")])
def test_all_crops_icarus(index, name, record_property):
    if "icarus" not in selected_simulators():
        pytest.skip("SIM excludes icarus")
    cfg = load_config(name)
    run = crop_sweep(cfg, index, "icarus", seed=SEED)
    check_sweep(run, cfg, index, record_property)


# Verilator's traced ConvTile build in `make bench` only: the same failure path with a
# Verilator waveform is in make test on the bulk ConvTile (test_bulk.py) and the Datapath.
@pytest.mark.parametrize("sim", [s if s == "icarus" else pytest.param(s, marks=pytest.mark.slow)
                                 for s in selected_simulators()])
def test_a_wrong_expectation_fails_with_a_waveform(sim):
    """The comparison has teeth: one golden output changed by 1 fails the run, naming the
    image, channel and position, and the rerun leaves a waveform."""
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg, 0)
    img = tile_image(cfg, geom, x, layer, window=(10, 14, 3, 9), label="small window")
    o, r, c = (img.expected != 0).nonzero()[0].tolist()
    img.expected[o, r, c] += 1
    run = run_tile(cfg, geom, layer, [img], sim, seed=SEED, label="corrupt")
    assert not run.passed
    assert f"image 'small window': 1 outputs differ; first: channel {o}, row {r}, col {c}" \
        in run.message
    assert "waveform: " in run.message
    assert os.path.exists(run.message.split("waveform: ")[1])


@pytest.mark.parametrize("sim", selected_simulators())
def test_refused_setups_in_the_generated_verilog(sim):
    """Bad runtime configurations end at the start edge with ``error`` (1 cycle, one ``done``
    pulse, no pixel taken) in the generated Verilog too, and the images after them run
    bit-exactly without a reset."""
    from cosim.tile import bad_setup

    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg, 0)
    good = tile_image(cfg, geom, x, layer, window=(12, 16, 10, 15), label="good")
    images = [bad_setup(cfg, geom, "window outside the map", height=32, width=32, r0=30, r1=33,
                        c1=32),
              good,
              bad_setup(cfg, geom, "zero-size window", height=32, width=32, r0=5, r1=5, c1=32),
              bad_setup(cfg, geom, "fraction 1/2", height=32, width=32, mode=1, crop=15,
                        fraction=128),
              bad_setup(cfg, geom, "map larger than the maximum", height=33, width=32, r1=33, c1=32),
              good]
    run = run_tile(cfg, geom, layer, images, sim, seed=SEED, label="refused")
    assert run.passed, run.message
    assert [(r["error"], r["cycles_rtl"]) for r in run.rows] == [
        (True, 1), (False, good.cycles), (True, 1), (True, 1), (True, 1), (False, good.cycles)]
