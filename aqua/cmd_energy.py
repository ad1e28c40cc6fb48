"""``aqua energy [CONFIG] [LAYER] [CROP]``: energy of a demo-CNN conv layer, uncropped and per crop.

For one test image, the layer's input activations come from the integer network
(``golden.fixedpoint.quant_layer``); the crop window is taken on the image
(``golden.crop.kept_window``) and scaled to the layer's map. For the uncropped layer and each
crop vector (all 16, or the one ``CROP``), the analytic model (``golden.energy_model``) gives the
energy per event class and per block: the table's events (ADC scaled to the config's width,
eDRAM feature-map traffic) plus the digital logic per operation from the shipped calibration
(``configs/energy/calibration/<config>.toml``; without one, events only, and the report says
so). A per-layer table gives every conv layer uncropped and under its best crop.

Unless ``--analytic``, the uncropped layer and the best crop are also co-simulated
(``cosim.run.cnn_jobs``: one job per crossbar, cropped activations zero, only computed output
positions streamed); the RTL's event counts are checked equal to the analytic ones and the
digital energy from the RTL's per-bit toggles is reported beside the calibrated estimate.

The *best crop* is the non-trivial crop vector whose cropped layer output is closest (L1) to the
uncropped one: the crop that removes work where this image has nothing to compute.

``--calibrate`` fits the calibration instead (``cosim.calibrate``; several minutes) and writes
it to ``configs/energy/calibration/<config>.toml`` (or ``--out``).
"""

from __future__ import annotations

HELP = "energy of a demo-CNN conv layer, uncropped and per crop (analytic, RTL toggles)"


def add_arguments(parser) -> None:
    from aqua._cmdutil import nonnegative_int, seed_int

    parser.add_argument("config_pos", nargs="?", metavar="CONFIG",
                        help="accelerator config, name or path (default small)")
    parser.add_argument("layer_pos", nargs="?", metavar="LAYER",
                        help="conv layer index of the demo CNN (default 0)")
    parser.add_argument("crop_pos", nargs="?", metavar="CROP",
                        help="crop vector index 0..15, or 'all' (default)")
    parser.add_argument("--config", default=None, help="accelerator config (name or path)")
    parser.add_argument("--layer", default=None, help="conv layer index (default 0)")
    parser.add_argument("--crop", default=None, help="crop index 0..15 or 'all' (default)")
    parser.add_argument("--table", default="isaac32nm",
                        help="energy table: name in configs/energy/ or path (default isaac32nm)")
    parser.add_argument("--fraction", type=float, default=0.25, help="crop fraction (0.25)")
    parser.add_argument("--image", type=nonnegative_int, default=0, help="test image index (0)")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"),
                        help="simulator of the toggle runs (verilator)")
    parser.add_argument("--analytic", "--no-rtl", dest="analytic", action="store_true",
                        help="analytic model only, no co-simulation (fast)")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the per-operation digital calibration on RTL toggle runs")
    parser.add_argument("--tile", action="store_true",
                        help="run the layer on the RTL ConvTile (layers that fit one "
                             "crossbar): per-crop toggle energy by block and class; with "
                             "--calibrate, fit the tile's own logic")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the co-simulations (0)")
    parser.add_argument("--out", default=None,
                        help="output folder (build/energy/); with --calibrate, the file")


def _pick(name: str, positional, option, default):
    from aqua.cli import UsageError

    if positional is not None and option is not None and positional != option:
        raise UsageError(f"{name} given twice: {positional!r} and --{name} {option!r}")
    return positional if positional is not None else option if option is not None else default


def _parse(args, conv_layers: int):
    """``(layer index, crop indices)`` from the positional/option values, checked."""
    from aqua.cli import UsageError

    layer = _pick("layer", args.layer_pos, args.layer, "0")
    try:
        layer = int(layer)
    except ValueError:
        layer = -1
    if not 0 <= layer < conv_layers:
        raise UsageError(f"LAYER must be a conv layer of the demo CNN, 0..{conv_layers - 1}, "
                         f"not {_pick('layer', args.layer_pos, args.layer, '0')!r}")
    crop = str(_pick("crop", args.crop_pos, args.crop, "all"))
    if crop == "all":
        return layer, None
    if not crop.isdigit() or not 0 <= int(crop) < 16:
        raise UsageError(f"CROP must be a crop vector index 0..15 or 'all', not {crop!r}")
    return layer, int(crop)


