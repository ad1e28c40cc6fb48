"""The RTL ConvTile under per-region precision plans on the bulk path (Verilator): the demo
CNN's conv0 on ``small``, all 16 crop-equivalent plans and seeded random mixed plans back to
back in one simulation (the crop sweep's build), every output bit-exact against
``golden.precision.plan_conv2d`` and every run's ``done`` at the edge of
``golden.crop.tile_cycles`` with the per-position chunk counts."""

import os
import random

import pytest

from arch.config import load_config
from cosim.sim import selected_simulators
from cosim.tile import demo_tile_layer, tile_image
from golden.crop import CROP_VECTORS
from golden.precision import crop_as_plan, is_crop_plan

pytestmark = pytest.mark.cosim

SEED = int(os.environ.get("AQUA_SEED", "20261128"))
MIXED = 20


def mixed_plans(cfg, rng, n):
    """``n`` plans with at least one side strictly between 0 and Bx, and a fraction each."""
    Bx, out = cfg.input_bits, []
    while len(out) < n:
        plan = tuple(rng.choice([0, Bx, rng.randint(1, Bx - 1)]) for _ in range(4))
        if not is_crop_plan(plan, cfg):
            out.append((plan, rng.choice([0.125, 0.25, 0.375])))
    return out


def test_convtile_small_conv0_plans_bulk(record_property):
    if "verilator" not in selected_simulators():
        pytest.skip("SIM excludes verilator")
    from cosim.bulk import plan_sweep_bulk

    cfg = load_config("small")
    rng = random.Random(SEED)
    mixed = mixed_plans(cfg, rng, MIXED)
    plans = [crop_as_plan(c, cfg) for c in range(16)] + [p for p, _ in mixed]
    fractions = [0.25] * 16 + [f for _, f in mixed]
    run = plan_sweep_bulk(cfg, 0, "verilator", plans=plans, fraction=fractions, seed=SEED)
    print(f"seed {SEED}")
    for r in run.rows:
        print(f"{r['label']:40} window {r['window']}  cycles {r['cycles_rtl']}")
    record_property("cycles_compared", run.cycles)
    assert run.passed, run.message
    assert run.path == "bulk" and all(r["outputs_equal"] for r in run.rows)
    assert all(r["cycles_rtl"] == r["cycles_golden"] for r in run.rows)
    # a crop-equivalent plan is its crop: the same window, outputs and cycles
    layer, geom, x = demo_tile_layer(cfg, 0)
    for c, img in enumerate(run.images[:16]):
        crop = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25)
        assert (img.window, img.cycles) == (crop.window, crop.cycles), c
        assert (img.expected == crop.expected).all(), c
    # the mixed plans skip chunks: fewer cycles than the crop of their 0-bit sides
    full = run.images[0].cycles
    assert any(img.window == (0, 32, 0, 32) and img.cycles < full for img in run.images[16:])
