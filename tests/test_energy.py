"""The energy table loader, the analytic events of a cropped layer, and `aqua energy`."""

import json
from pathlib import Path

import pytest
import torch

from aqua.cli import main
from arch.config import load_config
from arch.energy import EVENT_KEYS, EnergyTableError, event_energy, load_energy_table
from golden.events import datapath_events

TABLE = """
name = "t"
adc_reference_bits = 8
[events.adc_conversion]
energy = 1.67
unit = "pJ"
source = "x"
""" + "".join(f'[events.{k}]\nenergy = 1\nunit = "fJ"\nsource = "s"\n'
              for k in EVENT_KEYS[1:]) + "".join(
    f'[toggle.{k}]\nenergy = 1\nunit = "fJ"\nsource = "s"\n' for k in ("register", "comb", "clock"))


def test_shipped_table_has_units_and_sources():
    t = load_energy_table("isaac32nm")
    assert t.events["adc_conversion"].pj == pytest.approx(1.67)
    assert t.events["dac_drive"].pj == pytest.approx(0.417)
    assert t.events["shift_add"].pj == pytest.approx(0.021)
    assert t.toggle["comb"].pj == pytest.approx(1e-3)
    assert all(e.source for e in [*t.events.values(), *t.toggle.values()])


@pytest.mark.parametrize("old,new,msg", [
    ('energy = 1.67', 'energy = -1', "non-negative"),
    ('unit = "pJ"', 'unit = "mW"', "unit must be one of"),
    ('source = "x"', 'source = ""', "source must say"),
    ('[events.adc_conversion]', '[events.adc]', "missing adc_conversion"),
])
def test_table_errors(tmp_path, old, new, msg):
    f = tmp_path / "t.toml"
    f.write_text(TABLE.replace(old, new, 1))
    with pytest.raises(EnergyTableError, match=msg):
        load_energy_table(f)


def test_table_ok_and_unknown_name(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text(TABLE)
    t = load_energy_table(f)
    assert t.events["row_read"].pj == pytest.approx(1e-3)
    with pytest.raises(EnergyTableError, match="no energy table"):
        load_energy_table("nope")


def test_events_and_energy_by_hand():
    cfg = load_config("small")
    x = torch.zeros(3, cfg.rows, dtype=torch.int64)
    x[0, 0] = 1          # one level in chunk 0
    x[1, :2] = 3         # two rows x two chunks
    ev = datapath_events(cfg, x, jobs=1)
    assert ev["dac_drives"] == 5 and ev["dac_level_sum"] == 5
    assert ev["adc_conversions"] == 3 * cfg.input_cycles * cfg.cols
    assert ev["weight_writes"] == cfg.rows * cfg.outputs
    e = event_energy(load_energy_table(), ev, cfg)
    # 5-bit ADC charged 2**(5 - 8) of the table's 8-bit 1.67 pJ
    assert e["adc_conversion"]["pj"] == pytest.approx(ev["adc_conversions"] * 1.67 / 8)
    assert e["edram_read_bit"]["pj"] == 0          # a bare Datapath run has no memory
    assert e["adc_conversion"]["block"] == "adc"


def test_crop_removes_work():
    from cosim.energy_report import crop_jobs
    from cosim.run import cnn_jobs
    from golden.fixedpoint import QuantLayer

    cfg = load_config("small")
    g = torch.Generator().manual_seed(1)
    layer = QuantLayer(0, "conv", torch.randint(-3, 4, (4, 1, 3, 3), generator=g),
                       torch.zeros(4, dtype=torch.int64), 2, True, 1, 1, 4, 4, 6,
                       x=torch.randint(0, 256, (1, 1, 8, 8), generator=g))
    full, ow = crop_jobs(cfg, layer, (0, 8, 0, 8))
    assert ow == (0, 8, 0, 8)
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(full, cnn_jobs(cfg, layer)))
    cropped, ow = crop_jobs(cfg, layer, (2, 8, 0, 8))
    assert ow == (1, 8, 0, 8) and cropped[0]["x"].shape[0] == 7 * 8