def crop_jobs(cfg, layer, window):
    """``cnn_jobs`` of ``layer`` (one image) under the kept ``window``: cropped activations
    are zero and only the computed output positions are streamed. Returns ``(jobs,
    output_window)``."""
    import dataclasses

    from cosim.run import cnn_jobs
    from golden.crop import crop_activations, output_window

    _, _, H, W = layer.x.shape
    k = layer.weight.shape[2]
    ow = output_window(window, H, W, k, layer.stride, layer.padding)
    wo = (W + 2 * layer.padding - k) // layer.stride + 1
    idx = [oy * wo + ox for oy in range(ow[0], ow[1]) for ox in range(ow[2], ow[3])]
    jobs = cnn_jobs(cfg, dataclasses.replace(layer, x=crop_activations(layer.x, window)))
    for job in jobs:
        job["x"] = job["x"][idx]
    return jobs, ow


def layer_geometry(layer) -> dict:
    """The keyword arguments of ``golden.energy_model.conv_layer_events`` for ``layer``."""
    cout, cin, k, _ = layer.weight.shape
    _, _, H, W = layer.x.shape
    return dict(in_channels=cin, out_channels=cout, height=H, width=W, kernel=k,
                stride=layer.stride, padding=layer.padding)


def _num(v):
    return float(v.sum()) if hasattr(v, "dtype") else v


