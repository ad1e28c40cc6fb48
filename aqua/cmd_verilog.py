"""``aqua verilog``: Verilog of every block, the manifest, lint, and Yosys cell counts."""

from __future__ import annotations

import argparse
import time

from aqua._cmdutil import add_config_argument

HELP = "generate the Verilog of every block plus a JSON manifest, lint it, count its cells"

# Synthesis of a crossbar this large (rows * cols) takes minutes: opt-in above it.
SYNTH_AUTO_LIMIT = 64 * 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: build/verilog/<config>-<digest>)")
    p.add_argument("--blocks", nargs="+", metavar="BLOCK",
                   help="only these blocks (default: all)")
    p.add_argument("--no-lint", action="store_true", help="skip Verilator and Icarus lint")
    synth = p.add_mutually_exclusive_group()
    synth.add_argument("--synth", action="store_true",
                       help="always run Yosys synthesis (default: only for crossbars up to "
                            "64x64; isaac takes about 5 minutes per block)")
    synth.add_argument("--no-synth", action="store_true", help="never run Yosys synthesis")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from aqua._cmdutil import check_output_dir, config_from_args
    from aqua.cli import UsageError
    from gen.lint import LintError, lint_dir
    from gen.synth import SynthError, synth_dir
    from gen.verilog import default_out_dir, generate
    from hdl import BLOCKS

    cfg = config_from_args(args.config)
    if args.blocks:
        unknown = [b for b in args.blocks if b not in BLOCKS]
        if unknown:
            raise UsageError(f"--blocks must be among {', '.join(BLOCKS)}, not "
                             f"{', '.join(unknown)}")
    out = check_output_dir(args.out if args.out else default_out_dir(cfg), "--out")
    console = Console(width=None if Console().is_terminal else 110)
    gen_t: dict[str, float] = {}
    with console.status(f"generating Verilog for {cfg.name}"):
        t0 = time.perf_counter()
        try:
            manifest = generate(cfg, out, args.blocks, timings=gen_t)
        except OSError as exc:      # e.g. a folder where a .v file or the manifest goes
            raise UsageError(f"cannot write {exc.filename or out}: "
                             f"{exc.strerror or exc}") from None
        total_gen = time.perf_counter() - t0
    blocks = args.blocks or list(manifest["blocks"])
    lint = {}
    if not args.no_lint:
        with console.status("linting with Verilator (-Wall) and Icarus (-g2005)"):
            try:
                for r in lint_dir(out, blocks):
                    lint.setdefault(r.top, []).append(r.tool)
            except LintError as exc:
                console.print(f"[red]lint failed[/]\n{exc}")
                return 1
    do_synth = args.synth or (not args.no_synth and cfg.rows * cfg.cols <= SYNTH_AUTO_LIMIT)
    synth_t: dict[str, float] = {}
    cells = {}
    if do_synth:
        with console.status("synthesizing with Yosys (synth -flatten; stat)"):
            try:
                doc = synth_dir(out, blocks, timings=synth_t)
            except SynthError as exc:
                console.print(f"[red]synthesis failed[/]\n{exc}")
                return 1
        cells = {b: v["cells"] for b, v in doc["blocks"].items()}
    else:
        # counts from an earlier `--synth` run still hold for Verilog that has not changed
        import json
        try:
            doc = json.loads((out / "synth.json").read_text())
        except (OSError, ValueError):
            doc = {"blocks": {}}
        cells = {b: v["cells"] for b, v in doc.get("blocks", {}).items()
                 if b in manifest["blocks"] and v.get("sha256") == manifest["blocks"][b]["sha256"]}

    table = Table(title=f"Verilog for {cfg.name} in {out}")
    for col in ("block", "module", "latency", "ports", "lint", "yosys cells", "gen s", "synth s"):
        table.add_column(col, justify="right" if col in ("latency", "ports", "yosys cells",
                                                         "gen s", "synth s") else "left")
    for b in blocks:
        e = manifest["blocks"][b]
        latency = e.get("latency")
        table.add_row(b, e["file"], "-" if latency is None else str(latency),
                      str(len(e["ports"])),
                      "clean" if e["module"] in lint else "skipped",
                      f"{cells[b]:,}" if b in cells else "-",
                      f"{gen_t.get(b, 0.0):.2f}", f"{synth_t[b]:.1f}" if b in synth_t else "-")
    console.print(table)
    for b in blocks:
        for mem in manifest["blocks"][b].get("memories", []):
            console.print(f"{b}: memory {mem['name']}: {mem['depth']:,} x {mem['width']} bits "
                          f"= {mem['bits']:,} bits (one $mem_v2 macro in the cell count)")
    console.print(f"manifest: {out / 'manifest.json'}  (generated in {total_gen:.1f} s; "
                  f"lint = verilator --lint-only -Wall and iverilog -g2005)")
    if not do_synth:
        console.print(("synthesis skipped (--no-synth)" if args.no_synth else
                       "synthesis skipped for a crossbar this large: run with --synth")
                      + (" (cell counts shown are from an earlier --synth run of the same "
                         "Verilog)" if cells else ""))
    return 0
