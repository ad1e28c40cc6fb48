"""``docs/arithmetic.md`` ("Widths", "The configuration's rules") against ``arch.config``.

Every width is computed here from the document's formulas, in Python integers, and compared with
the property of :class:`~arch.config.AccelConfig` that the golden model and the RTL use; the
loader is held to accept exactly the shift range the document states.
"""

from hypothesis import given, strategies as st

from arch.config import AccelConfig, ConfigError

from ..strategies import configs


def bits(n):
    """The document's ``bits(n) = max(1, bitlength(n))``."""
    return max(1, n.bit_length())


@st.composite
def wide_configs(draw, *, modes=("lossless", "clip", "drop_lsb")):
    """Configurations up to the loader's limits: 1..4096 rows, up to 32-bit data."""
    cell_bits = draw(st.sampled_from([1, 2, 4, 8]))
    weight_bits = cell_bits * draw(st.integers(1, max(1, 32 // cell_bits)))
    signed = draw(st.booleans())
    dac_bits = draw(st.sampled_from([1, 2, 3, 4]))
    input_bits = dac_bits * draw(st.integers(1, 31 // dac_bits)) + (1 if signed else 0)
    rows = draw(st.sampled_from([1, 2, 3, 8, 128, 4096]))
    outputs = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(modes))
    kw = dict(name="wide", rows=rows, cols=outputs * (weight_bits // cell_bits),
              cell_bits=cell_bits, weight_bits=weight_bits, input_bits=input_bits,
              input_signed=signed, dac_bits=dac_bits, flip=draw(st.booleans()),
              weight_encoding=draw(st.sampled_from(["biased", "unsigned"])),
              adc_columns_per_cycle=outputs * (weight_bits // cell_bits),
              output_bits=draw(st.integers(1, 32)), shift_min=0, shift_max=0,
              adc_mode="clip", adc_bits=1)
    try:
        probe = AccelConfig(**kw)
    except ConfigError:
        return None                         # too wide for the accumulator limit
    adc_bits = probe.read_bits if mode == "lossless" else draw(st.integers(1, probe.read_bits))
    lo = max(-(probe.acc_bits - 1), -(62 - probe.acc_bits))
    shift_min = draw(st.integers(lo, 0))
    shift_max = draw(st.integers(shift_min, probe.acc_bits - 1))
    if adc_bits > 24:                        # a lossless ADC wider than the loader allows
        return None
    return probe.replace(adc_mode=mode, adc_bits=adc_bits, shift_min=shift_min,
                         shift_max=shift_max)


def any_configs():
    return st.one_of(configs(), wide_configs()).filter(lambda c: c is not None)


def document_widths(cfg):
    """Every width of the "Widths" table, from its formula."""
    R, M, d, Bx, Bw = cfg.rows, 2 ** cfg.cell_bits - 1, cfg.dac_bits, cfg.input_bits, \
        cfg.weight_bits
    max_read = (R * M // 2) * (2 ** d - 1) if cfg.flip else R * M * (2 ** d - 1)
    if cfg.input_signed:
        x_lo, x_hi = -2 ** (Bx - 1), 2 ** (Bx - 1) - 1
    else:
        x_lo, x_hi = 0, 2 ** Bx - 1
    if cfg.weight_encoding == "biased":
        w_lo, w_hi = -2 ** (Bw - 1), 2 ** (Bw - 1) - 1
    else:
        w_lo, w_hi = 0, 2 ** Bw - 1
    product_bits = bits(R * max(-x_lo, x_hi) * max(-w_lo, w_hi)) + 1
    acc_bits = bits(R * (2 ** Bx - 1) * (2 ** Bw - 1)) + 3
    return dict(
        max_read=max_read, read_bits=bits(max_read),
        insum_bits=bits(R * (2 ** d - 1)), product_bits=product_bits, bias_bits=product_bits,
        acc_bits=acc_bits,
        shift_bits=bits(max(abs(cfg.shift_min), abs(cfg.shift_max))) + 1,
        adc_drop=max(0, bits(max_read) - cfg.adc_bits) if cfg.adc_mode == "drop_lsb" else 0,
    )


@given(cfg=any_configs())
def test_every_width_follows_the_document(cfg):
    for name, want in document_widths(cfg).items():
        assert getattr(cfg, name) == want, name
    for kt in (1, 2, 3, 4, 7, 8, 1000):
        assert cfg.sum_bits(kt) == cfg.acc_bits + kt.bit_length()
    assert cfg.max_row_tiles == 2 ** (64 - cfg.acc_bits) - 1
    assert cfg.sum_bits(cfg.max_row_tiles) <= 64 < cfg.sum_bits(cfg.max_row_tiles + 1)


def test_read_bits_of_an_all_zero_column_is_one():
    # 1 row of 1-bit cells, flipped: every column sums to at most floor(1*1/2) = 0
    cfg = AccelConfig(name="z", rows=1, cols=2, cell_bits=1, weight_bits=2, input_bits=2,
                      adc_bits=1, adc_columns_per_cycle=1, output_bits=4, shift_min=0,
                      shift_max=0, flip=True)
    assert (cfg.max_read, cfg.read_bits) == (0, 1)


def chunk_bound(cfg, level_max):
    """For one chunk whose DAC levels are at most ``level_max``: ``(hi, lo)`` with
    ``-lo <= Σ_s 2^(s*b) y_s - weight_bias*insum`` and ``Σ_s 2^(s*b) y_s <= hi``, every column's
    ``y`` taken at its extreme independently (section 5: ``y`` is ``rec`` or ``M*insum - rec``)."""
    R, M = cfg.rows, cfg.cell_max
    read_max = R * M * level_max             # any read (flipping only lowers it)
    A, k = cfg.adc_bits, cfg.adc_drop
    if cfg.adc_mode == "clip":
        rec_max = min(read_max, 2 ** A - 1)
    elif cfg.adc_mode == "drop_lsb":
        h = 2 ** (k - 1) if k else 0
        rec_max = min((read_max + h) >> k, 2 ** A - 1) << k
    else:
        rec_max = read_max
    insum_max = R * level_max
    scale = sum(2 ** (s * cfg.cell_bits) for s in range(cfg.slices))
    y_hi = max(rec_max, M * insum_max)       # y = rec, or M*insum - rec
    y_lo = -rec_max
    return scale * y_hi, scale * -y_lo + cfg.weight_bias * insum_max


@given(cfg=any_configs())
def test_acc_bits_holds_every_tile_sum(cfg):
    """Section 6: whatever the ADC does, ``acc`` and ``acc - weight_bias*xsum`` of one tile lie
    in ``(-2^(acc_bits-1), 2^(acc_bits-1))``, so ``v`` fits ``sum_bits`` (the document's
    derivation, with every column at its extreme independently)."""
    bound_acc = bound_tile = 0
    for t in range(cfg.input_cycles):
        hi, lo = chunk_bound(cfg, 2 ** cfg.chunk_width(t) - 1)
        p = 2 ** cfg.chunk_position(t)
        bound_acc += p * max(hi, lo - cfg.weight_bias * cfg.rows * (2 ** cfg.chunk_width(t) - 1))
        bound_tile += p * max(hi, lo)
    assert bound_acc < 2 ** (cfg.acc_bits - 1)
    assert bound_tile < 2 ** (cfg.acc_bits - 1)
    assert 2 ** (cfg.bias_bits - 1) <= 2 ** (cfg.acc_bits - 3)


def document_accepts_shifts(acc_bits, shift_min, shift_max):
    """The document's rule for ``output.shift_min`` / ``output.shift_max``."""
    return (-acc_bits < shift_min <= shift_max < acc_bits
            and acc_bits + max(0, -shift_min) <= 62)


@given(cfg=any_configs(), lo=st.integers(-70, 70), hi=st.integers(-70, 70))
def test_loader_accepts_exactly_the_documented_shift_range(cfg, lo, hi):
    want = document_accepts_shifts(cfg.acc_bits, lo, hi)
    try:
        cfg.replace(shift_min=lo, shift_max=hi)
    except ConfigError:
        assert not want, (lo, hi)
    else:
        assert want, (lo, hi)


def test_shift_range_edges():
    base = AccelConfig(name="e", rows=8, cols=8, cell_bits=2, weight_bits=16, input_bits=16,
                       adc_bits=8, adc_mode="clip", adc_columns_per_cycle=8, output_bits=8,
                       shift_min=0, shift_max=0)
    a = base.acc_bits                                  # 38
    assert a == 38
    for lo, hi in ((-(62 - a), a - 1), (-(62 - a) - 1, 0), (0, a), (-a, 0), (1, 0)):
        want = document_accepts_shifts(a, lo, hi)
        try:
            base.replace(shift_min=lo, shift_max=hi)
            got = True
        except ConfigError:
            got = False
        assert got == want, (lo, hi)
