"""The crop study charges the learned 0th layer's cost measured in RTL when a measurement is
stored for the config and table (configs/predictor/energy-small-isaac32nm.toml), per image by
the classifier rows the hardware evaluates for its choice; else the analytic figure."""

import pytest
import torch

from arch.config import load_config
from arch.energy import load_energy_table
from aqua import crop_study as CS
from cosim.predtile import load_predictor_energy, study_zeroth
from golden.predictor_hw import crop_order


def test_rows_charged_follow_the_choice():
    m = CS.MeasuredPredictor(1000.0, 10.0, "x")
    cost = torch.tensor([100.0] + [float(c) for c in range(1, 16)])
    order = crop_order(cost)
    assert order == list(range(1, 16))
    choice = torch.tensor([1, 5, 0, 15])
    assert m(choice, 0.2, cost).tolist() == [1010.0, 1050.0, 1150.0, 1150.0]
    assert m(choice[:1], -1.0, cost).tolist() == [1000.0]      # never crops: no row run


def test_demo_subject_uses_the_stored_measurement():
    table = load_energy_table("isaac32nm")
    stored = load_predictor_energy("small", table)
    assert stored is not None and stored["path"] == \
        "configs/predictor/energy-small-isaac32nm.toml"
    zl, _, _ = study_zeroth(1)
    own = CS._democnn_predictor_energy(load_config("small"), table, zl, (32, 32))
    assert isinstance(own, CS.MeasuredPredictor)
    assert own.load_pj == pytest.approx(stored["load_pj"])
    # every measured image is the fit within 1 %, far below the analytic crossbar figure
    for cycles, pj in zip(stored["cycles"], stored["pj"]):
        rows = (cycles - 32 * 32 - 1) // 65                 # golden.predictor_hw cycles
        assert own.load_pj + own.row_pj * rows == pytest.approx(pj, rel=0.01)
    analytic = CS._predictor_energy(load_config("small"), table, zl, (32, 32))
    assert analytic == pytest.approx(66.9e3, rel=0.01)
    assert max(stored["pj"]) < analytic / 5
    assert load_predictor_energy("medium", table) is None
