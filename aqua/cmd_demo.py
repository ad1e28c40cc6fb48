"""``aqua demo``: the golden model on a real layer of the demo CNN, checked and timed."""

from __future__ import annotations

import argparse
import sys

from aqua._cmdutil import (add_config_argument, best_time, config_from_args, console,
                           load_model, nonnegative_int, positive_int, single_thread)

HELP = "run the golden crossbar model on a layer of the demo CNN and check it"

DEFAULT_LAYER = 1
DEFAULT_IMAGES = 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--layer", type=nonnegative_int, default=DEFAULT_LAYER, metavar="N",
                   help=f"conv layer of the demo CNN to run (default: {DEFAULT_LAYER})")
    p.add_argument("--images", type=positive_int, default=DEFAULT_IMAGES, metavar="N",
                   help=f"test images fed through the layer (default: {DEFAULT_IMAGES})")
    p.add_argument("--accuracy-images", type=nonnegative_int, default=None, metavar="N",
                   help="test images for the quantized network's accuracy "
                        "(default: the whole test split; 0 skips it)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a state dict written by `aqua train` (default: the shipped model)")
    p.add_argument("--sim", default="auto", choices=("auto", "verilator", "icarus", "none"),
                   help="simulator for the RTL part: the first conv layer on one image, "
                        "co-simulated every cycle against the golden model (default: auto, "
                        "Verilator if present, else Icarus; 'none' skips it; skipped for "
                        "crossbars larger than 64x64 unless a simulator is named)")


def run(args: argparse.Namespace) -> int:
    from aqua.cli import UsageError

    from golden.cnn import CONV_SPECS
    from golden.data import TEST_PER_CLASS

    cfg = config_from_args(args.config)
    n_conv = len(CONV_SPECS)
    n_test = 10 * TEST_PER_CLASS
    if args.layer >= n_conv:
        raise UsageError(f"--layer must be a conv layer of the demo CNN, 0..{n_conv - 1}, "
                         f"not {args.layer}")
    if args.images > n_test:
        raise UsageError(f"--images must be at most {n_test} (the test split), "
                         f"not {args.images}")
    n_acc = n_test if args.accuracy_images is None else args.accuracy_images
    if n_acc > n_test:
        raise UsageError(f"--accuracy-images must be at most {n_test} (the test split), "
                         f"not {n_acc}")

    import torch.nn.functional as F
    from rich.table import Table

    from aqua.cli import progress
    from golden import fixedpoint as fxp
    from golden import layer as golden_layer
    from golden.cnn import evaluate
    from golden.data import cluttered_digits

    model = load_model(args.model)
    x_test, y_test = cluttered_digits("test")
    try:
        net = fxp.quantize_democnn(cfg, model)
    except fxp.QuantError as exc:
        raise UsageError(str(exc)) from None

    images = x_test[:args.images]
    q = fxp.quant_layer(net, args.layer, images)
    spec = CONV_SPECS[args.layer]

    def golden():
        return golden_layer.conv2d(cfg, q.x, q.weight, q.bias, stride=q.stride,
                                   padding=q.padding, shift=q.shift, relu=q.relu)

    # The float layer on the dequantized inputs, as torch runs it (float32, like a float net).
    xf = fxp.from_fixed(q.x, q.x_frac).float()
    wf = fxp.from_fixed(q.weight, q.w_frac).float()
    bf = fxp.from_fixed(q.bias, q.w_frac + q.x_frac).float()

    def reference():
        return F.conv2d(xf, wf, bf, stride=q.stride, padding=q.padding)

    t_golden, y = best_time(golden, min_seconds=0.5)
    t_torch, _ = best_time(reference, min_seconds=0.2)

    exact = fxp.exact_reference(cfg, q)
    mismatches = int((y != exact).sum())
    lossless = cfg.adc_mode == "lossless"
    fref = fxp.float_reference(q)
    unsat = (fref > cfg.output_min - 0.5) & (fref < cfg.output_max + 0.5)
    err = (y.double() - fref).abs()
    max_err = float(err[unsat].max()) if bool(unsat.any()) else float("nan")
    saturated = int((~unsat).sum())

    float_acc = evaluate(model, x_test, y_test)
    quant_acc = None
    if n_acc:
        with single_thread(), progress("quantized network (golden model)", n_acc) as advance:
            done = [0]

            def step(finished):
                advance(finished - done[0])
                done[0] = finished
            quant_acc = fxp.quant_accuracy(net, x_test[:n_acc], y_test[:n_acc], progress=step)

    mapping = golden_layer.matrix_mapping(cfg, q.weight[0].numel(), q.weight.shape[0])
    row_tiles, groups = mapping.row_tiles, mapping.groups
    vectors = y.shape[0] * y.shape[2] * y.shape[3]
    outputs = y.numel()

    table = Table(title=f"aqua demo: layer {args.layer} of the demo CNN on '{cfg.name}'",
                  show_header=True, header_style="bold")
    table.add_column("", style="bold")
    table.add_column("value")
    table.add_row("configuration", f"{cfg.name}: {cfg.description}" if cfg.description
                  else cfg.name)
    table.add_row("crossbar", f"{cfg.rows}x{cfg.cols}, {cfg.cell_bits}-bit cells, "
                              f"{cfg.weight_bits}-bit weights ({cfg.weight_encoding}), "
                              f"{cfg.input_bits}-bit inputs, {cfg.adc_bits}-bit ADC "
                              f"({cfg.adc_mode})")
    table.add_row("layer", f"{q.shape}, {tuple(q.x.shape[1:])} -> {tuple(y.shape[1:])}"
                           f"{', ReLU' if spec.relu else ''}")
    table.add_row("crossbars", f"{row_tiles} row tiles x {groups} output groups; "
                               f"{vectors} input vectors x {row_tiles * groups} = "
                               f"{vectors * row_tiles * groups} crossbar MVMs of "
                               f"{cfg.latency} cycles")
    table.add_row("fixed point", f"weights Q.{q.w_frac}, inputs Q.{q.x_frac}, "
                                 f"outputs Q.{q.out_frac}, shift {q.shift}")
    if q.weights_clipped:
        table.add_row("[yellow]warning[/]",
                      f"[yellow]{q.weights_clipped} negative weights clipped to 0 "
                      f"(weights.encoding = 'unsigned')[/]")
    table.add_row("images", f"{args.images} test images")
    if lossless:
        verdict = ("[green]bit-exact[/]" if mismatches == 0 else
                   f"[red]MISMATCH in {mismatches} of {outputs} outputs[/]")
    else:
        verdict = (f"{mismatches} of {outputs} outputs differ "
                   f"(expected: adc.mode = '{cfg.adc_mode}' is lossy)")
    table.add_row("golden vs exact int64 conv2d", verdict)
    table.add_row("golden vs float conv2d", f"max |error| {max_err:.3f} output LSB over "
                  f"{outputs - saturated} unsaturated outputs ({saturated} saturated)")
    table.add_row("golden model time", f"{t_golden * 1e3:.2f} ms "
                  f"({outputs / t_golden / 1e6:.2f} M outputs/s)")
    table.add_row("torch conv2d time", f"{t_torch * 1e3:.3f} ms (float32; both timed on one "
                                       f"thread, best of several runs)")
    table.add_row("golden / torch", f"{t_golden / t_torch:.1f}x slower")
    table.add_row("float accuracy", f"{100 * float_acc:.1f} % ({len(x_test)} test images)")
    if quant_acc is not None:
        table.add_row("quantized accuracy", f"{100 * quant_acc:.1f} % ({n_acc} test images, "
                      f"every layer through the golden model)")
    rtl_failed = _rtl_rows(cfg, args, table)
    console().print(table)

    if rtl_failed:
        print(f"error: {rtl_failed}", file=sys.stderr)
        return 1
    if lossless and mismatches:
        print(f"error: the golden model disagrees with the exact int64 conv2d in "
              f"{mismatches} outputs", file=sys.stderr)
        return 1
    return 0


