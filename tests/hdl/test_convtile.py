# amaranth: UnusedElaboratable=no
"""ConvTile in the Amaranth simulator, on small geometries: the output memory equals
golden.crop.cropped_conv2d for crop vectors and explicit windows (several images in one
simulation, no reset between them), the measured cycle count equals golden.crop.tile_cycles,
and refused setups raise error and done at the start edge."""

import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from amaranth.sim import Simulator

from arch.config import ConfigError
from arch.geometry import ConvGeometry
from cosim.tile import bad_setup, tile_image, tile_layer, tile_writes
from golden.crop import CROP_VECTORS, output_window
from hdl import ConvTile
from hdl.layouts import tile_output_layout
from cosim.bits import unpack

from ._util import config, seed_for

GEOMETRIES = {
    # config, geometry, map size
    "small-s2": ("small", ConvGeometry(1, 6, 3, stride=2, padding=1, height=7, width=7),
                 (7, 6)),
    "signed-k2": ("small_signed", ConvGeometry(2, 7, 2, stride=1, padding=0, height=5,
                                               width=6), (5, 6)),
}


def random_layer(cfg, geom, rng):
    w = torch.tensor([rng.randint(cfg.weight_min, cfg.weight_max)
                      for _ in range(geom.out_channels * geom.rows)]).reshape(
        geom.out_channels, geom.in_channels, geom.kernel, geom.kernel)
    # biases of the size of a typical result, so that they do not swamp it
    lim = min(1 << (cfg.bias_bits - 1), geom.rows * cfg.input_max * cfg.weight_max // 4)
    bias = torch.tensor([rng.randint(-lim, lim - 1) for _ in range(geom.out_channels)])
    return SimpleNamespace(weight=w, bias=bias, shift=0, relu=rng.random() < 0.5)


def fit_shift(cfg, geom, layer, x):
    """The FlexPoint shift that maps the largest raw result just into the output range, so the
    outputs spread over it instead of saturating."""
    raw = F.conv2d(x.unsqueeze(0).double(), layer.weight.double(), layer.bias.double(),
                   stride=geom.stride, padding=geom.padding)
    layer.shift = min(cfg.shift_max, max(0, int(raw.abs().max()).bit_length()
                                         - (cfg.output_bits - 1)))


def random_image(cfg, geom, H, W, rng):
    return torch.tensor([rng.randint(cfg.input_min, cfg.input_max)
                         for _ in range(geom.in_channels * H * W)]).reshape(
        geom.in_channels, H, W)


def simulate(cfg, geom, layer, images):
    """Program the tile, run ``images`` back to back; return per image (edges, error,
    output map)."""
    dut = ConvTile(cfg, geom)
    results = []
    out_layout = tile_output_layout(cfg, geom)

    async def bench(ctx):
        for word in tile_writes(cfg, geom, layer.weight):
            ctx.set(dut.wr.valid, 1)
            ctx.set(dut.wr.payload.as_value(), word)
            await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        ctx.set(dut.layer.as_value(), tile_layer(cfg, geom, layer.bias, layer.shift, layer.relu))
        for img in images:
            ctx.set(dut.setup.as_value(), img.setup)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            edges, i = 1, 0
            while not ctx.get(dut.done):
                assert edges < 100_000, f"{img.label}: no done"
                valid = i < len(img.pixels)
                ctx.set(dut.fmap.valid, int(valid))
                if valid:
                    ctx.set(dut.fmap.payload.as_value(), img.pixels[i])
                ready = ctx.get(dut.fmap.ready)
                await ctx.tick()
                edges += 1
                i += int(valid and ready)
            ctx.set(dut.fmap.valid, 0)
            assert not ctx.get(dut.busy)
            error = bool(ctx.get(dut.error))
            out = torch.zeros(geom.out_channels, img.out_height, img.out_width, dtype=torch.int64)
            for r in range(img.out_height):
                for c in range(img.out_width):
                    ctx.set(dut.rd, {"row": r, "col": c})
                    await ctx.tick()
                    word = unpack(out_layout, ctx.get(dut.rd_data.as_value()))
                    out[:, r, c] = torch.tensor([word[f"y[{o}]"]
                                                 for o in range(geom.out_channels)])
            results.append((edges, error, out, i))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("name", GEOMETRIES)
def test_tile_matches_golden_under_crops_and_windows(name):
    seed = seed_for(f"convtile-{name}")
    rng = random.Random(seed)
    cfg_name, geom, (H, W) = GEOMETRIES[name]
    cfg = config(cfg_name)
    layer = random_layer(cfg, geom, rng)
    x = random_image(cfg, geom, H, W, rng)
    fit_shift(cfg, geom, layer, x)
    crops = [0, 15, 9, 6, rng.randrange(16)]
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c}") for c in crops]
    images.append(tile_image(cfg, geom, x, layer, window=(1, 3, 2, 5), label="window"))
    images.append(bad_setup(cfg, geom, "empty window", r0=1, r1=1))
    images.append(tile_image(cfg, geom, x, layer, window=(H - 1, H, W - 1, W), label="corner"))
    for img, (edges, error, out, sent) in zip(images, simulate(cfg, geom, layer, images)):
        ctx = f"{name} {img.label}, seed {seed}"
        assert error == img.error, ctx
        assert edges == img.cycles, ctx
        assert sent == len(img.pixels), ctx
        if not img.error:
            # the check has teeth: computed outputs spread over the output range
            assert len(img.expected.unique()) > 3, ctx
            assert torch.equal(out, img.expected), f"{ctx}: {out} != {img.expected}"


