"""``aqua crop-study``: the AQuA per-input crop study, beside the paper's figures.

Every test image runs under all 16 crop vectors (one batched pass per batch of images) through
the golden fixed-point demo CNN, or through any other model lowered and quantized to the
golden fixed-point path (``--model zoo:<name>``, ``module:factory``; a TorchScript model, or
``--float``, runs in float); the oracle picks per
image the cheapest crop that keeps it correct, the predictors (entropy, gradient, corners, the
learned 0th layer) pick one without running the network. Energy comes from
``golden.energy_model`` with the ISAAC table. Then the first conv layer of ``--rtl-images``
test images under the learned predictor's crops runs through the RTL ``ConvTile`` in one
co-simulation (``--sim``), bit-exact with the study's golden output and in the predicted cycles,
or the run exits 1. With ``--precision``, per-region precision (``docs/arithmetic.md``) runs
beside cropping on the first ``--precision-images`` test images: 81 plans (each border band at
full, ``--precision-low`` or 0 bits), oracle and predictors over the 16 crop plans and over all
plans. Writes ``study.json``, ``crop_histogram.png`` and ``accuracy_energy.png``
to ``--out`` (default ``build/crop_study/``) and prints the tables.
"""

from __future__ import annotations

import argparse

from aqua._cmdutil import (WEIGHTS_HELP, add_config_argument, named_model_spec,
                           nonnegative_int, positive_int)

HELP = "per-input crop study: oracle, predictors and energy beside the AQuA paper"

STUDY_SEED = 4242     #: rendering seed of the training images the predictors learn from


def _fraction(text: str) -> float:
    try:
        f = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not 0 < f < 0.5:
        raise argparse.ArgumentTypeError(f"must lie in (0, 0.5), not {f}")
    return f


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--table", default="isaac32nm", help="energy table (default isaac32nm)")
    p.add_argument("--fraction", type=_fraction, default=0.25,
                   help="crop fraction of each cropped side (default 0.25)")
    p.add_argument("--from-layer", type=nonnegative_int, default=0, metavar="L",
                   help="first conv layer whose input is cropped (default 0: the image)")
    p.add_argument("--test-images", type=positive_int, default=None, metavar="N",
                   help="use the first N test images (default: all)")
    p.add_argument("--train-images", type=positive_int, default=960, metavar="N",
                   help="training images for the predictors: 2/3 fit the learned 0th layer, "
                        "1/3 calibrate the thresholds (default 960)")
    p.add_argument("--batch", type=positive_int, default=32, help="images per batch (32)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default build/crop_study/)")
    p.add_argument("--rtl-images", type=nonnegative_int, default=4, metavar="N",
                   help="test images whose first conv layer runs, under the learned "
                        "predictor's crop (top-1 within 1 pp), through the RTL ConvTile "
                        "(default 4; 0: skip)")
    p.add_argument("--precision", action="store_true",
                   help="also run per-region precision beside cropping: 81 plans, each border "
                        "band at full, --precision-low or 0 bits (make aqua turns it on)")
    p.add_argument("--precision-low", type=positive_int, default=None, metavar="BITS",
                   help="the low level of the precision plans (default input bits / 2)")
    p.add_argument("--precision-images", type=positive_int, default=64, metavar="N",
                   help="test images of the precision study (81 plans each; default 64)")
    p.add_argument("--precision-train-images", type=positive_int, default=96, metavar="N",
                   help="training images of the precision study's predictors (default 96)")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"],
                   help="simulator of the RTL step (default verilator; Icarus is ~30x slower)")
    g = p.add_argument_group("your own model and images (default: the demo CNN on the "
                             "cluttered digits)")
    g.add_argument("--model", default=None, metavar="SPEC",
                   help="zoo:<name> (e.g. zoo:resnet18, zoo:tinyresnet), torchvision:<name> "
                        "(resnet18, vgg11_bn, mobilenet_v2: built from this project's "
                        "re-implementation of torchvision's model, random seeded weights or "
                        "--weights in torchvision's key names), democnn, an ONNX file "
                        "(PATH.onnx), module:factory (with --weights) or a TorchScript file; "
                        "all run the golden fixed-point path but TorchScript, which needs "
                        "--float. Without --images: a zoo, torchvision or ONNX model or "
                        "democnn on the shipped digits, or a demo CNN state dict")
    g.add_argument("--float", action="store_true",
                   help="run a module:factory model (with crop hooks) or a TorchScript model "
                        "(image crop only) in float instead (energy without activations)")
    g.add_argument("--weights", default=None, metavar="FILE", help=WEIGHTS_HELP)
    g.add_argument("--images", default=None, metavar="DIR|FILE.npz",
                   help="a folder with one subfolder per class, or an .npz with x and y")
    g.add_argument("--size", type=positive_int, default=None, metavar="PIXELS",
                   help="resize images to PIXELS x PIXELS (default: keep)")
    g.add_argument("--mean", type=float, nargs="+", default=None,
                   help="per-channel mean subtracted after scaling to [0, 1] (default 0)")
    g.add_argument("--std", type=float, nargs="+", default=None,
                   help="per-channel std divided by (default 1)")
    g.add_argument("--classes", type=positive_int, default=None,
                   help="number of classes the model outputs (checked)")
    g.add_argument("--grayscale", action="store_true", help="convert images to one channel")


