"""Output paths: every command that writes checks its output folder or file before any work
(one ``error:`` line, status 2, nothing created), writes reports atomically, and never lets a
configuration's name choose a path outside ``build/``."""

from __future__ import annotations

import errno
import importlib
import os
import tempfile

import pytest

from arch.config import AccelConfig, ConfigError, load_config
from aqua._cmdutil import atomic_write, check_output_dir, check_output_file
from aqua.cli import UsageError, main


class Started(Exception):
    """The work behind a command's checks began (it must not, for a bad output path)."""


def _started(*_a, **_k):
    raise Started


#: every command that writes: (argv before the path, option, "dir" or "file")
WRITERS = [
    (["verilog", "--no-lint", "--no-synth"], "--out", "dir"),
    (["energy", "--analytic"], "--out", "dir"),
    (["energy", "--calibrate"], "--out", "file"),
    (["cosim", "--sim", "icarus"], "--json", "file"),
    (["crop-study", "--rtl-images", "0"], "--out", "dir"),
    (["train", "--epochs", "1"], "--output", "file"),
    (["quantize", "--no-hardware"], "--json", "file"),
]
EXPENSIVE = [("gen.verilog", "generate"), ("golden.fixedpoint", "quantize_democnn"),
             ("golden.cnn", "train_democnn"), ("golden.qreport", "quantize_report"),
             ("cosim.run", "random_jobs"), ("cosim.calibrate", "calibrate"),
             ("aqua.crop_study", "run_study"), ("golden.cnn", "load_democnn")]


@pytest.fixture
def no_work(monkeypatch):
    for module, name in EXPENSIVE:
        monkeypatch.setattr(importlib.import_module(module), name, _started)


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """A folder that refuses new files, as a read-only mount does. Root ignores permission
    bits, so the refusal is made where the writability probe (and every writer) creates its
    temporary file."""
    ro = tmp_path / "readonly"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and os.path.realpath(dir) == os.path.realpath(ro):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return ro


def _paths(tmp_path, kind, read_only):
    """(label, path, fragment of the message) of every wrong output path of this kind."""
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me\n")
    (tmp_path / "a_folder").mkdir()
    common = [("under a file", blocker / "sub" / "x.json", "a_file is a file, not a folder"),
              ("in /proc", "/proc/aqua-test/x.json", "/proc is not writable"),
              ("read-only folder", read_only / "x.json", "is not writable (Read-only")]
    if kind == "dir":
        return common + [("a file where a folder goes", blocker, "it is a file, not a folder")]
    return common + [("a folder where a file goes", tmp_path / "a_folder",
                      "it is a folder, not a file")]


@pytest.mark.parametrize("argv, option, kind", WRITERS,
                         ids=[f"{a[0]}{'-cal' if '--calibrate' in a else ''} {o}"
                              for a, o, _ in WRITERS])
def test_every_writer_refuses_a_bad_output_before_working(argv, option, kind, tmp_path,
                                                          capsys, no_work, read_only):
    for label, path, fragment in _paths(tmp_path, kind, read_only):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        assert main([*argv, option, str(path)]) == 2, label
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: cannot write "), (label, err)
        assert fragment in err[0], (label, err)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, label
    assert (tmp_path / "a_file").read_text() == "keep me\n"


@pytest.mark.parametrize("argv, option, kind", WRITERS)
def test_a_good_output_passes_the_check_and_the_work_starts(argv, option, kind, tmp_path,
                                                            no_work):
    with pytest.raises(Started):
        main([*argv, option, str(tmp_path / "new" / ("x.json" if kind == "file" else "d"))])
    if argv[0] in ("verilog", "crop-study", "cosim", "quantize"):
        assert not (tmp_path / "new").exists()       # nothing made before there is a result


def test_checks_create_nothing_and_clean_their_probe(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_file(tmp_path / "c" / "x.json") == tmp_path / "c" / "x.json"
    assert check_output_dir(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_atomic_write(tmp_path, read_only):
    p = atomic_write(tmp_path / "deep" / "r.json", "{}\n")
    assert p.read_text() == "{}\n"
    atomic_write(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match=r"cannot write .*dir: it is a folder, not a file"):
        atomic_write(tmp_path / "dir", "x")
    with pytest.raises(UsageError, match="Read-only"):
        atomic_write(read_only / "r.json", "x")
    # nothing partial, no temporary file left behind
    assert sorted(q.name for q in tmp_path.rglob("*")) == ["deep", "dir", "r.json", "readonly"]


# -- configuration names never choose a path --------------------------------------------

@pytest.mark.parametrize("name", ["../../escape_test", "a/b", "/abs", ".hidden", "-x", "a..b",
                                  "", "sp ace", "x\ny", "C:\\win"])
def test_config_names_are_plain(name, tmp_path):
    doc = load_config("small").to_dict() | {"name": name}
    with pytest.raises(ConfigError, match="'name' must be a plain identifier"):
        AccelConfig.from_dict(doc, source="t.toml")


def test_config_names_that_are_fine():
    for name in ("small", "my_cfg-2", "v1.2", "_x", "9"):
        assert AccelConfig.from_dict(load_config("small").to_dict() | {"name": name}).name == name


def test_escape_name_is_refused_by_verilog(tmp_path, capsys):
    toml = (load_config("small").to_dict())
    text = "name = \"../../escape_test\"\n" + "".join(
        f"[{sec}]\n" + "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n"
                               .replace("'", '"') for k, v in keys.items())
        for sec, keys in toml.items() if isinstance(keys, dict))
    (tmp_path / "esc.toml").write_text(text)
    assert main(["verilog", "--config", str(tmp_path / "esc.toml"), "--no-lint",
                 "--no-synth"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "plain identifier" in err and err.count("\n") == 1


def test_default_verilog_folder_is_keyed_by_name_and_content():
    from gen.verilog import BUILD_DIR, default_out_dir

    small = load_config("small")
    changed = small.replace(output_bits=small.output_bits - 1)
    assert changed.name == small.name and changed.digest != small.digest
    assert default_out_dir(small) == BUILD_DIR / f"small-{small.digest}"
    assert default_out_dir(changed) != default_out_dir(small)
    assert default_out_dir(changed).parent == BUILD_DIR
