"""``aqua demo``, ``aqua quantize`` and ``aqua energy`` on any model (``--model``, the one option
of ``aqua._cmdutil``): a wrong model is one ``error:`` line and status 2 before any expensive
work; each command runs on zoo:tinyresnet and democnn with few images and writes JSON that
parses; the demo CNN gives the same numbers through the graph path as through its own."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from aqua.cli import main
from arch.config import load_config


class Started(Exception):
    """An expensive step was reached: the command line passed validation."""


def _started(*_a, **_k):
    raise Started


#: everything behind the checks that takes time, for every model
EXPENSIVE = [("golden.netreport", "quantize_model"), ("golden.netreport", "network_energy"),
             ("golden.netreport", "demo_network"), ("golden.qreport", "quantize_report"),
             ("golden.fixedpoint", "quantize_democnn")]


@pytest.fixture
def no_work(monkeypatch):
    for module, name in EXPENSIVE:
        monkeypatch.setattr(importlib.import_module(module), name, _started)


def _fail(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


BAD = [
    (["--model", "zoo:nonesuch"], "unknown zoo model 'zoo:nonesuch'"),
    (["--model", "no_such_module:f"], "cannot import f from no_such_module"),
    (["--model", "tests.test_crop_study_cli:tiny_net"], "needs --weights"),
    (["--model", "/no/such/model.pt"], "no model file"),
    (["--model", "democnn", "--weights", "w.pt"], "--weights goes with --model module:factory"),
    (["--model", "zoo:tinyresnet", "--size", "4"], "--size must lie in [8, 512], not 4"),
]
COMMANDS = {"demo": ["--sim", "none"], "quantize": ["--no-hardware"],
            "energy": ["--analytic"]}


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("args, fragment", BAD, ids=[b[1][:24] for b in BAD])
def test_a_wrong_model_is_one_line_before_any_work(cmd, args, fragment, capsys, no_work,
                                                   tmp_path):
    extra = ["--out", str(tmp_path)] if cmd == "energy" else []
    assert fragment in _fail(capsys, cmd, *COMMANDS[cmd], *extra, *args)


def test_model_errors_of_each_command(capsys, no_work, tmp_path):
    # a user's model that does not take the digits, or a TorchScript file
    import warnings

    from tests.test_crop_study_cli import tiny_net

    torch.save(tiny_net().state_dict(), tmp_path / "w.pt")
    msg = _fail(capsys, "energy", "--model", "tests.test_crop_study_cli:tiny_net",
                "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path))
    assert "must return 10 logits [N, 10] for the shipped digits, not [1, 3]" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(tiny_net().eval(), torch.zeros(1, 1, 16, 16)),
                       tmp_path / "net.ts")
    assert "TorchScript model cannot take the golden fixed-point path" in _fail(
        capsys, "quantize", "--no-hardware", "--model", str(tmp_path / "net.ts"))
    assert "--layer picks a layer check" in _fail(capsys, "demo", "--model", "democnn",
                                                  "--layer", "1")
    assert "LAYER (--layer) picks the layer of --tile" in _fail(
        capsys, "energy", "--model", "democnn", "--layer", "1", "--out", str(tmp_path))
    assert "does not take --model" in _fail(capsys, "energy", "--model", "democnn",
                                            "--calibrate")


def test_a_good_model_line_starts_the_work(no_work, tmp_path):
    for argv in (["energy", "--model", "zoo:tinyresnet", "--out", str(tmp_path)],
                 ["demo", "--model", "democnn", "--sim", "none"],
                 ["quantize", "--model", "zoo:resnet18", "--size", "64", "--no-hardware"]):
        with pytest.raises(Started):
            main(argv)


# -- the commands on real models (few images) --------------------------------------------------

def test_energy_on_tinyresnet(tmp_path, capsys):
    assert main(["energy", "--model", "zoo:tinyresnet", "--crop", "3", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "energy-small-zoo_tinyresnet-32px.json").read_text())
    assert (tmp_path / "energy-small-zoo_tinyresnet-32px.png").stat().st_size > 0
    assert doc["model"] == "zoo:tinyresnet" and len(doc["layers"]) == 10
    assert [c["crop"] for c in doc["crops"]] == [0, 3]
    dw = next(r for r in doc["layers"] if r["conv_groups"] == 64)     # the depthwise conv
    assert dw["crossbars"] == 64 and dw["row_tiles"] == 1
    assert doc["crossbars"] == sum(r["crossbars"] for r in doc["layers"])
    for i, c in enumerate(doc["crops"]):                # the network is the sum of its layers
        assert c["total_pj"] == pytest.approx(sum(r["pj"][i] for r in doc["layers"]))
        assert c["cycles"] == sum(p * 42 for p in (r["positions_per_crop"][i]
                                                   for r in doc["layers"]))
    assert doc["crops"][0]["cycles"] == sum(r["cycles"] for r in doc["layers"])
    assert doc["crops"][1]["total_pj"] < doc["crops"][0]["total_pj"]
    assert "every crossbar layer" in out and "best crop" in out


def test_energy_democnn_graph_path_equals_the_layer_report():
    """Uncropped, every conv layer of democnn through the graph path has the energy of the
    demo CNN's own layer report (``cosim.energy_report.crop_rows``: same integers, geometry,
    calibration); so has conv0 under a crop (its input is the image either way). The graph
    adds the classifier."""
    from arch.energy import load_energy_table
    from golden.cnn import CONV_SPECS, load_democnn
    from golden.crop import kept_window
    from golden.data import cluttered_digits
    from golden.energy_model import conv_layer_energy, layer_geometry, load_calibration
    from golden.fixedpoint import quant_layer, quantize_democnn
    from golden.netreport import network_energy

    cfg, table = load_config("small"), load_energy_table("isaac32nm")
    new = network_energy(cfg, table, "democnn", name="democnn", crop=5, image=2)
    net = quantize_democnn(cfg, load_democnn())
    x, _ = cluttered_digits("test")
    cal = load_calibration(cfg, table)
    assert len(new.layers) == len(CONV_SPECS) + 1 and new.layers[-1]["shape"].startswith("linear")
    for i, row in enumerate(new.layers[:-1]):
        q = quant_layer(net, i, x[2:3])
        old = conv_layer_energy(cfg, table, layer_geometry(q), x=q.x, calibration=cal)
        assert row["pj"][0] == pytest.approx(float(old.total_pj.sum()), rel=1e-12)
        if i == 0:
            old5 = conv_layer_energy(cfg, table, layer_geometry(q), x=q.x, calibration=cal,
                                     window=kept_window(5, 0.25, 32, 32))
            assert row["pj"][1] == pytest.approx(float(old5.total_pj.sum()), rel=1e-12)


def test_demo_on_tinyresnet_and_democnn(capsys):
    assert main(["demo", "--model", "zoo:tinyresnet", "--accuracy-images", "3",
                 "--sim", "none"]) == 0
    out = capsys.readouterr().out
    assert "zoo:tinyresnet at 32x32 on 'small'" in out and "dw_2" in out
    assert "434 crossbars" in out and "quantized accuracy" in out and "(3 test images" in out


def test_demo_democnn_graph_path_equals_the_demo_path():
    """The demo CNN through the graph path: the old path's quantized accuracy, exactly (the
    logits are equal: ``tests/golden/test_graph.py``), and its crossbars per layer."""
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_accuracy, quantize_democnn
    from golden.layer import matrix_mapping
    from golden.netreport import demo_network

    cfg = load_config("small")
    rep = demo_network(cfg, "democnn", name="democnn", images=4)
    x, y = cluttered_digits("test")
    net = quantize_democnn(cfg, load_democnn())
    assert rep.quant_top1 == quant_accuracy(net, x[:4], y[:4])
    assert [r["crossbars"] for r in rep.layers] == [
        matrix_mapping(cfg, q.weight[0].numel(), q.weight.shape[0]).crossbars
        for q in net.layers]


def test_quantize_on_tinyresnet(tmp_path, capsys):
    assert main(["quantize", "--model", "zoo:tinyresnet", "--images", "8", "--no-hardware",
                 "--json", str(tmp_path / "q.json")]) == 0
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["model"] == "zoo:tinyresnet" and len(doc["layers"]) == 10
    s = doc["methods"]["searched"]
    assert len(s["formats"]) == 10 and s["meets_bound"]
    assert s["loss_pp"] <= 1.0 + 1e-9 and s["multiply_ratio_vs_uniform8"] < 1
    assert "torch_ao_int8" not in doc["methods"] and doc["notes"]
    assert "not run" in capsys.readouterr().out


def test_quantize_search_democnn_graph_equals_chain():
    """The search on democnn's lowered graph picks the same formats at the same accuracy as
    on its chain of convs (the demo CNN keeps the chain only for its baselines)."""
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import calibration_images
    from golden.graph import lower
    from golden.qlayers import calibration_ranges, describe, describe_graph
    from golden.qsearch import search
    from golden.timing import single_thread

    model, cal = load_democnn(), calibration_images()[:64]
    chain, graph = describe(model), describe_graph(lower(model, cal[:1]))
    assert calibration_ranges(chain, cal) == calibration_ranges(graph, cal)
    x, y = cluttered_digits("test")
    kw = dict(bound=0.05, widths=(3, 6, 8), refine=False)
    with single_thread():
        a = search(chain, cal, x[:12], y[:12], **kw)
        b = search(graph, cal, x[:12], y[:12], **kw)
    assert a.formats == b.formats and a.accuracy == b.accuracy
    assert a.evaluations == b.evaluations


def test_quantize_hardware_first_layer_rule():
    from cosim.quantize import first_layer_problem
    from golden.fixedpoint import calibration_images
    from golden.graph import load_model
    from golden.qreport import model_layers

    cal, small = calibration_images()[:2], load_config("small")
    assert first_layer_problem(small, model_layers(load_model("democnn"), cal)) is None
    tiny = model_layers(load_model("zoo:tinyresnet"), cal)
    assert "not read by crossbar layer 1 alone" in first_layer_problem(small, tiny)


def test_tile_layers_of_a_model():
    """``aqua energy --model M --tile``: the layers one ConvTile computes, and why not the
    others (analytic only)."""
    from golden.netreport import quantize_model, tile_layers

    layers = tile_layers(quantize_model(load_config("small"), "zoo:tinyresnet"))
    fits = [name for _, name, why in layers if why is None]
    assert fits == ["stem_2", "block2_downsample_1"]          # 9 and 16 rows of 16
    why = dict((name, why) for _, name, why in layers)
    assert why["block1_relu"] == "144 im2col rows, more than one crossbar's 16"
    assert why["dw_2"].startswith("not a plain square conv") and why["head"] == "a linear layer"