def _demo_data(n_test, n_train):
    from golden.data import cluttered_digits

    xte, yte = cluttered_digits("test")
    xtr, ytr = cluttered_digits("train", seed=STUDY_SEED, copies=1)
    return (xtr[:n_train], ytr[:n_train]), (xte[:n_test], yte[:n_test])


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from aqua import crop_study as CS
    from aqua._cmdutil import (atomic_write, check_output_dir, config_from_args, console,
                               load_model, single_thread)
    from aqua.cli import UsageError, progress
    from arch.energy import load_energy_table
    from cosim.sim import BUILD_ROOT

    t0 = time.perf_counter()
    cfg = config_from_args(args.config)
    table = load_energy_table(args.table)
    _precision_low(args, cfg)                 # refused before the study, not after it
    # checked now, before the study; made only when the results are written (an error
    # leaves no empty folder behind)
    out = check_output_dir(args.out if args.out else BUILD_ROOT / "crop_study", "--out")

    spec = args.model
    zoo = named_model_spec(spec)           # zoo:, torchvision:, PATH.onnx
    torchvision = zoo and spec.startswith("torchvision:")
    if args.images is not None or (args.weights is not None and not torchvision) or (
            spec is not None and not zoo and (":" in spec or args.classes is not None)):
        from aqua import userdata

        subject, train, test = userdata.user_study_inputs(args, cfg, table)
    elif zoo:
        subject, train, test = _zoo_on_shipped_data(args, cfg, table)
    else:
        if args.float:
            raise UsageError("--float goes with --model module:factory or a TorchScript file, and --images")
        model = load_model(None if spec == "democnn" else spec)
        try:
            subject = CS.democnn_subject(cfg, table, model, args.fraction, args.from_layer)
        except ValueError as exc:
            raise UsageError(f"--from-layer: {exc}") from None
        train, test = _demo_data(args.test_images, args.train_images)
        from golden.cnn import evaluate

        subject.description += (f" (model {args.model or 'shipped'}: float top-1 "
                                f"{100 * evaluate(model, *test):.1f}% on these test images)")
    if args.test_images is not None:
        test = (test[0][:args.test_images], test[1][:args.test_images])
    train = (train[0][:args.train_images], train[1][:args.train_images])
    if len(train[1]) < 3:
        raise UsageError("need at least 3 training images (to fit and calibrate predictors)")

    n = len(test[1]) + len(train[1])
    # One torch thread: on a small shared machine a multi-threaded kernel waits for a busy
    # core at every barrier (see aqua._cmdutil.best_time).
    with progress(f"16 crops x {n} images", n) as advance, single_thread():
        res = CS.run_study(subject, train, test, fraction=args.fraction, progress=advance,
                           batch=args.batch)
    res["precision"] = _precision_step(args, cfg, subject, train, test)
    if "seconds" in res["precision"]:
        res["timing"]["seconds"]["precision"] = res["precision"].pop("seconds")
    from golden.energy_model import load_calibration

    cal = load_calibration(cfg, table)
    res.update(config=cfg.name, table=table.name, from_layer=args.from_layer,
               energy_calibration=cal.path if cal is not None and cal.table == table.name
               else None)
    rtl = _rtl_step(args, cfg, subject, test, res)
    res["timing"]["rtl_cosim"] = {k: rtl.pop(k) for k in ("sim_wall_s", "wall_s") if k in rtl}
    res["rtl_cosim"] = rtl
    plots = CS.render_plots(res)
    res["timing"]["wall_seconds"] = time.perf_counter() - t0
    _report(res, out, console())
    atomic_write(out / "study.json", json.dumps(res, indent=1) + "\n")
    paths = [atomic_write(out / name, png) for name, png in plots.items()]
    print(f"wrote {out / 'study.json'}, " + ", ".join(str(p) for p in paths))
    print(f"{res['timing']['wall_seconds']:.0f} s in all")
    rtl = res["rtl_cosim"]
    if rtl.get("passed") is False:
        import sys

        print(f"error: RTL co-simulation of the predicted crops failed: {rtl['message']}",
              file=sys.stderr)
        return 1
    return 0