def _positions(geom, window):
    o = output_window(window, geom.height, geom.width, geom.kernel, geom.stride, geom.padding)
    return (o[1] - o[0]) * (o[3] - o[2])


def test_overlapped_tile_is_faster_by_the_cycle_functions_difference():
    """The same layer and images on the sequential and the overlapped schedule: both measured
    cycle counts are golden.crop.tile_cycles', and the saving is (D_seq - D_overlap) per
    computed position after the first plus L_seq - L_overlap for the first."""
    seed = seed_for("convtile-overlap-saving")
    rng = random.Random(seed)
    geom = ConvGeometry(1, 6, 3, stride=1, padding=1, height=6, width=6)
    seq, ovl = config("small"), config("small_pipelined")
    layer = random_layer(seq, geom, rng)
    x = random_image(seq, geom, 6, 6, rng)
    fit_shift(seq, geom, layer, x)
    edges = {}
    for cfg in (seq, ovl):
        images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                             label=f"crop {c}") for c in (0, 15)]
        runs = simulate(cfg, geom, layer, images)
        for img, (n, error, out, _) in zip(images, runs):
            assert n == img.cycles and not error, f"{cfg.name} {img.label}, seed {seed}"
            assert torch.equal(out, img.expected), f"{cfg.name} {img.label}, seed {seed}"
        edges[cfg.name] = [(n, _positions(geom, img.window)) for img, (n, *_) in zip(images, runs)]
    D = {c.name: max(c.latency + 1, geom.taps + 2) for c in (seq, ovl)}
    for (n_seq, p), (n_ovl, p2) in zip(edges["small"], edges["small_pipelined"]):
        assert p == p2 > 0
        assert n_seq - n_ovl == (p - 1) * (D["small"] - D["small_pipelined"]) \
            + seq.latency - ovl.latency > 0, f"seed {seed}"


