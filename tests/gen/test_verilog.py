# amaranth: UnusedElaboratable=no
"""gen.verilog: reproducible Verilog, atomic write-if-changed, a manifest that matches the
layouts and the Verilog port declarations."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arch.config import load_config
from gen.verilog import describe_shape, generate, write_if_changed
from hdl import BLOCKS
from hdl.layouts import (Phase, input_layout, layer_config_layout, obs_layout, output_layout,
                         weight_write_layout)

ROOT = Path(__file__).resolve().parents[2]
SMALL = ("small", "small_clip", "small_drop", "small_signed")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every small configuration, generated once: name -> (cfg, out_dir, manifest)."""
    out = {}
    for name in SMALL:
        cfg = load_config(name)
        d = tmp_path_factory.mktemp(name)
        out[name] = (cfg, d, generate(cfg, d))
    return out


def test_files_and_manifest(generated):
    cfg, d, manifest = generated["small"]
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f"aqua_{b}.v" for b in BLOCKS] + ["manifest.json"])
    assert json.loads((d / "manifest.json").read_text()) == manifest
    assert manifest["config"] == {"name": "small", "digest": cfg.digest,
                                  "values": cfg.to_dict()}
    assert manifest["generator"]["name"] == "aqua-hw"
    assert {"version", "amaranth"} <= set(manifest["generator"])
    for block, entry in manifest["blocks"].items():
        text = (d / entry["file"]).read_bytes()
        assert entry["module"] == f"aqua_{block}"
        assert re.search(rb"^module aqua_" + block.encode() + rb"\(", text, re.M)
        assert entry["sha256"] == hashlib.sha256(text).hexdigest()
        assert b"src = " not in text            # no absolute paths of this checkout
    assert manifest["blocks"]["datapath"]["latency"] == cfg.latency == manifest["latency"]
    assert manifest["blocks"]["adc"]["latency"] == 0


@pytest.mark.parametrize("name", SMALL)
def test_byte_identical_and_mtime_kept(generated, tmp_path, name):
    cfg, first, manifest = generated[name]
    shutil.copytree(first, tmp_path, dirs_exist_ok=True)
    old = 1_000_000_000
    for f in tmp_path.iterdir():
        os.utime(f, (old, old))
    # regenerating gives the same bytes, leaves the files alone (mtime kept), no temporaries
    assert generate(cfg, tmp_path) == manifest
    for f in first.iterdir():
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name
    assert all(f.stat().st_mtime == old for f in tmp_path.iterdir())
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f.name for f in first.iterdir())


def test_byte_identical_across_processes(generated, tmp_path):
    """A fresh interpreter (another hash seed) writes the same bytes."""
    cfg, first, _ = generated["small_signed"]
    code = ("import sys; from arch.config import load_config; from gen.verilog import generate; "
            "generate(load_config('small_signed'), sys.argv[1])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-W", "error", "-c", code, str(tmp_path)], check=True,
                   env=env, cwd=ROOT)
    for f in first.iterdir():
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name


def test_changed_file_is_rewritten(tmp_path):
    cfg = load_config("small")
    generate(cfg, tmp_path, ["adc"])
    good = (tmp_path / "aqua_adc.v").read_bytes()
    (tmp_path / "aqua_adc.v").write_text("garbage\n")
    old = 1_000_000_000
    os.utime(tmp_path / "manifest.json", (old, old))
    generate(cfg, tmp_path, ["adc"])
    assert (tmp_path / "aqua_adc.v").read_bytes() == good
    assert (tmp_path / "manifest.json").stat().st_mtime == old


def test_subset_keeps_other_blocks(generated, tmp_path):
    """Generating some blocks keeps the manifest entries of the others while their files are
    unchanged and the configuration is the same."""
    cfg, first, manifest = generated["small"]
    shutil.copytree(first, tmp_path, dirs_exist_ok=True)
    assert generate(cfg, tmp_path, ["adc"]) == manifest
    (tmp_path / "aqua_crossbar.v").write_text("edited\n")
    assert list(generate(cfg, tmp_path, ["adc"])["blocks"]) == ["adc", "shiftadd", "datapath",
                                                                 "agu", "convtile",
                                                                 "requant_shift", "requant_mult"]
    other = load_config("small_clip")
    assert list(generate(other, tmp_path, ["adc"])["blocks"]) == ["adc"]


