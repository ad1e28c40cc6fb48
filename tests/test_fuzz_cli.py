"""Fuzzing the user-facing surface: the config loader and every ``aqua`` subcommand.

* random bytes and random TOML trees into the config loader: only ``ConfigError`` comes out;
* random argument vectors into every subcommand, in-process through ``aqua.cli.main``: known
  valid command lines with one or more values replaced by bad (or random) ones. Every refusal
  is exit status 2 with exactly one ``error:`` line on standard error and never a traceback.
  So that no argv starts minutes of work, the expensive entry points behind the validation are
  stubbed: reaching one means the command line was accepted (:class:`Started`).

Each test records how many inputs it tried (``fuzz_inputs``) and how many were refused
(``fuzz_refused``); ``tests/conftest.py`` prints the totals after the run (the number for the
issue note).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arch.config import _SCHEMA, AccelConfig, ConfigError, load_config
from aqua.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(deadline=None, max_examples=60, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


class Started(Exception):
    """An expensive entry point was reached: the command line passed validation."""


def _started(*_a, **_k):
    raise Started


#: module attribute -> stub: everything a command does after its checks that takes long
EXPENSIVE = [
    ("gen.verilog", "generate"),
    ("aqua.sweep", "local_client"),
    ("aqua.sweep", "run_sweep"),
    ("golden.fixedpoint", "quantize_democnn"),
    ("golden.cnn", "train_democnn"),
    ("golden.qreport", "quantize_report"),
    ("cosim.run", "random_jobs"),
    ("cosim.calibrate", "calibrate"),
    ("aqua.crop_study", "run_study"),
    ("cosim.energy_report", "rtl_runs"),
    ("cosim.tile_energy", "tile_report"),
    ("cosim.tile_energy", "calibrate_tile"),
    ("golden.qadc", "adc_sweep"),
]


@pytest.fixture(scope="module")
def stubbed():
    import importlib

    mp = pytest.MonkeyPatch()
    for module, name in EXPENSIVE:
        mp.setattr(importlib.import_module(module), name, _started)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths of every kind a user gets wrong: a file, a folder, a path under a file, a file
    that is not what it claims, /proc (not writable even for root)."""
    d = tmp_path_factory.mktemp("fuzz")
    (d / "file.txt").write_text("just text\n")
    (d / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "junk.pt").write_bytes(b"\x80\x02junk")
    (d / "bad.toml").write_text("[crossbar\nrows = 3")
    (d / "folder").mkdir()
    import numpy as np
    import torch

    from tests.test_crop_study_cli import tiny_net

    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=(rng.random((12, 16, 16)) * 255).astype(np.uint8),
             y=np.arange(12) % 3)
    np.savez(d / "strings.npz", x=np.array([["a"] * 4] * 12), y=np.arange(12) % 3)
    np.save(d / "bare.npy", np.zeros(3))
    (d / "bare.npy").rename(d / "bare.npz")
    torch.save(tiny_net().state_dict(), d / "w.pt")
    torch.save({"nope": torch.zeros(2)}, d / "other.pt")
    return d


def _bad_values(files):
    f = str(files)
    return st.one_of(
        st.sampled_from([
            "", " ", "-1", "0", "-0", "1e9", "nan", "inf", "-inf", "0x10", "1.5", "3/4",
            "99999999999999999999999999999", str(2 ** 64), "-" + str(2 ** 70), "all", "none",
            "../../escape", "small", "nonesuch", "a:b", "os:getcwd", "tests:nothing",
            f"{f}/file.txt", f"{f}/file.txt/sub", f"{f}/folder", f"{f}/junk.npz",
            f"{f}/junk.pt", f"{f}/bad.toml", f"{f}/missing/x.json", "/proc/aqua-fuzz",
            f"{f}/strings.npz", f"{f}/bare.npz", f"{f}/other.pt", f"{f}/w.pt", f"{f}/data.npz",
            "tests.test_crop_study_cli:tiny_net", "tests.test_crop_study_cli:nothing",
            "tests.test_crop_study_cli:FACTORY", "no_such_module:f",
            "/proc/aqua-fuzz/x.json", "/", "--", "-h-", "é" * 3]),
        st.integers(-2 ** 70, 2 ** 70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=20),
    )


