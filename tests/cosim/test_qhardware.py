"""Searched formats -> configuration -> one layer bit-exact in the Datapath RTL."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from arch.config import load_config
from cosim.run import assemble_outputs, cnn_jobs, run_datapath
from cosim.sim import selected_simulators
from golden.cnn import load_democnn
from golden.data import cluttered_digits
from golden.fixedpoint import QuantError, calibration_images, saturate
from golden.layer import conv2d
from golden.qformat import Fmt, round_half_up, uniform_formats
from golden.qhardware import integer_layer, layer_config, layer_shift
from golden.qlayers import calibration_ranges, describe


@pytest.fixture(scope="module")
def searched():
    """Mixed formats like the search picks: 6-bit everywhere, layer 0 with 5-bit (odd,
    signed) weights and 7-bit inputs, layer 1 with 5-bit unsigned inputs."""
    layers = describe(load_democnn())
    formats = uniform_formats(layers, calibration_ranges(layers, calibration_images(64)), 6)
    f0, f1 = formats[0], formats[1]
    formats[0] = dataclasses.replace(f0, x=Fmt(7, f0.x.frac + 1, f0.x.signed),
                                     w=Fmt(5, f0.w.frac - 1, True))
    formats[1] = dataclasses.replace(f1, x=Fmt(5, f1.x.frac - 1, f1.x.signed))
    return layers, formats


def test_layer_config_widths(searched):
    layers, formats = searched
    cfg = layer_config(load_config("small"), layers, formats, 0)
    assert (cfg.input_bits, cfg.input_signed) == (7, False)
    assert cfg.weight_bits == 6 and cfg.weight_min == -32 and cfg.cols == 15    # 3 slices x 5
    assert cfg.output_bits == 6                 # unsigned 5-bit layer-1 input, signed + 1
    assert layer_shift(formats, 0) == formats[0].w.frac + formats[0].x.frac - formats[1].x.frac
    with pytest.raises(QuantError, match="layer must be a conv layer whose output another "
                                         "conv layer reads"):
        layer_config(load_config("small"), layers, formats, 3)


@pytest.mark.parametrize("index", [0, 1])
def test_golden_layer_is_the_searched_integer_network(searched, index):
    """golden.layer.conv2d in the derived config == the fused shift-and-round integers."""
    layers, formats = searched
    x, _ = cluttered_digits("test")
    cfg, q = integer_layer(load_config("small"), layers, formats, index, x[:2])
    got = conv2d(cfg, q.x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                 shift=q.shift, relu=q.relu)
    o = formats[index + 1].x
    v = F.conv2d(q.x.double(), q.weight.double(), q.bias.double(), stride=q.stride,
                 padding=q.padding)
    want = saturate(round_half_up(torch.relu(v) * math.ldexp(1.0, -q.shift)), o.lo, o.hi)
    assert torch.equal(got, want.to(torch.int64))


def _layer0_in_rtl(searched, sim):
    layers, formats = searched
    x, _ = cluttered_digits("test")
    cfg, q = integer_layer(load_config("small"), layers, formats, 0, x[:1])
    jobs = cnn_jobs(cfg, q, max_vectors=96)
    run = run_datapath(cfg, sim, jobs=jobs, seed=3, label="qhardware-l0")
    assert run.passed, run.message
    gold = conv2d(cfg, q.x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                  shift=q.shift, relu=q.relu)
    gold = gold.permute(0, 2, 3, 1).reshape(-1, gold.shape[1])[:96]
    rtl = assemble_outputs(cfg, jobs, run.outputs)
    assert torch.equal(rtl, gold)
    assert int(gold.max()) > 0
    return run


def test_searched_layer_in_rtl(searched, record_property):
    sim = selected_simulators()[0]
    run = _layer0_in_rtl(searched, sim)
    record_property("cycles_compared", run.compared)


@pytest.mark.slow
@pytest.mark.parametrize("sim", selected_simulators())
def test_searched_layer_in_rtl_both(searched, sim, record_property):
    run = _layer0_in_rtl(searched, sim)
    record_property("cycles_compared", run.compared)
