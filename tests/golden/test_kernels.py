"""The compiled kernels (golden/kernels.c). The fused bit-serial kernel against the naive
reading of the contract (tests/golden/reference.py) and against an independent torch reading
of the reads, on random seeded inputs, for every shipped lossy configuration and signed lossy
ones; the dense kernel of small integer layers against the torch integer path."""

import logging

import pytest
import torch
from hypothesis import given, settings, strategies as st

from arch.config import AccelConfig, config_names, load_config
from golden import kernels as bk
from golden.arith import RangeError, adc_convert, chunk_positions, chunk_signs, input_chunks
from golden.kernels import dense, dense_args
from golden.layer import _integer_layer, _matmul_bias, conv2d, linear, matvec, program

from ..strategies import configs

from .test_layer import naive_matvec, rand_ints

log = logging.getLogger(__name__)

SHIPPED_LOSSY = [n for n in config_names() if load_config(n).adc_mode != "lossless"]


def _signed_lossy(mode: str) -> AccelConfig:
    """small_signed (signed 9-bit inputs, 2-bit DAC, 3-bit cells) with a lossy ADC."""
    cfg = load_config("small_signed")
    return cfg.replace(name=f"small_signed_{mode}", adc_mode=mode, adc_bits=cfg.read_bits - 2)


LOSSY = [load_config(n) for n in SHIPPED_LOSSY] + [
    _signed_lossy("clip"), _signed_lossy("drop_lsb"),
    load_config("small_drop").replace(name="small_drop_signed", input_signed=True),
    load_config("small_clip").replace(name="small_clip_flip_off", flip=False)]


def test_the_shipped_lossy_configs_are_covered():
    assert {"small_drop", "small_clip"} <= set(SHIPPED_LOSSY)


def torch_red(cfg, x, layer):
    """``red`` read by torch: every read an integer product of the DAC levels and the stored
    cells, its ADC code (golden.arith.adc_convert), ``±`` in a flagged column, shift-added."""
    R, kt = cfg.rows, layer.row_tiles
    xp = torch.nn.functional.pad(x.to(torch.int64), (0, kt * R - x.shape[1]))
    levels = input_chunks(cfg, xp.view(len(x), kt, R))                # [B, kt, T, R]
    cells = torch.stack(layer.cells)                                   # [kt, R, cols]
    reads = torch.einsum("bktr,krc->bktc", levels, cells)
    codes = adc_convert(cfg, reads)
    sign = 1 - 2 * torch.stack(layer.flags).to(torch.int64)           # [kt, cols]
    coef = chunk_signs(cfg) << chunk_positions(cfg)
    return (codes * coef.view(1, 1, -1, 1) * sign.view(1, kt, 1, -1)).sum((1, 2))


def operands(cfg, seed, B, K, N):
    gen = torch.Generator().manual_seed(seed)
    x = rand_ints(gen, cfg.input_min, cfg.input_max, (B, K))
    w = rand_ints(gen, cfg.weight_min, cfg.weight_max, (K, N))
    bias = torch.randint(-50, 51, (N,), generator=gen)
    return x, w, bias


@pytest.mark.parametrize("cfg", LOSSY, ids=lambda c: c.name)
@pytest.mark.parametrize("seed", [1, 2])
def test_kernel_matches_the_naive_reading(cfg, seed):
    B, K, N = 6, 2 * cfg.rows + 3, cfg.outputs + 2          # three row tiles, two groups
    log.info("config %s, seed=%d", cfg.name, seed)
    x, w, bias = operands(cfg, seed, B, K, N)
    for shift, relu in ((0, False), (2, True), (cfg.shift_min, False)):
        got = matvec(cfg, x, w, bias, shift=shift, relu=relu)
        assert got.tolist() == naive_matvec(cfg, x, w, bias, shift, relu), \
            f"config {cfg.name}, seed={seed}, shift={shift}, relu={relu}"


