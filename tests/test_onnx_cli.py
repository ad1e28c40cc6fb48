"""``--model PATH.onnx`` and ``--model torchvision:<name>`` on the command line: the same
results as the torch model they came from, and every mistake one ``error:`` line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from aqua.cli import main
from golden.zoo import build
from tests.test_crop_study_cli import FACTORY, tiny_net

pytest.importorskip("onnx")


def _export(model, shape, path, **kwargs):
    with warnings.catch_warnings():           # the legacy exporter is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(shape), str(path), dynamo=False, **kwargs)
    return str(path)


def _fail(capsys, *argv):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _study(path):
    res = json.loads(path.read_text())
    for k in ("timing", "subject", "energy_calibration"):
        res.pop(k, None)
    return res


def test_crop_study_of_an_onnx_file_equals_the_torch_model(tmp_path, capsys):
    """The same network as module:factory and as an ONNX file: the same fixed-point study."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=(rng.random((12, 16, 16)) * 255).astype(np.uint8),
             y=np.arange(12) % 3)
    torch.save(tiny_net().state_dict(), tmp_path / "w.pt")
    onnx_file = _export(tiny_net(), (1, 1, 16, 16), tmp_path / "tiny.onnx")
    common = ["crop-study", "--images", str(tmp_path / "data.npz"), "--mean", "0.5", "--std",
              "0.25", "--rtl-images", "0"]
    assert main([*common, "--model", onnx_file, "--out", str(tmp_path / "o")]) == 0
    assert main([*common, "--model", FACTORY, "--weights", str(tmp_path / "w.pt"),
                 "--out", str(tmp_path / "f")]) == 0
    onnx_res, torch_res = _study(tmp_path / "o" / "study.json"), \
        _study(tmp_path / "f" / "study.json")
    assert len(onnx_res["layers"]) == 3 and onnx_res["energy_unit"] == "pJ"
    for key in ("energy_per_crop", "uncropped", "float_top1", "methods", "classes",
                "energy_per_layer_uncropped"):
        assert onnx_res[key] == torch_res[key], key
    subject = json.loads((tmp_path / "o" / "study.json").read_text())["subject"]
    assert subject.startswith(f"{onnx_file}, golden fixed-point model of its 3 crossbar layers")


def test_quantize_an_onnx_export_of_tinyresnet(tmp_path):
    """zoo:tinyresnet exported with its batch norms: the quantization search finds the same
    formats, accuracy and crossbars; only the layer names (from the ONNX nodes) differ."""
    onnx_file = _export(build("zoo:tinyresnet"), (1, 1, 32, 32), tmp_path / "t.onnx",
                        training=torch.onnx.TrainingMode.PRESERVE)
    docs = []
    for spec in (onnx_file, "zoo:tinyresnet"):
        out = tmp_path / f"q{len(docs)}.json"
        assert main(["quantize", "--model", spec, "--images", "4", "--no-hardware",
                     "--json", str(out)]) == 0
        docs.append(json.loads(out.read_text()))
    a, b = docs
    assert a["model"] == onnx_file and len(a["layers"]) == 10
    assert a["methods"] == b["methods"]
    strip = [{k: v for k, v in layer.items() if k != "name"} for layer in a["layers"]]
    assert strip == [{k: v for k, v in layer.items() if k != "name"} for layer in b["layers"]]


def test_torchvision_resnet18_on_a_folder_of_64px_images(tmp_path, capsys):
    """The issue's acceptance command, ``aqua crop-study --model torchvision:resnet18 --images
    DIR --size 64``, on six generated images (about 25 s on the shared machine)."""
    from PIL import Image

    rng = np.random.default_rng(5)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((60, 70, 3)) * 255).astype(np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    assert main(["crop-study", "--model", "torchvision:resnet18", "--images",
                 str(tmp_path / "imgs"), "--size", "64", "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "study.json").read_text())
    assert res["subject"].startswith("torchvision:resnet18, golden fixed-point model of its "
                                     "21 crossbar layers")
    assert res["classes"] == 2 and res["test_images"] == 3 and len(res["layers"]) == 21
    assert res["energy_per_crop"][15] < res["energy_per_crop"][0] and "float_top1" in res


def test_model_mistakes_are_one_line(tmp_path, capsys):
    npz = tmp_path / "data.npz"
    np.savez(npz, x=np.zeros((6, 16, 16), np.uint8), y=np.arange(6) % 2)
    known = ("known: torchvision:resnet18, torchvision:vgg11_bn, torchvision:mobilenet_v2 "
             "(built from this project's re-implementation, random seeded weights or --weights "
             "in torchvision's key names)")
    for cmd in (["quantize"], ["crop-study"], ["crop-study", "--images", str(npz)]):
        msg = _fail(capsys, *cmd, "--model", "torchvision:resnet50")
        assert msg == f"error: --model: unknown torchvision model 'torchvision:resnet50'; {known}"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not an ONNX model \xff")
    soft = _export(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(),
                                       torch.nn.Softmax(1)), (1, 1, 6, 6), tmp_path / "s.onnx")
    for cmd in (["quantize"], ["energy"], ["crop-study"], ["crop-study", "--images", str(npz)]):
        assert _fail(capsys, *cmd, "--model", str(bad)).startswith(
            f"error: --model: {bad}: not a valid ONNX model (")
        assert _fail(capsys, *cmd, "--model", soft).startswith(
            f"error: --model: {soft}: ONNX node '/2/Softmax' (Softmax, node 2 of 3) is not "
            f"supported: the operation is not one of: Conv, ")
    (tmp_path / "junk.pth").write_text("junk")
    for cmd in (["quantize"], ["crop-study"], ["crop-study", "--images", str(npz)]):
        assert _fail(capsys, *cmd, "--model", "torchvision:resnet18", "--weights",
                     str(tmp_path / "junk.pth")).startswith(
            f"error: --model: weights {tmp_path / 'junk.pth'}: not a state dict (")
        if cmd != ["crop-study"]:        # (without --images: "--weights ... go with --images")
            assert _fail(capsys, *cmd, "--model", soft, "--weights",
                         str(tmp_path / "junk.pth")) == (
                f"error: --weights goes with --model module:factory, not {soft} (or with "
                f"torchvision:<name>)")
