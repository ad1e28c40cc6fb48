# amaranth: UnusedElaboratable=no
"""ConvTile under per-region precision plans (docs/arithmetic.md section 9), in the Amaranth
simulator: every plan whose sides are 0 or Bx behaves exactly as its crop (outputs and cycles,
cycle for cycle), mixed plans give golden.precision.plan_conv2d bit for bit, in the cycles of
golden.crop.tile_cycles with the per-position chunk counts, and a plan with a side above Bx is
refused. An independent reference (here) checks the reduction, p_max and the cycles."""

import random

import pytest
import torch

from cosim.tile import bad_setup, plan_image, plan_positions, tile_image
from golden.crop import CROP_VECTORS, kept_window
from golden.precision import crop_as_plan

from ._util import config, seed_for
from .test_convtile import GEOMETRIES, fit_shift, random_image, random_layer, simulate


def reference_cycles(cfg, geom, plan, fraction, H, W):
    """The tile's cycles from first principles: each pixel's precision, each position's p_max
    over its in-map taps, its latency, and the gather/crossbar overlap of the tile."""
    nr, nc = (min(int(fraction * n + 0.5), (n - 1) // 2) for n in (H, W))
    Bx, d, T = cfg.input_bits, cfg.dac_bits, cfg.input_cycles
    bt, bb, bl, br = plan

    def prec(r, c):
        p = Bx
        for inside, b in ((r < nr, bt), (r >= H - nr, bb), (c < nc, bl), (c >= W - nc, br)):
            if inside:
                p = min(p, b)
        return p

    n = sum(prec(r, c) > 0 for r in range(H) for c in range(W))
    k, s, pad = geom.kernel, geom.stride, geom.padding
    lat = []
    for oy in range(geom.out_size(H)):
        for ox in range(geom.out_size(W)):
            pm = max([prec(r, c) for r in range(oy * s - pad, oy * s - pad + k)
                      for c in range(ox * s - pad, ox * s - pad + k)
                      if 0 <= r < H and 0 <= c < W], default=0)
            if pm:
                lat.append((T - (Bx - pm) // d) * (cfg.xbar_steps + cfg.adc_steps) + 1)
    if not lat:
        return n + 1
    taps = k * k
    return n + taps + 5 + sum(max(L + 1, taps + 2) for L in lat[:-1]) + lat[-1]


def random_plan(cfg, rng):
    Bx = cfg.input_bits
    return tuple(rng.choice([0, Bx, rng.randint(1, Bx - 1), rng.randint(1, Bx - 1)])
                 for _ in range(4))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_tile_matches_golden_under_plans(name):
    seed = seed_for(f"convtile-plan-{name}")
    rng = random.Random(seed)
    cfg_name, geom, (H, W) = GEOMETRIES[name]
    cfg = config(cfg_name)
    Bx = cfg.input_bits
    layer = random_layer(cfg, geom, rng)
    x = random_image(cfg, geom, H, W, rng)
    fit_shift(cfg, geom, layer, x)
    f = 0.25
    crops = [15, 6, rng.randrange(16)]
    plans = [(1, Bx, Bx - 1, 2), (Bx, Bx, Bx, 1), (0, 3, Bx, 1)] \
        + [random_plan(cfg, rng) for _ in range(4)]
    images = [plan_image(cfg, geom, x, layer, crop_as_plan(c, cfg), f, label=f"crop plan {c}")
              for c in crops]
    images += [plan_image(cfg, geom, x, layer, p, f) for p in plans]
    images.append(tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[crops[0]], fraction=f,
                             label="the crop itself"))
    images.append(bad_setup(cfg, geom, "plan side above Bx", height=H, width=W, plan=1,
                            fraction=64, bits=[Bx, Bx + 1, Bx, Bx]))
    images.append(plan_image(cfg, geom, x, layer, (Bx, 0, 1, Bx), 0.125, label="thin bands"))
    results = simulate(cfg, geom, layer, images)
    for img, (edges, error, out, sent) in zip(images, results):
        ctx = f"{name} {img.label}, seed {seed}"
        assert error == img.error, ctx
        assert edges == img.cycles, f"{ctx}: {edges} cycles, expected {img.cycles}"
        assert sent == len(img.pixels), ctx
        if not img.error:
            assert torch.equal(out, img.expected), f"{ctx}: {out} != {img.expected}"
    for c, img in zip(crops, images):
        crop = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=f)
        assert (img.cycles, img.window) == (crop.cycles, crop.window), c
        assert torch.equal(img.expected, crop.expected), c
    for p, img in zip(plans, images[len(crops):]):
        assert img.cycles == reference_cycles(cfg, geom, p, f, H, W), p
    # a plan with a low-precision band saves cycles over the uncropped run
    full = tile_image(cfg, geom, x, layer, window=(0, H, 0, W))
    assert images[len(crops)].cycles < full.cycles
    # the check has teeth: a plan with no 0-bit side loads every pixel, reduced, so its outputs
    # differ from the full-precision layer's
    assert images[len(crops)].window == (0, H, 0, W)
    assert not torch.equal(images[len(crops)].expected, full.expected)


def test_plan_positions_reference():
    """plan_positions against a direct count: the kept window is the pixels above 0 bits
    (a crop plan's is the crop's), and a position streams T - floor((Bx - p_max)/d)
    chunks."""
    cfg = config("small_signed")
    _, geom, (H, W) = GEOMETRIES["signed-k2"]
    Bx = cfg.input_bits
    for c in range(16):
        _, window, _ = plan_positions(cfg, geom, crop_as_plan(c, cfg), 0.25, H, W)
        assert window == kept_window(CROP_VECTORS[c], 0.25, H, W), c
    bits, window, chunks = plan_positions(cfg, geom, (1, Bx, 0, 5), 0.25, H, W)
    assert window == (0, H, 2, W)
    assert bits[0, 3] == 1 and bits[3, 5] == 5 and bits[0, 5] == 1 and bits[2, 3] == Bx
    assert chunks[0, 2] == cfg.input_cycles - (Bx - Bx) // 2
    assert chunks[0, 0] == 0 and chunks[0, 1] == cfg.input_cycles