@pytest.mark.parametrize("cfg", LOSSY, ids=lambda c: c.name)
@pytest.mark.parametrize("B", [1, 7, 200])                    # every table size, bits8 path
def test_kernel_red_matches_torch_reads(cfg, B):
    seed = 1000 + B
    log.info("config %s, seed=%d", cfg.name, seed)
    K, N = 3 * cfg.rows - 5, 2 * cfg.outputs + 1
    x, w, _ = operands(cfg, seed, B, K, N)
    layer = program(cfg, w)
    want = torch_red(cfg, x, layer)
    R = cfg.rows
    rows = torch.nn.functional.pad(x, (0, layer.row_tiles * R - K))
    kernel = bk.Kernel(cfg, torch.stack(layer.cells), torch.stack(layer.flags))
    for dtype in (torch.int64, torch.float64, torch.float32):
        for narrow in (torch.uint8, torch.int32, torch.int64):
            if narrow == torch.uint8 and cfg.input_bits > 8:
                continue
            got = kernel.reduce(rows.to(narrow), dtype)
            assert torch.equal(got.to(torch.int64), want), \
                f"config {cfg.name}, seed={seed}, red {dtype}, rows {narrow}"


def test_kernel_in_pieces_and_flushed_groups(monkeypatch):
    """Tables cut by columns and tiles (a tiny budget), and chunks whose shift-added codes
    move into int64 in several groups (30-bit inputs: 2**28 * code overflows int32)."""
    monkeypatch.setattr(bk, "_TABLE_BYTES", 3000)
    cfg = AccelConfig(name="wide", rows=8, cols=12, cell_bits=2, weight_bits=6, input_bits=30,
                      dac_bits=2, adc_bits=5, adc_mode="drop_lsb", adc_columns_per_cycle=4,
                      output_bits=16, shift_min=-4, shift_max=20, flip=True)
    _, _, start, _ = bk._plan_chunks(cfg, bk.code_bound(cfg))
    assert len(start) > 2                                     # more than one group
    seed = 7
    x, w, _ = operands(cfg, seed, 40, 3 * cfg.rows, 9)
    layer = program(cfg, w)
    rows = torch.nn.functional.pad(x, (0, layer.row_tiles * cfg.rows - x.shape[1]))
    kernel = bk.Kernel(cfg, torch.stack(layer.cells), torch.stack(layer.flags))
    assert len(kernel._pieces_of(bk.group_rows(cfg, 40))) > 2
    assert torch.equal(kernel.reduce(rows.to(torch.int32)), torch_red(cfg, x, layer)), \
        f"seed={seed}"


@pytest.mark.parametrize("name", SHIPPED_LOSSY)
def test_conv_through_the_kernel_matches_matvec_on_patches(name):
    cfg = load_config(name)
    seed = 11
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (3, 5, 9, 9), generator=gen)
    w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (7, 5, 3, 3), generator=gen)
    bias = torch.randint(-300, 301, (7,), generator=gen)
    got = conv2d(cfg, x, w, bias, stride=2, padding=1, shift=3, relu=True)
    patches = torch.nn.functional.unfold(x.double(), 3, padding=1, stride=2).round().long()
    patches = patches.transpose(1, 2).reshape(-1, 5 * 9)
    want = matvec(cfg, patches, w.reshape(7, -1).t(), bias, shift=3, relu=True)
    assert torch.equal(got, want.view(3, 5, 5, 7).permute(0, 3, 1, 2)), f"seed={seed}"


def test_the_kernel_is_built_once_into_the_cache():
    lib = bk.library()
    assert lib is bk.library()
    assert bk.build_seconds() >= 0.0


@given(cfg=configs(modes=("lossless",)), K=st.integers(1, 40), N=st.integers(1, 9),
       B=st.integers(0, 7), seed=st.integers(0, 2 ** 31), relu=st.booleans(),
       shift=st.integers(-3, 8), with_bias=st.booleans())