def test_cli_energy_analytic(tmp_path, capsys):
    assert main(["energy", "--no-rtl", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "energy-small-layer0.json").read_text())
    assert len(doc["crops"]) == 16 and len(doc["layers"]) == 4
    full = doc["crops"][0]
    assert full["positions"] == 1024 and full["events"]["vectors"] == 2048
    assert all(c["total_pj"] < full["total_pj"] for c in doc["crops"][1:])
    assert full["total_pj"] == pytest.approx(sum(full["by_block"].values()))
    assert (tmp_path / "energy-small-layer0.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "best crop" in out
    # the shipped calibration of small under isaac32nm is used, and the report names it
    assert doc["calibration"].endswith("calibration/small/isaac32nm.toml")
    assert doc["calibration_status"] == doc["calibration"]
    assert "digital calibration: " in out and "small/isaac32nm.toml" in out.replace("\n", "")
    assert set(doc["timing"]) == {"wall_s"} and "wall_s" not in doc


def test_cli_energy_json_same_but_timing(tmp_path):
    """Two runs with the same arguments write the same JSON byte for byte outside ``timing``."""
    texts = []
    for d in ("a", "b"):
        assert main(["energy", "small", "2", "5", "--analytic", "--out", str(tmp_path / d)]) == 0
        doc = json.loads((tmp_path / d / "energy-small-layer2.json").read_text())
        assert doc.pop("timing")["wall_s"] > 0
        texts.append(json.dumps(doc, indent=1).encode())
    assert texts[0] == texts[1]


def test_cli_energy_without_calibration_says_so(tmp_path, capsys):
    """A table with no calibration for the config: the report says the digital energy is not
    counted (text and JSON), and no digital term is charged."""
    b = tmp_path / "other.toml"
    shipped = Path(load_energy_table().path).read_text()
    b.write_text(shipped.replace('name = "isaac32nm"', 'name = "other32nm"'))
    assert main(["energy", "--analytic", "--table", str(b), "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "energy-small-layer0.json").read_text())
    assert doc["calibration"] is None
    assert doc["calibration_status"].startswith("none for config small and table other32nm")
    assert not any(k.startswith("digital.") for k in doc["crops"][0]["by_event"])
    out = " ".join(capsys.readouterr().out.split())
    assert "digital calibration: none for config small and table other32nm - digital energy " \
           "not counted" in out


def test_cli_energy_unwritable_out(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["energy", "--analytic", "--out", str(f / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write --out ") and err.count("\n") == 1
    assert main(["energy", "--calibrate", "--out", str(f / "sub" / "cal.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write --out ") and err.count("\n") == 1


def test_cli_energy_positional(tmp_path):
    assert main(["energy", "small", "3", "15", "--analytic", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "energy-small-layer3.json").read_text())
    assert [c["crop"] for c in doc["crops"]] == [0, 15] and doc["best_crop"] == 15
    # conv 16->32 s2 on 16x16: 9 row tiles x 8 groups, 64 positions uncropped
    assert doc["crops"][0]["events"]["crossbars"] == 72
    assert doc["crops"][0]["events"]["vectors"] == 64 * 72


@pytest.mark.parametrize("argv,msg", [
    (["energy", "--no-rtl", "--table", "nope"], "no energy table"),
    (["energy", "small", "4", "--analytic"], "LAYER must be a conv layer of the demo CNN, 0..3"),
    (["energy", "small", "0", "16", "--analytic"], "CROP must be a crop vector index 0..15"),
    (["energy", "small", "--config", "isaac", "--analytic"], "config given twice"),
    (["energy", "nope", "--analytic"], "nope"),
    (["energy", "small", "1", "--tile"], "--tile: layer 1 needs 72 crossbar rows, small has 16"),
    (["energy", "small", "0", "--tile", "--analytic"], "--tile co-simulates the ConvTile"),
    (["energy", "small", "--image", "360", "--analytic"], "--image must lie in [0, 359]"),
    (["energy", "small", "7", "--calibrate"], "LAYER must be a conv layer"),
    (["energy", "small", "1", "--tile", "--calibrate"], "--tile: layer 1 needs 72"),
])
def test_cli_energy_errors(capsys, argv, msg):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1


def test_one_registry_one_total_one_fit():
    """The event names, blocks and operations live once in ``arch.energy``; the digital total
    and the NNLS fit are the helpers there."""
    import golden.energy_model as em
    import golden.events as ge
    from arch import energy as E

    assert ge.EVENTS is E.DATAPATH_EVENTS and em.LAYER_EVENTS is E.LAYER_EVENTS
    assert em.OPS is E.OPS and em.TILE_OPS is E.TILE_OPS and em.BLOCKS is E.BLOCKS
    counts = {c for c, _ in E.EVENT_MAP.values()} | set(E.OPS.values()) | set(E.TILE_OPS.values())
    assert counts <= set(E.LAYER_EVENTS)
    te = {"a": {"register": 1.0, "comb": 2.0, "clock": 0.5, "register_toggles": 9},
          "b": {"register": 0.25, "comb": 0.0, "clock": 0.0}}
    assert E.digital_pj(te["a"]) == 3.5 and E.digital_total(te) == 3.75
    coef, res = E.nnls_fit([[1, 0], [0, 2], [1, 1]], [2, 4, 4])
    assert coef == pytest.approx([2.0, 2.0]) and res == pytest.approx(0.0, abs=1e-12)
    coef, res = E.nnls_fit([[1.0], [2.0]], [-1.0, -2.0])      # non-negative: clamps at 0
    assert coef == [0.0] and res == pytest.approx(2.5 ** 0.5 / 1.5)
    assert E.nnls_fit([[0.0], [0.0]], [0.0, 0.0]) == ([0.0], None)


def test_cli_energy_breakdown(tmp_path, capsys):
    """``aqua energy --config isaac --breakdown``: the table beside ISAAC's, the JSON and PNG
    written; ``--json`` prints the same report."""
    assert main(["energy", "--config", "isaac", "--breakdown", "--out", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "analog event" in out and "digital event" in out and "not in the estimate" in out
    assert "ISCA 2016" in out and "overlapped (ISAAC pipeline)" in out
    doc = json.loads((tmp_path / "energy-breakdown-isaac.json").read_text())
    assert (tmp_path / "energy-breakdown-isaac.png").stat().st_size > 1000
    assert doc["crossbars"] == 8 and doc["published"] == "isaac_table6"
    assert main(["energy", "isaac", "--breakdown", "--json", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == doc


@pytest.mark.parametrize("argv,msg", [
    (["energy", "--analytic", "--json"], "--json goes with --breakdown"),
    (["energy", "--breakdown", "--tile"], "--breakdown is analytic"),
    (["energy", "--breakdown", "--published", "nope"], "no published power table 'nope'"),
])
def test_cli_energy_breakdown_errors(capsys, argv, msg):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1
