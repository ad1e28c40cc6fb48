"""golden.crop: crop vectors, kept windows, scaling, the cropped conv layer, its counts and the
AGU address sequence, against brute-force readings of the definitions."""

import doctest
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import golden.crop as crop_mod
from arch.config import load_config
from golden.crop import (CROP_VECTORS, agu_cycles, agu_sequence, check_window, crop_activations,
                         crop_amount, crop_counts, crop_index, crop_vector, cropped_conv2d,
                         kept_window, output_window, scale_window)
from golden.layer import conv2d

FRACTIONS = [0.0, 0.1, 0.125, 0.2, 0.25, 1 / 3, 0.4, 0.49]
fractions = st.one_of(st.sampled_from(FRACTIONS),
                      st.floats(0, 0.5, exclude_max=True, allow_nan=False))
crops = st.integers(0, 15)
sizes = st.integers(1, 40)


def test_doctests():
    assert doctest.testmod(crop_mod, raise_on_error=False).failed == 0


def test_crop_vectors_encoding():
    assert len(set(CROP_VECTORS)) == 16
    for i, vec in enumerate(CROP_VECTORS):
        top, bottom, left, right = vec
        assert i == top * 8 + bottom * 4 + left * 2 + right
        assert crop_vector(i) == crop_vector(vec) == vec and crop_index(vec) == i
    assert CROP_VECTORS[0] == (0, 0, 0, 0) and CROP_VECTORS[15] == (1, 1, 1, 1)
    assert crop_vector([True, False, True, False]) == (1, 0, 1, 0)


