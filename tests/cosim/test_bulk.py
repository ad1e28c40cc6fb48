"""The compiled bulk path (``cosim.bulk``): every cycle compared inside the simulator, on both
simulators; a corrupted expectation fails naming the cycle and the field; the ConvTile runs
real layers -- ``small`` conv0 under all 16 crops, and ``isaac`` conv0 on a whole image
(>= 100 k cycles) -- bit-exact against the golden model."""

import os
import random

import pytest
import torch

from arch.config import load_config
from cosim.bulk import datapath_bulk, tile_bulk
from cosim.run import assemble_outputs, cnn_jobs, random_jobs, run_datapath
from cosim.sim import selected_simulators
from cosim.tile import demo_tile_layer, tile_image
from golden.crop import CROP_VECTORS

from .test_convtile_cosim import check_sweep

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
# Vectors per simulator: Verilator compares ~1 M cycles in a few seconds; Icarus spends its
# time evaluating the design (the bulk path removes only the Python per clock).
VECTORS = {"verilator": 48000, "icarus": 400}


def _needs(sim):
    if sim not in selected_simulators():
        pytest.skip(f"SIM excludes {sim}")


@pytest.mark.parametrize("sim", selected_simulators())
def test_datapath_bulk_every_cycle(sim, record_property):
    cfg = load_config("small")
    n = VECTORS[sim]
    print(f"seed {SEED}")
    run = datapath_bulk(cfg, sim, jobs=random_jobs(cfg, n, SEED), seed=SEED)
    record_property("cycles_compared", run.compared)
    assert run.passed, run.message
    assert run.stats["path"] == "bulk"
    assert run.vectors == n and len(run.outputs) == n
    assert run.compared == run.cycles >= n * (cfg.latency + 1)


def test_bulk_and_cocotb_paths_run_the_same_cycles(record_property):
    """Same seed, same jobs: the bulk schedule draws bubbles and back-pressure as the cocotb
    bench does, so both paths pass through exactly the same cycles, on every simulator."""
    cfg = load_config("small_signed")
    seed = random.Random(SEED).randrange(2 ** 31)
    jobs = random_jobs(cfg, 60, seed)
    for sim in selected_simulators():
        a = run_datapath(cfg, sim, jobs=jobs, seed=seed)
        b = datapath_bulk(cfg, sim, jobs=jobs, seed=seed)
        assert a.passed and b.passed, (a.message, b.message)
        assert a.cycles == b.cycles == b.compared
        assert a.outputs == b.outputs
        record_property("cycles_compared", a.compared + b.compared)


@pytest.mark.parametrize("sim", selected_simulators())
def test_a_corrupted_expectation_names_cycle_field_seed_and_leaves_a_waveform(sim):
    cfg = load_config("small")
    run = datapath_bulk(cfg, sim, jobs=random_jobs(cfg, 6, 5), seed=5, inject_cycle=150)
    assert not run.passed
    assert run.message.startswith("cycle 150: obs.acc[0] expected ")
    assert "seed 5" in run.message
    assert run.compared == 150
    assert run.waves is not None and run.waves.exists() and run.waves.suffix == ".fst"
    assert run.waves.stat().st_size > 1000


def test_switching_activity_of_the_bulk_run_equals_between_simulators_and_cocotb():
    """The bulk run's own FST (``activity=True``): per-bit toggle counts of every net equal
    under Icarus and Verilator, and equal to the cocotb path's on the same seed and jobs."""
    import numpy as np

    from cosim.bulk import bulk_toggles
    from cosim.toggles import toggle_run

    cfg = load_config("small")
    jobs = random_jobs(cfg, 40, SEED)
    counts = {}
    for sim in selected_simulators():
        run = datapath_bulk(cfg, sim, jobs=jobs, seed=SEED, activity=True)
        assert run.passed, run.message
        counts[sim] = bulk_toggles(run.waves)
        assert len(counts[sim]) > 500
        assert sum(int(c.sum()) for c in counts[sim].values()) > 100_000
    first = next(iter(counts.values()))
    for other in counts.values():
        assert other.keys() == first.keys()
        assert all(np.array_equal(first[k], other[k]) for k in first)
    sim = selected_simulators()[0]
    cocotb, _ = toggle_run(cfg, sim, jobs=jobs, seed=SEED)
    assert cocotb.bits.keys() == first.keys()
    assert all(np.array_equal(cocotb.bits[k], first[k]) for k in first)