def _rtl_rows(cfg, args, table) -> str | None:
    """Co-simulate the first conv layer on one image; add rows; return an error or None."""
    import time

    from cosim.sim import SimulatorMissing, ensure_simulator

    if args.sim == "none":
        return None
    if args.sim == "auto" and cfg.rows * cfg.cols > 64 * 64:
        table.add_row("RTL", f"skipped for a {cfg.rows}x{cfg.cols} crossbar "
                             f"(name one with --sim; `aqua verilog` still generates it)")
        return None
    candidates = ["verilator", "icarus"] if args.sim == "auto" else [args.sim]
    sim = None
    for name in candidates:
        try:
            ensure_simulator(name)
            sim = name
            break
        except SimulatorMissing as exc:
            reason = str(exc)
    if sim is None:
        table.add_row("RTL", f"[yellow]skipped: {reason}[/]")
        return None
    from cosim.run import first_layer_in_rtl

    t0 = time.perf_counter()
    with console().status(f"generating Verilog and co-simulating layer 0 under {sim}"):
        run, rtl, gold = first_layer_in_rtl(cfg, sim)
    wall = time.perf_counter() - t0
    if not run.passed:
        table.add_row(f"RTL ({sim})", f"[red]FAILED[/] {run.message}")
        return f"RTL co-simulation failed: {run.message}"
    import torch
    exact = torch.equal(rtl, gold)
    table.add_row(f"RTL ({sim})",
                  f"layer 0 on 1 image: {run.vectors:,} vectors, {run.compared:,} cycles, "
                  f"every register compared with the golden trace on every cycle: "
                  f"[green]match[/] ({wall:.1f} s, {run.cycles_per_s:,.0f} cycles/s)")
    table.add_row("RTL feature map", "[green]bit-exact with golden conv2d[/]" if exact
                  else "[red]differs from golden conv2d[/]")
    return None if exact else "the RTL feature map differs from golden conv2d"
