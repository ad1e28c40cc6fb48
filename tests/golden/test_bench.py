"""aqua bench's measurements (golden.timing): what a row says, on the cheapest layer."""

import json

from arch.config import load_config
from golden import fixedpoint as fxp
from golden.cnn import load_democnn
from golden.data import cluttered_digits
from golden.timing import (BITSERIAL_TARGET, INTEGER_TARGET, LayerTiming, NetTiming,
                           SpeedReport, time_layer)


def test_a_layer_row_names_its_path_bound_and_target():
    x_test, _ = cluttered_digits("test")
    rows = []
    for name in ("small", "small_drop"):
        cfg = load_config(name)
        net = fxp.quantize_democnn(cfg, load_democnn())
        rows.append(time_layer(net, len(net.layers) - 1, x_test[:2]))   # the classifier
    small, drop = rows
    assert (small.path, small.target) == ("integer", INTEGER_TARGET)
    assert (drop.path, drop.bound) == ("bit-serial", 8 * 4)
    assert drop.target == BITSERIAL_TARGET * drop.bound
    for r in rows:
        assert r.outputs == 2 * 10 and r.golden_seconds > 0 and r.float_seconds > 0
        d = r.to_dict()
        assert d["ratio"] == r.golden_seconds / r.float_seconds
        assert d["met"] == (d["ratio"] <= r.target)


def test_report_to_dict_is_json():
    row = LayerTiming("small", 0, "conv", 1, 2, "integer", 8, 1.0, 2.0, 32, 3.0)
    net = NetTiming("zoo:resnet18", "small", 64, 4, 16, golden_seconds=8.0, float_seconds=0.5)
    d = json.loads(json.dumps(SpeedReport(4, [row], net).to_dict()))
    assert d["layers"][0]["ratio"] == 2.0 and d["layers"][0]["met"] is True
    assert d["net"]["golden_images_per_second"] == 0.5 and d["net"]["ratio"] == 16.0
