"""``aqua cosim``: co-simulate the generated RTL against the golden model and print a table."""

from __future__ import annotations

import argparse
import json
import random
import sys

HELP = "co-simulate the generated Verilog under Icarus and/or Verilator against the golden model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aqua._cmdutil import add_config_argument, positive_int, seed_int
    add_config_argument(parser)
    parser.add_argument("--sim", default="all", choices=["icarus", "verilator", "all"],
                        help="simulator (default: all)")
    parser.add_argument("--vectors", type=positive_int, default=400,
                        help="random input vectors per simulator (default: 400)")
    parser.add_argument("--seed", type=seed_int, default=None,
                        help="stimulus seed (default: random, printed)")
    parser.add_argument("--bubble", type=float, default=0.2,
                        help="probability of an input bubble per cycle (default: 0.2)")
    parser.add_argument("--backpressure", type=float, default=0.2,
                        help="probability that the output is not ready (default: 0.2)")
    parser.add_argument("--blocks", nargs="+", default=["all"],
                        choices=["all", "datapath", "crossbar", "adc", "shiftadd", "agu",
                                 "convtile"],
                        help="benches to run (default: all: the Datapath, each block, and the "
                             "ConvTile on every demo CNN layer that fits the crossbar under "
                             "all 16 crop vectors)")
    parser.add_argument("--crop-fraction", type=float, default=0.25,
                        help="crop fraction of the ConvTile runs, a multiple of 1/256 in "
                             "[0, 0.5) (default: 0.25)")
    parser.add_argument("--cycles", type=positive_int, default=4000,
                        help="random cycles per block bench (default: 4000)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import check_output_file, config_from_args
    from aqua.cli import UsageError

    if args.json:
        check_output_file(args.json, "--json")

    from .run import random_jobs, run_datapath
    from .sim import SIMULATORS, SimulatorMissing, ensure_simulator

    cfg = config_from_args(args.config)
    for name, p in (("--bubble", args.bubble), ("--backpressure", args.backpressure)):
        if not 0 <= p < 1:
            raise UsageError(f"{name} must lie in [0, 1), not {p}")
    sims = list(SIMULATORS) if args.sim == "all" else [args.sim]
    try:
        for sim in sims:
            ensure_simulator(sim)
    except SimulatorMissing as exc:
        raise UsageError(str(exc)) from None
    seed = args.seed if args.seed is not None else random.randrange(2 ** 31)
    print(f"cosim: config {cfg.name}, seed {seed}, {args.vectors} vectors per simulator",
          file=sys.stderr)
    from .blocks import run_block

    from golden.crop import fraction_code

    from .tile import crop_sweep, demo_layers_for, tile_cosim_row

    try:
        fraction_code(args.crop_fraction)
    except ValueError as exc:
        raise UsageError(f"--crop-fraction: {exc}") from None
    blocks = ["datapath", "crossbar", "adc", "shiftadd", "agu", "convtile"] \
        if "all" in args.blocks else args.blocks
    tile_layers = demo_layers_for(cfg) if "convtile" in blocks else []
    steps = (len(blocks) - ("convtile" in blocks) + len(tile_layers)) * len(sims)
    jobs = random_jobs(cfg, args.vectors, seed)
    rows = []
    from aqua.cli import progress
    sweeps = []
    with progress("co-simulating", total=steps) as advance:
        for block in blocks:
            for sim in sims:
                if block == "convtile":
                    for index in tile_layers:
                        run = crop_sweep(cfg, index, sim, fraction=args.crop_fraction,
                                         seed=seed)
                        sweeps.append((index, run))
                        rows.append(tile_cosim_row(run, index))
                        advance()
                elif block == "datapath":
                    rows.append(run_datapath(cfg, sim, jobs=jobs, seed=seed, bubble=args.bubble,
                                             backpressure=args.backpressure))
                else:
                    rows.append(run_block(cfg, block, sim, cycles=args.cycles, seed=seed))
                if block != "convtile":
                    advance()
    print_table(rows)
    for index, run in sweeps:
        print_crop_cycles(run, index, args.crop_fraction)
    if args.json:
        doc = [{**r.__dict__, "waves": str(r.waves) if r.waves else None,
                "cycles_per_s": r.cycles_per_s} for r in rows]
        doc += [{"block": f"convtile L{index}", "sim": run.sim, "crop_cycles": run.rows}
                for index, run in sweeps]
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
    failed = [r for r in rows if not r.passed]
    for r in failed:
        print(f"FAIL {r.block} on {r.sim}: {r.message}", file=sys.stderr)
    return 1 if failed else 0


def print_table(rows) -> None:
    from aqua._cmdutil import console
    from rich.table import Table

    table = Table(title="co-simulation against the golden cycle trace")
    # blocks and Datapath: cycles compared in full; ConvTile: output values compared (plus the
    # cycle count and flags of each image), "vectors" its images
    for col in ("block", "simulator", "config", "compared", "vectors", "result",
                "wall s", "cycles/s"):
        table.add_column(col, justify="right" if col not in ("block", "simulator", "config",
                                                             "result") else "left")
    for r in rows:
        table.add_row(r.block, r.sim, r.config, f"{r.compared:,}",
                      f"{r.vectors:,}" if r.block == "datapath" or r.block.startswith(
                          "convtile") else "-",
                      "[green]pass[/]" if r.passed else "[red]FAIL[/]", f"{r.wall_s:.1f}",
                      f"{r.cycles_per_s:,.0f}")
    console().print(table)


def print_crop_cycles(run, index: int, fraction: float) -> None:
    """Per crop vector: the kept window, the cycles the RTL took and the golden prediction,
    and the cycles saved against the uncropped run (measured and predicted)."""
    from aqua._cmdutil import console
    from rich.table import Table

    table = Table(title=f"ConvTile, demo CNN layer {index}, {run.config}, {run.sim}: cycles "
                        f"per crop vector (fraction {fraction})")
    for col in ("crop", "kept window", "cycles RTL", "cycles golden", "saved RTL",
                "saved golden", "outputs"):
        table.add_column(col, justify="left" if col in ("crop", "kept window") else "right")
    base = next((r for r in run.rows if r["window"] and r["label"].startswith("crop  0")),
                None)
    for r in run.rows:
        saved = (f"{1 - r['cycles_rtl'] / base['cycles_rtl']:.1%}",
                 f"{1 - r['cycles_golden'] / base['cycles_golden']:.1%}") if base else ("-",) * 2
        table.add_row(r["label"], str(r["window"]), f"{r['cycles_rtl']:,}",
                      f"{r['cycles_golden']:,}", *saved,
                      "bit-exact" if r["outputs_equal"] else "[red]differ[/]")
    console().print(table)
