"""``aqua bench``: the golden model's speed against its bounds, per layer of the demo CNN and
for a zoo network's whole-graph fixed-point forward under all crops."""

from __future__ import annotations

import argparse

from aqua._cmdutil import (config_from_args, console, load_model, nonnegative_int,
                           positive_int)

HELP = "time the golden crossbar model against torch on every layer of the demo CNN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", nargs="+", default=["small", "small_drop"], metavar="NAME|PATH",
                   help="configurations whose layers are timed (default: small, lossless, on "
                        "the exact integer path, and small_drop, lossy, bit-serial)")
    p.add_argument("--images", type=positive_int, default=64, metavar="N",
                   help="test images per layer (default: 64)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a state dict written by `aqua train` (default: the shipped model)")
    p.add_argument("--net-images", type=nonnegative_int, default=0, metavar="N",
                   help="also time zoo:resnet18 at 64x64 under all 16 crops on N random images "
                        "against its float forward (default: 0, skipped; `make bench`: 32)")
    p.add_argument("--net-config", default="small", metavar="NAME|PATH",
                   help="configuration of the zoo:resnet18 timing (default: small)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import atomic_write, check_output_file
    from aqua.cli import UsageError, progress
    from golden.data import TEST_PER_CLASS

    cfgs = [config_from_args(c) for c in args.config]
    net_cfg = config_from_args(args.net_config)
    n_test = 10 * TEST_PER_CLASS
    if args.images > n_test:
        raise UsageError(f"--images must be at most {n_test} (the test split), "
                         f"not {args.images}")
    if args.json:
        check_output_file(args.json, "--json")

    from golden.demo import bench_layers
    from golden.fixedpoint import QuantError

    model = load_model(args.model)
    with progress("timing layers", None) as advance:
        try:
            report = bench_layers(cfgs, model, args.images, net_images=args.net_images,
                                  net_config=net_cfg,
                                  progress=lambda done, total: advance(1, total=total))
        except QuantError as exc:
            raise UsageError(str(exc)) from None
    con = console()
    con.print(table(report))
    if report.net is not None:
        n = report.net
        con.print(f"{n.model} at {n.size}x{n.size} on '{n.config}', {n.images} images: golden "
                  f"fixed-point {n.golden_images_per_second:.2f} images/s under all {n.crops} "
                  f"crops, float {n.float_images_per_second:.1f} images/s; "
                  f"{n.ratio:.0f}x the float forward")
    if args.json:
        import json

        atomic_write(args.json, json.dumps(report.to_dict(), indent=1) + "\n")
    return 0


def table(report):
    """The rich table of a :class:`golden.timing.SpeedReport`'s layers."""
    from rich.table import Table

    table = Table(title=f"golden model against the float layer, {report.images} images (one "
                        f"thread's CPU time, best of several runs); target: integer path "
                        f"<= 3x, bit-serial <= 1.5 x T*S")
    for col in ("config", "layer", "shape", "crossbars", "path", "float ms", "golden ms",
                "ratio", "T*S", "ratio/T*S", "target", "met"):
        table.add_column(col, justify="left" if col in ("config", "shape", "path") else "right")
    for r in report.layers:
        table.add_row(r.config, str(r.index), r.shape, f"{r.row_tiles}x{r.groups}", r.path,
                      f"{r.float_seconds * 1e3:.3f}", f"{r.golden_seconds * 1e3:.2f}",
                      f"{r.ratio:.1f}x", str(r.bound), f"{r.ratio / r.bound:.2f}",
                      f"{r.target:g}x", "yes" if r.met else "no")
    return table