def test_refused_setups_end_at_once_and_the_tile_runs_on():
    """Bad runtime configuration has defined behaviour: ``error`` and ``done`` at the start
    edge, no hang, and the next good image runs normally without a reset."""
    seed = seed_for("convtile-errors")
    rng = random.Random(seed)
    cfg_name, geom, (H, W) = GEOMETRIES["small-s2"]
    cfg = config(cfg_name)
    layer = random_layer(cfg, geom, rng)
    x = random_image(cfg, geom, H, W, rng)
    fit_shift(cfg, geom, layer, x)
    good = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[5], fraction=0.25, label="good")
    bad = [
        bad_setup(cfg, geom, "height 0", height=0),
        bad_setup(cfg, geom, "height above maximum", height=8, r1=8),
        bad_setup(cfg, geom, "width above maximum", width=8, c1=8),
        bad_setup(cfg, geom, "window below the map", height=4, width=4, r0=2, r1=5, c1=4),
        bad_setup(cfg, geom, "window right of the map", height=4, width=4, r1=4, c0=3, c1=5),
        bad_setup(cfg, geom, "zero-size window", height=4, width=4, r0=2, r1=2, c1=4),
        bad_setup(cfg, geom, "reversed window", height=4, width=4, r1=4, c0=3, c1=1),
        bad_setup(cfg, geom, "fraction 1/2", height=4, width=4, mode=1, crop=15, fraction=128),
        bad_setup(cfg, geom, "fraction above 1/2", height=4, width=4, mode=1, crop=1, fraction=255),
    ]
    images = [bad[0], good, *bad[1:], good]
    for img, (edges, error, out, sent) in zip(images, simulate(cfg, geom, layer, images)):
        ctx = f"{img.label}, seed {seed}"
        assert (error, edges, sent) == (img.error, img.cycles, len(img.pixels)), ctx
        if not img.error:
            assert torch.equal(out, img.expected), ctx


def test_kernel_larger_than_the_padded_map_is_refused():
    cfg = config("small")
    geom = ConvGeometry(1, 4, 3, stride=1, padding=0, height=6, width=6)
    layer = random_layer(cfg, geom, random.Random(seed_for("convtile-kernel")))
    images = [bad_setup(cfg, geom, "2x6 map, 3x3 kernel", height=2, width=6, r1=2, c1=6)]
    (edges, error, _, _), = simulate(cfg, geom, layer, images)
    assert (edges, error) == (1, True)


def test_empty_output_window_ends_after_the_load():
    """A 1x1 kernel with stride 2 computes no output from an odd row alone: the run loads the
    kept pixels and ends (golden.crop.tile_cycles: n + 1), all outputs read 0."""
    seed = seed_for("convtile-empty")
    rng = random.Random(seed)
    cfg = config("small")
    geom = ConvGeometry(3, 4, 1, stride=2, padding=0, height=6, width=6)
    layer = random_layer(cfg, geom, rng)
    x = random_image(cfg, geom, 6, 6, rng)
    fit_shift(cfg, geom, layer, x)
    images = [tile_image(cfg, geom, x, layer, window=(1, 2, 0, 6), label="odd row"),
              tile_image(cfg, geom, x, layer, window=(2, 3, 0, 6), label="even row")]
    assert images[0].cycles == 6 + 1 and not images[0].expected.any()
    for img, (edges, error, out, sent) in zip(images, simulate(cfg, geom, layer, images)):
        assert (edges, error, sent) == (img.cycles, False, 6), f"{img.label}, seed {seed}"
        assert torch.equal(out, img.expected), f"{img.label}, seed {seed}"


def test_geometry_is_validated():
    cfg = config("small")
    with pytest.raises(ConfigError, match="needs 18 crossbar rows; small has 16"):
        ConvTile(cfg, ConvGeometry(2, 4, 3, height=32, width=32))
    with pytest.raises(ConfigError, match="padding 3 must be smaller than the kernel 3"):
        ConvGeometry(1, 4, 3, padding=3)
    with pytest.raises(ConfigError, match="kernel must be an integer >= 1"):
        ConvGeometry(1, 4, 0)
    with pytest.raises(TypeError, match="geom must be a ConvGeometry"):
        ConvTile(cfg, (1, 4, 3))
