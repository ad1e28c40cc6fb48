"""``golden.energy_breakdown``: the model's energy per ISAAC component beside ISAAC's published
power table, with the events behind each number and the stand-ins kept out of the estimate."""

import pytest

from arch.config import load_config
from arch.energy import (BREAKDOWN, EnergyTableError, event_pj, load_energy_table,
                         load_published_power)
from arch.geometry import ConvGeometry, Mapping
from golden.energy_breakdown import IMA_LAYER, energy_breakdown
from golden.energy_model import conv_layer_events


def test_published_table_is_isaacs():
    pub = load_published_power()
    assert "ISCA 2016" in pub.source and pub.imas_per_tile == 12
    assert pub.mw("ima.adc") == 16.0 and pub.mw("tile.edram") == 20.7
    assert pub.ima_total() == pytest.approx(24.08)
    assert pub.tile_total() == pytest.approx(330, abs=0.5)     # ISAAC's tile: 330 mW
    assert pub.mw("ima.adc") * 12 / pub.tile_total() == pytest.approx(0.58, abs=0.005)


def test_published_table_errors_name_the_key(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text('imas_per_tile = 12\n[ima.adc]\npower_mw = "x"\n')
    with pytest.raises(EnergyTableError, match=r"\[ima.adc\].power_mw"):
        load_published_power(bad)


def test_isaac_layer_fills_one_ima_and_components_are_event_counts_times_table():
    cfg, table = load_config("isaac"), load_energy_table()
    rep = energy_breakdown(cfg, table, load_published_power())
    geom = ConvGeometry(**IMA_LAYER)
    m = Mapping(cfg, geom)
    assert m.crossbars == rep.crossbars == 8 and m.row_tiles == 1 and geom.rows == 126
    ev, pj = conv_layer_events(cfg, geom), event_pj(table, cfg)
    rows = {r["component"]: r for r in rep.rows}
    assert set(rows) == set(BREAKDOWN)
    assert rows["adc"]["pj"] == pytest.approx(ev["adc_conversions"] * pj["adc_conversion"])
    assert rows["sample_hold"]["pj"] == pytest.approx(ev["sample_holds"] * pj["sample_hold"])
    assert ev["sample_holds"] == ev["vectors"] * cfg.input_cycles * cfg.cols
    assert rows["edram"]["pj"] == pytest.approx(
        ev["ifmap_read_bits"] * pj["edram_read_bit"] + ev["ofmap_write_bits"]
        * pj["edram_write_bit"])
    # no calibration for isaac: the register rows are not counted, the stand-ins not estimated
    assert rows["input_register"]["pj"] is None and "not counted" in rows["input_register"]["kind"]
    assert all(s["pj"] is None for s in rep.stand_ins)
    assert rep.estimate_pj == pytest.approx(sum(r["pj"] for r in rep.rows if r["pj"]))
    # the ADC is the largest share, in the model and in ISAAC's table
    assert max(rows, key=lambda c: rows[c]["share"] or 0) == "adc"
    assert max(rows, key=lambda c: rows[c]["published_share_ima"] or 0) == "adc"
    assert rows["adc"]["share_ima"] == pytest.approx(rows["adc"]["published_share_ima"],
                                                     abs=0.06)
    assert rep.cycles["sequential"] - rep.cycles["overlapped"] == \
        ev["positions"] * (cfg.input_cycles - 1) * min(cfg.xbar_steps, cfg.adc_steps)


def test_calibrated_config_keeps_stand_ins_out_of_the_estimate():
    cfg, table = load_config("small"), load_energy_table()
    rep = energy_breakdown(cfg, table, load_published_power())
    assert rep.calibration is not None
    stand_in = sum(s["pj"] for s in rep.stand_ins)
    assert stand_in > 0 and all(s["pj"] > 0 for s in rep.stand_ins)
    counted = sum(r["pj"] for r in rep.rows if r["pj"] is not None)
    assert rep.estimate_pj == pytest.approx(counted)
    rows = {r["component"]: r for r in rep.rows}
    assert rows["input_register"]["kind"] == "digital toggles" and rows["input_register"]["pj"] > 0
