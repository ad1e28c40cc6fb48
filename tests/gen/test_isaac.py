# amaranth: UnusedElaboratable=no
"""The full-size ISAAC tile elaborates, converts and lints (about a minute: marked slow).

Synthesis of the isaac crossbar and datapath takes several minutes per block; it is not part
of the test suite (run ``aqua verilog --config isaac --synth``)."""

import time

import pytest

from arch.config import load_config
from gen.lint import lint_dir
from gen.verilog import generate
from hdl.layouts import chunk_bits


@pytest.mark.slow
def test_isaac_generates_and_lints(tmp_path):
    cfg = load_config("isaac")
    timings = {}
    start = time.perf_counter()
    manifest = generate(cfg, tmp_path, timings=timings)
    assert time.perf_counter() - start < 120, timings
    assert manifest["blocks"]["datapath"]["latency"] == cfg.latency == 273
    ports = {p["name"]: p["width"] for p in manifest["blocks"]["datapath"]["ports"]}
    # the input vector and its first chunk (per-region precision, hdl.layouts.input_layout)
    assert ports["i__payload"] == cfg.rows * cfg.input_bits + chunk_bits(cfg) == 2048 + 4
    lint_dir(tmp_path)
