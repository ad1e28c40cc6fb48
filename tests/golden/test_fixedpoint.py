"""Post-training quantization of the demo CNN: rounding helpers worked out by hand, formats
within every configuration's ranges, and the golden chain agreeing with exact references."""

import doctest
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from arch.config import config_names, load_config
from golden import fixedpoint as fxp
from golden.cnn import CONV_SPECS, load_democnn
from golden.data import cluttered_digits
from golden.fixedpoint import (QuantError, div_round_half_up, flexpoint_shift, frac_bits_for,
                               from_fixed, global_avg_pool, requantize, round_half_even,
                               saturate, to_fixed)
from golden.layer import conv2d

from ..strategies import configs


@pytest.fixture(scope="module")
def model():
    return load_democnn()


@pytest.fixture(scope="module")
def test_images():
    x, y = cluttered_digits("test")
    return x, y


def test_doctests():
    result = doctest.testmod(fxp, raise_on_error=False)
    assert result.attempted >= 8 and result.failed == 0


# -- helpers, expected values by hand ------------------------------------------------------

def test_round_half_even():
    t = torch.tensor([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 2.4999, 2.5001])
    assert round_half_even(t).tolist() == [0, 2, 2, 4, 0, -2, -2, 2, 3]


def test_saturate():
    assert saturate(torch.tensor([-300, -128, 0, 127, 300]), -128, 127).tolist() == \
        [-128, -128, 0, 127, 127]
    assert saturate(torch.tensor([-1, 256]), 0, 255).tolist() == [0, 255]


def test_to_fixed_rounds_half_even_and_saturates():
    # 3 fraction bits (steps of 1/8), range [-8, 7]
    t = torch.tensor([0.3, -0.3, 0.1875, 0.0625, -0.1875, 0.875, 1.0, -1.0, -2.0])
    #       x * 8 =   2.4, -2.4, 1.5,    0.5,    -1.5,    7,     8,   -8,   -16
    assert to_fixed(t, 3, -8, 7).tolist() == [2, -2, 2, 0, -2, 7, 7, -8, -8]
    assert to_fixed(t, 3, -8, 7).dtype == torch.int64


def test_to_fixed_negative_fraction_bits():
    # -2 fraction bits: steps of 4; 10 / 4 = 2.5 -> 2 (ties to even), 14 / 4 = 3.5 -> 4
    assert to_fixed(torch.tensor([10.0, 14.0, 100.0, 1.9]), -2, 0, 20).tolist() == \
        [2, 4, 20, 0]
    assert from_fixed(torch.tensor([2, 4]), -2).tolist() == [8.0, 16.0]


def test_from_fixed():
    assert from_fixed(torch.tensor([3, -5, 128]), 3).tolist() == [0.375, -0.625, 16.0]
    assert from_fixed(torch.tensor([3]), 0).dtype == torch.float64


@pytest.mark.parametrize("vmin, vmax, lo, hi, expected", [
    (0.0, 1.0, 0, 255, 7),          # 1 * 2**7 = 128 <= 255; 2**8 = 256 is not
    (0.0, 1.0, -128, 127, 6),       # 2**7 = 128 > 127
    (-0.5, 0.25, -128, 127, 8),     # -0.5 * 256 = -128 fits exactly
    (-0.51, 0.25, -128, 127, 7),    # -0.51 * 256 = -130.6 does not
    (0.0, 0.999, -128, 127, 6),     # 0.999 * 128 = 127.87 rounds to 128
    (0.0, 127 / 128, -128, 127, 7),     # exactly 127
    (0.0, 127.5 / 128, -128, 127, 6),   # 127.5 rounds half to even: 128
    (0.0, 126.5 / 128, -128, 127, 7),   # 126.5 rounds half to even: 126
    (-1.0, 0.1, 0, 255, 11),        # negatives ignored (they saturate at 0); 0.1 * 2048 = 205
    (0.0, 448.8, -128, 127, -2),    # 448.8 / 4 = 112.2 fits; / 2 = 224.4 does not
    (0.0, 0.0, -128, 127, 62),      # nothing needs room
    (0.0, 1.0, 0, 65535, 15),       # 16-bit unsigned
    (-3.0, 2.0, -256, 255, 6),      # -3 * 64 = -192; -3 * 128 = -384 does not fit
])
def test_frac_bits_for(vmin, vmax, lo, hi, expected):
    assert frac_bits_for(vmin, vmax, lo, hi) == expected


def test_frac_bits_for_refuses_bad_intervals():
    with pytest.raises(ValueError, match="need finite vmin <= vmax"):
        frac_bits_for(1.0, 0.0, -128, 127)
    with pytest.raises(ValueError, match="need finite vmin <= vmax"):
        frac_bits_for(0.0, math.inf, -128, 127)


