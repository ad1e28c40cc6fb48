"""``aqua demo``: the golden model on a real layer of the demo CNN, checked and timed."""

from __future__ import annotations

import argparse
import sys

from aqua._cmdutil import (add_config_argument, config_from_args, console, load_model,
                           nonnegative_int, positive_int)

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

    from contextlib import ExitStack

    from aqua.cli import progress
    from cosim.demo import demo
    from golden.fixedpoint import QuantError

    model = load_model(args.model)
    con = console()
    with ExitStack() as bars:
        state = {}

        def step(finished):
            if "advance" not in state:
                state["advance"] = bars.enter_context(
                    progress("quantized network (golden model)", n_acc))
                state["done"] = 0
            state["advance"](finished - state["done"])
            state["done"] = finished

        def status(message):
            bars.close()                      # the accuracy bar is done
            return con.status(message)
        try:
            report = demo(cfg, model, args.layer, args.images, n_acc, sim=args.sim,
                          progress=step, status=status)
        except QuantError as exc:
            raise UsageError(str(exc)) from None
    con.print(table(report))
    rtl_failed = rtl_error(report.rtl)
    if rtl_failed:
        print(f"error: {rtl_failed}", file=sys.stderr)
        return 1
    if report.lossless and report.mismatches:
        print(f"error: the golden model disagrees with the exact int64 conv2d in "
              f"{report.mismatches} outputs", file=sys.stderr)
        return 1
    return 0


def table(r):
    """The rich table of a :class:`golden.demo.DemoReport`."""
    from rich.table import Table

    c = r.config
    table = Table(title=f"aqua demo: layer {r.layer} of the demo CNN on '{c['name']}'",
                  show_header=True, header_style="bold")
    table.add_column("", style="bold")
    table.add_column("value")
    table.add_row("configuration", f"{c['name']}: {c['description']}" if c["description"]
                  else c["name"])
    table.add_row("crossbar", f"{c['rows']}x{c['cols']}, {c['cell_bits']}-bit cells, "
                              f"{c['weight_bits']}-bit weights ({c['weight_encoding']}), "
                              f"{c['input_bits']}-bit inputs, {c['adc_bits']}-bit ADC "
                              f"({c['adc_mode']})")
    table.add_row("layer", f"{r.shape}, {r.in_shape} -> {r.out_shape}"
                           f"{', ReLU' if r.relu else ''}")
    table.add_row("crossbars", f"{r.row_tiles} row tiles x {r.groups} output groups; "
                               f"{r.vectors} input vectors x {r.row_tiles * r.groups} = "
                               f"{r.vectors * r.row_tiles * r.groups} crossbar MVMs of "
                               f"{r.crossbar_latency} cycles")
    table.add_row("fixed point", f"weights Q.{r.w_frac}, inputs Q.{r.x_frac}, "
                                 f"outputs Q.{r.out_frac}, shift {r.shift}")
    if r.weights_clipped:
        table.add_row("[yellow]warning[/]",
                      f"[yellow]{r.weights_clipped} negative weights clipped to 0 "
                      f"(weights.encoding = 'unsigned')[/]")
    table.add_row("images", f"{r.images} test images")
    if r.lossless:
        verdict = ("[green]bit-exact[/]" if r.mismatches == 0 else
                   f"[red]MISMATCH in {r.mismatches} of {r.outputs} outputs[/]")
    else:
        verdict = (f"{r.mismatches} of {r.outputs} outputs differ "
                   f"(expected: adc.mode = '{c['adc_mode']}' is lossy)")
    table.add_row("golden vs exact int64 conv2d", verdict)
    table.add_row("golden vs float conv2d", f"max |error| {r.max_error_lsb:.3f} output LSB over "
                  f"{r.outputs - r.saturated} unsaturated outputs ({r.saturated} saturated)")
    t_golden, t_torch = r.golden_seconds, r.torch_seconds
    table.add_row("golden model time", f"{t_golden * 1e3:.2f} ms "
                  f"({r.outputs / t_golden / 1e6:.2f} M outputs/s)")
    table.add_row("torch conv2d time", f"{t_torch * 1e3:.3f} ms (float32; both timed on one "
                                       f"thread, best of several runs)")
    table.add_row("golden / torch", f"{t_golden / t_torch:.1f}x slower")
    table.add_row("float accuracy", f"{100 * r.float_accuracy:.1f} % ({r.float_images} test "
                                    f"images)")
    if r.quant_accuracy is not None:
        table.add_row("quantized accuracy", f"{100 * r.quant_accuracy:.1f} % "
                      f"({r.quant_images} test images, every layer through the golden model)")
    _rtl_rows(r.rtl, table)
    return table


def _rtl_rows(rtl: dict | None, table) -> None:
    """The rows of :func:`cosim.demo.rtl_check`'s result."""
    if rtl is None:
        return
    if rtl["outcome"] == "too large":
        table.add_row("RTL", f"skipped for a {rtl['rows']}x{rtl['cols']} crossbar "
                             f"(name one with --sim; `aqua verilog` still generates it)")
        return
    if rtl["outcome"] == "no simulator":
        table.add_row("RTL", f"[yellow]skipped: {rtl['reason']}[/]")
        return
    sim = rtl["sim"]
    if not rtl["passed"]:
        table.add_row(f"RTL ({sim})", f"[red]FAILED[/] {rtl['message']}")
        return
    table.add_row(f"RTL ({sim})",
                  f"layer 0 on 1 image: {rtl['vectors']:,} vectors, {rtl['compared']:,} "
                  f"cycles, every register compared with the golden trace on every cycle: "
                  f"[green]match[/] ({rtl['wall_seconds']:.1f} s, "
                  f"{rtl['cycles_per_s']:,.0f} cycles/s)")
    table.add_row("RTL feature map", "[green]bit-exact with golden conv2d[/]" if rtl["exact"]
                  else "[red]differs from golden conv2d[/]")


def rtl_error(rtl: dict | None) -> str | None:
    """The error of a failed RTL check, or None."""
    if rtl is None or rtl["outcome"] != "ran":
        return None
    if not rtl["passed"]:
        return f"RTL co-simulation failed: {rtl['message']}"
    return None if rtl["exact"] else "the RTL feature map differs from golden conv2d"