@settings(max_examples=60, deadline=None)
def test_dense_kernel_equals_the_torch_integer_path(cfg, K, N, B, seed, relu, shift, with_bias):
    shift = max(cfg.shift_min, min(shift, cfg.shift_max))
    gen = torch.Generator().manual_seed(seed)
    x = rand_ints(gen, cfg.input_min, cfg.input_max, (B, K))
    w = rand_ints(gen, cfg.weight_min, cfg.weight_max, (K, N))
    lo, hi = cfg.bias_range
    bias = rand_ints(gen, lo, hi, (N,)) if with_bias else None
    layer = program(cfg, w)
    want = _integer_layer(cfg, K, x, layer.weights, bias, shift, relu, _matmul_bias, N)
    if not layer._dense_exact:
        return
    got = dense(x, dense_args(cfg, layer._dense_weights, N, bias, shift, relu))
    assert torch.equal(got, want), f"seed={seed}"
    assert torch.equal(matvec(cfg, x, w, bias, shift=shift, relu=relu), want), f"seed={seed}"


def test_matvec_sees_weights_and_bias_changed_in_place():
    """Weights changed in place are programmed again; a programmed layer's cached kernel
    operands are reused for the same bias only while it is unmodified (torch's version
    counter)."""
    for name in ("small", "small_drop"):
        cfg = load_config(name)
        gen = torch.Generator().manual_seed(3)
        x = torch.randint(0, 256, (5, 20), generator=gen)
        w = torch.randint(-100, 100, (6, 20), generator=gen)
        bias = torch.randint(-50, 50, (6,), generator=gen)
        first = linear(cfg, x, w, bias, shift=2)
        assert torch.equal(linear(cfg, x, w, bias, shift=2), first)
        w[0, :] = 27
        bias[1] = 44
        fresh = linear(cfg, x, w.clone(), bias.clone(), shift=2)
        assert torch.equal(linear(cfg, x, w, bias, shift=2), fresh)
        assert not torch.equal(fresh, first)
        lay = program(cfg, w.t())                        # the layer kept across calls
        assert torch.equal(linear(cfg, x, w, bias, shift=2, layer=lay), fresh)
        bias[2] = -13
        assert torch.equal(linear(cfg, x, w, bias, shift=2, layer=lay),
                           linear(cfg, x, w, bias.clone(), shift=2))
        w[0, 0] = cfg.weight_max + 1                      # now out of range: still checked
        with pytest.raises(RangeError, match="weights"):
            linear(cfg, x, w, bias, shift=2)
        w[0, 0] = 0
        bias[0] = cfg.bias_range[1] + 1
        with pytest.raises(RangeError, match="bias"):
            linear(cfg, x, w, bias, shift=2)


def test_dense_path_reports_inputs_first():
    cfg = load_config("small")
    w = torch.zeros(4, 3, dtype=torch.int64)
    bad_bias = torch.tensor([0, 0, cfg.bias_range[1] + 1])
    x = torch.full((2, 4), cfg.input_max + 1)
    with pytest.raises(RangeError, match="inputs"):
        matvec(cfg, x, w, bad_bias)
    with pytest.raises(RangeError, match="bias"):
        matvec(cfg, x.clamp(max=cfg.input_max), w, bad_bias)


def test_kernel_calls_from_threads_share_nothing_mutable():
    """ctypes releases the GIL: two threads run the same prepared kernel at once."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = load_config("small_drop")
    seed = 5
    x, w, _ = operands(cfg, seed, 300, 3 * cfg.rows, 2 * cfg.outputs)
    layer = program(cfg, w)
    rows = torch.nn.functional.pad(x, (0, layer.row_tiles * cfg.rows - x.shape[1]))
    kernel = bk.Kernel(cfg, torch.stack(layer.cells), torch.stack(layer.flags))
    want = torch_red(cfg, x, layer)
    parts = [rows[i::4].to(torch.uint8) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(kernel.reduce, parts))
            for i in range(4):
                assert torch.equal(got[i], want[i::4]), f"seed={seed}"
