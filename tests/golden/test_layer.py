"""The vectorised layer model: exact in lossless mode, equal to the naive reading otherwise."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from arch.config import AccelConfig, load_config
from golden.arith import RangeError
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


# -- many row tiles, wide data, large left shifts (issue 17) ----------------------------------

@st.composite
def tiled_configs(draw):
    """1- to 8-row crossbars (often exactly 1 or 8), 8- to 16-bit data, every ADC mode, and a
    shift range reaching the most negative shift_min the loader accepts."""
    rows = draw(st.sampled_from([1, 1, 2, 3, 8, 8]))
    cell_bits = draw(st.sampled_from([2, 4]))
    weight_bits = draw(st.sampled_from([8, 16]))
    signed = draw(st.booleans())
    input_bits = draw(st.sampled_from([8, 16])) + (1 if signed else 0)
    magnitude = input_bits - (1 if signed else 0)
    dac_bits = draw(st.sampled_from([d for d in (1, 2, 4) if magnitude % d == 0]))
    outputs = draw(st.integers(1, 2))
    cols = outputs * weight_bits // cell_bits
    mode = draw(st.sampled_from(["lossless", "clip", "drop_lsb"]))
    kw = dict(name="tiled", rows=rows, cols=cols, cell_bits=cell_bits, weight_bits=weight_bits,
              input_bits=input_bits, input_signed=signed, dac_bits=dac_bits,
              flip=draw(st.booleans()),
              weight_encoding=draw(st.sampled_from(["biased", "unsigned"])),
              adc_columns_per_cycle=draw(st.sampled_from([d for d in range(1, cols + 1)
                                                          if cols % d == 0])),
              output_bits=draw(st.integers(2, 16)), adc_mode="clip", adc_bits=1,
              shift_min=0, shift_max=0)
    probe = AccelConfig(**kw)
    adc_bits = probe.read_bits if mode == "lossless" else draw(st.integers(1, probe.read_bits))
    shift_min = max(-(probe.acc_bits - 1), -(62 - probe.acc_bits))
    return probe.replace(adc_mode=mode, adc_bits=adc_bits, shift_min=shift_min,
                         shift_max=min(probe.acc_bits - 1, 24))


def extreme_operands(cfg, gen, K, N):
    """Inputs: a random vector, all largest, all smallest; weights: columns all largest, all
    smallest, then random. The largest sums of the layer are among their products."""
    x = torch.stack([rand_ints(gen, cfg.input_min, cfg.input_max, (K,)),
                     torch.full((K,), cfg.input_max), torch.full((K,), cfg.input_min)])
    w = rand_ints(gen, cfg.weight_min, cfg.weight_max, (K, N))
    w[:, 0] = cfg.weight_max
    if N > 1:
        w[:, 1] = cfg.weight_min
    return x, w


@settings(max_examples=40)
@given(cfg=tiled_configs(), tiles=st.integers(1, 320), N=st.integers(1, 3),
       seed=st.integers(0, 2 ** 31), relu=st.booleans(), data=st.data())
def test_many_row_tiles_and_large_left_shifts_match_reference(cfg, tiles, N, seed, relu, data):
    K = data.draw(st.integers(max(1, (tiles - 1) * cfg.rows + 1), tiles * cfg.rows), "K")
    shift = data.draw(st.one_of(st.integers(cfg.shift_min, cfg.shift_min + 3),
                                st.integers(cfg.shift_min, cfg.shift_max)), "shift")
    gen = torch.Generator().manual_seed(seed)
    x, w = extreme_operands(cfg, gen, K, N)
    lo, hi = -2 ** (cfg.bias_bits - 1), 2 ** (cfg.bias_bits - 1) - 1
    bias = torch.tensor([hi, lo, 0][:N])
    got = matvec(cfg, x, w, bias, shift=shift, relu=relu)
    kt = -(-K // cfg.rows)
    for b, xv in enumerate(x.tolist()):
        v, want = ref.layer_outputs(cfg, xv, w.tolist(), bias.tolist(), shift, relu)
        assert got[b].tolist() == want, f"vector {b}, seed={seed}"
        assert all(abs(vn) < 2 ** (cfg.sum_bits(kt) - 1) for vn in v)   # the v width
        if cfg.adc_mode == "lossless":
            assert v == [sum(xv[r] * int(w[r, n]) for r in range(K)) + int(bias[n])
                         for n in range(N)]


@pytest.mark.parametrize("rows", [1, 8])
def test_large_left_shift_of_many_tiles_saturates_to_the_right_side(rows):
    """The issue's case: 16-bit data, K = 320, shift -24; int64 v << 24 used to wrap."""
    cfg = AccelConfig(name="wide", rows=rows, cols=16, cell_bits=2, weight_bits=16,
                      input_bits=16, adc_bits=12, adc_mode="clip", adc_columns_per_cycle=4,
                      output_bits=8, shift_min=-24, shift_max=8)
    x = torch.full((1, 320), 65535)
    w = torch.stack([torch.full((320,), 32767), torch.full((320,), -32768),
                     torch.zeros(320, dtype=torch.int64)], dim=1)
    w[0, 2] = 1                                      # v = 65535: still saturates when shifted
    got = matvec(cfg, x, w, shift=-24).tolist()
    v, want = ref.layer_outputs(cfg, x[0].tolist(), w.tolist(), [0, 0, 0], -24, False)
    assert v[0] << 24 >= 2 ** 63                    # beyond int64: the old wrap
    assert got == [want] == [[127, -128, 127]]
    assert matvec(cfg, x, w, shift=-24, relu=True).tolist() == [[127, 0, 127]]


