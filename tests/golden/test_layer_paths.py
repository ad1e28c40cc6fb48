"""The two paths of golden.layer agree: the exact integer path (ADC-identity configurations)
equals the bit-serial model it replaces, bit for bit, on every shipped lossless configuration."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from arch.config import AccelConfig, config_names, load_config
from golden.arith import finalize, finalize_float, float_finalize_exact, rounding_offset
from golden.layer import (adc_is_identity, bitserial_acc, conv2d, integer_acc, integer_plan,
                          matvec, program)

from ..strategies import configs
from .test_layer import naive_matvec

LOSSLESS = [n for n in config_names() if load_config(n).adc_mode == "lossless"]


def test_the_shipped_lossless_configs_take_the_integer_path():
    assert {"small", "medium", "isaac", "small_signed"} <= set(LOSSLESS)
    for name in config_names():
        cfg = load_config(name)
        assert adc_is_identity(cfg) == (cfg.adc_mode == "lossless"), name


def test_a_lossy_mode_as_wide_as_the_reads_is_the_identity():
    small = load_config("small")
    assert adc_is_identity(small.replace(adc_mode="clip"))
    assert adc_is_identity(small.replace(adc_mode="drop_lsb"))
    assert not adc_is_identity(small.replace(adc_mode="clip", adc_bits=small.read_bits - 1))


def operands(cfg, seed, B, K, N):
    """Random inputs, weights and biases with every range's extremes: whole rows and columns
    at the largest and smallest values (the largest sums), and both ends of the bias range."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (B, K), generator=gen)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (K, N), generator=gen)
    x[0], x[1] = cfg.input_max, cfg.input_min
    w[:, 0] = cfg.weight_max
    if N > 1:
        w[:, 1] = cfg.weight_min
    lo, hi = cfg.bias_range
    bias = torch.randint(lo, hi + 1, (N,), generator=gen)
    bias[0] = hi
    if N > 1:
        bias[1] = lo
    return x, w, bias


def bitserial_layer(cfg, x, w, bias, shift, relu):
    v = bitserial_acc(program(cfg, w), x) + bias
    return finalize(cfg, v, shift=shift, relu_enable=relu)


@pytest.mark.parametrize("name", LOSSLESS)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), tiles=st.integers(1, 4), groups=st.integers(1, 3),
       relu=st.booleans(), data=st.data())
def test_integer_path_equals_the_bit_serial_path(name, seed, tiles, groups, relu, data):
    cfg = load_config(name)
    K = data.draw(st.integers((tiles - 1) * cfg.rows + 1, tiles * cfg.rows), "K")
    N = data.draw(st.integers((groups - 1) * cfg.outputs + 1, groups * cfg.outputs), "N")
    shift = data.draw(st.integers(cfg.shift_min, cfg.shift_max), "shift")
    x, w, bias = operands(cfg, seed, 5, K, N)
    msg = f"config {name}, seed={seed}, K={K}, N={N}, shift={shift}"
    fast = integer_acc(cfg, x, w)
    assert torch.equal(fast, bitserial_acc(program(cfg, w), x)), msg
    assert torch.equal(fast, x @ w), msg
    got = matvec(cfg, x, w, bias, shift=shift, relu=relu)
    assert torch.equal(got, bitserial_layer(cfg, x, w, bias, shift, relu)), msg


@pytest.mark.parametrize("name", LOSSLESS)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), cin=st.integers(1, 5), cout=st.integers(1, 9),
       k=st.sampled_from([1, 3]), stride=st.integers(1, 2), padding=st.integers(0, 1),
       relu=st.booleans(), data=st.data())
def test_integer_conv_equals_the_bit_serial_conv(name, seed, cin, cout, k, stride, padding,
                                                 relu, data):
    cfg = load_config(name)
    shift = data.draw(st.integers(cfg.shift_min, cfg.shift_max), "shift")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (2, cin, 5, 6), generator=gen)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (cout, cin, k, k), generator=gen)
    x[0, :, :2] = cfg.input_max
    x[1, :, :2] = cfg.input_min
    w[0] = cfg.weight_max
    lo, hi = cfg.bias_range
    bias = torch.randint(lo, hi + 1, (cout,), generator=gen)
    bias[0] = hi
    got = conv2d(cfg, x, w, bias, stride=stride, padding=padding, shift=shift, relu=relu)
    patches = F.unfold(x.double(), k, padding=padding, stride=stride)
    ho, wo = got.shape[2:]
    patches = patches.transpose(1, 2).reshape(-1, cin * k * k).long()
    want = bitserial_layer(cfg, patches, w.reshape(cout, -1).t(), bias, shift, relu)
    want = want.view(2, ho, wo, cout).permute(0, 3, 1, 2)
    assert torch.equal(got, want), f"config {name}, seed={seed}, shift={shift}"


@settings(max_examples=40, deadline=None)
@given(cfg=configs(modes=("lossless",)), K=st.integers(1, 40), N=st.integers(1, 9),
       seed=st.integers(0, 2 ** 31 - 1))
