"""``aqua adc``: accuracy against ADC bits, naive vs ADC-aware (golden.qadc), run as a user
would; one ``error:`` line and status 2 for every mistake."""

import json

import pytest

from tests.test_cli import aqua, assert_usage_error


def test_adc_report_runs_and_the_search_rescues_a_clipping_adc(tmp_path):
    """The demo CNN on `small` with a 4-bit clip ADC: the plain formats lose most of the
    accuracy (measured 30.6 % on the first 180 test images; float 95.8 % on all 360), the
    ADC-aware formats keep it (measured 92.8 %, 64 search images). The bounds leave room for
    the smaller sets here (120 test images, 32 search images) and other torch builds."""
    out = tmp_path / "adc.json"
    r = aqua("adc", "--models", "democnn", "--modes", "clip", "--min-bits", "4",
             "--images", "120", "--search-images", "32", "--json", out, timeout=900)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    rows = {(row["mode"], row["adc_bits"]): row for row in data["rows"]}
    assert set(rows) == {("lossless", 5), ("clip", 4)}
    lossless, clip = rows["lossless", 5], rows["clip", 4]
    assert lossless["holds"] and lossless["naive_top1"] == lossless["aware_top1"]
    assert lossless["naive_top1"] >= lossless["float_top1"] - 0.01
    assert clip["naive_top1"] < 0.5
    assert clip["aware_top1"] >= 0.85
    assert [e["layer"] for e in clip["errors"]["naive"]] == [c["name"] for c in clip["layers"]]
    assert any(e["error_rms"] > 0 for e in clip["errors"]["naive"])
    assert lossless["errors"] == {}
    assert len(clip["layers"]) == 5 and all(c["mse"] <= c["plain_mse"] for c in clip["layers"])
    assert "clip 4b" in r.stdout and "top-1 on 120 test images" in r.stdout
    verdict = "democnn on small with a 4-bit clip ADC: top-1"
    assert (verdict in r.stdout) == (not clip["holds"])
    assert clip["holds"] == (clip["aware_top1"] >= clip["float_top1"] - 0.01)


@pytest.mark.parametrize("args, fragment", [
    (["--min-bits", "6"], "--min-bits must be at most 5"),
    (["--modes", "lossless"], "--modes takes drop_lsb and/or clip"),
    (["--images", "361"], "--images must be at most 360"),
    (["--search-images", "257"], "--search-images must be at most 256"),
    (["--models", "zoo:nonesuch", "--min-bits", "5", "--images", "1"], "unknown zoo model"),
    (["--config", "nonesuch"], "no configuration 'nonesuch'"),
    (["--bound", "100"], "must be in [0, 100)"),
])
def test_adc_mistakes_are_one_error_line(args, fragment):
    assert_usage_error(aqua("adc", *args), fragment)