def _precision_low(args, cfg) -> int:
    from aqua.cli import UsageError

    low = cfg.input_bits // 2 if args.precision_low is None else args.precision_low
    if not 1 <= low < cfg.input_bits:
        raise UsageError(f"--precision-low must lie in [1, {cfg.input_bits - 1}] (the "
                         f"inputs of '{cfg.name}' have {cfg.input_bits} bits), not {low}")
    return low


def _precision_step(args, cfg, subject, train, test) -> dict:
    """Per-region precision beside cropping (``aqua.crop_study.run_precision``) on the first
    ``--precision-images`` test and ``--precision-train-images`` training images, or
    ``{"skipped": why}``."""
    from aqua import crop_study as CS
    from aqua._cmdutil import single_thread
    from aqua.cli import progress

    low = _precision_low(args, cfg)
    if not args.precision:
        return {"skipped": "not asked for (--precision)"}
    if subject.precision is None:
        return {"skipped": "a model run in float has no fixed-point inputs to reduce"}
    xte, yte = (t[:args.precision_images] for t in test)
    xtr, ytr = (t[:args.precision_train_images] for t in train)
    if len(ytr) < 3:
        return {"skipped": "fewer than 3 training images"}
    n = len(yte) + len(ytr)
    with progress(f"81 precision plans x {n} images", n) as advance, single_thread():
        prec = CS.run_precision(subject, (xtr, ytr), (xte, yte), fraction=args.fraction,
                                low=low, progress=advance, batch=args.batch)
    return prec