@pytest.mark.parametrize("bad, exc, msg", [
    (16, ValueError, r"^crop index must lie in \[0, 15\], not 16$"),
    (-1, ValueError, r"^crop index must lie in \[0, 15\], not -1$"),
    ((1, 0, 2, 0), ValueError, r"^crop vector must be four bits"),
    ((1, 0, 0), ValueError, r"^crop vector must be four bits"),
    (1.5, TypeError, r"^crop must be an index 0..15"),
])
def test_bad_crop(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        kept_window(bad, 0.25, 8, 8)


@pytest.mark.parametrize("fraction", [0.5, -0.01, 0.75, 1])
def test_fraction_out_of_range(fraction):
    with pytest.raises(ValueError, match=rf"^fraction must lie in \[0, 0.5\), not {fraction}$"):
        kept_window(15, fraction, 8, 8)


def test_bad_sizes_and_windows():
    with pytest.raises(TypeError, match=r"^fraction must be a real number"):
        kept_window(1, "0.25", 8, 8)
    with pytest.raises(ValueError, match=r"^H must be a positive integer, not 0$"):
        kept_window(1, 0.25, 0, 8)
    for bad in [(0, 0, 0, 4), (2, 1, 0, 4), (0, 9, 0, 4), (0, 4, 3, 9), (-1, 4, 0, 4)]:
        with pytest.raises(ValueError, match=r"^window \(r0, r1, c0, c1\) = .* must satisfy "
                                             r"0 <= r0 < r1 <= 8 and 0 <= c0 < c1 <= 8$"):
            check_window(bad, 8, 8)
    with pytest.raises(ValueError, match=r"^stride must be an integer >= 1, not 0$"):
        agu_sequence(8, 8, 3, 0, 1, (0, 8, 0, 8))


def test_amount_rounding_is_exact_half_up_and_capped():
    for size in range(1, 65):
        for num in range(0, 64):
            f = Fraction(num, 128)
            want = min(math.floor(f * size + Fraction(1, 2)), (size - 1) // 2)
            assert crop_amount(f, size) == want
            assert crop_amount(float(f), size) == want     # num/128 is exact in binary
    assert crop_amount(0.25, 2) == 0        # round(0.5) = 1, capped: 2 rows keep 1 after both
    assert crop_amount(0.125, 4) == 1       # 0.5 rounds up


@settings(max_examples=300, deadline=None)
@given(crops, fractions, sizes, sizes)
def test_kept_window_invariants(crop, fraction, H, W):
    top, bottom, left, right = CROP_VECTORS[crop]
    r0, r1, c0, c1 = kept_window(crop, fraction, H, W)
    nr, nc = crop_amount(fraction, H), crop_amount(fraction, W)
    assert 0 <= r0 < r1 <= H and 0 <= c0 < c1 <= W                    # never empty
    assert (r0, H - r1, c0, W - c1) == (top * nr, bottom * nr, left * nc, right * nc)
    assert (r0 > 0) <= bool(top) and (r1 < H) <= bool(bottom)         # only set sides move
    assert (c0 > 0) <= bool(left) and (c1 < W) <= bool(right)
    assert kept_window(0, fraction, H, W) == (0, H, 0, W)
    assert kept_window(crop, 0.0, H, W) == (0, H, 0, W)


@pytest.mark.parametrize("crop", range(16))
def test_all_crops_on_demo_map(crop):
    top, bottom, left, right = CROP_VECTORS[crop]
    assert kept_window(crop, 0.25, 32, 32) == (8 * top, 32 - 8 * bottom, 8 * left, 32 - 8 * right)


@settings(max_examples=300, deadline=None)
@given(crops, fractions, sizes, sizes, sizes, sizes)
def test_scale_window(crop, fraction, H, W, H2, W2):
    win = kept_window(crop, fraction, H, W)
    r0, r1, c0, c1 = scale_window(win, H, W, H2, W2)
    assert 0 <= r0 < r1 <= H2 and 0 <= c0 < c1 <= W2                  # inside, never empty
    # covers the exact image of the window (start floors, end ceils), and is the tightest such
    assert Fraction(r0) <= Fraction(win[0] * H2, H) < r0 + 1
    assert r1 - 1 < Fraction(win[1] * H2, H) <= r1
    assert c0 <= Fraction(win[2] * W2, W) < c0 + 1 and c1 - 1 < Fraction(win[3] * W2, W) <= c1
    assert scale_window(win, H, W, H, W) == win
    assert scale_window((0, H, 0, W), H, W, H2, W2) == (0, H2, 0, W2)
    # monotonic: a larger window scales to a window that contains the scaled smaller one
    big = kept_window(crop & 0b0101, fraction, H, W)       # fewer sides cropped
    R0, R1, C0, C1 = scale_window(big, H, W, H2, W2)
    assert R0 <= r0 and r1 <= R1 and C0 <= c0 and c1 <= C1


def _touches(o, lo, hi, k, s, p):
    return any(lo <= o * s - p + i < hi for i in range(k))


@settings(max_examples=200, deadline=None)
@given(crops, fractions, st.integers(1, 20), st.integers(1, 20), st.integers(1, 5),
       st.integers(1, 3), st.integers(0, 2))
def test_output_window_brute_force(crop, fraction, H, W, k, s, p):
    if H + 2 * p < k or W + 2 * p < k:
        return
    win = kept_window(crop, fraction, H, W)
    ho, wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    rows = [o for o in range(ho) if _touches(o, win[0], win[1], k, s, p)]
    cols = [o for o in range(wo) if _touches(o, win[2], win[3], k, s, p)]
    r0, r1, c0, c1 = output_window(win, H, W, k, s, p)
    assert list(range(r0, r1)) == rows and list(range(c0, c1)) == cols


def _layer(seed, cin, cout, k):
    gen = torch.Generator().manual_seed(seed)
    cfg = load_config("small")
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (2, cin, 11, 9), generator=gen)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (cout, cin, k, k), generator=gen)
    b = torch.randint(-300, 300, (cout,), generator=gen)
    return cfg, x, w, b


@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0), (5, 2, 2)])
@pytest.mark.parametrize("crop", range(16))
def test_cropped_conv(crop, k, s, p):
    cfg, x, w, b = _layer(crop * 7 + k, 3, 5, k)
    win = kept_window(crop, 0.3, 11, 9)
    y = cropped_conv2d(cfg, x, w, b, stride=s, padding=p, shift=6, relu=True, window=win)
    zeroed = x.clone()
    zeroed[..., :win[0], :] = 0
    zeroed[..., win[1]:, :] = 0
    zeroed[..., :, :win[2]] = 0
    zeroed[..., :, win[3]:] = 0
    assert torch.equal(crop_activations(x, win), zeroed)
    ref = conv2d(cfg, zeroed, w, b, stride=s, padding=p, shift=6, relu=True)
    o = output_window(win, 11, 9, k, s, p)
    computed = torch.zeros(ref.shape[-2:], dtype=torch.bool)
    computed[o[0]:o[1], o[2]:o[3]] = True
    assert torch.equal(y[..., computed], ref[..., computed])
    assert not y[..., ~computed].any()
    # lossless: the computed outputs are torch's conv of the zeroed input, finalized
    exact = F.conv2d(zeroed.double(), w.double(), stride=s, padding=p).round().long() \
        + b.view(1, -1, 1, 1)
    exact = torch.clamp(torch.clamp((exact + 32) >> 6, min=0), cfg.output_min, cfg.output_max)
    assert torch.equal(y[..., computed], exact[..., computed])
    if crop == 0:
        assert torch.equal(y, conv2d(cfg, x, w, b, stride=s, padding=p, shift=6, relu=True))


