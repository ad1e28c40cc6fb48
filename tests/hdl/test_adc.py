# amaranth: UnusedElaboratable=no
"""ADCQuantizer: exhaustive over every column read and group against golden.arith."""

import pytest
import torch
from amaranth.sim import Simulator

from golden.arith import adc_convert, adc_reconstruct
from hdl import ADCQuantizer

from ._util import SMALL_CONFIGS, config, to_py

VARIANTS = {
    # name: (config, changes) -- the shipped configs plus the corners of section 4
    **{name: (name, {}) for name in SMALL_CONFIGS},
    "lossless_wide": ("small", {"adc_bits": 7}),                # A > read_bits
    "clip_wide": ("small_clip", {"adc_bits": 5}),               # never clips (A = read_bits)
    "drop_none": ("small_drop", {"adc_bits": 6}),               # k = 0: no rounding term
    "drop_one": ("small_drop", {"adc_bits": 5}),                # k = 1
    "drop_many": ("small_drop", {"adc_bits": 2}),               # k = 4
    "one_group": ("small_clip", {"adc_columns_per_cycle": 16}),  # no column mux
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_transfer_function_exhaustive(variant):
    name, changes = VARIANTS[variant]
    cfg = config(name).replace(**changes)
    dut = ADCQuantizer(cfg)
    C, N, G = cfg.cols, cfg.adc_columns_per_cycle, cfg.adc_steps
    top = (1 << cfg.read_bits) - 1

    async def bench(ctx):
        for base in range(top + 1):
            # every column a different read; over all bases every column sees every value
            reads = [(base + 5 * j) & top for j in range(C)]
            code = adc_convert(cfg, torch.tensor(reads))
            rec = adc_reconstruct(cfg, code).tolist()
            code = code.tolist()
            ctx.set(dut.col_sum, reads)
            for g in range(G):
                ctx.set(dut.group, g)
                lanes = slice(g * N, (g + 1) * N)
                assert to_py(ctx.get(dut.code)) == code[lanes], f"reads {reads}, group {g}"
                assert to_py(ctx.get(dut.rec)) == rec[lanes], f"reads {reads}, group {g}"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert dut.latency == 0


def test_rec_fits_read_bits():
    """The reconstruction port is read_bits wide: check the largest code of every mode fits."""
    for name, changes in VARIANTS.values():
        cfg = config(name).replace(**changes)
        largest = adc_reconstruct(cfg, adc_convert(cfg, torch.tensor([(1 << cfg.read_bits) - 1])))
        assert int(largest) < 1 << cfg.read_bits
        assert ADCQuantizer(cfg).signature.members["rec"].shape.elem_shape.width == cfg.read_bits


@pytest.mark.parametrize("bad", ["small", None, {}])
def test_rejects_non_config(bad):
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig \(see "
                                        r"arch.config.load_config\), not "):
        ADCQuantizer(bad)


def test_read_only_properties():
    dut = ADCQuantizer(config("small"))
    with pytest.raises(AttributeError):
        dut.latency = 1
    with pytest.raises(AttributeError):
        dut.cfg = None
