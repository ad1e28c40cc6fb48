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
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "energy saved, top-1 kept: oracle" in out and "33.5%" in out
    res = json.loads((tmp_path / "study.json").read_text())
    assert res["energy_per_crop"][0] == pytest.approx(res["uncropped"]["energy_pj_per_image"])
    orc = res["methods"]["oracle/top1"]
    assert orc["top1"] >= res["uncropped"]["top1"] and orc["energy_saved"] >= 0
    assert set(res["histogram"]) >= {"oracle/top1", "entropy/top1", "learned/top1"}
    assert (tmp_path / "crop_histogram.png").stat().st_size > 1000
    assert (tmp_path / "accuracy_energy.png").stat().st_size > 1000


@pytest.mark.parametrize("model", ["factory", "torchscript"])
def test_user_model_and_npz(user_files, tmp_path, capsys, model):
    argv = ["--model", FACTORY, "--weights", str(user_files / "w.pt")] if model == "factory" \
        else ["--model", str(user_files / "net.ts")]
    out = tmp_path / "out"
    assert main(["crop-study", *argv, "--images", str(user_files / "data.npz"),
                 "--mean", "0.5", "--std", "0.25", "--out", str(out)]) == 0
    res = json.loads((out / "study.json").read_text())
    assert res["classes"] == 3 and res["test_images"] == 6 and res["ks"] == [1]
    assert res["energy_unit"] == ("pJ" if model == "factory" else "kept input share")
    assert res["energy_per_crop"][15] < res["energy_per_crop"][0]


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
        capsys, "--model", str(user_files / "net.ts"), "--images", npz, "--from-layer", "1")
    assert "--from-layer" in _fail(capsys, "--test-images", "2", "--from-layer", "7")
