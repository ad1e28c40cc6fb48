"""Hypothesis strategies shared by the test suite."""

from hypothesis import assume, strategies as st

from arch.config import AccelConfig, ConfigError


@st.composite
def configs(draw, *, modes=("lossless", "clip", "drop_lsb"), max_rows=16, overlap=False):
    """Small but varied valid accelerator configurations (with ``[pipeline] overlap`` set to
    ``overlap``)."""
    cell_bits = draw(st.integers(1, 3))
    slices = draw(st.integers(1, 4))
    rows_per_cycle = draw(st.sampled_from([1, 2, 4, 8]))
    rows = rows_per_cycle * draw(st.integers(1, max(1, max_rows // rows_per_cycle)))
    outputs = draw(st.integers(1, 4))
    cols = slices * outputs
    signed = draw(st.booleans())
    dac_bits = draw(st.integers(1, 3))
    chunks = draw(st.integers(1, 4))
    input_bits = dac_bits * chunks + (1 if signed else 0)
    assume(input_bits >= (2 if signed else 1))
    mode = draw(st.sampled_from(modes))
    flip = draw(st.booleans())
    kw = dict(name="hyp", rows=rows, cols=cols, cell_bits=cell_bits,
              weight_bits=cell_bits * slices, input_bits=input_bits, input_signed=signed,
              dac_bits=dac_bits, rows_per_cycle=rows_per_cycle, flip=flip,
              weight_encoding=draw(st.sampled_from(["biased", "unsigned"])),
              adc_columns_per_cycle=draw(st.sampled_from([d for d in range(1, cols + 1)
                                                          if cols % d == 0])),
              output_bits=draw(st.integers(2, 12)), shift_min=-3, shift_max=8,
              adc_mode=mode, adc_bits=1, pipeline_overlap=overlap)
    probe = AccelConfig(**{**kw, "adc_mode": "clip", "shift_min": 0, "shift_max": 0})
    kw["shift_min"] = -min(3, probe.acc_bits - 1)
    kw["shift_max"] = min(8, probe.acc_bits - 1)
    if mode == "lossless":
        kw["adc_bits"] = probe.read_bits + draw(st.integers(0, 1))
    else:
        kw["adc_bits"] = draw(st.integers(1, probe.read_bits))
    try:
        return AccelConfig(**kw)
    except ConfigError:
        assume(False)
