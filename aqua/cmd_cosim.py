"""``aqua cosim``: co-simulate the generated RTL against the golden model and print a table.

Parses the options, makes one call to :func:`cosim.suite.run_cosim` and renders its report (a
table, the ConvTile's cycles per crop vector, waveform paths, and ``--json``)."""

from __future__ import annotations

import argparse
import json
import random
import sys

HELP = "co-simulate the generated Verilog under Icarus and/or Verilator against the golden model"

#: ``--blocks`` choices besides ``all``: the names of ``cosim.suite.TARGETS``, in order
#: (written out so that ``aqua --help`` does not import the co-simulation; a test holds the
#: two together).
TARGETS = ("datapath", "crossbar", "adc", "shiftadd", "agu", "convtile")


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
    parser.add_argument("--blocks", nargs="+", default=["all"], choices=["all", *TARGETS],
                        help="benches to run (default: all: the Datapath, each block, and the "
                             "ConvTile on every demo CNN layer that fits the crossbar under "
                             "all 16 crop vectors)")
    parser.add_argument("--ima", action="store_true",
                        help="also run the IMATile (an IMA of ima.crossbars crossbars, in "
                             "passes) on every demo CNN layer larger than one crossbar, under "
                             "all 16 crop vectors, on the bulk path (long multi-crossbar "
                             "builds, cached)")
    parser.add_argument("--crop-fraction", type=float, default=0.25,
                        help="crop fraction of the ConvTile runs, a multiple of 1/256 in "
                             "[0, 0.5) (default: 0.25)")
    parser.add_argument("--cycles", type=positive_int, default=4000,
                        help="random cycles per block bench (default: 4000)")
    parser.add_argument("--path", choices=["bulk", "cocotb"], default="bulk",
                        help="how the Datapath and the ConvTile run: bulk (compiled, every "
                             "cycle compared inside the simulator; default) or cocotb (Python "
                             "on every clock); the block benches always run under cocotb")
    parser.add_argument("--waves", action="store_true",
                        help="record a waveform of every run, keep it and print its path "
                             "(runs the cocotb path)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import atomic_write, check_output_file, config_from_args
    from aqua.cli import UsageError, progress
    from cosim.sim import SIMULATORS, SimulatorMissing, ensure_simulator
    from cosim.suite import CosimOptions, run_cosim
    from golden.crop import fraction_code

    if args.json:
        check_output_file(args.json, "--json")
    cfg = config_from_args(args.config)
    for name, p in (("--bubble", args.bubble), ("--backpressure", args.backpressure)):
        if not 0 <= p < 1:
            raise UsageError(f"{name} must lie in [0, 1), not {p}")
    try:
        fraction_code(args.crop_fraction)
    except ValueError as exc:
        raise UsageError(f"--crop-fraction: {exc}") from None
    sims = tuple(SIMULATORS) if args.sim == "all" else (args.sim,)
    try:
        for sim in sims:
            ensure_simulator(sim)
    except SimulatorMissing as exc:
        raise UsageError(str(exc)) from None
    seed = args.seed if args.seed is not None else random.randrange(2 ** 31)
    options = CosimOptions(
        sims=sims, seed=seed,
        targets=TARGETS if "all" in args.blocks else tuple(dict.fromkeys(args.blocks)),
        vectors=args.vectors, cycles=args.cycles, bubble=args.bubble,
        backpressure=args.backpressure, crop_fraction=args.crop_fraction, waves=args.waves,
        path=args.path, ima=args.ima)
    print(f"cosim: config {cfg.name}, seed {seed}, {args.vectors} vectors per simulator",
          file=sys.stderr)
    with progress("co-simulating", total=None) as advance:
        report = run_cosim(cfg, options, progress=advance)

    print_table(report)
    for sweep in report.sweeps:
        print_crop_cycles(sweep)
    if args.waves:
        for r in report.rows:
            print(f"waveform of {r.block} on {r.sim}: {r.waves or 'none written'}")
    if args.json:
        atomic_write(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    for r in report.failed:
        print(f"FAIL {r.block} on {r.sim}: {r.message}", file=sys.stderr)
    return 1 if report.failed else 0


def print_table(report) -> None:
    from rich.table import Table

    from aqua._cmdutil import console
    from cosim.suite import COLUMNS

    caption = "\n".join(f"{key.replace('_', ' ')}: {text}" for key, text in COLUMNS.items())
    table = Table(title="co-simulation against the golden cycle trace", caption=caption,
                  caption_justify="left")
    for col in ("block", "simulator", "path", "config", "vectors", "cycles", "cycles compared",
                "outputs compared", "result", "wall s", "cycles/s"):
        table.add_column(col, justify="left" if col in ("block", "simulator", "path", "config",
                                                        "result") else "right")
    for r in report.rows:
        table.add_row(r.block, r.sim, r.path, r.config, f"{r.vectors:,}", f"{r.cycles:,}",
                      "-" if r.cycles_compared is None else f"{r.cycles_compared:,}",
                      f"{r.outputs_compared:,}",
                      "[green]pass[/]" if r.passed else "[red]FAIL[/]", f"{r.wall_s:.1f}",
                      f"{r.cycles_per_s:,.0f}")
    console().print(table)


def print_crop_cycles(sweep) -> None:
    """Per crop vector: the kept window, the cycles the RTL took and the golden prediction,
    and the cycles saved against the uncropped run (measured and predicted)."""
    from rich.table import Table

    from aqua._cmdutil import console

    tile = "IMATile (all passes)" if getattr(sweep, "tile", "convtile") == "imatile" \
        else "ConvTile"
    table = Table(title=f"{tile}, demo CNN layer {sweep.layer}, {sweep.config}, {sweep.sim}: "
                        f"cycles per crop vector (fraction {sweep.fraction})")
    for col in ("crop", "kept window", "cycles RTL", "cycles golden", "saved RTL",
                "saved golden", "outputs"):
        table.add_column(col, justify="left" if col in ("crop", "kept window") else "right")
    base = next((r for r in sweep.rows if r["window"] and r["label"].startswith("crop  0")),
                None)
    for r in sweep.rows:
        saved = (f"{1 - r['cycles_rtl'] / base['cycles_rtl']:.1%}",
                 f"{1 - r['cycles_golden'] / base['cycles_golden']:.1%}") if base else ("-",) * 2
        table.add_row(r["label"], str(r["window"]), f"{r['cycles_rtl']:,}",
                      f"{r['cycles_golden']:,}", *saved,
                      "bit-exact" if r["outputs_equal"] else "[red]differ[/]")
    console().print(table)