@pytest.mark.parametrize("cin, cout", [(1, 8), (8, 16), (3, 5)])
@pytest.mark.parametrize("crop", range(16))
def test_crop_counts_brute_force(crop, cin, cout):
    cfg = load_config("small")
    H, W, k, s, p = 13, 10, 3, 2, 1
    win = kept_window(crop, 0.25, H, W)
    ho, wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    n = sum(_touches(oy, win[0], win[1], k, s, p) and _touches(ox, win[2], win[3], k, s, p)
            for oy in range(ho) for ox in range(wo))
    K = cin * k * k
    tiles, groups = -(-K // cfg.rows), -(-cout // cfg.outputs)
    got = crop_counts(cfg, cin, cout, H, W, k, s, p, win)
    assert (got.positions, got.macs, got.activations) == (n, n * K * cout, n * tiles * groups)
    assert (got.positions_full, got.macs_full) == (ho * wo, ho * wo * K * cout)
    assert got.activations_full == ho * wo * tiles * groups
    assert got.saved_activations == (ho * wo - n) * tiles * groups
    # the positions are exactly the outputs cropped_conv2d computes
    o = output_window(win, H, W, k, s, p)
    assert (o[1] - o[0]) * (o[3] - o[2]) == n


@settings(max_examples=200, deadline=None)
@given(crops, fractions, sizes, sizes)
def test_agu_sequence(crop, fraction, H, W):
    win = kept_window(crop, fraction, H, W)
    seq = agu_sequence(H, W, 3, 1, 1, win)
    kept = [(r, c) for r in range(H) for c in range(W)
            if win[0] <= r < win[1] and win[2] <= c < win[3]]
    assert [(e.row, e.col) for e in seq] == kept                 # row-major, each once
    assert all(e.linear == e.row * W + e.col for e in seq)
    assert [e.first for e in seq] == [True] + [False] * (len(seq) - 1)
    assert [e.last for e in seq] == [False] * (len(seq) - 1) + [True]
    assert agu_cycles(H, W, 3, 1, 1, win) == len(seq) + 1
    # kernel/stride/padding do not change the input sequence
    assert agu_sequence(H, W, 1, 2, 0, win) == seq


def test_agu_cycles_demo_layer0():
    """32x32, 3x3, pad 1, fraction 0.25: 1025 uncropped, 1 + 32*32 minus 8 rows/cols per side."""
    for crop, (top, bottom, left, right) in enumerate(CROP_VECTORS):
        win = kept_window(crop, 0.25, 32, 32)
        rows, cols = 32 - 8 * (top + bottom), 32 - 8 * (left + right)
        assert agu_cycles(32, 32, 3, 1, 1, win) == rows * cols + 1
    assert agu_cycles(32, 32, 3, 1, 1, kept_window(0, 0.25, 32, 32)) == 1025
    assert agu_cycles(32, 32, 3, 1, 1, kept_window(15, 0.25, 32, 32)) == 257


def test_ima_tile_cycles_is_passes_runs_of_tile_cycles():
    from arch.geometry import ConvGeometry, Mapping
    from golden.crop import ima_tile_cycles, tile_cycles

    cfg = load_config("small")
    for geom, passes in ((ConvGeometry(1, 8, 3, 1, 1, 32, 32), 1),
                         (ConvGeometry(8, 16, 3, 2, 1, 32, 32), 4),
                         (ConvGeometry(16, 32, 3, 2, 1, 16, 16), 16)):
        H = geom.height
        for crop in (0, 5, 15):
            win = kept_window(crop, 0.25, H, H)
            one = tile_cycles(cfg, geom, H, H, win)
            assert Mapping(cfg, geom).passes() == passes
            assert ima_tile_cycles(cfg, geom, H, H, win) == passes * one
            assert ima_tile_cycles(cfg, geom, H, H, win, crossbars=16) == \
                Mapping(cfg, geom).passes(16) * one
    # the one-row-tile layer of one pass costs what the ConvTile's run costs
    g0 = ConvGeometry(1, 8, 3, 1, 1, 32, 32)
    assert ima_tile_cycles(cfg, g0, 32, 32, (0, 32, 0, 32)) == \
        tile_cycles(cfg, g0, 32, 32, (0, 32, 0, 32)) == 1024 + 9 + cfg.latency + 5 + 1023 * 42