def _zoo_on_shipped_data(args, cfg, table):
    """``zoo:<name>`` on the shipped cluttered digits (1x32x32, 10 classes; zoo:tinyresnet is
    trained on them), quantized on the calibration images DemoCNN uses."""
    from aqua import crop_study as CS
    from aqua.cli import UsageError
    from golden.fixedpoint import QuantError, calibration_images
    from golden.graph import UnsupportedGraphError, load_model

    if args.float:
        raise UsageError("--float goes with --model module:factory or a TorchScript file, and --images")
    kwargs = {} if not args.model.startswith(("zoo:", "torchvision:")) else \
        dict(num_classes=10, in_channels=1)
    if args.weights is not None:                       # torchvision:<name> only (run())
        kwargs["weights"] = args.weights
    try:
        model = load_model(args.model, **kwargs)
    except ValueError as exc:
        raise UsageError(f"--model: {exc}") from None
    if args.classes is not None and args.classes != 10:
        raise UsageError(f"--classes {args.classes}, but the shipped digits have 10 classes")
    try:
        subject = CS.model_subject(cfg, table, model, calibration_images(), args.fraction,
                                   args.from_layer, name=args.model)
    except (UnsupportedGraphError, QuantError) as exc:
        raise UsageError(f"--model {args.model}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"--from-layer: {exc}") from None
    subject.description += " (shipped cluttered digits)"
    train, test = _demo_data(args.test_images, args.train_images)
    return subject, train, test


def _rtl_step(args, cfg, subject, test, res) -> dict:
    """The first conv layer of ``--rtl-images`` test images under the predictor's crops in the
    RTL ConvTile (``aqua.crop_study.rtl_first_layer``), or ``{"skipped": why}``."""
    from aqua import crop_study as CS
    from aqua._cmdutil import console
    from cosim.sim import SimulatorMissing, ensure_simulator

    if not args.rtl_images:
        return {"skipped": "--rtl-images 0"}
    if subject.rtl_skip is not None:
        return {"skipped": subject.rtl_skip}
    if subject.net is None:
        return {"skipped": "a user's model runs in float, not through the golden fixed-point "
                           "model the RTL is held to"}
    try:
        ensure_simulator(args.sim)
    except SimulatorMissing as exc:
        return {"skipped": str(exc)}
    method = CS.RTL_METHOD
    choice = res["choices"][method]
    idx = CS.rtl_images(choice, args.rtl_images)
    with console().status(f"co-simulating conv0 of {len(idx)} images in the RTL ConvTile "
                          f"under {args.sim}"):
        rtl = CS.rtl_first_layer(cfg, subject, test[0][idx], [choice[i] for i in idx],
                                 args.fraction, args.sim, labels=idx)
    rtl["method"] = method
    return rtl


def _report(res, out, con) -> None:
    from rich.table import Table

    from aqua import crop_study as CS

    u = res["uncropped"]
    con.print(f"{res['subject']}; crop fraction {res['fraction']}, from layer "
              f"{res['from_layer']}; {res['test_images']} test images, "
              f"{res['train_images']} training images ({res['fit_images']} fit the learned "
              f"0th layer, {res['calibration_images']} calibrate thresholds)")
    energy = (f"{u['energy_pj_per_image'] / 1e6:.3f} uJ per image" if res["energy_unit"] == "pJ"
              else f"energy {u['energy_pj_per_image']:.3f} per image ({res['energy_unit']})")
    fl = (f"float top-1 {100 * res['float_top1']:.1f}%, quantized " if "float_top1" in res
          else "")
    con.print(f"uncropped: {fl}top-1 {100 * u['top1']:.1f}%, top-5 {100 * u['top5']:.1f}%, "
              f"{energy}; oracle pass {res['timing']['images_per_second']:.1f} images/s x 16 crops")
    if "layers" in res:
        _report_layers(res, con)
    t = Table(title="AQuA crop study: measured beside the paper (ImageNet, ISAAC)")
    t.add_column("metric")
    t.add_column("paper", justify="right")
    t.add_column("measured", justify="right")
    for row in CS.table_rows(res):
        t.add_row(*row)
    con.print(t)
    if res["energy_unit"] == "pJ":
        own = ", ".join(f"{k}: {v / 1e3:.1f} nJ"
                        for k, v in res["learned_energy_per_image"].items())
        con.print(f"learned 0th layer's own energy per image (counted above): {own}"
                  + (f"; {res['learned_energy_source']}" if "learned_energy_source" in res
                     else ""))
    else:
        con.print(f"learned 0th layer's own energy: not counted (the energy here is the "
                  f"{res['energy_unit']}, not pJ)")
    cal = res.get("energy_calibration")
    con.print("energy: analytic events x table " + (f"+ digital energy calibrated on RTL "
              f"toggles ({cal})" if cal else "only (no RTL toggle calibration shipped for this "
              "config: digital logic not charged)"))
    _report_precision(res["precision"], con)
    _report_rtl(res["rtl_cosim"], con, res["timing"].get("rtl_cosim", {}).get("wall_s"))


def _report_precision(prec: dict, con) -> None:
    """Energy saved per method, crop plans only beside all precision plans."""
    from rich.table import Table

    from aqua import crop_study as CS

    if "skipped" in prec:
        con.print(f"per-region precision: skipped ({prec['skipped']})")
        return
    t = Table(title=f"per-region precision beside cropping: 81 plans, each border band at "
                    f"{prec['input_bits']}, {prec['low']} or 0 bits ({prec['test_images']} "
                    f"test images, {prec['train_images']} training images); energy saved "
                    f"(accuracy, change)")
    for col in ("method", "paper", "crops only (16 plans)", "precision plans (81)"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for row in CS.precision_rows(prec):
        t.add_row(*row)
    con.print(t)


def _report_layers(res, con) -> None:
    """Per crossbar layer: uncropped energy and under the oracle's crops (top-1)."""
    from rich.table import Table

    orc = res.get("energy_per_layer_oracle", {}).get("top1")
    t = Table(title="energy per crossbar layer (nJ per image; digital adds and pools not "
                    "counted)")
    for col in ("layer", "uncropped", "oracle top-1", "saved"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for i, name in enumerate(res["layers"]):
        e0 = res["energy_per_layer_uncropped"][i]
        e1 = orc[i] if orc else None
        t.add_row(name, f"{e0 / 1e3:.1f}", "-" if e1 is None else f"{e1 / 1e3:.1f}",
                  "-" if e1 is None or not e0 else f"{100 * (1 - e1 / e0):.1f}%")
    con.print(t)


def _report_rtl(rtl: dict, con, wall_s: float | None = None) -> None:
    from rich.table import Table

    if "skipped" in rtl:
        con.print(f"RTL co-simulation of the predicted crops: skipped ({rtl['skipped']})")
        return
    t = Table(title=f"conv0 in the RTL ConvTile under {rtl['sim']}, crops of {rtl['method']} "
                    f"({rtl['cycles']:,} cycles in one simulation"
                    + (f", {wall_s:.1f} s)" if wall_s is not None else ")"))
    for col in ("test image", "crop", "window", "tile given", "cycles RTL", "cycles golden",
                "saved vs uncropped", "bit-exact"):
        t.add_column(col, justify="left" if col in ("window", "tile given") else "right")
    for r in rtl["images"]:
        saved = "-" if r["cycles_saved"] is None else (
            f"{100 * r['cycles_saved']:.1f}% of {r['cycles_uncropped']:,}")
        t.add_row(str(r["image"]), r["vector"], str(tuple(r["window"])), r["tile_window_from"],
                  "-" if r["cycles_rtl"] is None else f"{r['cycles_rtl']:,}",
                  f"{r['cycles_golden']:,}", saved,
                  "[green]yes[/]" if r["bit_exact"] else "[red]no[/]")
    con.print(t)
    if not rtl["passed"]:
        con.print(f"[red]RTL FAILED[/]: {rtl['message']}")
