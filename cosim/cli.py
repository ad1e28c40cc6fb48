"""``aqua cosim``: co-simulate the generated RTL against the golden model and print a table."""

from __future__ import annotations

import argparse
import json
import random
import sys

HELP = "co-simulate the generated Verilog under Icarus and/or Verilator against the golden model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aqua._cmdutil import add_config_argument, positive_int
    add_config_argument(parser)
    parser.add_argument("--sim", default="all", choices=["icarus", "verilator", "all"],
                        help="simulator (default: all)")
    parser.add_argument("--vectors", type=positive_int, default=400,
                        help="random input vectors per simulator (default: 400)")
    parser.add_argument("--seed", type=int, default=None,
                        help="stimulus seed (default: random, printed)")
    parser.add_argument("--bubble", type=float, default=0.2,
                        help="probability of an input bubble per cycle (default: 0.2)")
    parser.add_argument("--backpressure", type=float, default=0.2,
                        help="probability that the output is not ready (default: 0.2)")
    parser.add_argument("--blocks", nargs="+", default=["all"],
                        choices=["all", "datapath", "crossbar", "adc", "shiftadd", "agu"],
                        help="benches to run (default: all: the Datapath and each block)")
    parser.add_argument("--cycles", type=positive_int, default=4000,
                        help="random cycles per block bench (default: 4000)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import config_from_args
    from aqua.cli import UsageError

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

    blocks = ["datapath", "crossbar", "adc", "shiftadd", "agu"] if "all" in args.blocks \
        else args.blocks
    jobs = random_jobs(cfg, args.vectors, seed)
    rows = []
    from aqua.cli import progress
    with progress("co-simulating", total=len(blocks) * len(sims)) as advance:
        for block in blocks:
            for sim in sims:
                if block == "datapath":
                    rows.append(run_datapath(cfg, sim, jobs=jobs, seed=seed, bubble=args.bubble,
                                             backpressure=args.backpressure))
                else:
                    rows.append(run_block(cfg, block, sim, cycles=args.cycles, seed=seed))
                advance()
    print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{**r.__dict__, "waves": str(r.waves) if r.waves else None,
                        "cycles_per_s": r.cycles_per_s} for r in rows], fh, indent=2)
    failed = [r for r in rows if not r.passed]
    for r in failed:
        print(f"FAIL {r.block} on {r.sim}: {r.message}", file=sys.stderr)
    return 1 if failed else 0


def print_table(rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="co-simulation against the golden cycle trace")
    for col in ("block", "simulator", "config", "cycles compared", "vectors", "result",
                "wall s", "cycles/s"):
        table.add_column(col, justify="right" if col not in ("block", "simulator", "config",
                                                             "result") else "left")
    for r in rows:
        table.add_row(r.block, r.sim, r.config, f"{r.compared:,}",
                      f"{r.vectors:,}" if r.block == "datapath" else "-",
                      "[green]pass[/]" if r.passed else "[red]FAIL[/]", f"{r.wall_s:.1f}",
                      f"{r.cycles_per_s:,.0f}")
    console = Console()
    (console if console.is_terminal else Console(width=110)).print(table)
