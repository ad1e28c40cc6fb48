"""The named arithmetic helpers against per-element formulas, exhaustively at small widths."""

import itertools

import pytest
import torch

from arch.config import AccelConfig
from arch.ranges import int_range
from golden.arith import (adc_convert, adc_reconstruct, encode_weights, finalize, input_chunks,
                          left_shift_clamp, round_shift, saturate)
from golden.arith import relu as relu_fn
from golden.arith import RangeError

from . import reference as ref


def small_cfg(**kw):
    base = dict(name="t", rows=4, cols=4, cell_bits=2, weight_bits=4, input_bits=4,
                adc_bits=4, adc_columns_per_cycle=2, output_bits=6, shift_min=-3, shift_max=6,
                adc_mode="clip")
    base.update(kw)
    return AccelConfig(**base)


@pytest.mark.parametrize("sh", range(-4, 7))
def test_round_shift_every_value(sh):
    v = torch.arange(-300, 301)
    expected = []
    for x in v.tolist():
        if sh > 0:
            q, r = divmod(x, 2 ** sh)
            expected.append(q + (1 if 2 * r >= 2 ** sh else 0))
        else:
            expected.append(x * 2 ** (-sh))
    assert round_shift(v, sh).tolist() == expected


def test_round_shift_ties_go_up():
    # 2.5 -> 3, -2.5 -> -2, -2.75 -> -3, 1.25 -> 1 (shift by 2: values 10, -10, -11, 5)
    assert round_shift(torch.tensor([10, -10, -11, 5]), 2).tolist() == [3, -2, -3, 1]


@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_saturate_signed_and_unsigned(bits):
    v = torch.arange(-600, 600)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert saturate(v, *int_range(bits, signed=True)).tolist() == \
        [min(max(x, lo), hi) for x in v.tolist()]
    assert saturate(v, *int_range(bits, signed=False)).tolist() == \
        [min(max(x, 0), 2 ** bits - 1) for x in v.tolist()]


@pytest.mark.parametrize("mode,adc_bits,flip", [("lossless", 5, True), ("lossless", 6, False),
                                                ("clip", 3, True), ("clip", 1, False),
                                                ("drop_lsb", 2, False), ("drop_lsb", 3, True),
                                                ("drop_lsb", 5, True)])
def test_adc_transfer_every_read(mode, adc_bits, flip):
    cfg = small_cfg(adc_mode=mode, adc_bits=adc_bits, flip=flip, dac_bits=2)
    reads = torch.arange(cfg.max_read + 1)
    codes = adc_convert(cfg, reads)
    recs = adc_reconstruct(cfg, codes)
    for r, c, v in zip(reads.tolist(), codes.tolist(), recs.tolist()):
        assert (c, v) == ref.adc(cfg, r), f"read {r}"
        assert 0 <= c < 2 ** adc_bits


def test_drop_lsb_named_values():
    # no flip: max read 4 rows * 3 * 1 = 12 (4 bits); a 2-bit ADC drops 2 bits.
    cfg = small_cfg(adc_mode="drop_lsb", adc_bits=2, flip=False)
    assert cfg.adc_drop == 2
    # 5 = 1.25*4 -> 1 -> 4; 6 = 1.5*4 -> 2 (tie up) -> 8; 12 -> 3 -> 12 saturates at code 3
    assert adc_reconstruct(cfg, adc_convert(cfg, torch.tensor([5, 6, 12, 1, 2]))).tolist() \
        == [4, 8, 12, 0, 4]


@pytest.mark.parametrize("signed,dac", [(False, 1), (False, 2), (True, 1), (True, 3)])
def test_input_chunks_every_value(signed, dac):
    bits = 7 if signed else 6
    cfg = small_cfg(input_bits=bits, input_signed=signed, dac_bits=dac)
    x = torch.arange(cfg.input_min, cfg.input_max + 1).view(-1, 1).expand(-1, 4)
    ch = input_chunks(cfg, x)
    assert ch.shape == (x.shape[0], cfg.input_cycles, 4)
    for xv, row in zip(x[:, 0].tolist(), ch[:, :, 0].tolist()):
        want = ref.chunks_of(cfg, xv)
        assert row == [lvl for lvl, _, _ in want]
        assert sum(s * lvl * 2 ** p for lvl, p, s in want) == xv


def test_input_out_of_range_is_refused():
    cfg = small_cfg()
    with pytest.raises(RangeError, match=r"inputs must lie in \[0, 15\], found values in \[0, 16\]"):
        input_chunks(cfg, torch.tensor([[0, 16, 1, 2]]))


@pytest.mark.parametrize("encoding,flip", [("biased", True), ("biased", False),
                                           ("unsigned", True)])
def test_encode_weights_exhaustive_two_rows(encoding, flip):
    cfg = small_cfg(rows=2, cols=2, weight_bits=4, cell_bits=2, weight_encoding=encoding,
                    flip=flip, adc_columns_per_cycle=1, adc_mode="lossless", adc_bits=4)
    values = range(cfg.weight_min, cfg.weight_max + 1)
    for a, b in itertools.product(values, values):
        w = torch.tensor([[a], [b]])
        cells, flags = encode_weights(cfg, w)
        want_cells, want_flags = ref.stored_cells(cfg, [[a], [b]])
        assert cells.tolist() == want_cells and flags.tolist() == want_flags
        # the flipped column never sums above half the range
        assert int(cells.sum(0).max()) <= cfg.rows * cfg.cell_max // 2 or not flip