def test_bit_serial_path_matches_the_naive_reading_in_lossless_mode(cfg, K, N, seed):
    """matvec takes the integer path here, so the bit-serial reference is held on its own."""
    x, w, bias = operands(cfg, seed, 3, K, N)
    bias = torch.zeros(N, dtype=torch.int64)
    got = bitserial_layer(cfg, x, w, bias, 0, False)
    assert got.tolist() == naive_matvec(cfg, x, w, bias, 0, False), f"seed={seed}"


def wide_config(**kw):
    """24-bit data: K * X * W passes 2**53 at K = 80 (5 row tiles): the integer path cuts limbs."""
    base = dict(name="wide", rows=16, cols=12, cell_bits=2, weight_bits=24, input_bits=24,
                adc_bits=5, adc_mode="lossless", adc_columns_per_cycle=4, output_bits=32,
                shift_min=-2, shift_max=48)
    return AccelConfig(**{**base, **kw})


@pytest.mark.parametrize("signed", [False, True])
def test_limb_products_are_exact(signed):
    cfg = wide_config(input_bits=25 if signed else 24, input_signed=signed)
    K = 5 * cfg.rows
    plan = integer_plan(cfg, K)
    assert plan.dtype == torch.float64 and (plan.x_limb_bits or plan.w_limb_bits)
    x, w, bias = operands(cfg, 11, 4, K, 2)
    want = [[sum(int(a) * int(b) for a, b in zip(xr, wc)) for wc in w.t().tolist()]
            for xr in x.tolist()]
    assert max(abs(v) for r in want for v in r) >= 2 ** 53      # beyond float64
    assert integer_acc(cfg, x, w).tolist() == want
    assert torch.equal(integer_acc(cfg, x, w), bitserial_acc(program(cfg, w), x))
    got = matvec(cfg, x, w, bias, shift=40, relu=False)
    assert torch.equal(got, bitserial_layer(cfg, x, w, bias, 40, False))


def test_integer_plan_picks_the_narrowest_exact_type():
    small, isaac = load_config("small"), load_config("isaac")
    assert integer_plan(small, 144).dtype == torch.float32          # 144*255*128 < 2**24
    assert integer_plan(small, 600).dtype == torch.float64
    assert integer_plan(isaac, 4608).dtype == torch.float64
    plan = integer_plan(wide_config(), 80)
    # every limb product of K rows stays below 2**52
    assert plan.x_limb_bits or plan.w_limb_bits
    assert 80 * 2 ** (plan.x_limb_bits or 24) * 2 ** (plan.w_limb_bits or 24) <= 2 ** 52


def test_no_float32_when_torch_may_round_its_products():
    small = load_config("small")
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")      # bfloat16 products allowed
        assert integer_plan(small, 144).dtype == torch.float64
        x, w, bias = operands(small, 3, 4, 144, 16)
        assert torch.equal(integer_acc(small, x, w), x @ w)
    finally:
        torch.set_float32_matmul_precision(before)
    assert integer_plan(small, 144).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_output_stage_equals_the_integer_one(dtype):
    """Every v around the rounding points and the saturation ends, every shift, both ReLUs."""
    cfg = load_config("small")
    v = torch.arange(-3000, 3001, dtype=torch.int64)
    for shift in range(cfg.shift_min, cfg.shift_max + 1):
        assert float_finalize_exact(cfg, 3000, shift, dtype)
        for relu in (False, True):
            u = (v + rounding_offset(shift)).to(dtype) * 2.0 ** -shift
            got = finalize_float(cfg, u, shift=shift, relu_enable=relu)
            want = finalize(cfg, v, shift=shift, relu_enable=relu)
            assert torch.equal(got, want), (shift, relu)
    assert not float_finalize_exact(cfg, 2 ** 24 - 1, 1, torch.float32)
    assert not float_finalize_exact(cfg.replace(output_bits=26), 10, 0, torch.float32)


def test_bit_serial_reduction_in_int64_matches_the_reference():
    """32-bit inputs, 8-bit DAC, many row tiles of a lossy ADC: the shift-add's partial sums
    pass 2**53, so the bit-serial path reduces in int64."""
    from . import reference as ref

    cfg = AccelConfig(name="deep", rows=4, cols=2, cell_bits=8, weight_bits=16, input_bits=32,
                      dac_bits=8, adc_bits=16, adc_mode="clip", adc_columns_per_cycle=2,
                      output_bits=32, shift_min=0, shift_max=40, flip=True)
    K = 160
    assert cfg.adc_code_max < cfg.max_read and K // cfg.rows * 2 ** 32 * cfg.adc_code_max > 2 ** 53
    x, w, bias = operands(cfg, 5, 3, K, 1)
    got = matvec(cfg, x, w, bias, shift=20)
    for b, xv in enumerate(x.tolist()):
        _, want = ref.layer_outputs(cfg, xv, w.tolist(), bias.tolist(), 20, False)
        assert got[b].tolist() == want, f"vector {b}"