def test_real_conv_layer_bulk_equals_golden_conv2d():
    """The demo CNN's conv0 quantized to ``small`` on one image, through the Datapath on the
    bulk path: the outputs compared in the simulator reassemble into golden conv2d."""
    _needs("verilator")
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_layer, quantize_democnn
    from golden.layer import conv2d

    cfg = load_config("small")
    net = quantize_democnn(cfg, load_democnn())
    images, _ = cluttered_digits("test")
    layer = quant_layer(net, 0, images[:1])
    jobs = cnn_jobs(cfg, layer)
    run = datapath_bulk(cfg, "verilator", jobs=jobs, seed=SEED)
    assert run.passed, run.message
    rtl = assemble_outputs(cfg, jobs, run.outputs)
    golden = conv2d(cfg, layer.x, layer.weight, layer.bias, stride=layer.stride,
                    padding=layer.padding, shift=layer.shift, relu=layer.relu)
    assert torch.equal(rtl, golden.permute(0, 2, 3, 1).reshape(-1, golden.shape[1]))


def _crops(cfg, crops, image=0):
    layer, geom, x = demo_tile_layer(cfg, 0, image)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c:2d}") for c in crops]
    return layer, geom, images


def test_convtile_small_conv0_all_crops_bulk(record_property):
    _needs("verilator")
    from cosim.bulk import crop_sweep_bulk

    cfg = load_config("small")
    run = crop_sweep_bulk(cfg, 0, "verilator", seed=SEED)
    check_sweep(run, cfg, 0, record_property)
    assert run.path == "bulk" and run.cycles > 400_000


def test_convtile_isaac_conv0_real_layer_bulk(record_property):
    """A real layer on an ISAAC-size tile (128x128 crossbars): the demo CNN's conv0 quantized to
    ``isaac``, one whole test image, uncropped and then right-cropped, > 100 k cycles, every
    cycle's done/busy and every output bit-exact against ``golden.crop.cropped_conv2d``."""
    _needs("verilator")
    cfg = load_config("isaac")
    layer, geom, images = _crops(cfg, [0, 1])
    run = tile_bulk(cfg, geom, layer, images, "verilator", seed=SEED, label="isaac-layer0")
    record_property("cycles_compared", run.cycles)
    assert run.passed, run.message
    assert run.cycles >= 100_000
    assert all(r["outputs_equal"] for r in run.rows)
    assert len(images[0].expected.unique()) > 10


def test_convtile_corrupted_output_names_image_channel_position():
    _needs("verilator")
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg, 0)
    img = tile_image(cfg, geom, x, layer, window=(10, 14, 3, 9), label="small window")
    o, r, c = (img.expected != 0).nonzero()[0].tolist()
    img.expected[o, r, c] += 1
    run = tile_bulk(cfg, geom, layer, [img], "verilator", seed=SEED, label="corrupt")
    assert not run.passed
    assert f"image 'small window': channel {o}, row {r}, col {c}: rd_data.y[{o}]" in run.message
    assert "waveform: " in run.message
    assert os.path.exists(run.message.split("waveform: ")[1])


def test_convtile_wrong_cycle_count_is_caught():
    """A golden cycle count one too small: the done check fires at that cycle."""
    _needs("verilator")
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg, 0)
    img = tile_image(cfg, geom, x, layer, window=(10, 14, 3, 9), label="short")
    img.cycles -= 1
    run = tile_bulk(cfg, geom, layer, [img], "verilator", seed=SEED, label="short",
                    rerun_with_waves=False)
    assert not run.passed
    assert "image 'short': done expected 1, got 0" in run.message


# (configuration, simulator): bulk vectors, cocotb vectors; bulk crops, cocotb crops
SPEED = {
    ("small", "verilator"): (24000, 2000, list(range(16)), list(range(16))),
    ("small", "icarus"): (800, 400, [15], [15]),
    ("isaac", "verilator"): (400, 20, [0], [0]),
}


@pytest.mark.slow
def test_bench_raw_bulk_cocotb_speeds(record_property):
    """``make bench``: cycles/s of the free-running compiled model, the bulk path and the
    cocotb path, with their ratios, for the Datapath and the ConvTile, small and isaac."""
    from cosim.bulk import datapath_speed, speed_table, tile_speed

    rows = []
    for (name, sim), (vec, cvec, crops, ccrops) in SPEED.items():
        if sim not in selected_simulators():
            continue
        cfg = load_config(name)
        rows.append(datapath_speed(cfg, sim, vectors=vec, cocotb_vectors=cvec))
        rows.append(tile_speed(cfg, sim, crops=crops, cocotb_crops=ccrops))
    table = speed_table(rows)
    print("\n" + table)
    record_property("report", "cycles/s: free-running compiled model (raw), bulk path, cocotb "
                              "path\n" + table)
    for r in rows:
        if r.sim == "verilator":
            assert r.bulk_over_raw >= 0.25, r
