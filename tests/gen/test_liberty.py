"""gen.synth.synth_liberty on the OSU 0.18 um cells: the requantizers' areas, and a clear error
when the liberty is missing."""

import pytest

from arch.config import load_config
from gen.synth import OSU018_LIBERTY, LibertyMissing, check_liberty, synth_liberty
from gen.verilog import generate

needs_lib = pytest.mark.skipif(not OSU018_LIBERTY.is_file(),
                               reason="qflow-tech-osu018 is not installed")


@needs_lib
def test_shift_round_area(tmp_path):
    manifest = generate(load_config("small"), tmp_path, blocks=["requant_shift"])
    entry = manifest["blocks"]["requant_shift"]
    r = synth_liberty(tmp_path / entry["file"], entry["module"])
    # 8 output flip-flops (DFFPOSX1, 96 um^2 each) and a few hundred gates
    assert r["cell_types"]["DFFPOSX1"] == 8
    assert r["sequential_area_um2"] == 8 * 96.0
    assert 5_000 < r["area_um2"] < 20_000
    assert r["cells"] == sum(r["cell_types"].values())


def test_missing_liberty_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(LibertyMissing, match="not found: give the path of an existing"):
        check_liberty(tmp_path / "none.lib")
    import gen.synth as synth
    monkeypatch.setattr(synth, "OSU018_LIBERTY", tmp_path / "osu018_stdcells.lib")
    with pytest.raises(LibertyMissing, match=r"install Debian's qflow-tech-osu018 "
                                             r"\(`apt-get install -y qflow-tech-osu018`"):
        synth.check_liberty(synth.OSU018_LIBERTY)
