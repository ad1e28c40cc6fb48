"""Reading a user's image folder for ``aqua crop-study``: files without an image suffix are
skipped with a note, not read as images."""

from __future__ import annotations

import numpy as np
import pytest

from aqua.cli import UsageError
from aqua.userdata import IMAGE_SUFFIXES, load_images


def _folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c, suffix in (("cat", ".png"), ("dog", ".JPG")):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(
                root / c / f"{i}{suffix}", format="PNG" if suffix == ".png" else "JPEG")
    return root


def test_image_folder_skips_non_images_with_a_note(tmp_path, capsys):
    root = _folder(tmp_path)
    (root / "README.md").write_text("not a class folder's image")       # top level: ignored
    (root / "cat" / "README").write_text("how these were collected")
    (root / "dog" / "notes.txt").write_text("labels checked")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")
    x, y, names = load_images(str(root))
    assert names == ["cat", "dog"]
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: ")
    assert "skipped 3 files without an image suffix" in err[0]


def test_image_folder_without_stray_files_says_nothing(tmp_path, capsys):
    x, y, _ = load_images(str(_folder(tmp_path)))
    assert len(x) == 4
    assert capsys.readouterr().err == ""


def test_image_suffix_that_is_not_an_image_still_fails(tmp_path):
    root = _folder(tmp_path)
    (root / "cat" / "bad.png").write_text("not an image")
    with pytest.raises(UsageError, match="cannot read .*bad.png as an image"):
        load_images(str(root))


def test_only_non_images_is_no_images(tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "README").write_text("empty")
    with pytest.raises(UsageError, match="the class folders hold no images"):
        load_images(str(tmp_path / "imgs"))
    assert ".png" in IMAGE_SUFFIXES and ".jpg" in IMAGE_SUFFIXES