def crop_rows(cfg, table, layer, fraction, image_hw, crops):
    """One analytic row per crop index: window, positions, events, pJ per event class and
    block, total, and the L1 change of the layer output."""
    from golden.crop import CROP_VECTORS, cropped_conv2d, kept_window, scale_window
    from golden.energy_model import conv_layer_energy
    from golden.layer import conv2d

    H0, W0 = image_hw
    geo = layer_geometry(layer)
    conv = dict(stride=layer.stride, padding=layer.padding, shift=layer.shift, relu=layer.relu)
    full_out = conv2d(cfg, layer.x, layer.weight, layer.bias, **conv)
    rows = []
    for i in crops:
        window = scale_window(kept_window(i, fraction, H0, W0), H0, W0, geo["height"],
                              geo["width"])
        e = conv_layer_energy(cfg, table, window=window, x=layer.x, **geo)
        err = int((cropped_conv2d(cfg, layer.x, layer.weight, layer.bias, window=window,
                                  **conv) - full_out).abs().sum())
        rows.append({"crop": i, "vector": list(CROP_VECTORS[i]), "window": list(window),
                     "positions": e.events["positions"],
                     "events": {k: _num(v) for k, v in e.events.items()},
                     "by_event": {k: _num(v) for k, v in e.by_event.items()},
                     "by_block": {k: _num(v) for k, v in e.by_block.items()},
                     "total_pj": _num(e.total_pj), "calibration": e.calibration,
                     "l1_error": err})
    return rows


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from aqua._cmdutil import check_output_dir, check_output_file, config_from_args

    if args.out is not None:      # with --calibrate, the calibration file; else a folder
        (check_output_file if args.calibrate else check_output_dir)(args.out, "--out")
    from aqua.cli import UsageError
    from arch.energy import load_energy_table
    from cosim.sim import BUILD_ROOT
    from golden.cnn import CONV_SPECS, load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_layer, quantize_democnn

    t0 = time.perf_counter()
    cfg = config_from_args(_pick("config", args.config_pos, args.config, "small"))
    table = load_energy_table(args.table)
    if not 0 <= args.fraction < 0.5:
        raise UsageError(f"--fraction must lie in [0, 0.5), not {args.fraction}")
    if args.calibrate and not args.tile:
        return _calibrate(cfg, table, args)
    index, crop = _parse(args, len(CONV_SPECS))
    if args.tile:
        from aqua.cmd_energy_tile import calibrate_tile, run_tile_report
        if args.analytic:
            raise UsageError("--tile co-simulates the ConvTile; it cannot be --analytic")
        if args.calibrate:
            return calibrate_tile(cfg, table, args, index)
    out_dir = Path(args.out) if args.out else BUILD_ROOT / "energy"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.tile:
        return run_tile_report(cfg, table, args, index, crop, out_dir)

    net = quantize_democnn(cfg, load_democnn())
    x, _ = cluttered_digits("test")
    if not 0 <= args.image < x.shape[0]:
        raise UsageError(f"--image must lie in [0, {x.shape[0] - 1}]")
    img = x[args.image:args.image + 1]
    hw = tuple(img.shape[-2:])
    layers = [quant_layer(net, i, img) for i in range(len(CONV_SPECS))]
    layer = layers[index]
    rows = crop_rows(cfg, table, layer, args.fraction, hw,
                     range(16) if crop is None else sorted({0, crop}))
    full = rows[0]
    best = (min(rows[1:], key=lambda r: (r["l1_error"], r["total_pj"])) if crop is None
            else rows[-1])
    per_layer = []
    for q in layers:                      # every conv layer: uncropped and its best crop
        lr = crop_rows(cfg, table, q, args.fraction, hw, range(16))
        b = min(lr[1:], key=lambda r: (r["l1_error"], r["total_pj"]))
        per_layer.append({"layer": q.index, "shape": q.shape, "full_pj": lr[0]["total_pj"],
                          "best_crop": b["crop"], "best_pj": b["total_pj"]})

    rtl = {} if args.analytic else _rtl_runs(cfg, table, args, layer, (full, best))
    _print(cfg, table, args, layer, rows, full, best, rtl, per_layer)
    doc = {"config": cfg.name, "table": table.to_dict(), "fraction": args.fraction,
           "image": args.image, "layer": index, "shape": layer.shape,
           "map": list(layer.x.shape[-2:]), "calibration": full["calibration"],
           "crops": rows, "best_crop": best["crop"], "layers": per_layer,
           "rtl": {str(k): v for k, v in rtl.items()},
           "wall_s": round(time.perf_counter() - t0, 2)}
    stem = f"energy-{cfg.name}-layer{index}"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    png = out_dir / f"{stem}.png"
    _plot(png, index, rows, full, best, rtl)
    print(f"wrote {json_path} and {png} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _rtl_runs(cfg, table, args, layer, rows) -> dict:
    from aqua.cli import progress
    from arch.energy import digital_total, toggle_energy
    from cosim.events import rtl_events
    from cosim.toggles import toggle_run
    from golden.crop import check_window

    out = {}
    with progress("toggle runs", len(rows)) as advance:
        for r in rows:
            H, W = layer.x.shape[-2:]
            jobs, _ = crop_jobs(cfg, layer, check_window(r["window"], H, W))
            tg, res = toggle_run(cfg, args.sim, jobs=jobs, seed=args.seed, bubble=0.0,
                                 backpressure=0.0, label=f"energy-l{layer.index}-c{r['crop']}")
            ev = rtl_events(cfg, res.waves)
            mismatch = {k: (v, r["events"][k]) for k, v in ev.items() if v != r["events"][k]}
            if mismatch:
                raise RuntimeError(f"RTL events differ from the analytic model for crop "
                                   f"{r['crop']}: {mismatch} (RTL, analytic)")
            te = toggle_energy(table, tg)
            analytic = sum(v for k, v in r["by_event"].items() if k.startswith("digital."))
            out[r["crop"]] = {"sim": args.sim, "cycles": tg.cycles, "waves": str(res.waves),
                              "events_match": True, "digital_pj": te,
                              "digital_total_pj": digital_total(te),
                              "calibrated_digital_pj": analytic}
            advance()
    return out


def _calibrate(cfg, table, args) -> int:
    from pathlib import Path

    from aqua.cli import progress
    from cosim.calibrate import CALIBRATION_RUNS, HELDOUT_RUNS, calibrate
    from golden.energy_model import calibration_path

    with progress("calibration runs", len(CALIBRATION_RUNS) + len(HELDOUT_RUNS)) as advance:
        cal = calibrate(cfg, table, sim=args.sim, seed=args.seed, fraction=args.fraction,
                        advance=advance)
    path = Path(args.out) if args.out else calibration_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cal.to_toml())
    p = cal.provenance
    for r in (*p["runs"], *p["heldout"]):
        kind = "fit" if r in p["runs"] else "held out"
        print(f"{kind:8} layer {r['layer']} crop {r['crop']:2} image {r['image']}: "
              f"{r['vectors']:5} vectors, toggles {r['measured_pj']:10,.0f} pJ, calibrated "
              f"model {r['predicted_pj']:10,.0f} pJ ({r['error']:+.1%})")
    print(f"held-out error: mean {p['heldout_mean_abs_error']:.1%}, max "
          f"{p['heldout_max_abs_error']:.1%}; wrote {path} ({p['wall_s']} s)")
    return 0