def test_row_tiles_are_bounded_by_the_sum_width():
    """Section 6: a layer's sum v of kt row tiles is acc_bits + bitlength(kt) bits and must fit
    64; at the bound the int64 sums (which wrap inside the reduction) are still exact."""
    cfg = AccelConfig(name="edge", rows=1, cols=13, cell_bits=2, weight_bits=26, input_bits=32,
                      adc_bits=2, adc_columns_per_cycle=13, output_bits=32, shift_min=-1,
                      shift_max=60)
    assert cfg.acc_bits == 61 and cfg.max_row_tiles == 7
    x = torch.full((1, 7), cfg.input_max)
    w = torch.full((7, 1), cfg.weight_max)
    v, want = ref.layer_outputs(cfg, x[0].tolist(), w.tolist(), [0], 60, False)
    assert v[0] == 7 * cfg.input_max * cfg.weight_max and v[0] > 2 ** 59   # no float64 path
    assert matvec_acc(program(cfg, w), x).tolist() == [v]
    assert matvec(cfg, x, w, shift=60).tolist() == [want]
    with pytest.raises(ValueError, match=r"^a layer of K = 8 inputs spans 8 row tiles of 1 rows; "
                                         r"its sums need 65 bits, more than 64: at most 7 row "
                                         r"tiles \(K <= 7\) with configuration 'edge'$"):
        program(cfg, torch.zeros(8, 1, dtype=torch.int64))


def test_out_of_range_operands_are_refused():
    """The document: golden refuses weights, inputs and biases outside their ranges."""
    cfg = load_config("small")
    x, w = torch.zeros(1, 3, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64)
    with pytest.raises(RangeError, match=r"^inputs must lie in \[0, 255\], "
                                         r"found values in \[-1, 0\]$"):
        matvec(cfg, x - torch.tensor([[1, 0, 0]]), w)
    with pytest.raises(RangeError, match=r"^weights must lie in \[-128, 127\], "
                                         r"found values in \[0, 128\]$"):
        matvec(cfg, x, w + torch.tensor([[128, 0]] + [[0, 0]] * 2))
    lo, hi = -2 ** (cfg.bias_bits - 1), 2 ** (cfg.bias_bits - 1) - 1
    with pytest.raises(RangeError, match=rf"^bias must lie in \[{lo}, {hi}\], "
                                         rf"found values in \[0, {hi + 1}\]$"):
        matvec(cfg, x, w, torch.tensor([0, hi + 1]))
    with pytest.raises(RangeError, match=r"^inputs must lie in \[0, 255\]"):
        conv2d(cfg, torch.full((1, 1, 3, 3), 256), torch.zeros(1, 1, 3, 3, dtype=torch.int64))
    assert issubclass(RangeError, ValueError)