#: per subcommand: a valid command line as (option, value) pairs (value None: a flag);
#: the fuzzer replaces values, drops pairs and adds stray ones
BASE: dict[str, list[tuple[str, str | None]]] = {
    "demo": [("--config", "small"), ("--layer", "0"), ("--images", "1"),
             ("--accuracy-images", "0"), ("--sim", "none"), ("--model", None)],
    "train": [("--epochs", "1"), ("--seed", "1"), ("--output", "{tmp}/m.pt")],
    "configs": [],
    "check-config": [("", "small")],
    "verilog": [("--config", "small"), ("--out", "{tmp}/v"), ("--blocks", "adc"),
                ("--no-lint", None), ("--no-synth", None)],
    "cosim": [("--config", "small"), ("--sim", "icarus"), ("--vectors", "4"), ("--seed", "1"),
              ("--bubble", "0.1"), ("--backpressure", "0.1"), ("--blocks", "adc"),
              ("--crop-fraction", "0.25"), ("--cycles", "10"), ("--json", "{tmp}/c.json")],
    "bench": [("--config", "small"), ("--images", "1"), ("--model", None)],
    "quantize": [("--bound", "1"), ("--images", "10"), ("--schedule", "greedy"),
                 ("--json", "{tmp}/q.json"), ("--no-hardware", None), ("--config", "small")],
    "energy": [("--config", "small"), ("--layer", "0"), ("--crop", "3"), ("--table", "isaac32nm"),
               ("--fraction", "0.25"), ("--image", "0"), ("--analytic", None),
               ("--seed", "0"), ("--out", "{tmp}/e")],
    "crop-study": [("--config", "small"), ("--table", "isaac32nm"), ("--fraction", "0.25"),
                   ("--from-layer", "0"), ("--test-images", "4"), ("--train-images", "9"),
                   ("--batch", "8"), ("--out", "{tmp}/cs"), ("--rtl-images", "0"),
                   ("--sim", "verilator")],
    "sweep": [("", "{repo}/configs/sweeps/small_grid.toml"), ("--out", "{tmp}/sw"),
              ("--serial", None)],
    "adc": [("--config", "small"), ("--models", "democnn"), ("--modes", "clip"),
            ("--min-bits", "4"), ("--images", "10"), ("--search-images", "4"), ("--bound", "1"),
            ("--json", "{tmp}/a.json")],
    # a user's model and images
    "crop-study:user": [("--model", "tests.test_crop_study_cli:tiny_net"),
                        ("--weights", "{tmp}/w.pt"), ("--images", "{tmp}/data.npz"),
                        ("--mean", "0.5"), ("--std", "0.25"), ("--size", "16"),
                        ("--classes", "3"), ("--from-layer", "0"), ("--out", "{tmp}/cu")],
}
#: options that take a value but are not in the base lines (the fuzzer may add them)
EXTRA = {"crop-study": ["--model", "--weights", "--images", "--size", "--mean", "--std",
                        "--classes"],
         "energy": ["--calibrate", "--tile"], "demo": [], "bench": [], "train": [],
         "configs": [], "check-config": [], "verilog": ["--synth"], "cosim": [],
         "quantize": ["--model", "--sim"], "sweep": ["--workers"], "adc": [],
         "crop-study:user": ["--grayscale", "--fraction"]}


def test_base_lines_cover_every_command():
    assert {k.partition(":")[0] for k in BASE} == set(COMMANDS)


@st.composite
def argvs(draw, files, line):
    cmd = line.partition(":")[0]
    pairs = [(o, None if v is None else v.format(tmp=files, repo=REPO))
             for o, v in BASE[line] if v is not None or o != "--model"]
    bad = _bad_values(files)
    n = draw(st.integers(1, 3))
    for _ in range(n):
        action = draw(st.sampled_from(["replace", "replace", "replace", "add", "drop"]))
        if action == "replace" and pairs:
            i = draw(st.integers(0, len(pairs) - 1))
            pairs[i] = (pairs[i][0], draw(bad))
        elif action == "add":
            opt = draw(st.sampled_from(EXTRA[line] + [o for o, _ in BASE[line] if o]
                                       or ["--bogus"]))
            pairs.append((opt, draw(bad)))
        elif pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
    argv = [cmd]
    for opt, val in pairs:
        argv += [x for x in (opt, val) if x]
    return argv


