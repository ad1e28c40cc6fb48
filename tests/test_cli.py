"""The ``aqua`` tool, run as a user would (a subprocess): output, exit status and, for every
kind of user mistake, one ``error:`` line and status 2, never a traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aqua.cli import COMMANDS, build_parser, main
from arch.config import config_names

REPO = Path(__file__).resolve().parent.parent


def aqua(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "150"}
    return subprocess.run([sys.executable, "-m", "aqua", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


def assert_usage_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error: " in ln]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], result.stderr


def test_help_lists_every_command():
    r = aqua("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert name in r.stdout


def test_no_command_is_a_usage_error():
    r = aqua()
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error:" in r.stderr


def test_configs_lists_the_shipped_configurations():
    r = aqua("configs")
    assert r.returncode == 0, r.stderr
    for name in config_names():
        assert name in r.stdout
    assert "128x128" in r.stdout and "273 cyc" in r.stdout    # isaac: 16 * (1 + 16) + 1


def test_check_config_prints_derived_widths():
    r = aqua("check-config", REPO / "configs" / "small.toml")
    assert r.returncode == 0, r.stderr
    assert "small: valid" in r.stdout
    # 16 rows * 255 * 128 = 522240 < 2**19: 19 bits + sign = 20; 16 * 255 * 255 = 1040400
    # < 2**20: 20 bits + 3 = 23; latency 8 chunks * (1 + 4 steps) + 1 = 41
    for quantity, value in (("read_bits", "5"), ("acc_bits", "23"), ("latency", "41"),
                            ("bias_bits", "20")):
        line = next(ln for ln in r.stdout.splitlines() if f" {quantity} " in ln)
        assert f" {value} " in line, line


def test_check_config_missing_file():
    assert_usage_error(aqua("check-config", "/no/such/file.toml"), "no configuration",
                       "/no/such/file.toml")


def test_check_config_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[crossbar\nrows = 16\n")
    assert_usage_error(aqua("check-config", bad), "not valid TOML", str(bad))


def test_check_config_refused_value(tmp_path):
    text = (REPO / "configs" / "small.toml").read_text().replace("bits = 5", "bits = 3")
    bad = tmp_path / "narrow_adc.toml"
    bad.write_text(text)
    assert_usage_error(aqua("check-config", bad), "'adc.bits' = 3 is too narrow")


def test_check_config_unknown_key(tmp_path):
    text = (REPO / "configs" / "small.toml").read_text() + "\n[extra]\nfoo = 1\n"
    bad = tmp_path / "extra.toml"
    bad.write_text(text)
    assert_usage_error(aqua("check-config", bad), "unknown key 'extra'")


def test_demo_bad_config_name():
    assert_usage_error(aqua("demo", "--config", "nonesuch"), "no configuration 'nonesuch'")


def test_demo_bad_layer_index():
    assert_usage_error(aqua("demo", "--layer", "7"), "--layer must be a conv layer", "0..3",
                       "not 7")


@pytest.mark.parametrize("args, fragment", [
    (("--layer", "-1"), "must be an integer >= 0"),
    (("--images", "0"), "must be a positive integer"),
    (("--images", "many"), "must be a positive integer, not 'many'"),
])
def test_demo_bad_option_values(args, fragment):
    assert_usage_error(aqua("demo", *args), fragment)


def test_demo_too_many_images():
    assert_usage_error(aqua("demo", "--images", "361"), "--images must be at most 360")


def test_demo_missing_model(tmp_path):
    assert_usage_error(aqua("demo", "--model", tmp_path / "none.pt"), "no model file",
                       "aqua train")


def test_demo_corrupt_model(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    assert_usage_error(aqua("demo", "--model", junk), "not a saved demo CNN")


def test_demo_runs_and_is_bit_exact():
    r = aqua("demo", "--images", "2", "--accuracy-images", "8")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "layer 1 of the demo CNN on 'small'" in out
    assert "conv 8->16 3x3 s2 p1" in out
    assert "bit-exact" in out
    assert re.search(r"weights Q\.-?\d+, inputs Q\.-?\d+, outputs Q\.-?\d+, shift -?\d+", out)
    assert "quantized accuracy" in out and "float accuracy" in out
    assert "max |error| 0.500 output LSB" in out or "max |error| 0.4" in out
    # the RTL part: layer 0 of one image co-simulated every cycle, bit-exact feature map
    assert re.search(r"RTL \((verilator|icarus)\)", out) and "match" in out
    assert "bit-exact with golden conv2d" in out


def test_demo_lossy_config_reports_differences():
    r = aqua("demo", "--config", "small_clip", "--layer", "0", "--images", "1",
             "--accuracy-images", "0", "--sim", "none")
    assert r.returncode == 0, r.stderr
    assert "lossy" in r.stdout and "quantized accuracy" not in r.stdout


def test_train_writes_a_loadable_model(tmp_path):
    out = tmp_path / "m.pt"
    r = aqua("train", "--epochs", "1", "--output", out)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "test accuracy" in r.stdout
    r = aqua("demo", "--model", out, "--layer", "0", "--images", "1", "--accuracy-images", "0",
             "--sim", "none")
    assert r.returncode == 0, r.stderr


def test_train_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_usage_error(aqua("train", "--epochs", "1", "--output", blocker / "m.pt"),
                       "cannot write")


def test_main_returns_status_in_process(capsys):
    assert main(["check-config", "nonesuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no configuration 'nonesuch'") and err.count("\n") == 1


def test_registry_modules_follow_the_protocol():
    parser = build_parser()
    assert parser.prog == "aqua"
    import importlib
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert isinstance(module.HELP, str) and module.HELP
        assert callable(module.add_arguments) and callable(module.run), name


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--seed", str(10 ** 30)], "must be a seed in [0, 4294967295], not 1000000000000"),
    (["train", "--seed", "-1"], "must be a seed in [0, 4294967295], not -1"),
    (["cosim", "--seed", "99999999999999999999"], "must be a seed"),
    (["energy", "--seed", "1e3"], "must be a seed in [0, 4294967295], not '1e3'"),
    (["energy", "--image", "-3"], "must be an integer >= 0"),
    (["demo", "--images", str(2 ** 80)], "must be a positive integer of at most 1,000,000,000, "
                                         "not 12089258196146291747..."),
    (["demo", "--images", "many"], "must be a positive integer, not 'many'"),
    (["crop-study", "--batch", "0"], "must be a positive integer"),
])
def test_integer_options_are_bounded(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error: " in ln]
    assert len(errors) == 1 and fragment in errors[0], errors


def test_a_directory_given_as_config(tmp_path, capsys):
    assert main(["check-config", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: configuration '{tmp_path}' is a directory; give a shipped name or " \
                  f"the path of a .toml file\n"


def test_progress_prints_plain_lines_when_not_a_terminal():
    import io

    from aqua.cli import _plain_progress

    now = [0.0]
    out = io.StringIO()
    with _plain_progress("work", 20, clock=lambda: now[0], stream=out, every=10) as advance:
        for _ in range(20):
            now[0] += 1.0
            advance()
    assert out.getvalue().splitlines() == [
        "work: 10/20 (50%), 10 s", "work: 12/20 (60%), 12 s", "work: 14/20 (70%), 14 s",
        "work: 16/20 (80%), 16 s", "work: 18/20 (90%), 18 s", "work: 20/20 (100%), 20 s"]
    # total unknown (learned late or never): a line every `every` seconds, then a last one
    now, out = [0.0], io.StringIO()
    with _plain_progress("train", None, clock=lambda: now[0], stream=out, every=10) as advance:
        for _ in range(25):
            now[0] += 1.0
            advance()
    assert out.getvalue().splitlines() == ["train: 10 steps, 10 s", "train: 20 steps, 20 s",
                                           "train: finished, 25 steps, 25 s"]
    # quick work stays quiet
    out = io.StringIO()
    with _plain_progress("quick", 5, stream=out) as advance:
        advance(5)
    assert out.getvalue() == ""


def test_piped_commands_use_the_shared_progress():
    """train, quantize and cosim report progress through aqua.cli.progress (plain lines in
    a log, see above)."""
    import inspect

    from aqua import cmd_cosim, cmd_quantize, cmd_train

    for module in (cmd_train, cmd_quantize, cmd_cosim):
        assert "progress(" in inspect.getsource(module.run), module.__name__


def test_packaging_lists_the_data_package():
    import tomllib

    doc = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "aqua.data" in doc["packages"] and doc["package-data"]["aqua.data"] == ["*.pt"]
    assert (REPO / "aqua" / "data" / "democnn.pt").is_file()


def test_no_c_compiler_is_one_error_line():
    """The golden bit-serial path's compiled kernel without a compiler: one ``error:`` line,
    exit 2, no traceback (a subprocess: this one may hold the built kernel already)."""
    env = {**os.environ, "CC": "/nonexistent/cc", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "aqua", "bench", "--config", "small_drop",
                           "--images", "2"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: the C compiler /nonexistent/cc does not run: [Errno 2] No such file or "
        "directory: '/nonexistent/cc'"]
    assert "Traceback" not in done.stdout + done.stderr
