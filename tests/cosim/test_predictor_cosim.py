"""The crop predictor in Verilator: shipped test images through the Predictor alone (crop,
row, cycles and port events equal the golden integer model; energy from the waveform's
toggles, equal to the stored measurement the crop study charges) and through PredTile
(predict -> crop -> compute in one simulation: the crop is predict_int's, the output map the
golden cropped conv's, the cycles predictor_cycles + tile_cycles). Slow-marked (``make
bench``): each design's Verilator build takes a minute or more on the shared machine; the
Amaranth-simulator tests in tests/hdl/test_predictor.py and test_predtile.py hold the same
properties in ``make test``."""

import pytest

from arch.config import load_config
from arch.energy import load_energy_table
from cosim.predtile import (load_predictor_energy, measure_predictor, run_predtile,
                            study_params)
from cosim.sim import selected_simulators
from cosim.tile import demo_tile_layer

pytestmark = pytest.mark.cosim


def _verilator():
    if "verilator" not in selected_simulators():
        pytest.skip("SIM excludes verilator")


def _pixels(cfg, idx):
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_inputs, quantize_democnn

    net = quantize_democnn(cfg, load_democnn())
    return net, quant_inputs(net, cluttered_digits("test")[0][idx])


@pytest.mark.slow
def test_measured_predictor_energy_is_the_stored_one():
    """The stored figure is current: a fresh RTL measurement on the same images gives the same
    pJ per image (toggle counts are exact), the RTL agreed with the golden model on every
    image (measure_predictor raises otherwise), and pJ grows with the rows evaluated."""
    _verilator()
    cfg, table = load_config("small"), load_energy_table("isaac32nm")
    stored = load_predictor_energy(cfg, table)
    assert stored is not None
    fresh = measure_predictor(cfg, table, images=len(stored["images"]))
    assert fresh["images"] == stored["images"] and fresh["cycles"] == stored["cycles"]
    assert fresh["pj"] == pytest.approx(stored["pj"], rel=1e-9)
    assert fresh["row_pj"] > 0 and fresh["load_pj"] > 0 and fresh["fit_residual"] < 0.01
    assert all(d > 0 for d in fresh["digital_pj"])


@pytest.mark.slow
def test_predict_crop_compute_verilator():
    _verilator()
    cfg = load_config("small")
    layer, geom, _ = demo_tile_layer(cfg, 0)
    idx = [0, 5, 16]              # uncropped, crop 3 (row 6), crop 9 (row 8)
    net, x = _pixels(cfg, idx)
    run = run_predtile(cfg, geom, layer, study_params(cfg, net.input_frac), x, "verilator",
                       labels=idx)
    assert run["passed"], run["message"]
    assert [r["crop"] for r in run["images"]] == [0, 3, 9]
    assert all(r["bit_exact"] and r["cycles_rtl"] == r["cycles_golden"]
               for r in run["images"])
