# amaranth: UnusedElaboratable=no
"""gen.lint and gen.synth on the small configurations: Verilator and Icarus are clean, the
waivers live in one file, Yosys counts cells and the counts land in synth.json and the
manifest without breaking reproducibility."""

import json
import os
import shutil

import pytest

from arch.config import load_config
from gen.lint import WAIVERS, LintError, lint_dir, lint_file
from gen.synth import synth_dir
from gen.verilog import generate
from hdl import BLOCKS

SMALL = ("small", "small_clip", "small_drop", "small_signed")


def _have_iverilog():
    return shutil.which("iverilog") or os.path.exists("/usr/bin/iverilog")


@pytest.mark.parametrize("name", SMALL)
def test_lint_clean(tmp_path, name):
    if not _have_iverilog():
        pytest.skip("iverilog not installed")
    generate(load_config(name), tmp_path)
    results = lint_dir(tmp_path)          # raises LintError with the output on any complaint
    assert {(r.tool, r.top) for r in results} == {
        (tool, f"aqua_{b}") for tool in ("verilator", "iverilog")
        for b in BLOCKS}
    assert all(r.ok and r.output == "" for r in results)


def test_lint_reports_problems(tmp_path):
    # the waivers only cover the generated files ...
    other = tmp_path / "other.v"
    other.write_text("module other(input [1:0] a, output y);\n  wire unused;\n"
                     "  assign y = a;\nendmodule\n")
    result = lint_file(other, "other", "verilator")
    assert not result.ok and "UNUSEDSIGNAL" in result.output and "WIDTHTRUNC" in result.output
    # ... and only the rules they name
    bad = tmp_path / "aqua_bad.v"
    bad.write_text("module aqua_bad(output y);\n  wire z;\n  assign y = z;\nendmodule\n")
    result = lint_file(bad, "aqua_bad", "verilator")
    assert not result.ok and "UNDRIVEN" in result.output
    broken = tmp_path / "broken.v"
    broken.write_text("module broken(input a);\n  assign = ;\nendmodule\n")
    for tool in ("verilator", "iverilog"):
        assert not lint_file(broken, "broken", tool).ok
    generate(load_config("small"), tmp_path, ["adc"])
    (tmp_path / "aqua_adc.v").write_text("module aqua_adc(input a);\n  assign = ;\nendmodule\n")
    with pytest.raises(LintError, match="aqua_adc.v"):
        lint_dir(tmp_path, tools=("verilator",))


def test_waivers_are_one_commented_file():
    lines = WAIVERS.read_text().splitlines()
    rules = [line for line in lines if line.startswith("lint_off")]
    assert rules and all('-file "*aqua_*.v"' in line for line in rules)
    # every waiver is preceded by a comment explaining it
    for i, line in enumerate(lines):
        if line.startswith("lint_off") and not lines[i - 1].startswith("lint_off"):
            assert lines[i - 1].startswith("//"), line


def test_synth_counts_cells(tmp_path):
    cfg = load_config("small")
    generate(cfg, tmp_path, ["adc", "shiftadd"])
    timings = {}
    doc = synth_dir(tmp_path, ["adc"], timings=timings)
    adc = doc["blocks"]["adc"]
    assert adc["cells"] > 0 and sum(adc["cell_types"].values()) == adc["cells"]
    assert set(doc["blocks"]) == {"adc"} and timings["adc"] > 0
    assert doc["tool"].startswith("Yosys")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["blocks"]["adc"]["synth"] == {"cells": adc["cells"],
                                                  "cell_types": adc["cell_types"]}
    assert "synth" not in manifest["blocks"]["shiftadd"]
    # regenerating unchanged Verilog keeps the counts and every byte
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    generate(cfg, tmp_path, ["adc", "shiftadd"])
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before
    with pytest.raises(ValueError, match=r"^blocks must be names from adc, shiftadd"):
        synth_dir(tmp_path, ["datapath"])
