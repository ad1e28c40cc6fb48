"""golden.precision: plans, bands, the reduction of an activation, per-position p_max and chunk
counts, the plan conv layer -- against brute-force readings of docs/arithmetic.md
("Per-region precision"), cropped_conv2d (crops are plans) and the naive reference datapath
(chunk skipping is exact in every ADC mode)."""

import doctest
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import golden.precision as prec_mod
from arch.config import load_config
from golden.arith import finalize, input_chunks
from golden.crop import CROP_VECTORS, cropped_conv2d, kept_window, scale_window
from golden.layer import matvec, matvec_acc, program
from golden.precision import (NPLANS, band_window, bits_map, bits_maps, check_plan,
                              crop_as_plan, crop_plan_index, is_crop_plan, plan_conv2d,
                              plan_index, plan_levels, plan_vectors, position_bits,
                              position_chunks, reduce_activations, skip_matvec, skipped_chunks,
                              zero_window)
from tests.golden import reference as ref
from tests.strategies import configs

ADC_CONFIGS = ("small", "small_drop", "small_clip", "small_signed")


def test_doctests():
    assert doctest.testmod(prec_mod, raise_on_error=False).failed == 0


# -- plans ---------------------------------------------------------------------------------

def test_plan_set_encoding():
    plans = plan_vectors(8, 3)
    assert len(plans) == NPLANS == 81 and len(set(plans)) == 81
    assert plans[0] == (8, 8, 8, 8) and plans[80] == (0, 0, 0, 0)
    for i, p in enumerate(plans):
        assert plan_index(p, 8, 3) == i
        digits = [(i // 3 ** (3 - s)) % 3 for s in range(4)]
        assert p == tuple((8, 3, 0)[d] for d in digits)
    crops = [i for i, p in enumerate(plans) if is_crop_plan(p, 8)]
    assert crops == sorted(crop_plan_index(c) for c in range(16))
    for c, vec in enumerate(CROP_VECTORS):
        assert plans[crop_plan_index(c)] == crop_as_plan(vec, 8) == crop_as_plan(c, 8)
        assert crop_as_plan(c, 8) == tuple(8 * (1 - b) for b in vec)


@pytest.mark.parametrize("low", [0, 8, 9, -1, 2.5, True])
def test_bad_low(low):
    with pytest.raises(ValueError, match=r"^low precision must be an integer in \[1, 7\] "
                                         r"\(input bits 8\), not "):
        plan_levels(8, low)


@pytest.mark.parametrize("bad", [(8, 8, 8), (9, 8, 8, 8), (-1, 0, 0, 0), "abcd", 3,
                                 (True, 8, 8, 8)])
def test_bad_plan(bad):
    with pytest.raises(ValueError, match=r"^plan must be four bit widths \(top, bottom, left, "
                                         r"right\) in \[0, 8\], not "):
        check_plan(bad, 8)
    with pytest.raises(ValueError):
        bits_map(bad, (1, 3, 1, 3), 4, 4, 8)


def test_plan_index_outside_levels():
    with pytest.raises(ValueError, match=r"^plan \(8, 8, 8, 5\) has a side outside the levels"):
        plan_index((8, 8, 8, 5), 8, 4)


# -- bands and maps ------------------------------------------------------------------------

plans = st.tuples(*[st.integers(0, 8)] * 4)


@st.composite
def maps(draw):
    H, W = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    f = draw(st.sampled_from([0.0, 0.125, 0.25, 0.3, 0.49]))
    return H, W, band_window(f, H, W)


@given(plans, maps())
def test_bits_map_brute_force(plan, hw):
    H, W, (r0, r1, c0, c1) = hw
    bt, bb, bl, br = plan
    m = bits_map(plan, (r0, r1, c0, c1), H, W, 8)
    for r in range(H):
        for c in range(W):
            row = bt if r < r0 else bb if r >= r1 else 8
            col = bl if c < c0 else br if c >= c1 else 8
            assert int(m[r, c]) == min(row, col)
    z0, z1, zc0, zc1 = zero_window(plan, (r0, r1, c0, c1), H, W)
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[z0:z1, zc0:zc1] = True
    assert torch.equal(m > 0, inside)
    assert torch.equal(bits_maps([plan, (8, 8, 8, 8)], None, H, W, 8), torch.full((2, H, W), 8))


def test_band_window_is_the_all_sides_crop():
    for H, W in [(32, 32), (5, 9), (1, 1), (2, 3)]:
        assert band_window(0.25, H, W) == kept_window(15, 0.25, H, W)


# -- the reduction ---------------------------------------------------------------------------

def _reduce_ref(x: int, p: int, bx: int, signed: bool) -> int:
    """The contract's rule in Python integers."""
    if p == bx:
        return x
    if p == 0:
        return 0
    k = bx - p
    q = (x + 2 ** (k - 1)) // 2 ** k                  # floor: round to nearest, ties up
    lo, hi = (-2 ** (p - 1), 2 ** (p - 1) - 1) if signed else (0, 2 ** p - 1)
    return min(max(q, lo), hi) * 2 ** k


@pytest.mark.parametrize("name", ["small", "small_signed"])
def test_reduce_exhaustive(name):
    cfg = load_config(name)
    bx = cfg.input_bits
    xs = torch.arange(cfg.input_min, cfg.input_max + 1)
    for p in range(bx + 1):
        got = reduce_activations(cfg, xs, p).tolist()
        assert got == [_reduce_ref(x, p, bx, cfg.input_signed) for x in xs.tolist()], p
        # the low k bits are 0 and the value is in range
        k = bx - p
        assert all(v % 2 ** k == 0 for v in got) or p == 0
        assert min(got) >= cfg.input_min and max(got) <= cfg.input_max


@settings(max_examples=40)
@given(configs(), st.data())
def test_reduced_chunks_are_zero(cfg, data):
    """The low floor((Bx - p)/d) chunks of a reduced value are 0 (they may be skipped), and
    the reduction is idempotent."""
    bx, T = cfg.input_bits, cfg.input_cycles
    x = torch.tensor(data.draw(st.lists(st.integers(cfg.input_min, cfg.input_max),
                                        min_size=1, max_size=20)))
    p = torch.tensor(data.draw(st.lists(st.integers(0, bx), min_size=len(x),
                                        max_size=len(x))))
    r = reduce_activations(cfg, x, p)
    assert torch.equal(reduce_activations(cfg, r, p), r)
    lv = input_chunks(cfg, r.view(-1, 1))[..., 0]                      # [n, T]
    skip = skipped_chunks(cfg, p)
    assert torch.equal(position_chunks(cfg, p), torch.where(p > 0, T - skip, 0))
    for i in range(len(x)):
        assert (lv[i, :int(skip[i])] == 0).all()
    assert torch.equal(r[p == 0], torch.zeros_like(r[p == 0]))


def test_reduce_refuses():
    cfg = load_config("small")
    with pytest.raises(ValueError, match=r"^precisions must lie in \[0, 8\], found values in "
                                         r"\[0, 9\]$"):
        reduce_activations(cfg, torch.tensor([1, 2]), torch.tensor([0, 9]))
    with pytest.raises(ValueError, match=r"^inputs must lie in \[0, 255\]"):
        reduce_activations(cfg, torch.tensor([256]), 4)


# -- p_max and T_pos -----------------------------------------------------------------------

@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(1, 3),
       st.integers(0, 3), st.integers(1, 2), st.integers(0, 2 ** 31))
def test_position_bits_brute_force(H, W, k, s, p, d, seed):
    if H + 2 * p < d * (k - 1) + 1 or W + 2 * p < d * (k - 1) + 1:
        return
    gen = torch.Generator().manual_seed(seed)
    b = torch.randint(0, 9, (H, W), generator=gen)
    got = position_bits(b, k, s, p, d)
    ho = (H + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (W + 2 * p - d * (k - 1) - 1) // s + 1
    assert got.shape == (ho, wo)
    for oy in range(ho):
        for ox in range(wo):
            taps = [int(b[r, c]) for i in range(k) for j in range(k)
                    for r, c in [(oy * s - p + d * i, ox * s - p + d * j)]
                    if 0 <= r < H and 0 <= c < W]
            assert int(got[oy, ox]) == max(taps, default=0)
    batch = position_bits(torch.stack([b, b // 2]), k, s, p, d)
    assert torch.equal(batch[0], got) and torch.equal(batch[1], position_bits(b // 2, k, s, p, d))


def test_position_chunks_formula():
    for name in ADC_CONFIGS + ("medium",):
        cfg = load_config(name)
        bx, d, T = cfg.input_bits, cfg.dac_bits, cfg.input_cycles
        for p in range(bx + 1):
            want = 0 if p == 0 else T - (bx - p) // d
            assert int(position_chunks(cfg, torch.tensor(p))) == want
        assert int(position_chunks(cfg, torch.tensor(bx))) == T


# -- the conv layer ------------------------------------------------------------------------

def _layer(seed, cfg, cin, cout, k):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (cout, cin, k, k), generator=gen)
    b = torch.randint(-200, 201, (cout,), generator=gen)
    return w, b, gen


@settings(max_examples=30)
@given(st.integers(0, 15), st.sampled_from([0.125, 0.25, 0.3, 0.49]), st.integers(3, 11),
       st.integers(3, 11), st.sampled_from([(3, 1, 1), (3, 2, 1), (1, 1, 0), (2, 2, 0)]),
       st.integers(0, 2 ** 31), st.booleans())
def test_crop_plans_are_crops(crop, f, H, W, ksp, seed, scaled):
    """A crop-equivalent plan gives exactly cropped_conv2d, on the base map and on a later
    (scaled) map."""
    cfg = load_config("small")
    k, s, p = ksp
    w, b, gen = _layer(seed, cfg, 2, 3, k)
    if scaled:                  # a later map: both windows scaled from a 2x larger base
        Hb, Wb = 2 * H, 2 * W
        bw = scale_window(band_window(f, Hb, Wb), Hb, Wb, H, W)
        cw = scale_window(kept_window(crop, f, Hb, Wb), Hb, Wb, H, W)
    else:
        bw, cw = band_window(f, H, W), kept_window(crop, f, H, W)
    x = torch.randint(0, 256, (2, 2, H, W), generator=gen)
    bits = bits_map(crop_as_plan(crop, cfg), bw, H, W, cfg)
    got = plan_conv2d(cfg, x, w, b, stride=s, padding=p, shift=4, relu=True, bits=bits)
    want = cropped_conv2d(cfg, x, w, b, stride=s, padding=p, shift=4, relu=True, window=cw)
    assert torch.equal(got, want)


def _exact_conv(cfg, x, w, b, stride, padding, shift, relu):
    """Integer reference: unfold and an int64 product, then the output stage."""
    B, cin, H, W = x.shape
    cout, _, k, _ = w.shape
    cols = F.unfold(x.to(torch.float64), k, padding=padding, stride=stride).round().to(
        torch.int64)                                                       # [B, K, L]
    v = torch.einsum("bkl,ok->bol", cols, w.reshape(cout, -1).to(torch.int64)) + b[None, :, None]
    ho = (H + 2 * padding - k) // stride + 1
    return finalize(cfg, v, shift=shift, relu_enable=relu).view(B, cout, ho, -1)


@settings(max_examples=25)
@given(plans, st.sampled_from([0.25, 0.4]), st.integers(4, 10),
       st.sampled_from([(3, 1, 1), (3, 2, 0), (1, 1, 0)]), st.integers(0, 2 ** 31))
def test_plan_conv2d_exact_lossless(plan, f, H, ksp, seed):
    """Lossless: plan_conv2d = the exact integer conv of the reduced inputs, 0 where
    p_max = 0; and the same with every position streaming only its T_pos chunks."""
    cfg = load_config("small")
    k, s, p = ksp
    w, b, gen = _layer(seed, cfg, 2, 3, k)
    x = torch.randint(0, 256, (1, 2, H, H), generator=gen)
    bits = bits_map(plan, band_window(f, H, H), H, H, cfg)
    got = plan_conv2d(cfg, x, w, b, stride=s, padding=p, shift=3, relu=False, bits=bits)
    want = _exact_conv(cfg, reduce_activations(cfg, x, bits), w, b, s, p, 3, False)
    pmax = position_bits(bits, k, s, p)
    assert torch.equal(got, torch.where(pmax > 0, want, 0))
    skipped = plan_conv2d(cfg, x, w, b, stride=s, padding=p, shift=3, relu=False, bits=bits,
                          skip_chunks=True)
    assert torch.equal(skipped, got)


@pytest.mark.parametrize("name", ADC_CONFIGS)
def test_chunk_skipping_exact_every_adc_mode(name):
    """Skipping a position's zero chunks = streaming them all, in every ADC mode: the
    skipping datapath on the reduced inputs equals golden.layer.matvec on them and the naive
    reference datapath (tests/golden/reference.py), which streams every chunk."""
    cfg = load_config(name)
    seed = random.randrange(2 ** 31)
    print(f"seed {seed}")                      # reproduce a failure with this seed
    gen = torch.Generator().manual_seed(seed)
    K, N, B = cfg.rows + 5, cfg.outputs + 1, 24     # two row tiles, two output groups
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (K, N), generator=gen)
    bias = torch.randint(-100, 101, (N,), generator=gen)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (B, K), generator=gen)
    p = torch.randint(1, cfg.input_bits + 1, (B, 1), generator=gen)
    xr = reduce_activations(cfg, x, p)
    skip = skipped_chunks(cfg, p[:, 0])
    got = skip_matvec(cfg, xr, w, bias, skip=skip, shift=2, relu=False)
    assert torch.equal(got, matvec(cfg, xr, w, bias, shift=2, relu=False)), seed
    for i in range(4):
        v, out = ref.layer_outputs(cfg, xr[i].tolist(), w.tolist(), bias.tolist(), 2, False)
        assert got[i].tolist() == out, seed
    # the skip is real: on unreduced inputs the skipped chunks are missing. Compared at the
    # FlexPoint shift that brings the largest |v| into the output range, so that saturation
    # cannot hide the difference (at shift 0 nearly every output saturates)
    if int(skip.max()) > 0:
        v = matvec_acc(program(cfg, w), x) + bias
        sh = min(cfg.shift_max, max(0, int(v.abs().max()).bit_length() - cfg.output_bits + 2))
        assert not torch.equal(skip_matvec(cfg, x, w, bias, skip=skip, shift=sh, relu=False),
                               matvec(cfg, x, w, bias, shift=sh, relu=False)), seed


@pytest.mark.parametrize("name", ADC_CONFIGS)
def test_plan_conv2d_skipping_every_adc_mode(name):
    cfg = load_config(name)
    w, b, gen = _layer(7, cfg, 1, 3, 3)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (2, 1, 9, 9), generator=gen)
    for plan in plan_vectors(cfg, cfg.input_bits // 2)[::7]:
        bits = bits_map(plan, band_window(0.25, 9, 9), 9, 9, cfg)
        full = plan_conv2d(cfg, x, w, b, stride=1, padding=1, shift=2, relu=True, bits=bits)
        skipped = plan_conv2d(cfg, x, w, b, stride=1, padding=1, shift=2, relu=True,
                              bits=bits, skip_chunks=True)
        assert torch.equal(full, skipped), plan


@settings(max_examples=25)
@given(configs(), st.data())
def test_skip_matvec_hypothesis(cfg, data):
    seed = data.draw(st.integers(0, 2 ** 31), label="seed")
    gen = torch.Generator().manual_seed(seed)
    K, N, B = cfg.rows + 3, cfg.outputs + 1, 6
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (K, N), generator=gen)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (B, K), generator=gen)
    bits = torch.randint(0, cfg.input_bits + 1, (B, K), generator=gen)
    xr = reduce_activations(cfg, x, bits)
    pmax = bits.max(1).values
    keep = pmax > 0
    got = skip_matvec(cfg, xr[keep], w, skip=skipped_chunks(cfg, pmax[keep]), shift=0)
    assert torch.equal(got, matvec(cfg, xr[keep], w, shift=0))
