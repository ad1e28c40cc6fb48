"""The analytic layer energy model against an independent path: explicit cropped im2col vectors
through ``golden.events.datapath_events``."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from arch.config import load_config
from arch.energy import event_pj, load_energy_table
from arch.geometry import ConvGeometry
from golden.crop import crop_activations, output_window
from golden.energy_model import (LAYER_EVENTS, Calibration, conv_layer_energy,
                                 conv_layer_events, load_calibration)
from golden.events import datapath_events
from arch.geometry import conv_out_size
from golden.layer import matrix_mapping


def explicit_events(cfg, x, cout, k, s, p, window):
    """Events by brute force: the im2col vectors of the computed positions of the cropped
    input, cut into row tiles, through ``datapath_events`` once per (tile, group)."""
    _, cin, H, W = x.shape
    K = cin * k * k
    ow = output_window(window, H, W, k, s, p)
    wo = conv_out_size(W, k, s, p)
    patches = F.unfold(crop_activations(x, window).double(), (k, k), padding=p, stride=s)
    patches = patches[0].t().to(torch.int64)                       # [L, K]
    idx = [oy * wo + ox for oy in range(ow[0], ow[1]) for ox in range(ow[2], ow[3])]
    patches = patches[idx]
    mapping = matrix_mapping(cfg, K, cout)
    tiles, groups = mapping.row_tiles, mapping.groups
    padded = torch.zeros(len(idx), tiles * cfg.rows, dtype=torch.int64)
    padded[:, :K] = patches
    total = {}
    for t in range(tiles):
        for _ in range(groups):
            ev = datapath_events(cfg, padded[:, t * cfg.rows:(t + 1) * cfg.rows], jobs=1)
            for key, v in ev.items():
                total[key] = total.get(key, 0) + v
    return total


CASES = [  # config, Cin, Cout, H, W, k, s, p, window
    ("small", 1, 8, 12, 12, 3, 1, 1, None),
    ("small", 1, 8, 12, 12, 3, 1, 1, (3, 12, 0, 9)),
    ("small", 3, 6, 9, 10, 3, 2, 1, (2, 7, 3, 10)),          # 2 row tiles, 2 groups
    ("small_signed", 2, 5, 8, 8, 3, 1, 0, (1, 6, 2, 8)),     # signed inputs, 2-bit DAC
    ("isaac", 16, 9, 6, 6, 3, 2, 1, (0, 4, 2, 6)),           # 2 row tiles of 128
]


@pytest.mark.parametrize("name,cin,cout,H,W,k,s,p,window", CASES)
def test_events_equal_explicit_im2col(name, cin, cout, H, W, k, s, p, window):
    cfg = load_config(name)
    seed = 1234 + cin * 7 + H
    print(f"seed {seed}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(cfg.input_min, cfg.input_max + 1, (1, cin, H, W), generator=g)
    x[0, 0, 1:3] = 0                                   # some zero activations
    geo = ConvGeometry(cin, cout, k, s, p, H, W)
    ev = conv_layer_events(cfg, geo, window=window, x=x)
    assert set(ev) == set(LAYER_EVENTS)
    want = explicit_events(cfg, x, cout, k, s, p, window or (0, H, 0, W))
    got = {key: int(v.item()) if isinstance(v, torch.Tensor) else v for key, v in ev.items()}
    assert {key: got[key] for key in want} == want
    # without x: an upper bound on the DAC counts, the rest unchanged
    bound = conv_layer_events(cfg, geo, window=window)
    assert bound["dac_drives"] >= got["dac_drives"]
    assert bound["dac_level_sum"] >= got["dac_level_sum"]
    assert {key: v for key, v in bound.items() if not key.startswith("dac")} == \
        {key: v for key, v in got.items() if not key.startswith("dac")}


def test_batched_equals_per_image():
    cfg = load_config("small")
    g = torch.Generator().manual_seed(5)
    print("seed 5")
    x = torch.randint(0, 256, (4, 2, 10, 10), generator=g) * (torch.rand(4, 2, 10, 10, generator=g) < 0.5)
    geo = ConvGeometry(in_channels=2, out_channels=4, height=10, width=10, kernel=3, stride=1,
                       padding=1)
    kw = dict(window=(2, 10, 1, 8))
    batched = conv_layer_events(cfg, geo, x=x, **kw)
    assert batched["dac_drives"].shape == (4,)
    for b in range(4):
        one = conv_layer_events(cfg, geo, x=x[b], **kw)
        assert int(one["dac_drives"]) == int(batched["dac_drives"][b])
    table = load_energy_table()
    e = conv_layer_energy(cfg, table, geo, x=x, calibration=None, **kw)
    assert e.total_pj.shape == (4,) and e.total_pj.dtype == torch.float64
    e0 = conv_layer_energy(cfg, table, geo, x=x[0], **kw)
    assert float(e.total_pj[0]) == pytest.approx(float(e0.total_pj[0]))


def test_energy_by_hand_uncalibrated(tmp_path, monkeypatch):
    """Layer 0 of the demo CNN shape on small, no x, no calibration: each term by hand."""
    import golden.energy_model as em

    monkeypatch.setattr(em, "CALIBRATION_DIR", tmp_path)          # no shipped calibration
    cfg, table = load_config("small"), load_energy_table()
    e = conv_layer_energy(cfg, table, ConvGeometry(in_channels=1, out_channels=8, height=32,
                                                   width=32, kernel=3, stride=1, padding=1))
    assert e.calibration is None
    assert e.calibration_status.startswith("none for config small and table isaac32nm")
    assert "digital energy not counted" in e.calibration_status
    V = 1024 * 2                                   # 1024 positions x (1 tile x 2 groups)
    assert e.events["vectors"] == V
    pj = event_pj(table, cfg)
    assert pj["adc_conversion"] == pytest.approx(1.67 / 8)          # 5-bit ADC, 8-bit table
    assert e.by_event["adc_conversion"] == pytest.approx(V * 8 * 16 * 1.67 / 8)
    assert e.by_event["row_read"] == pytest.approx(V * 8 * 16 * 0.234)
    assert e.by_event["dac_drive"] == pytest.approx(2 * 1024 * 9 * 8 * 0.417)
    assert e.by_event["edram_read_bit"] == pytest.approx(1024 * 8 * 0.0799)
    assert e.by_event["edram_write_bit"] == pytest.approx(1024 * 8 * 8 * 0.0799)
    assert e.by_block["adc"] == pytest.approx(e.by_event["adc_conversion"])
    assert e.total_pj == pytest.approx(sum(e.by_event.values()))


def test_calibration_roundtrip_and_use(tmp_path):
    cfg, table = load_config("small"), load_energy_table()
    cal = Calibration(cfg.name, cfg.digest, table.name,
                      {"control": {"vector": 2.0, "xbar_step": 0.5},
                       "shiftadd": {"adc_step": 0.25}},
                      {"runs": [{"layer": 0, "crop": 3}], "seed": 0, "rms": 0.1})
    f = tmp_path / "small.toml"
    f.write_text(cal.to_toml())
    back = load_calibration(cfg, table, f)
    assert back.pj == cal.pj and back.provenance["runs"] == [{"layer": 0, "crop": 3}]
    geo = ConvGeometry(in_channels=1, out_channels=4, height=4, width=4, kernel=3, stride=1,
                       padding=1)
    e = conv_layer_energy(cfg, table, geo, calibration=back)
    V = 16
    assert e.by_event["digital.vector"] == pytest.approx(2.0 * V)
    assert e.by_event["digital.adc_step"] == pytest.approx(0.25 * V * 8 * 4)
    assert e.calibration == str(f) and e.calibration_status == str(f)
    assert load_calibration(load_config("small_clip"), table, f) is None       # another tile
    assert load_calibration(cfg, "other_table", f) is None                     # another table
    with pytest.raises(ValueError, match="calibration"):
        conv_layer_energy(load_config("small_clip"), table, geo, calibration=back)


TABLE_B = Path(__file__).parents[2] / "configs" / "energy" / "isaac32nm.toml"


def test_calibrations_keyed_by_config_and_table(tmp_path, monkeypatch):
    """One file per (config, table): calibrating for table B leaves table A's file alone, each
    loads under its own table only, and a table without one is reported, never a silent 0."""
    import golden.energy_model as em

    monkeypatch.setattr(em, "CALIBRATION_DIR", tmp_path)
    cfg, table_a = load_config("small"), load_energy_table()
    b = tmp_path / "b.toml"
    b.write_text(TABLE_B.read_text().replace('name = "isaac32nm"', 'name = "other32nm"'))
    table_b = load_energy_table(b)
    assert table_b.name == "other32nm"
    geo = ConvGeometry(1, 4, 3, 1, 1, 4, 4)
    cal_a = Calibration(cfg.name, cfg.digest, table_a.name, {"control": {"vector": 2.0}})
    cal_b = Calibration(cfg.name, cfg.digest, table_b.name, {"control": {"vector": 3.0}})
    path_a = em.save_calibration(cal_a)
    assert path_a == tmp_path / "small" / "isaac32nm.toml"
    text_a = path_a.read_text()
    # table B has no calibration yet: said so, digital logic not charged
    e = conv_layer_energy(cfg, table_b, geo)
    assert e.calibration is None and "digital.vector" not in e.by_event
    assert e.calibration_status.startswith("none for config small and table other32nm")
    path_b = em.save_calibration(cal_b)
    assert path_b == tmp_path / "small" / "other32nm.toml" != path_a
    assert path_a.read_text() == text_a                      # A's file untouched
    assert load_calibration(cfg, table_a).pj == cal_a.pj
    assert load_calibration(cfg, table_b).pj == cal_b.pj
    assert conv_layer_energy(cfg, table_a, geo).by_event["digital.vector"] == 2.0 * 16
    assert conv_layer_energy(cfg, table_b, geo).by_event["digital.vector"] == 3.0 * 16
    assert conv_layer_energy(cfg, table_b, geo).calibration == str(path_b)


def test_shipped_calibration_is_keyed_by_table():
    cfg, table = load_config("small"), load_energy_table()
    cal = load_calibration(cfg, table)
    assert cal is not None and cal.table == "isaac32nm"
    assert cal.path.endswith("configs/energy/calibration/small/isaac32nm.toml")


def test_layer_geometry_and_type_check():
    from golden.energy_model import layer_geometry
    from golden.fixedpoint import QuantLayer

    layer = QuantLayer(0, "conv", torch.zeros(4, 2, 3, 3, dtype=torch.int64),
                       torch.zeros(4, dtype=torch.int64), 2, True, 2, 1, 4, 4, 6,
                       x=torch.zeros(1, 2, 9, 7, dtype=torch.int64))
    assert layer_geometry(layer) == ConvGeometry(2, 4, 3, 2, 1, 9, 7)
    with pytest.raises(TypeError, match="ConvGeometry"):
        conv_layer_events(load_config("small"), dict(in_channels=2))
