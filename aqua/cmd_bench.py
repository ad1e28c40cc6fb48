"""``aqua bench``: throughput of the golden model on every layer of the demo CNN."""

from __future__ import annotations

import argparse

from aqua._cmdutil import (add_config_argument, best_time, config_from_args, console,
                           positive_int)

HELP = "time the golden crossbar model against torch on every layer of the demo CNN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--images", type=positive_int, default=64, metavar="N",
                   help="test images per layer (default: 64)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a state dict written by `aqua train` (default: the shipped model)")


def run(args: argparse.Namespace) -> int:
    from aqua.cli import UsageError

    cfg = config_from_args(args.config)

    import torch.nn.functional as F
    from rich.table import Table

    from aqua._cmdutil import load_model
    from golden import fixedpoint as fxp
    from golden.fixedpoint import run_layer
    from golden.data import cluttered_digits
    from golden.layer import tile_counts

    model = load_model(args.model)
    x_test, _ = cluttered_digits("test")
    if args.images > len(x_test):
        raise UsageError(f"--images must be at most {len(x_test)} (the test split), "
                         f"not {args.images}")
    try:
        net = fxp.quantize_democnn(cfg, model)
    except fxp.QuantError as exc:
        raise UsageError(str(exc)) from None

    table = Table(title=f"golden model throughput on '{cfg.name}', {args.images} images")
    for col in ("layer", "shape", "crossbars", "MVMs", "golden ms", "torch ms", "ratio",
                "M outputs/s"):
        table.add_column(col, justify="right" if col not in ("shape",) else "left")
    for index in range(len(net.layers)):
        q = fxp.quant_layer(net, index, x_test[:args.images])
        xf = fxp.from_fixed(q.x, q.x_frac).float()
        wf = fxp.from_fixed(q.weight, q.w_frac).float()
        bf = fxp.from_fixed(q.bias, q.w_frac + q.x_frac).float()
        if q.kind == "conv":
            def ref():
                return F.conv2d(xf, wf, bf, stride=q.stride, padding=q.padding)
        else:
            def ref():
                return F.linear(xf, wf, bf)
        t_golden, y = best_time(lambda: run_layer(net, q, q.x), min_seconds=0.3)
        t_torch, _ = best_time(ref, min_seconds=0.1)
        k, n = q.weight[0].numel(), q.weight.shape[0]
        tiles, groups = tile_counts(cfg, k, n)
        vectors = y.numel() // n
        table.add_row(str(index), q.shape, f"{tiles}x{groups}", str(vectors * tiles * groups),
                      f"{t_golden * 1e3:.2f}", f"{t_torch * 1e3:.3f}",
                      f"{t_golden / t_torch:.0f}x", f"{y.numel() / t_golden / 1e6:.2f}")
    console().print(table)
    return 0