def test_flip_example_from_the_contract():
    # 2 rows, one 2-bit cell, weights 3 and 2: sum 5 > 2*3/2 -> flagged, stores 0 and 1.
    cfg = small_cfg(rows=2, cols=1, cell_bits=2, weight_bits=2, weight_encoding="unsigned",
                    adc_columns_per_cycle=1, adc_mode="lossless", adc_bits=2)
    cells, flags = encode_weights(cfg, torch.tensor([[3], [2]]))
    assert flags.tolist() == [[True]] and cells[:, 0, 0].tolist() == [0, 1]


def test_finalize_refuses_shift_out_of_range():
    cfg = small_cfg()
    with pytest.raises(ValueError, match=r"shift must lie in \[-3, 6\].*not 7"):
        finalize(cfg, torch.tensor([1]), shift=7, relu_enable=False)


@pytest.mark.parametrize("shift", [-3, 0, 1, 4])
@pytest.mark.parametrize("relu", [False, True])
def test_finalize_every_value(shift, relu):
    cfg = small_cfg()
    v = torch.arange(-500, 500)
    got = finalize(cfg, v, shift=shift, relu_enable=relu).tolist()
    assert got == [ref.output_stage(cfg, x, shift, relu) for x in v.tolist()]


def _exact_output(v, sh, relu, bits):
    """Section 7 in Python integers: exact shift, ReLU, saturation."""
    if sh > 0:
        q, r = divmod(v, 2 ** sh)
        v = q + (1 if 2 * r >= 2 ** sh else 0)
    else:
        v = v * 2 ** (-sh)
    if relu:
        v = max(v, 0)
    return min(max(v, -2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _probe_values(n, bits):
    """Values around every boundary that matters for a left shift by n to `bits` bits, and
    the int64 extremes."""
    c = (2 ** (bits - 1) >> n) + 1
    vals = {0, 1, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 62, -2 ** 62}
    for edge in (c, -c, 2 ** (bits - 1) >> n, -(2 ** (bits - 1) >> n), 2 ** 31, 2 ** 40):
        vals.update(edge + d for d in range(-2, 3))
    return sorted(v for v in vals if -2 ** 63 <= v < 2 ** 63)


@pytest.mark.parametrize("bits", [1, 2, 8, 16, 32])
def test_left_shift_clamp_is_exact_against_python_integers(bits):
    """The equivalence of golden.arith.left_shift_clamp, for every shift 0..61: clamping then
    shifting in int64 saturates exactly as the unbounded shift does."""
    for n in range(62):
        vals = _probe_values(n, bits)
        v = torch.tensor(vals, dtype=torch.int64)
        clamped = left_shift_clamp(v, n, bits)
        assert int(clamped.abs().max()) << n < 2 ** 63
        for relu in (False, True):
            got = saturate(relu_fn(clamped << n, relu), *int_range(bits, True)).tolist()
            assert got == [_exact_output(x, -n, relu, bits) for x in vals], (n, relu)


def test_finalize_is_exact_for_any_int64():
    """Every shift of a configuration at the loader's limit (acc_bits + 30 = 62), on values up
    to the int64 extremes (a sum of many row tiles): finalize equals the exact section 7."""
    cfg = small_cfg(rows=1, cols=13, cell_bits=1, weight_bits=13, input_bits=16,
                    adc_columns_per_cycle=1, adc_bits=1, output_bits=16, shift_min=-30,
                    shift_max=31)
    assert cfg.acc_bits == 32
    for sh in range(cfg.shift_min, cfg.shift_max + 1):
        vals = _probe_values(max(0, -sh), 16)
        vals += [2 ** 63 - 1 - d for d in range(8)]
        v = torch.tensor(vals, dtype=torch.int64)
        for relu in (False, True):
            got = finalize(cfg, v, shift=sh, relu_enable=relu).tolist()
            assert got == [_exact_output(x, sh, relu, 16) for x in vals], (sh, relu)


def test_one_saturate_and_one_bias_range():
    """``golden.fixedpoint`` re-exports the one saturate; the bias range is the config's."""
    from golden import fixedpoint
    assert fixedpoint.saturate is saturate
    cfg = AccelConfig.from_dict({"crossbar": {"rows": 16, "cols": 16, "cell_bits": 2},
                                 "weights": {"bits": 8}, "inputs": {"bits": 8},
                                 "adc": {"bits": 5, "columns_per_cycle": 4},
                                 "output": {"bits": 8, "shift_min": -4, "shift_max": 12}})
    assert fixedpoint.bias_range(cfg) == cfg.bias_range == int_range(cfg.bias_bits, True)
    assert saturate(torch.tensor([-1.5, 0.25, 9.0]), -1, 1).tolist() == [-1.0, 0.25, 1.0]
