"""``aqua bench``: throughput of the golden model on every layer of the demo CNN."""

from __future__ import annotations

import argparse

from aqua._cmdutil import (add_config_argument, best_time, config_from_args, console,
                           load_model, positive_int)

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

    from rich.table import Table

    from golden import fixedpoint as fxp
    from golden.data import cluttered_digits

    model = load_model(args.model)
    x_test, _ = cluttered_digits("test")
    try:
        net = fxp.quantize_democnn(cfg, model)
    except fxp.QuantError as exc:
        raise UsageError(str(exc)) from None

    table = Table(title=f"golden model throughput on '{cfg.name}', {args.images} images "
                        f"(one thread, best of several runs)")
    for col in ("layer", "shape", "crossbars", "MVMs", "golden ms", "torch ms", "ratio",
                "M outputs/s"):
        table.add_column(col, justify="left" if col == "shape" else "right")
    with progress("timing layers", len(net.layers)) as advance:
        for index in range(len(net.layers)):
            table.add_row(*_bench_layer(net, index, x_test[:args.images]))
            advance()
    console().print(table)
    return 0


def _bench_layer(net, index: int, images) -> list[str]:
    """One table row: layer ``index`` of ``net`` on ``images``, golden model vs torch."""
    import torch.nn.functional as F

    from golden import fixedpoint as fxp
    from golden.layer import matrix_mapping

    q = fxp.quant_layer(net, index, images)
    xf = fxp.from_fixed(q.x, q.x_frac).float()
    wf = fxp.from_fixed(q.weight, q.w_frac).float()
    bf = fxp.from_fixed(q.bias, q.w_frac + q.x_frac).float()
    if q.kind == "conv":
        def ref():
            return F.conv2d(xf, wf, bf, stride=q.stride, padding=q.padding)
    else:
        def ref():
            return F.linear(xf, wf, bf)
    t_golden, y = best_time(lambda: fxp.run_layer(net, q, q.x), min_seconds=0.3)
    t_torch, _ = best_time(ref, min_seconds=0.1)
    n_out = q.weight.shape[0]
    mapping = matrix_mapping(net.cfg, q.weight[0].numel(), n_out)
    tiles, groups = mapping.row_tiles, mapping.groups
    vectors = y.numel() // n_out
    return [str(index), q.shape, f"{tiles}x{groups}", str(vectors * tiles * groups),
            f"{t_golden * 1e3:.2f}", f"{t_torch * 1e3:.3f}", f"{t_golden / t_torch:.0f}x",
            f"{y.numel() / t_golden / 1e6:.2f}"]
