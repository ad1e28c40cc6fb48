"""Layer-wise fixed-point search: cost accounting by hand on a toy model, the search meeting
its bound, the baselines, and the fused shift-and-round network's operation counts."""

import doctest
import json

import pytest
import torch
from torch import nn

from aqua.cli import main
from golden import qbaseline, qreport, qshift
from golden import qformat as qf
from golden import qlayers as qn
from golden import qsearch as qs
from golden.cnn import load_democnn
from golden.data import cluttered_digits
from golden.fixedpoint import calibration_images, frac_bits_for

N_VAL = 120       # validation images for the tests (the command's default is 360)


class Toy(nn.Module):
    """conv 1->2 3x3 p1 on 8x8, conv 2->4 3x3 s2 p1 (-> 4x4), pool, linear 4->3."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList([nn.Conv2d(1, 2, 3, padding=1),
                                    nn.Conv2d(2, 4, 3, stride=2, padding=1)])
        self.fc = nn.Linear(4, 3)


@pytest.fixture(scope="module")
def demo():
    model = load_democnn()
    x, y = cluttered_digits("test")
    return model, qn.describe(model), calibration_images(), x[:N_VAL], y[:N_VAL]


@pytest.fixture(scope="module")
def searches(demo):
    _, layers, calib, x, y = demo
    aware = qs.search(layers, calib, x, y)
    alone = qs.search(layers, calib, x, y, interactions=False, refine=False)
    return aware, alone


def test_doctests():
    results = [doctest.testmod(m, raise_on_error=False)
               for m in (qf, qn, qs, qshift, qbaseline, qreport)]
    assert sum(r.attempted for r in results) >= 3 and sum(r.failed for r in results) == 0


def test_fmt_ranges_and_validation():
    assert (qf.Fmt(8, 3).lo, qf.Fmt(8, 3).hi) == (-128, 127)
    assert (qf.Fmt(3, 0, False).lo, qf.Fmt(3, 0, False).hi) == (0, 7)
    assert str(qf.Fmt(5, -2, False)) == "u5.-2"
    with pytest.raises(ValueError, match="bits must be a positive integer, not 0"):
        qf.Fmt(0, 0)


def test_fake_quant_rounds_half_even_and_saturates():
    t = torch.tensor([0.125, 0.375, -0.125, 0.9, -1.2])
    #   x * 4 =        0.5,   1.5,   -0.5,   3.6, -4.8  -> 0, 2, 0, 3 (sat), -4
    assert qf.fake_quant(t, qf.Fmt(3, 2)).tolist() == [0.0, 0.5, 0.0, 0.75, -1.0]
    assert qf.fake_quant(t, None) is t


def test_cost_accounting_on_toy_by_hand():
    layers = qn.describe(Toy(), image_hw=(8, 8))
    # conv0: 8*8 outputs x 2 ch x 9 taps; conv1: 4*4 x 4 ch x 2*9 taps; fc: 3 x 4
    assert qn.macs(layers) == [1152, 1152, 12]
    fmts = [qf.LayerFormat(qf.Fmt(4, 0, False), qf.Fmt(3, 0), qf.Fmt(8, 0)),
            qf.LayerFormat(qf.Fmt(6, 0, False), qf.Fmt(5, 0), qf.Fmt(10, 0)),
            qf.LayerFormat(qf.Fmt(8, 0, False), qf.Fmt(2, 0), qf.Fmt(16, 0))]
    # weights 18, 72, 12; biases 2, 4, 3
    assert qn.memory_bits(layers, fmts) == 18 * 3 + 2 * 8 + 72 * 5 + 4 * 10 + 12 * 2 + 3 * 16
    assert qn.multiply_cost(layers, fmts) == 1152 * 3 * 4 + 1152 * 5 * 6 + 12 * 2 * 8
    s = qn.cost_summary(layers, fmts)
    assert s["memory_ratio_vs_uniform8"] == pytest.approx(542 / (8 * 111))
    assert s["multiply_ratio_vs_uniform8"] == pytest.approx(48576 / (64 * 2316))


def test_demo_macs_and_quant_op_counts_by_hand(demo):
    layers = demo[1]
    assert qn.macs(layers) == [32 * 32 * 8 * 9, 16 * 16 * 16 * 72, 16 * 16 * 16 * 144,
                               8 * 8 * 32 * 144, 320]
    ops = qshift.quant_op_counts(layers)
    # before: image, 4 x (conv, relu), pool, fc = 11; after: image, 4 fused, pool, fc = 7
    outs = 8 * 32 * 32 + 16 * 16 * 16 + 16 * 16 * 16 + 32 * 8 * 8
    assert ops == {"modules_before": 11, "modules_after": 7,
                   "elements_before": 1024 + 2 * outs + 32 + 10,
                   "elements_after": 1024 + outs + 32 + 10}


def test_uniform8_formats(demo):
    _, layers, calib, _, _ = demo
    fmts = qf.uniform_formats(layers, qn.calibration_ranges(layers, calib), 8)
    assert all(getattr(f, k).bits == 8 for f in fmts for k in "xwb")
    assert fmts[0].x == qf.Fmt(8, 7, False)            # image in [0, 1]: 1.0 * 2**7 <= 255
    for f, L in zip(fmts, layers):
        assert not f.x.signed and f.w.signed           # ReLU'd / pooled inputs, signed weights
        assert f.w.frac == frac_bits_for(float(L.weight.min()), float(L.weight.max()),
                                         -128, 127)
    assert qn.cost_summary(layers, fmts)["multiply_ratio_vs_uniform8"] == 1.0


def test_search_meets_bound_and_costs_less(demo, searches):
    _, layers, calib, x, y = demo
    aware, _ = searches
    assert aware.meets_bound
    acc = qn.accuracy(qn.fake_forward(layers, aware.formats, x), y)
    assert acc == aware.accuracy >= aware.float_accuracy - qs.DEFAULT_BOUND
    s = qn.cost_summary(layers, aware.formats)
    assert s["memory_ratio_vs_uniform8"] < 1 and s["multiply_ratio_vs_uniform8"] < 0.6
    assert all(2 <= getattr(f, k).bits <= 16 for f in aware.formats for k in "xwb")


def test_search_is_deterministic(demo, searches):
    _, layers, calib, x, y = demo
    again = qs.search(layers, calib, x, y)
    assert again.formats == searches[0].formats and again.accuracy == searches[0].accuracy


def test_ignoring_interactions_loses_more(searches):
    aware, alone = searches
    assert alone.formats != aware.formats
    assert alone.accuracy < aware.accuracy        # each layer alone met the bound; together not
    assert not alone.meets_bound


def test_search_rejects_bad_arguments(demo):
    _, layers, calib, x, y = demo
    with pytest.raises(ValueError, match="bound must be a fraction in"):
        qs.search(layers, calib, x, y, bound=1.5)
    with pytest.raises(ValueError, match="schedule must be"):
        qs.search(layers, calib, x, y, schedule="random")


def test_shift_round_fusion_keeps_the_integers(demo, searches):
    _, layers, calib, x, y = demo
    u8 = qf.uniform_formats(layers, qn.calibration_ranges(layers, calib), 8)
    for fmts in (u8, searches[0].formats):
        fused = qshift.shift_round(layers, fmts, x[:32], fused=True)
        unfused = qshift.shift_round(layers, fmts, x[:32], fused=False)
        assert torch.equal(fused, unfused)
    # power-of-two 8-bit, integer-exact, stays close to the float network
    acc = qn.accuracy(qshift.shift_round(layers, u8, x), y)
    assert acc >= searches[0].float_accuracy - 0.02


def test_torch_ao_int8_runs(demo):
    model, _, calib, x, y = demo
    r = qbaseline.torch_ao_int8(model, calib[:64], x[:64])
    assert r["method"].startswith("torch.ao.quantization"), r["method"]
    assert r["logits"].shape == (64, 10)
    assert qn.accuracy(r["logits"], y[:64]) > 0.8


def test_cli_rejects_too_many_images(capsys):
    assert main(["quantize", "--images", "400"]) == 2
    assert "--images must be at most 360" in capsys.readouterr().err


# The hardware section (synthesis, gate-level and RTL runs of the requantizers, the searched
# layer in the Datapath: two minutes) in `make bench`; its parts are tested on their own
# (tests/cosim/test_qhardware.py, test_requant_cosim.py).
@pytest.mark.parametrize("hardware", [pytest.param(True, marks=pytest.mark.slow), False])
def test_cli_writes_json(hardware, tmp_path, capsys):
    path = tmp_path / "q.json"
    extra = ["--sim", "verilator"] if hardware else ["--no-hardware"]
    assert main(["quantize", "--images", "60", *extra, "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["validation_images"] == 60
    assert set(report["methods"]) == {"searched", "uniform8", "no_interaction", "torch_ao_int8"}
    assert report["methods"]["searched"]["meets_bound"]
    assert report["quant_ops"]["modules_before"] == 11
    assert ("hardware" in report) == hardware
    assert "per-layer formats" in capsys.readouterr().out


def _keys(d, path=()):
    """Every key path of a nested JSON object."""
    for k, v in d.items():
        yield path + (k,)
        if isinstance(v, dict):
            yield from _keys(v, path + (k,))
        elif isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    yield from _keys(item, path + (k,))


def test_cli_json_timing_under_one_key(tmp_path, capsys):
    """Two runs give the same JSON byte for byte once the one ``timing`` key is dropped."""
    texts = []
    for name in ("a.json", "b.json"):
        path = tmp_path / name
        assert main(["quantize", "--images", "30", "--no-hardware", "--json", str(path)]) == 0
        report = json.loads(path.read_text())
        assert set(report["timing"]) == {"searched_seconds", "no_interaction_seconds",
                                         "golden_seconds"}
        assert all(v >= 0 for v in report["timing"].values())
        del report["timing"]
        assert not [p for p in _keys(report) if "seconds" in p[-1]]
        assert "hardware" not in report
        texts.append(json.dumps(report, indent=2, sort_keys=True))
    capsys.readouterr()
    assert texts[0] == texts[1]
