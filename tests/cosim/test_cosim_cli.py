"""``aqua cosim``: one library call (``cosim.suite.run_cosim``) rendered by the CLI; the JSON
report is the same for the same seed apart from its ``timing``; ``--waves`` keeps the waveform
of a passing run and prints its path; progress goes through the CLI's shared helper."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

import aqua.cli
from aqua import cmd_cosim
from aqua.cli import main
from cosim.sim import selected_simulators
from cosim.suite import COLUMNS, TARGET_NAMES

pytestmark = pytest.mark.cosim

SIM = selected_simulators()[0]


def test_cli_choices_are_the_suite_targets():
    assert cmd_cosim.TARGETS == TARGET_NAMES


@pytest.fixture
def progress_calls(monkeypatch):
    """Replace the shared progress helper and record what the command tells it."""
    calls = []

    @contextmanager
    def progress(description, total):
        calls.append(("open", description, total))

        def advance(n=1, total=None):
            calls.append(("advance", n, total))
        yield advance
    monkeypatch.setattr(aqua.cli, "progress", progress)
    return calls


def _cosim(tmp_path, capsys, name, *extra):
    path = tmp_path / f"{name}.json"
    status = main(["cosim", "--sim", SIM, "--blocks", "adc", "shiftadd", "--cycles", "300",
                   "--seed", "11", "--json", str(path), *extra])
    out = capsys.readouterr().out
    assert status == 0, out
    return json.loads(path.read_text()), out


def test_same_seed_same_report_apart_from_timing(tmp_path, capsys, progress_calls):
    first, out = _cosim(tmp_path, capsys, "first")
    second, _ = _cosim(tmp_path, capsys, "second")
    timing = [first.pop("timing"), second.pop("timing")]
    assert json.dumps(first, indent=2) == json.dumps(second, indent=2)
    # every wall time and speed is under "timing", and nowhere else
    assert not any(k in json.dumps(first) for k in ("wall_s", "cycles_per_s"))
    assert [r["block"] for r in timing[0]["runs"]] == ["adc", "shiftadd"]
    assert all(r["cycles_per_s"] > 0 and r["wall_s"] > 0 for r in timing[0]["runs"])
    # one meaning per column, said in the JSON and in the table's caption
    assert first["columns"] == COLUMNS
    runs = {r["block"]: r for r in first["runs"]}
    assert runs["adc"]["vectors"] == runs["adc"]["cycles"] == runs["adc"]["cycles_compared"]
    assert runs["adc"]["cycles"] >= 300
    assert runs["adc"]["outputs_compared"] == 2 * runs["adc"]["cycles"]       # code and rec
    assert runs["shiftadd"]["outputs_compared"] == 3 * runs["shiftadd"]["cycles"]  # acc xsum y
    assert all(r["passed"] and r["waves"] is None for r in first["runs"])
    for column in ("vectors", "cycles compared", "outputs compared"):
        assert column in out
    assert "cycles compared: cycles on which every output" in out
    # progress through the shared helper: the total first, then one step per run
    assert progress_calls[:2] == [("open", "co-simulating", None), ("advance", 0, 2)]
    assert progress_calls[2:4] == [("advance", 1, None)] * 2


def test_waves_keeps_the_waveform_of_a_passing_run(tmp_path, capsys, progress_calls):
    doc, out = _cosim(tmp_path, capsys, "waves", "--waves")
    for run in doc["runs"]:
        assert run["passed"]
        wave = Path(run["waves"])
        assert wave.exists() and wave.suffix == ".fst" and wave.stat().st_size > 500
        assert f"waveform of {run['block']} on {SIM}: {wave}" in out


def test_report_keeps_every_timing_under_one_key():
    """Two reports that differ only in wall times and speeds give the same JSON apart from
    ``timing`` (no simulator needed)."""
    from cosim.suite import CosimOptions, CosimReport, CosimRow, CropSweep

    def report(wall):
        options = CosimOptions(sims=("icarus",), seed=3, targets=("adc", "convtile"))
        rows = [CosimRow(block="adc", sim="icarus", config="small", seed=3, passed=True,
                         vectors=10, cycles=10, cycles_compared=10, outputs_compared=20,
                         wall_s=wall, sim_wall_s=wall / 2),
                CosimRow(block="convtile L0", sim="icarus", config="small", seed=3,
                         passed=False, vectors=9, cycles=100, cycles_compared=None,
                         outputs_compared=4, message="image 'crop  1': ...", wall_s=2 * wall,
                         sim_wall_s=wall)]
        sweep = CropSweep(layer=0, sim="icarus", config="small", fraction=0.25,
                          rows=[{"label": "crop  0 ----", "window": (0, 2, 0, 2),
                                 "cycles_rtl": 50, "cycles_golden": 50, "error": False,
                                 "outputs_equal": True}])
        return CosimReport(config="small", options=options, rows=rows, sweeps=[sweep],
                           wall_s=10 * wall).to_dict()

    a, b = report(1.0), report(2.5)
    assert a.pop("timing") != b.pop("timing")
    assert json.dumps(a) == json.dumps(b)
    assert a["passed"] is False and [r["cycles_compared"] for r in a["runs"]] == [10, None]
    assert a["crop_sweeps"][0]["crop_cycles"][0]["window"] == [0, 2, 0, 2]
    assert a["options"]["targets"] == ["adc", "convtile"]


@pytest.mark.parametrize("kwargs, message", [
    ({"targets": ("nonesuch",)}, r"^targets must be among datapath, crossbar, adc, shiftadd, "
                                 r"agu, convtile, not \['nonesuch'\]$"),
    ({"bubble": 1.0}, r"^bubble must lie in \[0, 1\), not 1.0$"),
])
def test_options_are_checked(kwargs, message):
    from cosim.suite import CosimOptions
    with pytest.raises(ValueError, match=message):
        CosimOptions(sims=("icarus",), seed=1, **kwargs)


def test_cli_refuses_bad_options_before_any_work(capsys):
    assert main(["cosim", "--bubble", "1.5"]) == 2
    assert capsys.readouterr().err == "error: --bubble must lie in [0, 1), not 1.5\n"
    assert main(["cosim", "--crop-fraction", "0.7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --crop-fraction: ") and err.count("\n") == 1