@given(vmin=st.floats(-1e6, 0.0), vmax=st.floats(0.0, 1e6), bits=st.integers(2, 20),
       signed=st.booleans())
def test_frac_bits_for_is_the_largest_that_fits(vmin, vmax, bits, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    f = frac_bits_for(vmin, vmax, lo, hi)
    vals = torch.tensor([vmin if signed else 0.0, vmax], dtype=torch.float64)
    scaled = round_half_even(vals * 2.0 ** f)
    assert bool(((scaled >= lo) & (scaled <= hi)).all())
    if f < 62:
        over = round_half_even(vals * 2.0 ** (f + 1))
        assert not bool(((over >= lo) & (over <= hi)).all())


def test_div_round_half_up():
    # 5/4 = 1.25, 6/4 = 1.5, 7/4 = 1.75, and the same negated: ties go toward +infinity
    s = torch.tensor([5, 6, 7, -5, -6, -7, 0, 64 * 127 + 32])
    assert div_round_half_up(s, 4)[:7].tolist() == [1, 2, 2, -1, -1, -2, 0]
    assert div_round_half_up(s[7:], 64).tolist() == [128]     # 127.5 -> 128
    with pytest.raises(ValueError, match="n must be a positive integer, not 0"):
        div_round_half_up(s, 0)


def test_global_avg_pool():
    y = torch.tensor([[[[1, 2], [3, 5]], [[0, 0], [0, 2]]]])   # sums 11 and 2, 4 pixels
    assert global_avg_pool(y, 0, 0).tolist() == [[3, 1]]       # 2.75 -> 3, 0.5 -> 1
    assert global_avg_pool(y, 0, 2).tolist() == [[11, 2]]      # x4 exactly
    assert global_avg_pool(y, 2, 0).tolist() == [[1, 0]]       # 11/16 -> 1, 2/16 -> 0


def test_requantize():
    v = torch.tensor([5, 6, 7, -5, -6, -7, 1000, -1000])
    assert requantize(v, 2, False, 8).tolist() == [1, 2, 2, -1, -1, -2, 127, -128]
    assert requantize(v, 2, True, 8).tolist() == [1, 2, 2, 0, 0, 0, 127, 0]
    assert requantize(torch.tensor([3, -3, 40]), -2, False, 8).tolist() == [12, -12, 127]
    assert requantize(torch.tensor([3, -3]), 0, False, 4).tolist() == [3, -3]


def test_flexpoint_shift_checks_the_range():
    cfg = load_config("small")                   # shift range -4..20
    assert flexpoint_shift(cfg, 6, 7, 4) == 9
    assert flexpoint_shift(cfg, 0, 0, 4) == -4
    with pytest.raises(QuantError, match=r"= 21 is outside output.shift_min..output.shift_max "
                                         r"= -4..20 of configuration 'small'"):
        flexpoint_shift(cfg, 14, 7, 0)
    with pytest.raises(QuantError, match="= -5 is outside"):
        flexpoint_shift(cfg, 0, 0, 5)


# -- the quantized demo CNN ----------------------------------------------------------------

def check_net(cfg, net):
    assert len(net.layers) == len(CONV_SPECS) + 1
    blo, bhi = fxp.bias_range(cfg)
    for q in net.layers:
        assert q.weight.dtype == torch.int64 and q.bias.dtype == torch.int64
        assert cfg.weight_min <= int(q.weight.min()) and int(q.weight.max()) <= cfg.weight_max
        assert blo <= int(q.bias.min()) and int(q.bias.max()) <= bhi
        assert cfg.shift_min <= q.shift <= cfg.shift_max
        assert q.shift == q.w_frac + q.x_frac - q.out_frac
    convs = net.conv_layers
    assert convs[0].x_frac == net.input_frac
    for a, b in zip(convs, convs[1:]):
        assert b.x_frac == a.out_frac, "layer l+1 reads layer l's outputs"


# (the *_pipelined configs differ from their base only in the schedule, not the arithmetic)
@pytest.mark.parametrize("name", [n for n in config_names() if not n.endswith("_pipelined")])
def test_quantize_shipped_configs(name, model, test_images):
    cfg = load_config(name)
    net = fxp.quantize_democnn(cfg, model)
    check_net(cfg, net)
    if cfg.weight_encoding == "biased":
        assert all(q.weights_clipped == 0 for q in net.layers)
        # the largest weight uses the top half of the range (the fraction bits are maximal)
        for q in net.layers:
            assert int(q.weight.abs().max()) > cfg.weight_max // 2
    else:
        assert all(int(q.weight.min()) == 0 for q in net.layers)
        assert sum(q.weights_clipped for q in net.layers) > 0
    # every layer's inputs, from the golden chain, lie in the input range
    x, _ = test_images
    q = fxp.quant_layer(net, len(net.layers) - 1, x[:3])
    assert q.x.shape == (3, CONV_SPECS[-1].geometry.out_channels)
    for index in range(len(CONV_SPECS)):
        qi = fxp.quant_layer(net, index, x[:2])
        assert qi.x.dtype == torch.int64
        assert cfg.input_min <= int(qi.x.min()) and int(qi.x.max()) <= cfg.input_max
        assert qi.x.shape[1] == CONV_SPECS[index].geometry.in_channels


def test_small_formats_worked_by_hand(model):
    """The image in [0, 1] at 8 bits unsigned is Q.7; the weights of the first conv lie in
    (-2, 2) with a largest magnitude above 1, so 8-bit signed weights are Q.6."""
    cfg = load_config("small")
    net = fxp.quantize_democnn(cfg, model)
    w0 = model.convs[0].weight.detach().abs().max().item()
    assert 1.0 < w0 < 127.5 / 64
    assert net.input_frac == 7
    q0 = net.layers[0]
    assert q0.w_frac == 6 and q0.x_frac == 7
    assert torch.equal(q0.weight, torch.round(model.convs[0].weight.detach().double() * 64)
                       .long())
    assert torch.equal(q0.bias, torch.round(model.convs[0].bias.detach().double() * 2 ** 13)
                       .long())


@settings(max_examples=20)
@given(cfg=configs())
def test_quantize_any_config_stays_in_range(cfg, model):
    check_net(cfg, fxp.quantize_democnn(cfg, model, fxp.calibration_images(32)))


def test_shift_out_of_range_is_brought_in(model):
    """A narrow shift range costs weight or output fraction bits, never range."""
    cfg = load_config("small").replace(shift_min=8, shift_max=8)
    net = fxp.quantize_democnn(cfg, model, fxp.calibration_images(32))
    check_net(cfg, net)
    assert all(q.shift == 8 for q in net.layers)


@pytest.mark.parametrize("name", ["small", "small_signed"])
def test_golden_layer_matches_references(name, model, test_images):
    """Lossless configs: golden == exact int64 conv2d + requantize, and within half an output
    LSB of the float conv of the dequantized tensors wherever it does not saturate."""
    cfg = load_config(name)
    net = fxp.quantize_democnn(cfg, model)
    x, _ = test_images
    for index in (0, 2):
        q = fxp.quant_layer(net, index, x[:2])
        y = conv2d(cfg, q.x, q.weight, q.bias, stride=q.stride, padding=q.padding,
                   shift=q.shift, relu=q.relu)
        assert torch.equal(y, fxp.exact_reference(cfg, q))
        f = fxp.float_reference(q)
        unsat = (f > cfg.output_min - 0.5) & (f < cfg.output_max + 0.5)
        assert bool(unsat.any())
        assert float((y.double() - f).abs()[unsat].max()) <= 0.5
        assert torch.equal(y[~unsat], saturate(torch.round(f[~unsat]).long(),
                                                cfg.output_min, cfg.output_max))


def test_linear_layer_reference(model, test_images):
    cfg = load_config("small")
    net = fxp.quantize_democnn(cfg, model)
    q = fxp.quant_layer(net, len(net.layers) - 1, test_images[0][:4])
    assert q.kind == "linear" and q.shape == "linear 32->10"
    y = fxp.run_layer(net, q, q.x)
    assert torch.equal(y, fxp.exact_reference(cfg, q))


def test_quantized_accuracy_close_to_float(model, test_images):
    cfg = load_config("small")
    net = fxp.quantize_democnn(cfg, model)
    x, y = test_images
    n = 40
    with torch.no_grad():
        float_pred = model(x[:n]).argmax(1)
    logits = fxp.quant_forward(net, x[:n], batch=20)
    assert logits.shape == (n, 10) and logits.dtype == torch.int64
    agree = float((logits.argmax(1) == float_pred).float().mean())
    assert agree >= 0.9, agree
    assert fxp.quant_accuracy(net, x[:n], y[:n]) >= 0.85


def test_quant_layer_index_checked(model):
    net = fxp.quantize_democnn(load_config("small"), model, fxp.calibration_images(8))
    with pytest.raises(IndexError, match=r"layer index must be in 0..4, not 5"):
        fxp.quant_layer(net, 5, torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="no input activations"):
        fxp.exact_reference(net.cfg, net.layers[0])


def test_quant_layer_shape_strings(model):
    net = fxp.quantize_democnn(load_config("small"), model, fxp.calibration_images(8))
    assert [q.shape for q in net.layers] == [
        "conv 1->8 3x3 s1 p1", "conv 8->16 3x3 s2 p1", "conv 16->16 3x3 s1 p1",
        "conv 16->32 3x3 s2 p1", "linear 32->10"]
