"""A test skipped for a missing tool fails when both simulators are selected (SIM=all), and stays a
skip when SIM selects one simulator: the suite's own conftest hook, run on a throwaway test."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SKIPPING_TEST = '''
import pytest
def test_needs_tool():
    pytest.skip("frobnicator is not installed")
'''


@pytest.mark.parametrize("sim, outcome", [("all", "1 failed"), ("", "1 failed"),
                                          ("icarus", "1 skipped")])
def test_missing_tool_skip(tmp_path, sim, outcome):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(SKIPPING_TEST)
    env = {**os.environ, "SIM": sim}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "-W", "default", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert outcome in res.stdout, res.stdout
    if outcome.endswith("failed"):
        assert "frobnicator is not installed: with SIM=all every tool" in res.stdout
