"""The house rules hold: which layer may import which (``[tool.importlinter]`` in
``pyproject.toml``), and the golden model imports without Amaranth or cocotb.

import-linter runs in a subprocess whose ``sys.path`` starts at the tree under test, so that the
same check can be pointed at a copy with a deliberate violation (which it must report).
Function-local imports count: grimp reads every import statement.
"""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("arch", "golden", "hdl", "gen", "cosim", "aqua")

# Runs import-linter on the tree in the working directory; prints, per contract id, whether it
# is kept and every (importer, imported) link named in the report.
_CHECK = r"""
import dataclasses, json
from importlinter import configuration
configuration.configure()
from importlinter.application import use_cases

def links(node, out):
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        node = dataclasses.asdict(node)
    if isinstance(node, dict):
        if isinstance(node.get("importer"), str) and isinstance(node.get("imported"), str):
            out.append([node["importer"], node["imported"]])
        for value in node.values():
            links(value, out)
    elif isinstance(node, (list, tuple, set, frozenset)):
        for value in node:
            links(value, out)
    return out

use_cases._register_built_in_contract_types()
report = use_cases.create_report(use_cases.read_user_options("pyproject.toml"), cache_dir=None)
print(json.dumps({c.contract_options["id"]: {"name": c.name, "kept": check.kept, "links": links(check.metadata, [])}
                  for c, check in report.get_contracts_and_checks()}))
"""


def lint(root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", _CHECK], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_contracts_are_configured():
    cfg = _config()
    assert tuple(cfg["root_packages"]) == PACKAGES
    contracts = {c["id"]: c for c in cfg["contracts"]}
    assert contracts["layers"]["layers"] == ["aqua", "cosim", "gen", "golden | hdl", "arch"]
    assert contracts["golden-pure"]["forbidden_modules"] == ["amaranth", "cocotb"]
    # The command contract lists every aqua/cmd_*.py (wildcards cannot match a name prefix).
    commands = sorted(f"aqua.{p.stem}" for p in (ROOT / "aqua").glob("cmd_*.py"))
    assert sorted(contracts["commands"]["protected_modules"]) == commands
    assert contracts["commands"]["allowed_importers"] == ["aqua.cli"]


def test_every_contract_is_kept():
    report = lint(ROOT)
    assert set(report) == {"layers", "golden-pure", "commands"}
    broken = {cid: r["links"] for cid, r in report.items() if not r["kept"]}
    assert not broken, f"broken import contracts: {broken}"


def _copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


@pytest.mark.parametrize("module, line, contract, link", [
    # an upward import, function-local (grimp sees it all the same)
    ("golden/arith.py", "def _upward():\n    from cosim import sim\n", "layers",
     ["golden.arith", "cosim.sim"]),
    ("arch/ranges.py", "import golden.arith\n", "layers", ["arch.ranges", "golden.arith"]),
    ("hdl/adc.py", "from golden import crop\n", "layers", ["hdl.adc", "golden.crop"]),
    ("golden/trace.py", "import amaranth.hdl\n", "golden-pure", ["golden.trace", "amaranth"]),
    ("aqua/userdata.py", "from aqua import cmd_demo\n", "commands",
     ["aqua.userdata", "aqua.cmd_demo"]),
])
def test_a_violation_is_reported(tmp_path, module, line, contract, link):
    root = _copy_tree(tmp_path)
    path = root / module
    path.write_text(path.read_text() + "\n\n" + line)
    report = lint(root)
    assert not report[contract]["kept"]
    assert link in report[contract]["links"], report[contract]["links"]


def test_golden_imports_without_amaranth_and_cocotb():
    """Every golden module imports in a fresh interpreter where ``amaranth`` and ``cocotb``
    cannot be imported."""
    golden = sorted(f"golden.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "golden")]))
    assert "golden.trace" in golden and "golden.crop" in golden
    code = ("import sys\n"
            "for name in ('amaranth', 'cocotb', 'cocotb_tools'):\n"
            "    sys.modules[name] = None\n"
            f"import importlib\nfor m in {golden!r}:\n    importlib.import_module(m)\n"
            "assert not any(k.split('.')[0] in ('hdl', 'gen', 'cosim', 'aqua') "
            "for k in sys.modules), sorted(sys.modules)\n"
            "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_blocking_amaranth_is_effective():
    """The check above can fail: with amaranth blocked, ``hdl`` does not import."""
    code = "import sys\nsys.modules['amaranth'] = None\nimport hdl.layouts\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "amaranth" in proc.stderr
