# amaranth: UnusedElaboratable=no
"""Predict -> crop -> compute in one Amaranth simulation: a shipped test image streams into
PredTile (the stored study's predictor, the demo CNN's conv0 on ``small``); per image the
chosen crop equals golden.predictor_hw.predict_int, the tile's output map equals the golden
cropped conv for that crop, and the run takes predictor_cycles + tile_cycles edges."""

import torch
from amaranth.sim import Simulator

from arch.config import load_config
from cosim.bits import unpack
from cosim.predtile import build_predtile, pixel_words, predtile_expect, study_params
from cosim.tile import demo_tile_layer, tile_layer, tile_writes
from golden.crop import fraction_code
from hdl.layouts import tile_output_layout

FRACTION = 0.25


def simulate(cfg, geom, layer, params, images):
    dut = build_predtile(cfg, geom, params)
    out_layout = tile_output_layout(cfg, geom)
    results = []

    async def bench(ctx):
        for word in tile_writes(cfg, geom, layer.weight):
            ctx.set(dut.wr.valid, 1)
            ctx.set(dut.wr.payload.as_value(), word)
            await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        ctx.set(dut.layer.as_value(), tile_layer(cfg, geom, layer.bias, layer.shift,
                                                 layer.relu))
        ctx.set(dut.fraction, fraction_code(FRACTION))
        for x in images:
            words = pixel_words(x)
            i, edges = 0, 0
            while not ctx.get(dut.done):
                assert edges < 200_000, "no done"
                valid = i < len(words)
                ctx.set(dut.pix.valid, int(valid))
                if valid:
                    ctx.set(dut.pix.payload.x, words[i])
                took = valid and ctx.get(dut.pix.ready)
                await ctx.tick()
                edges += 1
                i += int(took)
            ctx.set(dut.pix.valid, 0)
            crop, error = int(ctx.get(dut.choice.crop)), bool(ctx.get(dut.error))
            Ho, Wo = geom.out_height, geom.out_width
            out = torch.zeros(geom.out_channels, Ho, Wo, dtype=torch.int64)
            for r in range(Ho):
                for c in range(Wo):
                    ctx.set(dut.rd, {"row": r, "col": c})
                    await ctx.tick()
                    w = unpack(out_layout, ctx.get(dut.rd_data.as_value()))
                    out[:, r, c] = torch.tensor([w[f"y[{o}]"] for o in range(geom.out_channels)])
            results.append((crop, error, edges, out))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_predict_crop_compute_in_one_simulation():
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_inputs, quantize_democnn
    from golden.predictor_hw import predict_int

    cfg = load_config("small")
    layer, geom, _ = demo_tile_layer(cfg, 0)
    net = quantize_democnn(cfg, load_democnn())
    params = study_params(cfg, net.input_frac)
    images, _ = cluttered_digits("test")
    x = quant_inputs(net, images[:40])
    crops = predict_int(params, x)
    # the first cropped test image (the uncropped and more runs back to back are in
    # tests/cosim/test_predictor_cosim.py, on Verilator: 46k cycles each)
    pick = [int((crops != 0).nonzero()[0])]
    want = [predtile_expect(cfg, geom, params, x[j], layer, FRACTION) for j in pick]
    for j, e, (crop, error, edges, out) in zip(pick, want,
                                               simulate(cfg, geom, layer, params, x[pick])):
        ctx = f"test image {j}"
        assert (crop, error) == (e["crop"], False), ctx
        assert edges == e["cycles"], ctx
        assert len(e["tile"].expected.unique()) > 3, ctx
        assert torch.equal(out, e["tile"].expected), ctx


def test_parameters_are_validated():
    import pytest

    from arch.geometry import ConvGeometry
    from hdl.predtile import PredTile

    kw = dict(kernels=[[[0] * 3] * 3] * 4, order=[], weights=[], biases=[])
    geom = ConvGeometry(1, 4, 2, stride=1, padding=0, height=8, width=8)
    with pytest.raises(ValueError, match="the predictor takes unsigned pixels; small_signed "
                                         "has signed inputs"):
        PredTile(load_config("small_signed"), geom, **kw)
    with pytest.raises(TypeError, match="geom must be a ConvGeometry"):
        PredTile(load_config("small"), (1, 4, 2), **kw)
