"""The vectorised layer model: exact in lossless mode, equal to the naive reading otherwise."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from arch.config import AccelConfig, load_config
from golden.layer import conv2d, linear, matvec, matvec_acc, program

from ..strategies import configs
from . import reference as ref


def rand_ints(gen, lo, hi, shape):
    """Uniform integers in [lo, hi], with the extremes forced into the first elements."""
    t = torch.randint(lo, hi + 1, shape, generator=gen)
    flat = t.view(-1)
    flat[:2] = torch.tensor([lo, hi])[: flat.numel()]
    return t


def naive_matvec(cfg, x, w, bias, shift, relu):
    """Tile by tile with the reference model (section 6), outputs summed exactly."""
    K, N = w.shape
    R, O = cfg.rows, cfg.outputs
    kt, g = -(-K // R), -(-N // O)
    out = []
    for xv in x.tolist():
        total = [0] * (g * O)
        for k, gi in itertools.product(range(kt), range(g)):
            w_rows = [[int(w[r, o]) if r < K and o < N else 0 for o in range(gi * O, gi * O + O)]
                      for r in range(k * R, k * R + R)]
            xs = [xv[r] if r < K else 0 for r in range(k * R, k * R + R)]
            states, _ = ref.simulate_vector(cfg, w_rows, xs, [0] * O, 0, False)
            wb = 2 ** (cfg.weight_bits - 1) if cfg.weight_encoding == "biased" else 0
            for o in range(O):
                total[gi * O + o] += states[-1]["acc"][o] - wb * states[-1]["xsum"]
        out.append([ref.output_stage(cfg, total[n] + int(bias[n]), shift, relu)
                    for n in range(N)])
    return out


@given(cfg=configs(modes=("lossless",)), K=st.integers(1, 40), N=st.integers(1, 9),
       seed=st.integers(0, 2 ** 31))
def test_lossless_matvec_is_exact_matmul(cfg, K, N, seed):
    gen = torch.Generator().manual_seed(seed)
    x = rand_ints(gen, cfg.input_min, cfg.input_max, (5, K))
    w = rand_ints(gen, cfg.weight_min, cfg.weight_max, (K, N))
    assert torch.equal(matvec_acc(program(cfg, w), x), x @ w), f"seed={seed}"


@given(cfg=configs(), K=st.integers(1, 20), N=st.integers(1, 6), seed=st.integers(0, 2 ** 31),
       relu=st.booleans(), shift=st.integers(-3, 8))
def test_every_mode_matches_naive_reading(cfg, K, N, seed, relu, shift):
    shift = max(cfg.shift_min, min(shift, cfg.shift_max))
    gen = torch.Generator().manual_seed(seed)
    x = rand_ints(gen, cfg.input_min, cfg.input_max, (3, K))
    w = rand_ints(gen, cfg.weight_min, cfg.weight_max, (K, N))
    bias = torch.randint(-50, 51, (N,), generator=gen).clamp(-(2 ** (cfg.bias_bits - 1)),
                                                              2 ** (cfg.bias_bits - 1) - 1)
    got = matvec(cfg, x, w, bias, shift=shift, relu=relu)
    assert got.tolist() == naive_matvec(cfg, x, w, bias, shift, relu), f"seed={seed}"


def test_exhaustive_tiny_crossbar():
    """Every weight pair and input pair of a 2-row, 2-bit, 1-output crossbar, every mode."""
    for mode, adc_bits in (("lossless", 3), ("clip", 2), ("drop_lsb", 2)):
        cfg = AccelConfig(name="tiny", rows=2, cols=2, cell_bits=1, weight_bits=2,
                          input_bits=2, dac_bits=1, adc_bits=adc_bits, adc_mode=mode,
                          adc_columns_per_cycle=1, output_bits=8, shift_min=0, shift_max=2,
                          flip=False)
        ws = list(itertools.product(range(cfg.weight_min, cfg.weight_max + 1), repeat=2))
        xs = torch.tensor(list(itertools.product(range(4), repeat=2)))
        for w0, w1 in ws:
            w = torch.tensor([[w0], [w1]])
            got = matvec(cfg, xs, w)
            assert got.tolist() == naive_matvec(cfg, xs, w, torch.zeros(1), 0, False)
            if mode == "lossless":
                assert torch.equal(got, xs @ w)


@given(cfg=configs(modes=("lossless",)), cin=st.integers(1, 3), cout=st.integers(1, 5),
       k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       seed=st.integers(0, 2 ** 31))
def test_lossless_conv2d_is_exact(cfg, cin, cout, k, stride, padding, seed):
    gen = torch.Generator().manual_seed(seed)
    x = rand_ints(gen, cfg.input_min, cfg.input_max, (2, cin, 6, 7))
    w = rand_ints(gen, cfg.weight_min, cfg.weight_max, (cout, cin, k, k))
    big = AccelConfig(**{**cfg.__dict__, "output_bits": 32, "shift_min": 0})
    got = conv2d(big, x, w, stride=stride, padding=padding)
    # float64 is exact here: |sum| < 2^53
    want = F.conv2d(x.double(), w.double(), stride=stride, padding=padding).to(torch.int64)
    assert torch.equal(got, want), f"seed={seed}"


def test_conv2d_is_linear_over_im2col_rows():
    cfg = load_config("small_clip")
    gen = torch.Generator().manual_seed(7)
    x = rand_ints(gen, 0, 255, (2, 2, 5, 5))
    w = rand_ints(gen, -128, 127, (3, 2, 3, 3))
    got = conv2d(cfg, x, w, padding=1, shift=4)
    patches = F.unfold(x.double(), 3, padding=1).transpose(1, 2).reshape(-1, 18).long()
    want = matvec(cfg, patches, w.reshape(3, -1).t(), shift=4).view(2, 5, 5, 3).permute(0, 3, 1, 2)
    assert torch.equal(got, want)


def test_linear_uses_torch_convention():
    cfg = load_config("small")
    gen = torch.Generator().manual_seed(3)
    x = rand_ints(gen, 0, 255, (4, 30))
    w = rand_ints(gen, -128, 127, (5, 30))
    b = torch.tensor([100, -100, 0, 5, 7])
    got = linear(cfg, x, w, b, shift=8, relu=True)
    v = x @ w.t() + b
    want = ((v + 128) >> 8).clamp(0, 127)
    assert torch.equal(got, want)


def test_shape_errors_are_clear():
    cfg = load_config("small")
    with pytest.raises(ValueError, match=r"inputs must be \[batch, 3\], not \[2, 4\]"):
        matvec(cfg, torch.zeros(2, 4, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="weights must lie in"):
        matvec(cfg, torch.zeros(2, 3, dtype=torch.int64), torch.full((3, 2), 128))
