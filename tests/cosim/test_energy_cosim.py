"""The analytic layer model against a co-simulated run: ``conv_layer_events`` equals the RTL's
events of a cropped, tiled conv layer, per-cycle toggles add up to the run's totals, and the
shipped calibration predicts the toggle-based digital energy of runs it was not fitted on."""

import os

import pytest
import torch

from arch.config import load_config
from arch.energy import load_energy_table
from cosim.calibrate import HELDOUT_RUNS, calibrate, measure, predict
from cosim.energy_report import crop_jobs
from golden.energy_model import conv_layer_events, layer_geometry, load_calibration
from golden.events import EVENTS
from golden.fixedpoint import QuantLayer

SEED = int(os.environ.get("AQUA_SEED", "20261128"))

#: |calibrated estimate / toggle energy - 1| allowed on a run the calibration never saw. The
#: shipped fit's held-out runs (other layers, crops, images) stay within 7% (provenance of
#: configs/energy/calibration/small/isaac32nm.toml); this short run has random weights and a larger
#: share of the start-up and between-job idle cycles the analytic model leaves out (it
#: streams vectors back to back), hence a little more room.
HELDOUT_TOLERANCE = 0.10


def real_layer(cfg, seed):
    """A 2->6 3x3 conv on an 8x8 map (2 row tiles x 2 output groups on ``small``) with real
    activations: channels 0-1 of the demo CNN's layer-1 input, the central 8x8 of test image
    ``10 + seed % 50`` (an image the calibration never ran); random weights."""
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_layer, quantize_democnn

    image = 10 + seed % 50
    images, _ = cluttered_digits("test")
    x = quant_layer(quantize_democnn(cfg, load_democnn()), 1, images[image:image + 1]).x
    x = x[:, :2, 12:20, 12:20].contiguous()
    g = torch.Generator().manual_seed(seed)
    return QuantLayer(1, "conv", torch.randint(-20, 21, (6, 2, 3, 3), generator=g),
                      torch.randint(-50, 51, (6,), generator=g), 4, True, 1, 1, 4, 4, 4, x=x)


def test_layer_events_equal_rtl_and_calibrated_estimate():
    cfg, table = load_config("small"), load_energy_table()
    print(f"seed {SEED}")
    layer = real_layer(cfg, SEED)
    window = (2, 8, 0, 7)
    jobs, _ = crop_jobs(cfg, layer, window)
    assert len(jobs) == 4 and jobs[0]["x"].shape[0] == 7 * 8      # 2 tiles x 2 groups
    m = measure(cfg, table, jobs, sim="verilator", seed=SEED, label="energy-model")
    ev = conv_layer_events(cfg, layer_geometry(layer), window=window, x=layer.x)
    # measure() has already held the RTL's events equal to golden.events on the jobs
    assert {k: int(ev[k].sum()) if hasattr(ev[k], "sum") else ev[k] for k in EVENTS} == \
        {k: m["events"][k] for k in EVENTS}
    # the per-cycle split covers every cycle once and adds up to the run's toggle energy
    assert sum(m["counts"].values()) == pytest.approx(m["cycles"], abs=2)
    for b, total in m["digital"].items():
        split = sum(m["pj"][cat][b] for cat in m["pj"])
        assert split == pytest.approx(total, rel=2e-3, abs=1.0)
    cal = load_calibration(cfg, table)
    assert cal is not None, "configs/energy/calibration/small/isaac32nm.toml is shipped"
    est = predict(cal, {**ev, "dac_drives": int(ev["dac_drives"].sum())})
    measured = sum(m["digital"].values())
    print(f"digital: toggles {measured:.0f} pJ, calibrated model {est:.0f} pJ "
          f"({est / measured - 1:+.1%}); idle cycles {m['counts']['idle']} of {m['cycles']}")
    assert abs(est / measured - 1) < HELDOUT_TOLERANCE


@pytest.mark.slow
def test_calibration_heldout_error():
    """The full calibration (as `aqua energy --calibrate`): every held-out run within 10%."""
    cfg, table = load_config("small"), load_energy_table()
    cal = calibrate(cfg, table, seed=SEED)
    errors = [r["error"] for r in cal.provenance["heldout"]]
    print("held-out errors", errors)
    assert len(errors) == len(HELDOUT_RUNS)
    assert max(abs(e) for e in errors) < HELDOUT_TOLERANCE
