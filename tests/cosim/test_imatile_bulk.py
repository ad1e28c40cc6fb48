"""The IMATile on the compiled bulk path (``cosim.imatile``): layers larger than one crossbar
-- every conv layer of the demo CNN on ``small``, and a ResNet-style 3x3x64->64 layer on
``isaac`` -- run pass by pass on an IMA, every cycle's done/busy and every output bit-exact
against ``golden.crop.cropped_conv2d``, each image in ``golden.crop.ima_tile_cycles``."""

import functools
import os
from types import SimpleNamespace

import pytest
import torch

from arch.config import load_config
from arch.geometry import ConvGeometry, Mapping
from cosim.imatile import ima_demo_layers, ima_tile_bulk
from cosim.sim import selected_simulators
from cosim.tile import tile_geometry, tile_image
from golden.crop import CROP_VECTORS, crop_counts, cropped_conv2d, ima_tile_cycles

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
ALL = list(range(16))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The golden layers in one torch thread: on the shared, oversubscribed machine a second
    OpenMP thread makes ``cropped_conv2d`` some 40x slower."""
    from golden.timing import single_thread
    with single_thread():
        yield


def _needs(sim):
    if sim not in selected_simulators():
        pytest.skip(f"SIM excludes {sim}")


@functools.lru_cache(maxsize=None)
def _demo_net(name):
    """The demo CNN quantized to ``name`` and the first test image, made once per module."""
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quantize_democnn

    cfg = load_config(name)
    images, _ = cluttered_digits("test")
    return quantize_democnn(cfg, load_democnn()), images[:1]


@functools.lru_cache(maxsize=None)
def demo_tile_layer(name, index):
    """``cosim.tile.demo_tile_layer(cfg, index)``, sharing the quantized net between tests."""
    from golden.fixedpoint import quant_layer

    net, image = _demo_net(name)
    layer = quant_layer(net, index, image)
    return layer, tile_geometry(layer, *layer.x.shape[-2:]), layer.x[0]


def _sweep(cfg, index, crops=ALL, seed=SEED):
    layer, geom, x = demo_tile_layer(cfg.name, index)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c:2d}") for c in crops]
    return ima_tile_bulk(cfg, geom, layer, images, "verilator", seed=seed,
                         label=f"layer{index}")


def _check(run, cfg, geom, crops, record_property, H, W):
    print(f"seed {run.seed}")
    record_property("cycles_compared", run.cycles)
    assert run.passed, run.message
    assert run.path == "bulk"
    assert [r["label"][:7] for r in run.rows] == [f"crop {c:2d}" for c in crops]
    assert all(r["outputs_equal"] and not r["error"] for r in run.rows)
    passes = Mapping(cfg, geom).passes()
    L, taps = cfg.latency, geom.taps
    period = max(L + 1, taps + 2)
    for r, img in zip(run.rows, run.images):
        assert r["cycles_rtl"] == r["cycles_golden"] == \
            ima_tile_cycles(cfg, geom, H, W, img.window)
        # independently of tile_cycles: every pass loads the kept pixels and computes every
        # position of the output window (golden.crop.crop_counts)
        counts = crop_counts(cfg, geom.in_channels, geom.out_channels, H, W, geom.kernel,
                             geom.stride, geom.padding, img.window)
        r0, r1, c0, c1 = img.window
        n, P = (r1 - r0) * (c1 - c0), counts.positions
        assert r["cycles_rtl"] == passes * (n + taps + L + 5 + (P - 1) * period)
    # every pass was one run of every image, and the sum of the runs is what was simulated
    assert run.cycles > sum(r["cycles_rtl"] for r in run.rows)


# conv1 (several row tiles, several passes) and conv2 (partial sums between passes) in
# `make test`; conv0 (lanes side by side: also test_imatile_two_lanes_...) and conv3 (conv2's
# tiling, twice the passes) in `make bench`, to keep the suite in its 15 minutes (each is a
# Verilator build of its own).
@pytest.mark.parametrize("index", [pytest.param(0, marks=pytest.mark.slow), 1, 2,
                                   pytest.param(3, marks=pytest.mark.slow)])
def test_imatile_small_demo_layer_all_crops(index, record_property):
    """Demo conv ``index`` on ``small`` (16x16 crossbars, 8 per IMA): conv0 in one pass with
    two output groups side by side (span 1, 2 lanes); conv1 (72 rows: 5 row tiles) one output
    group per pass, 4 passes; conv2 and conv3 (144 rows: 9 row tiles > 8 crossbars) two passes
    per group with the partial sums kept between them, 8 and 16 passes. All 16 crops back to
    back in one simulation."""
    _needs("verilator")
    cfg = load_config("small")
    run = _sweep(cfg, index)
    layer, geom, x = demo_tile_layer(cfg.name, index)
    _check(run, cfg, geom, ALL, record_property, *x.shape[-2:])
    plan = Mapping(cfg, geom).ima()
    assert (plan.lanes, plan.span, plan.chunks, plan.passes) == \
        [(2, 1, 1, 1), (1, 5, 1, 4), (1, 8, 2, 8), (1, 8, 2, 16)][index]
    # a real layer: the uncropped image is the golden conv, and not trivially zero
    full = run.images[0].expected
    assert torch.equal(full, cropped_conv2d(cfg, x[None], layer.weight, layer.bias,
                                            stride=layer.stride, padding=layer.padding,
                                            shift=layer.shift, relu=layer.relu,
                                            window=(0, x.shape[1], 0, x.shape[2]))[0])
    assert len(full.unique()) > 5


def test_ima_demo_layers():
    assert ima_demo_layers(load_config("small")) == [1, 2, 3]
    assert ima_demo_layers(load_config("isaac")) == [2, 3]      # 144 rows > 128


def test_imatile_corrupted_output_and_cycle_count_are_caught():
    """A wrong expected output names the image, channel and position; a wrong cycle count
    names the pass and the golden done cycle."""
    _needs("verilator")
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg.name, 2)
    img = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[15], fraction=0.25,
                     label="crop 15")
    img.expected = img.expected.clone()
    img.expected[3, 5, 6] += 1
    run = ima_tile_bulk(cfg, geom, layer, [img], "verilator", seed=5, rerun_with_waves=False)
    assert not run.passed
    assert "image 'crop 15': channel 3, row 5, col 6: rd_data.y[3] expected" in run.message
    assert "seed 5" in run.message
    img = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[15], fraction=0.25,
                     label="crop 15")
    img.cycles += 1
    run = ima_tile_bulk(cfg, geom, layer, [img], "verilator", seed=5, rerun_with_waves=False)
    assert not run.passed
    assert "image 'crop 15', pass 0: done expected 0, got 1 (pass 0 started at cycle 513, " \
        "golden done after" in run.message, run.message


def _resnet_layer(cfg, seed=3):
    """A ResNet-style 3x3x64->64 layer (padding 1) on an 8x8 map, random in range."""
    geom = ConvGeometry(64, 64, kernel=3, stride=1, padding=1, height=8, width=8)
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (64, 64, 3, 3), generator=g)
    b = torch.randint(-(1 << 24), 1 << 24, (64,), generator=g)
    x = torch.randint(0, cfg.input_max + 1, (64, 8, 8), generator=g)
    return geom, SimpleNamespace(weight=w, bias=b, shift=22, relu=True), x


@pytest.mark.slow
def test_imatile_isaac_resnet_layer_all_crops(record_property):
    """3x3x64 = 576 rows on 128x128 crossbars: 5 row tiles reduced by the IMA (8 crossbars,
    5 used), 4 output groups of 16: 4 passes; all 16 crops. (Slow: the ISAAC IMA's Verilator
    build took 23 minutes on the loaded machine; the run is 1.52 M cycles, ~18 minutes.)"""
    _needs("verilator")
    cfg = load_config("isaac")
    geom, layer, x = _resnet_layer(cfg)
    plan = Mapping(cfg, geom).ima()
    assert (plan.lanes, plan.span, plan.chunks, plan.passes) == (1, 5, 1, 4)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c:2d}") for c in ALL]
    run = ima_tile_bulk(cfg, geom, layer, images, "verilator", seed=SEED, label="isaac-resnet")
    _check(run, cfg, geom, ALL, record_property, 8, 8)


@pytest.mark.slow
def test_imatile_icarus_same_testbench():
    """The same generated testbench under Icarus: demo conv2 (two passes per output group,
    partial sums between them) under one crop (slow: Icarus evaluates eight crossbars)."""
    _needs("icarus")
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg.name, 2)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[15], fraction=0.25,
                         label="crop 15")]
    run = ima_tile_bulk(cfg, geom, layer, images, "icarus", seed=SEED, label="layer2")
    assert run.passed, run.message
    assert run.rows[0]["cycles_rtl"] == ima_tile_cycles(cfg, geom, 16, 16, images[0].window)


def test_cosim_options_take_ima():
    """``aqua cosim --ima`` (``CosimOptions.ima``) adds the IMATile runs; off by default."""
    from aqua.cli import build_parser
    from cosim.suite import IMA_TARGET, CosimOptions

    assert CosimOptions(sims=("verilator",), seed=1).ima is False
    assert IMA_TARGET.units(load_config("small")) == [1, 2, 3]
    args = build_parser().parse_args(["cosim", "--ima", "--blocks", "datapath"])
    assert args.ima is True


def test_imatile_two_lanes_of_three_and_a_half_empty_pass(record_property):
    """4 -> 12 channels, 3x3 (36 rows: 3 row tiles; 3 output groups) on ``small``'s 8-crossbar
    IMA: two groups side by side (lanes 2, span 3), so 2 passes, the second with one lane of
    zero weights whose outputs are never written. Random in-range operands, 4 crops."""
    _needs("verilator")
    cfg = load_config("small")
    geom = ConvGeometry(4, 12, kernel=3, stride=1, padding=1, height=8, width=8)
    plan = Mapping(cfg, geom).ima()
    assert (plan.lanes, plan.span, plan.chunks, plan.passes) == (2, 3, 1, 2)
    assert [s.used for s in plan.slots(1)] == [True] * 3 + [False] * 3
    g = torch.Generator().manual_seed(SEED % (1 << 31))
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (12, 4, 3, 3), generator=g)
    b = torch.randint(-(1 << 12), 1 << 12, (12,), generator=g)
    x = torch.randint(0, cfg.input_max + 1, (4, 8, 8), generator=g)
    layer = SimpleNamespace(weight=w, bias=b, shift=9, relu=True)
    crops = [0, 6, 9, 15]
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c:2d}") for c in crops]
    assert len(images[0].expected.unique()) > 20
    run = ima_tile_bulk(cfg, geom, layer, images, "verilator", seed=SEED, label="lanes")
    _check(run, cfg, geom, crops, record_property, 8, 8)


def test_imatile_four_crossbars_three_chunks(record_property):
    """Demo conv2 on an IMA of 4 crossbars (the ``crossbars`` argument, as ``[ima] crossbars =
    4`` would give): 9 row tiles in chunks of 4, 4, 1, so the middle pass of each group both
    reads and writes the partial sums; 12 passes; crops 0 and 15."""
    _needs("verilator")
    cfg = load_config("small")
    layer, geom, x = demo_tile_layer(cfg.name, 2)
    plan = Mapping(cfg, geom).ima(4)
    assert (plan.lanes, plan.span, plan.chunks, plan.passes) == (1, 4, 3, 12)
    assert [plan.first(p) for p in range(3)] == [True, False, False]
    assert [plan.last(p) for p in range(3)] == [False, False, True]
    crops = [0, 15]
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c:2d}") for c in crops]
    run = ima_tile_bulk(cfg, geom, layer, images, "verilator", seed=SEED, label="chunks",
                        crossbars=4)
    assert run.passed, run.message
    record_property("cycles_compared", run.cycles)
    for r, img in zip(run.rows, images):
        assert r["passes"] == 12 and r["outputs_equal"]
        assert r["cycles_rtl"] == ima_tile_cycles(cfg, geom, 16, 16, img.window, 4) \
            == 12 * img.cycles