def run_main(argv) -> tuple[str, int | None, str]:
    """``(outcome, status, stderr)``: outcome "started" (an expensive entry point was reached),
    "exit" (main returned or argparse exited); any other exception propagates (a bug)."""
    err = io.StringIO()
    out = io.StringIO()
    status = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = main(argv)
        except SystemExit as exc:     # argparse: usage line and one "error:" line, status 2
            status = exc.code
        except Started:
            return "started", None, err.getvalue()
    return "exit", status, err.getvalue()


def check_refusal(argv, status, stderr) -> bool:
    """True if this was a refusal (and a clean one), False for an accepted line."""
    assert "Traceback" not in stderr, (argv, stderr)
    if status in (0, 1):                      # accepted and cheap: configs, check-config, ...
        return False
    assert status == 2, (argv, status, stderr)
    errors = [ln for ln in stderr.splitlines() if "error: " in ln]
    assert len(errors) == 1, (argv, stderr)
    # ours start "error: ", argparse's "aqua X: error: " (after its usage lines)
    assert errors[0].startswith(("error: ", "aqua: error: ", f"aqua {argv[0]}: error: ")), \
        (argv, stderr)
    return True


@pytest.mark.parametrize("line", sorted(BASE))
def test_every_refusal_is_one_error_line(line, stubbed, files, record_property):
    tried, refused = [0], [0]

    @settings(FUZZ, max_examples=25)
    @given(argv=argvs(files, line))
    def fuzz(argv):
        outcome, status, stderr = run_main(argv)
        tried[0] += 1
        if outcome == "exit" and check_refusal(argv, status, stderr):
            refused[0] += 1

    fuzz()
    record_property("fuzz_inputs", tried[0])
    record_property("fuzz_refused", refused[0])
    assert tried[0] >= 10


# -- the config loader ----------------------------------------------------------------------

def _toml_values():
    leaf = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.integers(-5, 70), st.booleans(),
                     st.floats(), st.text(max_size=12),
                     st.sampled_from(["lossless", "clip", "drop_lsb", "biased", "unsigned",
                                      "../../x", "a b", ".hidden", "-x", "ok_name"]))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                 st.dictionaries(st.text(max_size=6), c,
                                                                 max_size=3)), max_leaves=6)


@st.composite
def toml_trees(draw):
    """A copy of a shipped config with some keys changed, dropped or added, and values of any
    TOML type."""
    base = load_config(draw(st.sampled_from(["small", "medium", "small_signed"]))).to_dict()
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*_SCHEMA, "name", "description", "extra"]))
        action = draw(st.sampled_from(["set", "set", "drop"]))
        if section in _SCHEMA and isinstance(base.get(section), dict) and action == "set":
            key = draw(st.sampled_from([*_SCHEMA[section], "bogus"]))
            base[section][key] = draw(_toml_values())
        elif action == "set":
            base[section] = draw(_toml_values())
        else:
            base.pop(section, None)
    return base


@settings(FUZZ, max_examples=150)
@given(doc=toml_trees())
def test_config_trees_raise_only_config_error(doc):
    try:
        cfg = AccelConfig.from_dict(doc, source="fuzz.toml")
    except ConfigError:
        _count("config_trees", refused=True)
        return
    _count("config_trees", refused=False)
    assert ".." not in cfg.name and "/" not in cfg.name


@settings(FUZZ, max_examples=100)
@given(blob=st.one_of(st.binary(max_size=200),
                      st.sampled_from([b"", b"[crossbar]\nrows = 1e3\n", b"\xff\xfe[x]",
                                       b"name = 3", b"[crossbar]\n[crossbar]\n",
                                       b"rows = [[[[[[[[[[1]]]]]]]]]]"]),
                      st.text(max_size=120).map(str.encode)))
def test_config_bytes_raise_only_config_error(blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfgbytes") / "fuzzed.toml"
    path.write_bytes(blob)
    try:
        load_config(path)
    except ConfigError:
        _count("config_bytes", refused=True)
        return
    _count("config_bytes", refused=False)


_COUNTS: dict[str, list[int]] = {}


def _count(name: str, *, refused: bool) -> None:
    c = _COUNTS.setdefault(name, [0, 0])
    c[0] += 1
    c[1] += refused


@pytest.fixture(autouse=True)
def _record_counts(request, record_property):
    before = {k: list(v) for k, v in _COUNTS.items()}
    yield
    for k, (n, r) in _COUNTS.items():
        n0, r0 = before.get(k, [0, 0])
        if n > n0:
            record_property("fuzz_inputs", n - n0)
            record_property("fuzz_refused", r - r0)