def test_write_if_changed(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    assert write_if_changed(path, "a\n") is True
    assert write_if_changed(path, "a\n") is False
    assert write_if_changed(path, b"b\n") is True
    assert path.read_text() == "b\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


@pytest.mark.parametrize("name", SMALL)
def test_manifest_ports_match_layouts(generated, name):
    cfg, d, manifest = generated[name]
    ports = {p["name"]: p for p in manifest["blocks"]["datapath"]["ports"]}
    expect = {
        "wr__payload": ("input", weight_write_layout(cfg)),
        "layer": ("input", layer_config_layout(cfg)),
        "i__payload": ("input", input_layout(cfg)),
        "o__payload": ("output", output_layout(cfg)),
        "obs": ("output", obs_layout(cfg)),
    }
    for port, (direction, layout) in expect.items():
        assert ports[port]["direction"] == direction
        assert ports[port]["width"] == layout.size
        assert ports[port]["layout"] == describe_shape(layout)
    one_bit = {"wr__valid": "input", "i__valid": "input", "i__ready": "output",
               "o__valid": "output", "o__ready": "input", "clk": "input", "rst": "input"}
    for port, direction in one_bit.items():
        assert (ports[port]["direction"], ports[port]["width"]) == (direction, 1)
    assert set(ports) == set(expect) | set(one_bit)
    # field offsets, as the cocotb side will use them
    obs = ports["obs"]["layout"]["fields"]
    for field_name, field in obs_layout(cfg):
        assert obs[field_name]["offset"] == field.offset
        assert obs[field_name]["width"] == field.width
    assert obs["phase"]["members"] == {m.name: m.value for m in Phase}
    assert obs["acc"]["element"] == {"kind": "int", "width": cfg.acc_bits, "signed": True}
    assert obs["col_sum"]["length"] == cfg.cols and obs["col_sum"]["stride"] == cfg.read_bits
    # the always-ready weight stream has no ready port
    block = manifest["blocks"]["datapath"]
    assert block["constants"] == [{"name": "wr__ready", "direction": "output",
                                   "path": ["wr", "ready"], "value": 1, "width": 1}]
    assert block["streams"]["wr"] == {"direction": "input", "payload": "wr__payload",
                                      "valid": "wr__valid", "ready": None}
    assert block["streams"]["o"]["ready"] == "o__ready"
    # the named layouts are the same descriptions
    assert manifest["layouts"]["obs"] == ports["obs"]["layout"]


@pytest.mark.parametrize("name", SMALL)
def test_manifest_ports_match_verilog(generated, name):
    _, d, manifest = generated[name]
    for entry in manifest["blocks"].values():
        text = (d / entry["file"]).read_text()
        header = text[text.index(f"module {entry['module']}("):]
        header = header[:header.index("endmodule")]
        declared = {m[3]: (m[1], int(m[2]) + 1 if m[2] else 1) for m in re.finditer(
            r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\S+)\s*;", header, re.M)}
        assert declared == {p["name"]: (p["direction"], p["width"]) for p in entry["ports"]}


def test_sub_block_ports(generated):
    cfg, _, manifest = generated["small"]
    widths = {b: {p["name"]: p["width"] for p in e["ports"]}
              for b, e in manifest["blocks"].items()}
    assert widths["crossbar"] == {
        "wr__payload": weight_write_layout(cfg).size, "wr__valid": 1, "levels": cfg.rows,
        "step": 1, "en": 1, "clear": 1, "col_sum": cfg.cols * cfg.read_bits,
        "insum": cfg.insum_bits, "flags": cfg.cols, "clk": 1, "rst": 1}
    assert widths["adc"] == {"col_sum": cfg.cols * cfg.read_bits, "group": 2,
                             "code": 4 * cfg.adc_bits, "rec": 4 * cfg.read_bits}
    assert set(widths["shiftadd"]) == {"rec", "insum", "flags", "chunk", "group", "clear",
                                       "en", "finalize", "layer", "acc", "xsum", "y",
                                       "clk", "rst"}


def test_parameter_errors(tmp_path):
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig"):
        generate("small", tmp_path)
    with pytest.raises(ValueError, match=r"^blocks must be names from crossbar, adc, "
                                         r"shiftadd, datapath, agu, convtile, requant_shift, "
                                         r"requant_mult, not \['alu'\]"):
        generate(load_config("small"), tmp_path, ["alu"])
    assert not list(tmp_path.iterdir())


def test_component_verilog_is_keyed_by_the_generator_sources(monkeypatch, tmp_path):
    """A cached tile's Verilog is named by the arch/hdl sources too: after a change of the
    generator's code (here: a different source digest) a new file is written, never the
    stale one reused."""
    import cosim.run
    import gen.verilog
    from arch.config import load_config
    from cosim.tile import tile_sources
    from hdl.convtile import default_geometry

    monkeypatch.setattr(cosim.run, "BUILD_ROOT", tmp_path)
    cfg = load_config("small")
    geom = default_geometry(cfg)
    digest = gen.verilog.hdl_source_digest()
    assert len(digest) == 12 and digest == gen.verilog.hdl_source_digest()
    (a,), _ = tile_sources(cfg, geom)
    monkeypatch.setattr(gen.verilog, "hdl_source_digest", lambda: "0" * 12)
    (b,), _ = tile_sources(cfg, geom)
    assert a != b and a.exists() and b.exists()
    assert a.read_text() == b.read_text()
