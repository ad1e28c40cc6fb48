"""``aqua bench``: throughput of the golden model on every layer of the demo CNN."""

from __future__ import annotations

import argparse

from aqua._cmdutil import add_config_argument, config_from_args, console, load_model, positive_int

HELP = "time the golden crossbar model against torch on every layer of the demo CNN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--images", type=positive_int, default=64, metavar="N",
                   help="test images per layer (default: 64)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a state dict written by `aqua train` (default: the shipped model)")


def run(args: argparse.Namespace) -> int:
    from aqua.cli import UsageError, progress
    from golden.data import TEST_PER_CLASS

    cfg = config_from_args(args.config)
    n_test = 10 * TEST_PER_CLASS
    if args.images > n_test:
        raise UsageError(f"--images must be at most {n_test} (the test split), "
                         f"not {args.images}")

    from golden.cnn import CONV_SPECS
    from golden.demo import bench_layers
    from golden.fixedpoint import QuantError

    model = load_model(args.model)
    with progress("timing layers", len(CONV_SPECS) + 1) as advance:
        try:
            report = bench_layers(cfg, model, args.images,
                                  progress=lambda _done, _total: advance())
        except QuantError as exc:
            raise UsageError(str(exc)) from None
    console().print(table(report))
    return 0


def table(report):
    """The rich table of a :class:`golden.demo.BenchReport`."""
    from rich.table import Table

    table = Table(title=f"golden model throughput on '{report.config}', {report.images} "
                        f"images (one thread, best of several runs)")
    for col in ("layer", "shape", "crossbars", "MVMs", "golden ms", "torch ms", "ratio",
                "M outputs/s"):
        table.add_column(col, justify="left" if col == "shape" else "right")
    for r in report.rows:
        table.add_row(str(r.index), r.shape, f"{r.row_tiles}x{r.groups}", str(r.mvms),
                      f"{r.golden_seconds * 1e3:.2f}", f"{r.torch_seconds * 1e3:.3f}",
                      f"{r.golden_seconds / r.torch_seconds:.0f}x",
                      f"{r.outputs / r.golden_seconds / 1e6:.2f}")
    return table
