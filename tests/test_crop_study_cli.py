"""``aqua crop-study``: a smoke run on a tiny subset, user models and images, and every user
mistake as one ``error:`` line with exit status 2."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from aqua.cli import main
from arch.config import load_config
from arch.geometry import ConvGeometry
from aqua.crop_study import rtl_images
from cosim.sim import selected_simulators
from golden.crop import kept_window, tile_cycles


def tiny_net() -> nn.Module:
    """A user's model factory (imported by the CLI as ``tests.test_crop_study_cli:tiny_net``)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


FACTORY = "tests.test_crop_study_cli:tiny_net"


@pytest.fixture
def user_files(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((12, 16, 16)) * 255).astype(np.uint8)
    y = np.arange(12) % 3
    np.savez(tmp_path / "data.npz", x=x, y=y)
    torch.save(tiny_net().state_dict(), tmp_path / "w.pt")
    with warnings.catch_warnings():           # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(tiny_net().eval(), torch.zeros(1, 1, 16, 16)),
                       tmp_path / "net.ts")
    return tmp_path


def _fail(capsys, *argv):
    assert main(["crop-study", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_demo_smoke(tmp_path, capsys):
    assert main(["crop-study", "--test-images", "6", "--train-images", "9",
                 "--rtl-images", "0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "energy saved, top-1 kept: oracle" in out and "33.5%" in out
    assert "RTL co-simulation of the predicted crops: skipped (--rtl-images 0)" in out
    res = json.loads((tmp_path / "study.json").read_text())
    assert res["rtl_cosim"] == {"skipped": "--rtl-images 0"}
    assert len(res["choices"]["learned/top1"]) == 6
    assert res["energy_per_crop"][0] == pytest.approx(res["uncropped"]["energy_pj_per_image"])
    orc = res["methods"]["oracle/top1"]
    assert orc["top1"] >= res["uncropped"]["top1"] and orc["energy_saved"] >= 0
    assert set(res["histogram"]) >= {"oracle/top1", "entropy/top1", "learned/top1"}
    assert (tmp_path / "crop_histogram.png").stat().st_size > 1000
    assert (tmp_path / "accuracy_energy.png").stat().st_size > 1000


@pytest.mark.cosim
def test_demo_rtl_step_verilator(tmp_path, capsys):
    """The study's own conv0 (quantized layer, integer inputs, kept windows) of 2 test images
    under the learned predictor's crops, in the RTL ConvTile: bit-exact, cycles as predicted."""
    if "verilator" not in selected_simulators():
        pytest.skip("SIM excludes verilator")
    assert main(["crop-study", "--test-images", "8", "--train-images", "9", "--rtl-images",
                 "2", "--out", str(tmp_path)]) == 0
    assert "conv0 in the RTL ConvTile under verilator" in capsys.readouterr().out
    res = json.loads((tmp_path / "study.json").read_text())
    rtl = res["rtl_cosim"]
    assert rtl["passed"] and rtl["message"] == "" and rtl["method"] == "learned/top1@1pp"
    choice = res["choices"]["learned/top1@1pp"]
    assert [r["image"] for r in rtl["images"]] == rtl_images(choice, 2)
    full = tile_cycles(load_config("small"), ConvGeometry(1, 8, 3, padding=1, height=32, width=32), 32, 32,
                       (0, 32, 0, 32))
    for r in rtl["images"]:
        assert r["crop"] == choice[r["image"]]
        assert r["window"] == list(kept_window(r["crop"], 0.25, 32, 32))
        assert r["tile_window_from"] == "crop vector" and r["bit_exact"]
        assert r["cycles_rtl"] == r["cycles_golden"] and r["cycles_uncropped"] == full == 44045
        assert r["cycles_saved"] == pytest.approx(1 - r["cycles_rtl"] / full)
    assert rtl["cycles"] > sum(r["cycles_rtl"] for r in rtl["images"])


@pytest.mark.cosim
def test_rtl_step_gives_the_tile_the_studys_window():
    """Cropping from layer 1, conv0 keeps its whole input whatever the crop: the tile gets
    that window explicitly (``mode = 0``), not the crop vector's."""
    if "verilator" not in selected_simulators():
        pytest.skip("SIM excludes verilator")
    from aqua.crop_study import democnn_subject, rtl_first_layer
    from arch.energy import load_energy_table
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits

    cfg = load_config("small")
    subject = democnn_subject(cfg, load_energy_table("isaac32nm"), load_democnn(), 0.25,
                              from_layer=1)
    x, _ = cluttered_digits("test")
    rtl = rtl_first_layer(cfg, subject, x[7:8], [15], 0.25, "verilator", labels=[7])
    assert rtl["passed"], rtl["message"]
    assert rtl["images"] == [{
        "image": 7, "crop": 15, "vector": "1111", "window": [0, 32, 0, 32],
        "tile_window_from": "window", "cycles_rtl": 44045, "cycles_golden": 44045,
        "cycles_uncropped": 44045, "cycles_saved": 0.0, "bit_exact": True}]


def test_rtl_images_prefers_cropped_ones():
    assert rtl_images([0, 3, 0, 15, 0], 2) == [1, 3]
    assert rtl_images([0, 3, 0, 15, 0], 4) == [0, 1, 2, 3]
    assert rtl_images([0, 0], 4) == [0, 1]


def test_a_failing_rtl_step_exits_1(tmp_path, capsys, monkeypatch):
    from aqua import cmd_crop_study

    monkeypatch.setattr(cmd_crop_study, "_rtl_step", lambda *a: {
        "sim": "verilator", "method": "learned/top1", "cycles": 5, "wall_s": 0.1,
        "passed": False, "message": "image 'test image 0': 3 outputs differ", "images": []})
    assert main(["crop-study", "--test-images", "4", "--train-images", "9",
                 "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "RTL FAILED" in captured.out
    assert captured.err.strip() == ("error: RTL co-simulation of the predicted crops failed: "
                                    "image 'test image 0': 3 outputs differ")


@pytest.mark.parametrize("model", ["factory", "torchscript"])
def test_user_model_and_npz(user_files, tmp_path, capsys, model):
    # --float: the module in float with crop hooks (without it, the fixed-point path runs:
    # test_factory_model_runs_the_fixed_point_path)
    argv = ["--model", FACTORY, "--weights", str(user_files / "w.pt"), "--float"] \
        if model == "factory" else ["--model", str(user_files / "net.ts"), "--float"]
    out = tmp_path / "out"
    assert main(["crop-study", *argv, "--images", str(user_files / "data.npz"),
                 "--mean", "0.5", "--std", "0.25", "--out", str(out)]) == 0
    res = json.loads((out / "study.json").read_text())
    assert res["classes"] == 3 and res["test_images"] == 6 and res["ks"] == [1]
    assert res["energy_unit"] == ("pJ" if model == "factory" else "kept input share")
    assert res["energy_per_crop"][15] < res["energy_per_crop"][0]
    assert res["rtl_cosim"]["skipped"].startswith("a user's model runs in float")


def test_image_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("cat", "dog", "owl"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    torch.save(tiny_net().state_dict(), tmp_path / "w.pt")
    assert main(["crop-study", "--model", FACTORY, "--weights", str(tmp_path / "w.pt"),
                 "--images", str(tmp_path / "imgs"), "--grayscale", "--size", "16",
                 "--out", str(tmp_path / "o")]) == 0
    (tmp_path / "imgs" / "owl" / "bad.png").write_text("not an image")
    msg = _fail(capsys, "--model", FACTORY, "--weights", str(tmp_path / "w.pt"),
                "--images", str(tmp_path / "imgs"), "--grayscale")
    assert "cannot read" in msg and "bad.png" in msg


def test_user_mistakes(user_files, tmp_path, capsys):
    npz, w = str(user_files / "data.npz"), str(user_files / "w.pt")
    assert "no such file" in _fail(capsys, "--model", str(tmp_path / "nope.pt"), "--images", npz)
    (tmp_path / "junk.pt").write_text("junk")
    assert "not a TorchScript model" in _fail(capsys, "--model", str(tmp_path / "junk.pt"),
                                              "--images", npz)
    assert "needs --weights" in _fail(capsys, "--model", FACTORY, "--images", npz)
    assert "cannot import" in _fail(capsys, "--model", "no_such_mod:f", "--weights", w,
                                    "--images", npz)
    assert "not a state dict" in _fail(capsys, "--model", FACTORY, "--weights",
                                       str(tmp_path / "junk.pt"), "--images", npz)
    assert "--classes 5, but the model outputs 3" in _fail(
        capsys, "--model", FACTORY, "--weights", w, "--images", npz, "--classes", "5")
    np.savez(tmp_path / "many.npz", x=np.zeros((8, 16, 16), np.uint8), y=np.arange(8))
    assert "the images have 8 classes, the model outputs 3" in _fail(
        capsys, "--model", FACTORY, "--weights", w, "--images", str(tmp_path / "many.npz"))
    np.savez(tmp_path / "shape.npz", x=np.zeros((8, 16), np.uint8), y=np.zeros(8, int))
    assert "x must be" in _fail(capsys, "--model", FACTORY, "--weights", w, "--images",
                                str(tmp_path / "shape.npz"))
    np.savez(tmp_path / "nox.npz", a=np.zeros(3))
    assert "needs arrays 'x' and 'y'" in _fail(capsys, "--model", FACTORY, "--weights", w,
                                               "--images", str(tmp_path / "nox.npz"))
    np.savez(tmp_path / "rgb.npz", x=np.zeros((8, 16, 16, 3), np.uint8), y=np.arange(8) % 3)
    assert "does not take the images [N, 3, 16, 16]" in _fail(
        capsys, "--model", FACTORY, "--weights", w, "--images", str(tmp_path / "rgb.npz"))
    assert "--mean needs 1 value for 1-channel images, not 2" in _fail(capsys, "--model", FACTORY, "--weights", w,
                                                 "--images", npz, "--mean", "0", "0")
    assert "can only be cropped at its input" in _fail(
        capsys, "--model", str(user_files / "net.ts"), "--images", npz, "--from-layer", "1",
        "--float")
    assert "--from-layer" in _fail(capsys, "--test-images", "2", "--from-layer", "7")


def pointwise_net() -> nn.Module:
    """A model whose hooks and image crop coincide: one bias-free 1x1 conv reads the image."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 6, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(24, 3))


def test_module_and_torchscript_crop_alike(tmp_path, capsys):
    """One cropping rule (after --mean/--std) for every way a model arrives: the same network
    as module:factory and as TorchScript gives the same study on the same images."""
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", x=(rng.random((24, 12, 12)) * 255).astype(np.uint8),
             y=np.arange(24) % 3)
    torch.save(pointwise_net().state_dict(), tmp_path / "w.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(pointwise_net().eval(), torch.zeros(1, 1, 12, 12)),
                       tmp_path / "net.ts")
    common = ["--images", str(tmp_path / "d.npz"), "--mean", "0.5", "--std", "0.25"]
    res = {}
    for fmt, model in (("module", ["--model", "tests.test_crop_study_cli:pointwise_net",
                                   "--weights", str(tmp_path / "w.pt"), "--float"]),
                       ("torchscript", ["--model", str(tmp_path / "net.ts"), "--float"])):
        assert main(["crop-study", *model, *common, "--out", str(tmp_path / fmt)]) == 0
        res[fmt] = json.loads((tmp_path / fmt / "study.json").read_text())
    m, t = res["module"], res["torchscript"]
    assert m["energy_unit"] == "pJ" and t["energy_unit"] == "kept input share"
    # everything the logits decide is identical; some crops do change the answers
    assert m["uncropped"]["top1"] == t["uncropped"]["top1"]
    assert [c["top1"] for c in m["fixed_crops"]] == [c["top1"] for c in t["fixed_crops"]]
    assert m["tolerate_top1"] == t["tolerate_top1"]
    assert m["choices"]["oracle/top1"] == t["choices"]["oracle/top1"]
    assert {k: v["top1"] for k, v in m["methods"].items()} == \
        {k: v["top1"] for k, v in t["methods"].items()}
    assert len({c["top1"] for c in m["fixed_crops"]}) > 1


def test_crop_rule_is_after_normalisation():
    """A cropped pixel is the mean colour (0 after normalisation) in both formats."""
    from aqua.userdata import _normalizer, user_subject
    from arch.energy import load_energy_table

    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.flatten(1)[:, :3]

    x = torch.full((1, 1, 8, 8), 0.2)
    norm = _normalizer([0.5], [0.25], 1)
    sub = user_subject(Spy(), True, load_config("small"), load_energy_table("isaac32nm"), x,
                       norm, fraction=0.25, from_layer=0, classes=3)
    sub.forward(x)
    crop15 = seen[-1][15, 0]          # all four sides cropped
    assert crop15[0, 0] == 0 and crop15[4, 4] == pytest.approx((0.2 - 0.5) / 0.25)


def test_bad_npz_files(user_files, tmp_path, capsys):
    w = str(user_files / "w.pt")

    def fail(path):
        return _fail(capsys, "--model", FACTORY, "--weights", w, "--images", str(path))

    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 truncated")
    assert "not a readable .npz (BadZipFile" in fail(tmp_path / "zip.npz")
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    assert "not a readable .npz" in fail(tmp_path / "text.npz")
    np.save(tmp_path / "bare.npy", np.zeros((12, 16, 16)))
    (tmp_path / "bare.npy").rename(tmp_path / "bare.npz")
    assert "not an .npz archive" in fail(tmp_path / "bare.npz")
    np.savez(tmp_path / "str.npz", x=np.array([["a", "b"]] * 12), y=np.arange(12) % 3)
    assert "x must hold numbers, not <U1 values" in fail(tmp_path / "str.npz")
    np.savez(tmp_path / "ystr.npz", x=np.zeros((12, 16, 16)), y=np.array(["a"] * 12))
    assert "y must hold numbers" in fail(tmp_path / "ystr.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([None] * 12, dtype=object), y=np.arange(12))
    assert "not a readable .npz" in fail(tmp_path / "obj.npz")


def test_size_resizes_images_of_mixed_sizes(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(2)
    for c in ("a", "b", "c"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i, side in enumerate((14, 20, 24)):
            Image.fromarray((rng.random((side, side + i)) * 255).astype(np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    torch.save(tiny_net().state_dict(), tmp_path / "w.pt")
    argv = ["--model", FACTORY, "--weights", str(tmp_path / "w.pt"), "--images",
            str(tmp_path / "imgs"), "--grayscale"]
    msg = _fail(capsys, *argv)
    assert "images differ in size (14x14, 20x21, 24x26); give --size to resize them" in msg
    assert main(["crop-study", *argv, "--size", "16", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "study.json").read_text())["test_images"] == 4


def test_factory_from_the_current_folder(tmp_path, capsys, monkeypatch, user_files):
    """The ``aqua`` console script does not put the current folder on sys.path; the loader
    does, for ``module:factory``; a missing module's message says where it looked."""
    import sys

    (tmp_path / "my_cwd_model.py").write_text(
        "from torch import nn\ndef net():\n    return nn.Sequential(nn.Flatten(), "
        "nn.Linear(256, 3))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    npz = str(user_files / "data.npz")
    # imported (from the current folder); the weights of tiny_net do not fit it
    msg = _fail(capsys, "--model", "my_cwd_model:net", "--weights", str(user_files / "w.pt"),
                "--images", npz)
    assert "not a state dict of my_cwd_model:net (RuntimeError: Error(s) in loading " \
           "state_dict for Sequential: Missing key(s) in state_dict: \"1.weight\"" in msg
    assert '"0.weight"' in msg.split("Unexpected key(s) in state_dict: ")[1]
    assert str(tmp_path) not in sys.path and "my_cwd_model" in sys.modules
    msg = _fail(capsys, "--model", "not_here_model:net", "--weights", "w.pt", "--images", npz)
    assert f"looked up on PYTHONPATH and in the current folder ({tmp_path})" in msg
    sys.modules.pop("my_cwd_model")


def test_model_errors_keep_the_useful_part():
    from aqua.userdata import _short

    exc = RuntimeError("Error(s) in loading state_dict for Net:\n\tMissing key(s) in "
                       "state_dict: \"fc.weight\".\n\tsize mismatch for conv.weight: copying a "
                       "param with shape torch.Size([4, 1, 3, 3]) from checkpoint, the shape "
                       "in current model is torch.Size([8, 1, 3, 3]).")
    s = _short(exc)
    assert "\n" not in s and 'Missing key(s) in state_dict: "fc.weight".' in s
    assert "size mismatch for conv.weight" in s and s.endswith("torch.Size([8, 1, 3, 3]).")
    long = _short(ValueError("x" * 1000))
    assert len(long) == 400 and long.endswith("...")


def test_two_runs_differ_only_in_timing(tmp_path, capsys, monkeypatch):
    """Wall-clock fields are all under ``timing``: the rest is byte for byte the same. (And
    the energy axis of the plot is a ratio, without a unit.)"""
    argv = ["crop-study", "--test-images", "6", "--train-images", "9", "--rtl-images", "0"]
    docs = []
    for run in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / run)]) == 0
        doc = json.loads((tmp_path / run / "study.json").read_text())
        assert set(doc["timing"]) == {"images_per_second", "seconds", "rtl_cosim",
                                      "wall_seconds"}
        doc.pop("timing")
        docs.append(json.dumps(doc, indent=1))
    assert docs[0] == docs[1]
    assert "seconds" not in docs[0] and "wall" not in docs[0]

    import matplotlib.axes

    from aqua.crop_study import render_plots

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel",
                        lambda self, text, *a, **k: labels.append(text))
    res = json.loads(docs[0])
    assert set(render_plots(res)) == {"crop_histogram.png", "accuracy_energy.png"}
    assert labels[-1] == "energy per image relative to uncropped (uncropped = 1)"
    render_plots({**res, "energy_unit": "kept input share"})
    assert labels[-1] == "kept input share per image relative to uncropped (uncropped = 1)"


def test_no_output_folder_is_left_by_an_error(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    assert "--from-layer" in _fail(capsys, "--test-images", "2", "--from-layer", "7",
                                   "--out", str(out))
    assert not (tmp_path / "new").exists()


def test_unwritable_out_fails_before_the_study(tmp_path, capsys, monkeypatch):
    from aqua import crop_study

    def never(*a, **k):
        raise AssertionError("the study started")
    monkeypatch.setattr(crop_study, "run_study", never)
    (tmp_path / "file").write_text("")
    assert "file is a file, not a folder" in _fail(capsys, "--out", str(tmp_path / "file" / "o"))
    assert "/proc is not writable" in _fail(capsys, "--out", "/proc/aqua-study")


# -- any model through the golden fixed-point path --------------------------------------------

def sigmoid_net() -> nn.Module:
    """A model the crossbar path refuses (a sigmoid)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Sigmoid(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def test_tinyresnet_runs_the_fixed_point_path(tmp_path, capsys):
    """zoo:tinyresnet on the shipped digits: the uncropped pass is qnet's quantized network
    (its top-1 equals quant_top1 on the same images), per-layer energy, the learned 0th
    layer's own energy charged."""
    from golden.data import cluttered_digits
    from golden.fixedpoint import calibration_images
    from golden.graph import load_model, lower
    from golden.qnet import float_top1, quant_top1, quantize_graph

    assert main(["crop-study", "--model", "zoo:tinyresnet", "--test-images", "6",
                 "--train-images", "9", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "study.json").read_text())
    cal = calibration_images()
    qg = quantize_graph(load_config("small"), lower(load_model("zoo:tinyresnet"), cal[:1]), cal)
    x, y = cluttered_digits("test")
    assert res["uncropped"]["top1"] == quant_top1(qg, x[:6], y[:6])
    assert res["float_top1"] == float_top1(qg.graph, x[:6], y[:6])
    assert res["subject"].startswith("zoo:tinyresnet, golden fixed-point model of its 10 "
                                     "crossbar layers on config 'small'")
    assert len(res["layers"]) == len(res["energy_per_layer_uncropped"]) == 10
    assert res["layers"][-1] == "head"
    assert sum(res["energy_per_layer_uncropped"]) == pytest.approx(res["energy_per_crop"][0])
    assert res["energy_per_crop"][15] < res["energy_per_crop"][0]
    assert res["learned_energy_per_image"]["top1"] > 0
    orc = res["methods"]["oracle/top1"]
    assert orc["top1"] >= res["uncropped"]["top1"] and orc["energy_saved"] > 0
    assert len(res["energy_per_layer_oracle"]["top1"]) == 10
    assert res["rtl_cosim"]["skipped"].startswith("the RTL step co-simulates the demo CNN's")
    assert "energy per crossbar layer" in out and "float top-1" in out
    assert "learned 0th layer's own energy per image (counted above): top1: " in out


def test_factory_model_runs_the_fixed_point_path(user_files, tmp_path, capsys):
    argv = ["crop-study", "--model", FACTORY, "--weights", str(user_files / "w.pt"),
            "--images", str(user_files / "data.npz"), "--mean", "0.5", "--std", "0.25"]
    assert main([*argv, "--out", str(tmp_path / "q")]) == 0
    res = json.loads((tmp_path / "q" / "study.json").read_text())
    assert res["subject"].startswith(f"user model {FACTORY}, golden fixed-point model of its "
                                     f"3 crossbar layers")
    assert res["energy_unit"] == "pJ" and "float_top1" in res and len(res["layers"]) == 3
    assert res["energy_per_crop"][15] < res["energy_per_crop"][0]
    assert res["learned_energy_per_image"]["top1"] > 0
    # in float (--float) the learned 0th layer's energy is charged too, the same pJ
    assert main([*argv, "--float", "--out", str(tmp_path / "f")]) == 0
    flt = json.loads((tmp_path / "f" / "study.json").read_text())
    assert flt["learned_energy_per_image"] == res["learned_energy_per_image"]
    assert "layers" not in flt and "float_top1" not in flt


def test_fixed_point_refusals(user_files, tmp_path, capsys):
    npz, w = str(user_files / "data.npz"), str(user_files / "w.pt")
    assert "--model: unknown zoo model 'zoo:nope'" in _fail(capsys, "--model", "zoo:nope")
    assert "--float goes with --model module:factory" in _fail(
        capsys, "--model", "zoo:tinyresnet", "--float")
    assert "--float goes with --model module:factory or a TorchScript file, not zoo:tinyresnet" in _fail(
        capsys, "--model", "zoo:tinyresnet", "--float", "--images", npz)
    assert "--weights goes with --model module:factory, not zoo:tinyresnet" in _fail(
        capsys, "--model", "zoo:tinyresnet", "--weights", w, "--images", npz)
    torch.save(sigmoid_net().state_dict(), tmp_path / "s.pt")
    msg = _fail(capsys, "--model", "tests.test_crop_study_cli:sigmoid_net", "--weights",
                str(tmp_path / "s.pt"), "--images", npz)
    assert msg.startswith("error: --model tests.test_crop_study_cli:sigmoid_net: node ")
    assert "is not supported" in msg
    assert "--from-layer: from_layer must be one of the conv layers [0, 1]" in _fail(
        capsys, "--model", FACTORY, "--weights", w, "--images", npz, "--from-layer", "2")


@pytest.mark.slow
def test_resnet18_on_a_folder_of_64px_images(tmp_path, capsys):
    """zoo:resnet18 (random weights) on a few generated 64x64 RGB images: about 4 minutes of
    CPU time (8 images took 292 s of CPU, 20 minutes of wall time on the loaded machine)."""
    from PIL import Image

    rng = np.random.default_rng(5)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    assert main(["crop-study", "--model", "zoo:resnet18", "--images", str(tmp_path / "imgs"),
                 "--size", "64", "--rtl-images", "0", "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "study.json").read_text())
    assert res["classes"] == 2 and res["test_images"] == 3 and len(res["layers"]) == 21
    assert res["energy_per_crop"][15] < res["energy_per_crop"][0] and "float_top1" in res


def test_torchscript_needs_float(user_files, capsys):
    """One answer per model: module:factory runs the fixed-point path by default, so the same
    network as TorchScript (never lowered) is refused without --float instead of silently
    running in float."""
    msg = _fail(capsys, "--model", str(user_files / "net.ts"), "--images",
                str(user_files / "data.npz"))
    assert msg == (f"error: --model {user_files / 'net.ts'}: a TorchScript model cannot take "
                   f"the golden fixed-point path (its graph is not lowered); give it as "
                   f"module:factory, or run it in float with --float")


def test_precision_beside_cropping(tmp_path, capsys):
    """--precision: 81 plans on a few images; the crop plans' oracle is the crop study's on
    the same images, the plan oracle saves at least as much at unchanged accuracy."""
    assert main(["crop-study", "--test-images", "3", "--train-images", "6", "--rtl-images", "0",
                 "--precision", "--precision-images", "3", "--precision-train-images", "6",
                 "--precision-low", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "per-region precision beside cropping: 81 plans, each border band at 8, 3 or 0" in out
    res = json.loads((tmp_path / "study.json").read_text())
    prec = res["precision"]
    assert prec["low"] == 3 and len(prec["plans"]) == 81 and prec["test_images"] == 3
    assert "precision" in res["timing"]["seconds"] and "seconds" not in prec
    assert prec["energy_per_plan"][0] == pytest.approx(res["energy_per_crop"][0])
    crops, plans = prec["methods"]["crops"], prec["methods"]["plans"]
    for k in (1, 5):
        key = f"oracle/top{k}"
        assert crops[key]["energy_saved"] == pytest.approx(res["methods"][key]["energy_saved"])
        assert plans[key]["energy_saved"] >= crops[key]["energy_saved"] - 1e-12
        assert plans[key][f"top{k}"] >= prec["uncropped"][f"top{k}"]
    assert set(plans) >= {"entropy/top1", "learned/top1", "corners/top5@1pp"}
    assert len(prec["fixed_plans"]) == 81
    assert (tmp_path / "precision_energy.png").stat().st_size > 1000


def test_precision_refusals(capsys):
    err = _fail(capsys, "--precision", "--precision-low", "8")
    assert err == ("error: --precision-low must lie in [1, 7] (the inputs of 'small' have 8 "
                   "bits), not 8")