def _print(cfg, table, args, layer, rows, full, best, rtl, per_layer):
    from rich.table import Table

    from aqua._cmdutil import console

    con = console()
    keys = [k for k in full["by_event"] if not k.startswith("digital.")]
    digital = lambda r: sum(v for k, v in r["by_event"].items() if k.startswith("digital."))  # noqa: E731
    cal = full["calibration"] or "none: analog events only, digital logic not charged"
    t = Table(title=f"layer {layer.index} ({layer.shape}) of the demo CNN, config {cfg.name}, "
                    f"table {table.name}, crop fraction {args.fraction}, image {args.image} "
                    f"(analytic, pJ)")
    for c in ("crop", "TBLR", "positions", *keys, "digital (cal.)", "total pJ", "saved",
              "L1 err"):
        t.add_column(c, justify="left" if c in ("crop", "TBLR") else "right")
    for r in rows:
        t.add_row(f"{r['crop']}{' *' if r is best else ''}", "".join(map(str, r["vector"])),
                  str(r["positions"]), *(f"{r['by_event'][k]:,.0f}" for k in keys),
                  f"{digital(r):,.0f}",
                  f"{r['total_pj']:,.0f}", f"{1 - r['total_pj'] / full['total_pj']:.1%}",
                  str(r["l1_error"]))
    con.print(t)
    con.print(f"* best crop: {best['crop']} (smallest L1 change of the layer output); "
              f"digital calibration: {cal}")
    b = Table(title=f"per block, uncropped vs crop {best['crop']} (pJ)")
    for c in ("block", "uncropped", f"crop {best['crop']}", "saved"):
        b.add_column(c, justify="left" if c == "block" else "right")
    for blk, v in full["by_block"].items():
        w = best["by_block"][blk]
        b.add_row(blk, f"{v:,.1f}", f"{w:,.1f}", f"{1 - w / v:.1%}" if v else "")
    b.add_row("[b]layer[/b]", f"[b]{full['total_pj']:,.1f}[/b]", f"[b]{best['total_pj']:,.1f}[/b]",
              f"{1 - best['total_pj'] / full['total_pj']:.1%}")
    con.print(b)
    lt = Table(title="every conv layer, uncropped and its best crop (analytic, pJ)")
    for c in ("layer", "shape", "uncropped", "best crop", "cropped", "saved"):
        lt.add_column(c, justify="left" if c in ("layer", "shape") else "right")
    for r in per_layer:
        lt.add_row(str(r["layer"]), r["shape"], f"{r['full_pj']:,.0f}", str(r["best_crop"]),
                   f"{r['best_pj']:,.0f}", f"{1 - r['best_pj'] / r['full_pj']:.1%}")
    con.print(lt)
    if rtl:
        rt = Table(title=f"digital logic: RTL toggles ({next(iter(rtl.values()))['sim']}) vs "
                         f"calibrated model (pJ)")
        for c in ("crop", "cycles", *next(iter(rtl.values()))["digital_pj"], "toggles total",
                  "calibrated model", "error"):
            rt.add_column(c, justify="right")
        for crop, d in rtl.items():
            est = d["calibrated_digital_pj"]
            rt.add_row(str(crop), f"{d['cycles']:,}",
                       *(f"{v['register'] + v['comb'] + v['clock']:,.0f}"
                         for v in d["digital_pj"].values()),
                       f"{d['digital_total_pj']:,.0f}", f"{est:,.0f}",
                       f"{est / d['digital_total_pj'] - 1:+.1%}" if est else "-")
        con.print(rt)
        con.print("RTL event counts equal the analytic model: True")


def stacked_bars(ax, xs, rows, key, parts) -> None:
    """One bar per row at ``xs``, stacked by ``row[key][part]`` for ``part`` in ``parts`` (pJ,
    drawn in nJ)."""
    bottom = [0.0] * len(rows)
    for part in parts:
        vals = [r[key][part] / 1e3 for r in rows]
        ax.bar(xs, vals, bottom=bottom, label=part)
        bottom = [a + b for a, b in zip(bottom, vals)]


def _plot(path, index, rows, full, best, rtl):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=[3, 1])
    ax = axes[0]
    xs = list(range(len(rows)))
    stacked_bars(ax, xs, rows, "by_event", full["by_event"])
    ax.set_xticks(xs, ["".join(map(str, r["vector"])) for r in rows], rotation=60)
    ax.set_xlabel("crop vector (top bottom left right)")
    ax.set_ylabel("nJ (analytic)")
    ax.set_title(f"layer {index} energy per crop, by event class")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    labels = [f"crop {r['crop']}" for r in (full, best)]
    stacked_bars(ax, labels, (full, best), "by_block", full["by_block"])
    if rtl:
        analog = [r["total_pj"] - sum(v for k, v in r["by_event"].items()
                                      if k.startswith("digital.")) for r in (full, best)]
        ax.scatter(labels, [(a + rtl[r["crop"]]["digital_total_pj"]) / 1e3
                            for a, r in zip(analog, (full, best))],
                   color="k", marker="_", s=400, label="events + RTL toggles", zorder=3)
    ax.set_title("uncropped vs best crop, by block")
    ax.set_ylabel("nJ")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
