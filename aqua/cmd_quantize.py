"""``aqua quantize``: layer-wise fixed-point search for the demo CNN, with its baselines; with
``--model`` (``aqua._cmdutil.model_from_args``) for any model's crossbar layers."""

from __future__ import annotations

import argparse

from aqua._cmdutil import (add_bound_argument, add_json_argument, add_model_arguments,
                           config_from_args, console, model_from_args, positive_int)

HELP = ("search per-layer fixed-point formats of the demo CNN (or --model) within an accuracy "
        "bound; compare with uniform 8-bit, per-layer-alone, torch.ao int8 and fused "
        "shift-and-round")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_bound_argument(p)
    p.add_argument("--images", type=positive_int, default=360, metavar="N",
                   help="validation images: the first N of the test split (default: 360, all)")
    p.add_argument("--schedule", choices=("greedy", "linear"), default="greedy",
                   help="accuracy threshold per layer during the search (default: greedy)")
    add_model_arguments(p, default_text="default: the shipped demo CNN")
    add_json_argument(p)
    p.add_argument("--no-hardware", dest="hardware", action="store_false",
                   help="skip the hardware section (requantizer area and energy, searched "
                        "layer in RTL)")
    p.add_argument("--sim", choices=("icarus", "verilator", "all"), default="all",
                   help="simulators of the hardware section (default: all)")
    p.add_argument("--config", default="small", metavar="NAME",
                   help="base tile of the hardware section (default: small)")


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import check_output_file, check_test_images
    from aqua.cli import UsageError, progress

    if args.json:
        check_output_file(args.json, "--json")
    check_test_images(args.images)
    import json
    import time
    from contextlib import ExitStack
    from pathlib import Path

    from cosim.quantize import quantize
    from cosim.sim import SIMULATORS, SimulatorMissing
    from gen.synth import LibertyMissing

    choice = model_from_args(args)
    model = choice.module
    base = config_from_args(args.config) if args.hardware else None
    sims = list(SIMULATORS) if args.sim == "all" else [args.sim]
    con = console()
    with ExitStack() as bar:
        advance = bar.enter_context(progress("quantization search", None))
        last = [0]
        t0 = []

        def step(done, total):
            advance(done - last[0], total=total)
            last[0] = done

        def say(msg):                     # the hardware section: the search's bar is done
            if not t0:
                bar.close()
                t0.append(time.perf_counter())
            con.print(f"[{time.perf_counter() - t0[0]:6.1f} s] {msg}")
        from contextlib import nullcontext

        from aqua._cmdutil import single_thread
        from golden.graph import UnsupportedGraphError
        # a graph search is thousands of small float passes: on a small shared machine a
        # multi-threaded kernel waits for a busy core at every barrier (aqua._cmdutil)
        threads = nullcontext() if choice.democnn else single_thread()
        try:
            with threads:
                report = quantize(model, bound=args.bound / 100, images=args.images,
                                  schedule=args.schedule, base=base, sims=sims,
                                  progress=step, say=say, name=choice.name, size=choice.size)
        except (LibertyMissing, SimulatorMissing) as exc:
            raise UsageError(str(exc)) from None
        except UnsupportedGraphError as exc:
            raise UsageError(f"--model {choice.spec}: {exc}") from None
    data = report.to_dict()
    for table in tables(data):
        con.print(table)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        con.print(f"wrote {path}")
    return 0


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def tables(report: dict) -> list:
    """The rich tables of a :meth:`golden.qreport.QuantizeReport.to_dict` dict."""
    from rich.table import Table

    m = report["methods"]
    layers = [L["name"] for L in report["layers"]]
    t1 = Table(title="per-layer formats (x = input activations, w = weights, b = bias; "
                     "sW.F / uW.F: signed / unsigned, W bits, F fraction bits)")
    t1.add_column("layer")
    t1.add_column("MACs/image", justify="right")
    for name in ("searched", "no_interaction", "uniform8"):
        t1.add_column(name)
    for i, name in enumerate(layers):
        t1.add_row(name, f"{report['layers'][i]['macs']:,}",
                   *(m[k]["formats_str"][i] for k in ("searched", "no_interaction",
                                                        "uniform8")))

    t2 = Table(title=f"{report['model']}: top-1 accuracy on {report['validation_images']} "
                     f"validation images "
                     f"(held-out: {report['heldout_images']} other renderings), bound "
                     f"{100 * report['bound']:.2f} pp; cost relative to uniform 8-bit")
    for col in ("method", "accuracy", "loss pp", "held-out", "memory", "multiply cost"):
        t2.add_column(col, justify="left" if col == "method" else "right")
    t2.add_row("float", _pct(report["float_accuracy"]), "0.00",
               _pct(report["float_heldout_accuracy"]), "-", "-")
    labels = {"searched": "searched (interaction-aware)", "uniform8": "uniform 8-bit",
              "no_interaction": "per layer alone, combined", "torch_ao_int8": "torch.ao int8"}
    for k, label in labels.items():
        if k not in m:
            continue
        e = m[k]
        t2.add_row(label, _pct(e["accuracy"]), f"{e['loss_pp']:.2f}",
                   _pct(e["heldout_accuracy"]), f"{e['memory_ratio_vs_uniform8']:.3f}",
                   f"{e['multiply_ratio_vs_uniform8']:.3f}")
    p = report["paper"]
    t2.add_row("paper (searched)", "-", f"< {100 * p['accuracy_loss_max']:.0f}", "-",
               f"{1 - p['memory_saving_vs_uniform8']:.3f}",
               f"{1 - p['multiply_saving_vs_uniform8']:.3f}")
    t2.add_row("paper (layers alone)", "-",
               f"up to {100 * p['ignoring_interactions_loss_up_to']:.0f}", "-", "-", "-")

    t3 = Table(title="shift-and-round (power-of-two scales, integer-exact): conv + ReLU + "
                     "requantize fused; quantization operations")
    for col in ("formats", "fusion", "accuracy", "held-out", "quantizers", "values/image"):
        t3.add_column(col, justify="left" if col in ("formats", "fusion") else "right")
    for key, e in report["shift_round"].items():
        fmt, fused = key.rsplit("_", 1)
        t3.add_row(fmt, fused, _pct(e["accuracy"]), _pct(e["heldout_accuracy"]),
                   str(e["quant_modules"]), f"{e['quant_elements_per_image']:,}")
    notes = []
    if report.get("notes"):
        from rich.text import Text
        notes = [Text(f"note: {n}") for n in report["notes"]]
    return [t1, t2, *([t3] if report["shift_round"] else []), *notes,
            *hardware_tables(report)]


