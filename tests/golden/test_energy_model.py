"""The analytic layer energy model against an independent path: explicit cropped im2col vectors
through ``golden.events.datapath_events``."""

import pytest
import torch
import torch.nn.functional as F

from arch.config import load_config
from arch.energy import event_pj, load_energy_table
from golden.crop import crop_activations, output_window
from golden.energy_model import (LAYER_EVENTS, Calibration, conv_layer_energy,
                                 conv_layer_events, load_calibration)
from golden.events import datapath_events
from golden.layer import tile_counts


def explicit_events(cfg, x, cout, k, s, p, window):
    """Events by brute force: the im2col vectors of the computed positions of the cropped
    input, cut into row tiles, through ``datapath_events`` once per (tile, group)."""
    _, cin, H, W = x.shape
    K = cin * k * k
    ow = output_window(window, H, W, k, s, p)
    wo = (W + 2 * p - k) // s + 1
    patches = F.unfold(crop_activations(x, window).double(), (k, k), padding=p, stride=s)
    patches = patches[0].t().to(torch.int64)                       # [L, K]
    idx = [oy * wo + ox for oy in range(ow[0], ow[1]) for ox in range(ow[2], ow[3])]
    patches = patches[idx]
    tiles, groups = tile_counts(cfg, K, cout)
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
    ev = conv_layer_events(cfg, in_channels=cin, out_channels=cout, height=H, width=W,
                           kernel=k, stride=s, padding=p, window=window, x=x)
    assert set(ev) == set(LAYER_EVENTS)
    want = explicit_events(cfg, x, cout, k, s, p, window or (0, H, 0, W))
    got = {key: int(v.item()) if isinstance(v, torch.Tensor) else v for key, v in ev.items()}
    assert {key: got[key] for key in want} == want
    # without x: an upper bound on the DAC counts, the rest unchanged
    bound = conv_layer_events(cfg, in_channels=cin, out_channels=cout, height=H, width=W,
                              kernel=k, stride=s, padding=p, window=window)
    assert bound["dac_drives"] >= got["dac_drives"]
    assert bound["dac_level_sum"] >= got["dac_level_sum"]
    assert {key: v for key, v in bound.items() if not key.startswith("dac")} == \
        {key: v for key, v in got.items() if not key.startswith("dac")}


def test_batched_equals_per_image():
    cfg = load_config("small")
    g = torch.Generator().manual_seed(5)
    print("seed 5")
    x = torch.randint(0, 256, (4, 2, 10, 10), generator=g) * (torch.rand(4, 2, 10, 10, generator=g) < 0.5)
    kw = dict(in_channels=2, out_channels=4, height=10, width=10, kernel=3, stride=1, padding=1,
              window=(2, 10, 1, 8))
    batched = conv_layer_events(cfg, x=x, **kw)
    assert batched["dac_drives"].shape == (4,)
    for b in range(4):
        one = conv_layer_events(cfg, x=x[b], **kw)
        assert int(one["dac_drives"]) == int(batched["dac_drives"][b])
    table = load_energy_table()
    e = conv_layer_energy(cfg, table, x=x, calibration=None, **kw)
    assert e.total_pj.shape == (4,) and e.total_pj.dtype == torch.float64
    e0 = conv_layer_energy(cfg, table, x=x[0], **kw)
    assert float(e.total_pj[0]) == pytest.approx(float(e0.total_pj[0]))


def test_energy_by_hand_uncalibrated(tmp_path, monkeypatch):
    """Layer 0 of the demo CNN shape on small, no x, no calibration: each term by hand."""
    import golden.energy_model as em

    monkeypatch.setattr(em, "CALIBRATION_DIR", tmp_path)          # no shipped calibration
    cfg, table = load_config("small"), load_energy_table()
    e = conv_layer_energy(cfg, table, in_channels=1, out_channels=8, height=32, width=32,
                          kernel=3, stride=1, padding=1)
    assert e.calibration is None
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
    back = load_calibration(cfg, f)
    assert back.pj == cal.pj and back.provenance["runs"] == [{"layer": 0, "crop": 3}]
    kw = dict(in_channels=1, out_channels=4, height=4, width=4, kernel=3, stride=1, padding=1)
    e = conv_layer_energy(cfg, table, calibration=back, **kw)
    V = 16
    assert e.by_event["digital.vector"] == pytest.approx(2.0 * V)
    assert e.by_event["digital.adc_step"] == pytest.approx(0.25 * V * 8 * 4)
    assert e.calibration == str(f)
    assert load_calibration(load_config("small_clip"), f) is None       # another tile
    with pytest.raises(ValueError, match="calibration"):
        conv_layer_energy(load_config("small_clip"), table, calibration=back, **kw)
