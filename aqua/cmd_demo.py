"""``aqua demo``: the golden model on a real layer of the demo CNN, checked and timed; with
``--model`` (any model: ``aqua._cmdutil.model_from_args``) the whole network through the golden
fixed-point model (float and quantized accuracy, per-layer crossbars and cycles) and its first
layer in RTL when it fits one crossbar."""

from __future__ import annotations

import argparse
import sys

from aqua._cmdutil import (add_config_argument, add_model_arguments, config_from_args,
                           console, model_from_args, nonnegative_int, positive_int)

HELP = ("run the golden crossbar model on a layer of the demo CNN and check it; with --model, "
        "any model's whole network")

DEFAULT_LAYER = 1
DEFAULT_IMAGES = 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--layer", type=nonnegative_int, default=None, metavar="N",
                   help=f"conv layer of the demo CNN to run (default: {DEFAULT_LAYER}; not "
                        f"with --model SPEC, whose report covers every layer)")
    p.add_argument("--images", type=positive_int, default=None, metavar="N",
                   help=f"test images fed through the layer (default: {DEFAULT_IMAGES}; not "
                        f"with --model SPEC)")
    p.add_argument("--accuracy-images", type=nonnegative_int, default=None, metavar="N",
                   help="test images for the quantized network's accuracy "
                        "(default: the whole test split; 0 skips it)")
    add_model_arguments(p, default_text="given (but a state dict), the whole network's "
                                        "report (default: a layer of the shipped demo CNN)")
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
    choice = model_from_args(args)
    state_dict = choice.democnn and choice.spec not in (None, "democnn")
    if (choice.spec is not None and not state_dict) or args.size is not None:
        return _run_model(args, cfg, choice, n_test)
    args.layer = DEFAULT_LAYER if args.layer is None else args.layer
    args.images = DEFAULT_IMAGES if args.images is None else args.images
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

    model = choice.module
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


def _accuracy_images(args, n_test: int) -> int:
    from aqua.cli import UsageError

    n_acc = n_test if args.accuracy_images is None else args.accuracy_images
    if n_acc > n_test:
        raise UsageError(f"--accuracy-images must be at most {n_test} (the test split), "
                         f"not {n_acc}")
    return n_acc


def _run_model(args, cfg, choice, n_test: int) -> int:
    """``aqua demo --model SPEC``: the whole network (:func:`cosim.demo.demo_model`)."""
    from contextlib import ExitStack

    from aqua.cli import UsageError, progress
    from cosim.demo import demo_model
    from golden.fixedpoint import QuantError
    from golden.graph import UnsupportedGraphError

    for opt, value in (("--layer", args.layer), ("--images", args.images)):
        if value is not None:
            raise UsageError(f"{opt} picks a layer check of the demo CNN's default report; "
                             f"with --model the report covers every layer "
                             f"(--accuracy-images sets the images)")
    n_acc = _accuracy_images(args, n_test)
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
            bars.close()
            return con.status(message)
        try:
            report = demo_model(cfg, choice.module, name=choice.name, size=choice.size,
                                images=n_acc, sim=args.sim, progress=step, status=status)
        except (UnsupportedGraphError, QuantError) as exc:
            raise UsageError(f"--model {choice.spec}: {exc}") from None
    con.print(model_table(report))
    rtl_failed = rtl_error(report.rtl)
    if rtl_failed:
        print(f"error: {rtl_failed}", file=sys.stderr)
        return 1
    return 0


def model_table(r):
    """The rich tables of a :class:`golden.netreport.NetDemoReport`."""
    from rich.console import Group
    from rich.table import Table

    c = r.config
    t = Table(title=f"aqua demo: {r.model} at {r.size}x{r.size} on '{c['name']}', every "
                    f"crossbar layer through the golden fixed-point model")
    for col in ("layer", "shape", "groups", "row tiles", "out groups", "xbars", "util",
                "positions", "cycles"):
        t.add_column(col, justify="left" if col in ("layer", "shape") else "right")
    for L in r.layers:
        t.add_row(L["layer"], L["shape"], str(L["conv_groups"]), str(L["row_tiles"]),
                  str(L["output_groups"]), str(L["crossbars"]), f"{L['utilization']:.0%}",
                  f"{L['positions']:,}", f"{L['cycles']:,}")
    s = Table(show_header=False)
    s.add_column("", style="bold")
    s.add_column("value")
    s.add_row("configuration", f"{c['name']}: {c['description']}" if c["description"]
              else c["name"])
    s.add_row("crossbar", f"{c['rows']}x{c['cols']}, {c['cell_bits']}-bit cells, "
                          f"{c['weight_bits']}-bit weights ({c['weight_encoding']}), "
                          f"{c['input_bits']}-bit inputs, {c['adc_bits']}-bit ADC "
                          f"({c['adc_mode']})")
    s.add_row("network", f"{len(r.layers)} crossbar layers, {r.crossbars:,} crossbars, "
                         f"{r.cycles:,} cycles per image ({c['latency'] + 1} per input vector; "
                         f"a layer's crossbars in parallel, layers one after another)")
    if r.weights_clipped:
        s.add_row("[yellow]warning[/]", f"[yellow]{r.weights_clipped} negative weights "
                                        f"clipped to 0 (weights.encoding = 'unsigned')[/]")
    if r.images:
        s.add_row("float accuracy", f"{100 * r.float_top1:.1f} % ({r.images} test images)")
        s.add_row("quantized accuracy", f"{100 * r.quant_top1:.1f} % ({r.images} test images, "
                                        f"every layer through the golden model)")
    rtl = r.rtl
    if rtl is not None and rtl["outcome"] == "does not fit":
        s.add_row("RTL", f"not run: {rtl['reason']} (the RTL part runs a first layer that "
                         f"one crossbar holds)")
    else:
        _rtl_rows(rtl, s, what=f"first layer ({r.layers[0]['layer']})")
    return Group(t, s)


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


def _rtl_rows(rtl: dict | None, table, what: str = "layer 0") -> None:
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
                  f"{what} on 1 image: {rtl['vectors']:,} vectors, {rtl['compared']:,} "
                  f"cycles, every register compared with the golden trace on every cycle: "
                  f"[green]match[/] ({rtl['wall_seconds']:.1f} s, "
                  f"{rtl['cycles_per_s']:,.0f} cycles/s)")
    table.add_row("RTL feature map", "[green]bit-exact with golden conv2d[/]" if rtl["exact"]
                  else "[red]differs from golden conv2d[/]")


def rtl_error(rtl: dict | None) -> str | None:
    """The error of a failed RTL check, or None."""
    if rtl is None or rtl["outcome"] != "ran":    # "too large", "no simulator", "does not fit"
        return None
    if not rtl["passed"]:
        return f"RTL co-simulation failed: {rtl['message']}"
    return None if rtl["exact"] else "the RTL feature map differs from golden conv2d"