def hardware_tables(report: dict) -> list:
    """Tables of the ``hardware`` section, if the report has one."""
    from rich.table import Table

    hw = report.get("hardware")
    if not hw:
        return []
    r = hw["requantizers"]
    t = Table(title=f"requantizers {r['acc_bits']}-bit accumulator -> {r['out_bits']}-bit "
                    f"output, OSU 0.18 um; energy: {r['accumulators']} accumulators of demo "
                    f"layer {r['layer']}, toggles x the isaac32nm per-toggle table")
    for col in ("", "shift-and-round", "multiplier (gemmlowp, 32-bit M0)", "ratio", "paper"):
        t.add_column(col, justify="left" if not col else "right")
    sr, mr = r["blocks"]["requant_shift"], r["blocks"]["requant_mult"]
    p = report["paper"]
    t.add_row("area um^2", f"{sr['area_um2']:,.0f}", f"{mr['area_um2']:,.0f}",
              f"{r['area_ratio']:.2f}x", f"{p['requantizer_area_ratio']:.0f}x")
    t.add_row("cells", str(sr["cells"]), str(mr["cells"]), f"{mr['cells'] / sr['cells']:.2f}x",
              "-")
    for key, ratio in r["energy_ratio"].items():
        t.add_row(f"energy pJ ({key})", f"{sr['energy'][key]['pj']:.1f}",
                  f"{mr['energy'][key]['pj']:.1f}", f"{ratio:.2f}x",
                  f"{p['requantizer_energy_ratio']:.0f}x" if key.endswith("gates") else "-")
    runs = r["runs"]
    t.add_row("cycles vs golden", "", "", f"{sum(x['compared'] for x in runs):,} in "
              f"{len(runs)} runs, all passed" if all(x["passed"] for x in runs) else "FAILED",
              "")
    s = hw["searched_layer"]
    if "skipped" in s:
        from rich.text import Text
        return [t, Text(f"searched layer 0 in the Datapath RTL: not run ({s['skipped']})")]
    t2 = Table(title=f"searched layer 0 in the Datapath RTL ({s['config']['name']}: inputs "
                     f"{s['config']['inputs']['bits']} bits, weights "
                     f"{s['config']['weights']['bits']} bits, output "
                     f"{s['config']['output']['bits']} bits, shift {s['shift']})")
    for col in ("simulator", "cycles compared", "outputs", "bit-exact"):
        t2.add_column(col)
    for run in s["runs"]:
        t2.add_row(run["sim"], f"{run['compared']:,}", str(s["outputs"]),
                   "yes" if run["bit_exact"] else f"NO {run['message']}")
    return [t, t2]
