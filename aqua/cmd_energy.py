"""``aqua energy [CONFIG] [LAYER] [CROP]``: energy of a demo-CNN conv layer, uncropped and per crop.

The command parses and checks its arguments (before anything expensive), makes one library call
that returns a report object and renders it as tables, JSON (``report.to_dict()``) and a PNG:

* default: :func:`cosim.energy_report.energy_report` (the analytic model per crop and, unless
  ``--analytic``, RTL toggle runs of the uncropped layer and the best crop);
* ``--calibrate``: :func:`cosim.calibrate.calibration_report` fits the per-operation digital
  calibration (several minutes) and writes it to
  ``configs/energy/calibration/<config>/<table>.toml`` (or ``--out``);
* ``--tile``: :func:`cosim.tile_energy.tile_report` runs the layer on the RTL ``ConvTile``;
  ``--tile --calibrate``: :func:`cosim.tile_energy.calibrate_tile` fits the tile's own logic;
* ``--model SPEC`` (any model, ``aqua._cmdutil.model_from_args``): the whole network,
  :func:`golden.netreport.network_energy` (analytic energy, crossbars and cycles per crossbar
  layer and per crop); with ``--tile`` also a layer that fits one ``ConvTile``
  (:func:`cosim.tile_energy.model_tile_report`; the report names the layers that are analytic
  only).

The energy is from the calibration of the config *and* the table; without one the report says
so (the digital logic is then not counted).
"""

from __future__ import annotations

import time

HELP = ("energy of a demo-CNN conv layer, or with --model of every crossbar layer of any "
        "model, uncropped and per crop (analytic, RTL toggles)")

#: one colour per class, the same in every panel and plot: table events, calibrated digital
#: operations, blocks (20 distinct colours, none used twice)
COLOURS = {
    "adc_conversion": "#e6194b", "dac_drive": "#f58231", "row_read": "#4363d8",
    "sample_hold": "#42d4f4", "shift_add": "#3cb44b", "edram_read_bit": "#911eb4",
    "edram_write_bit": "#f032e6",
    "digital.xbar_step": "#469990", "digital.xbar_drive": "#aaffc3",
    "digital.adc_step": "#800000", "digital.adc_drive": "#fabed4",
    "digital.vector": "#ffe119", "digital.weight_write": "#9a6324",
    "digital.idle_cycle": "#a9a9a9",
    "crossbar": "#000075", "adc": "#808000", "shiftadd": "#bfef45", "control": "#dcbeff",
    "memory": "#ffd8b1", "agu": "#fffac8",
}


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
    parser.add_argument("--breakdown", action="store_true",
                        help="energy per ISAAC component (ADC, DAC, S&H, crossbar, shift-and-"
                             "add, registers, eDRAM) of a layer that fills an IMA, beside "
                             "ISAAC's published power table (analytic)")
    parser.add_argument("--published", default="isaac_table6",
                        help="published power table for --breakdown (default isaac_table6)")
    parser.add_argument("--json", action="store_true",
                        help="with --breakdown: print the report as JSON instead of the table")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the co-simulations (0)")
    parser.add_argument("--out", default=None,
                        help="output folder (build/energy/); with --calibrate, the file")
    from aqua._cmdutil import add_model_arguments
    add_model_arguments(parser, default_text="given, the whole network's energy (default: "
                                             "one layer of the shipped demo CNN)")


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


def _writable(path, *, is_file: bool):
    """``path`` checked by the shared output check (a file, or a folder that is then made)."""
    from pathlib import Path

    from aqua._cmdutil import check_output_dir, check_output_file

    path = Path(path)
    (check_output_file if is_file else check_output_dir)(path, "--out")
    (path.parent if is_file else path).mkdir(parents=True, exist_ok=True)
    return path


def run(args) -> int:
    from pathlib import Path

    from aqua._cmdutil import config_from_args

    from aqua.cli import UsageError
    from arch.energy import load_energy_table
    from cosim.sim import BUILD_ROOT
    from golden.cnn import CONV_SPECS
    from golden.data import split_indices

    t0 = time.perf_counter()
    # -- parse and check everything before the first expensive step -------------------------
    cfg = config_from_args(_pick("config", args.config_pos, args.config, "small"))
    table = load_energy_table(args.table)
    if not 0 <= args.fraction < 0.5:
        raise UsageError(f"--fraction must lie in [0, 0.5), not {args.fraction}")
    index, crop = _parse(args, len(CONV_SPECS))
    n_images = len(split_indices("test"))
    if not 0 <= args.image < n_images:
        raise UsageError(f"--image must lie in [0, {n_images - 1}]")
    if args.json and not args.breakdown:
        raise UsageError("--json goes with --breakdown (the other reports write their JSON "
                         "file to --out)")
    if args.breakdown and (args.tile or args.calibrate):
        raise UsageError("--breakdown is analytic; it does not go with --tile or --calibrate")
    model_given = args.model is not None or args.weights is not None or args.size is not None
    if args.breakdown and model_given:
        raise UsageError("--breakdown reports one layer that fills an IMA; it does not go with "
                         "--model, --weights or --size")
    if model_given:
        return _run_model(args, cfg, table, t0)
    if args.breakdown:
        from arch.energy import load_published_power
        published = load_published_power(args.published)
    if args.tile:
        from cosim.tile_energy import tile_layer_problem
        if args.analytic:
            raise UsageError("--tile co-simulates the ConvTile; it cannot be --analytic")
        problem = tile_layer_problem(cfg, index)
        if problem:
            raise UsageError(problem)
    if args.calibrate:
        out = _writable(args.out, is_file=True) if args.out else None
    else:
        out = _writable(Path(args.out) if args.out else BUILD_ROOT / "energy", is_file=False)

    # -- one library call, then render -----------------------------------------------------
    if args.breakdown:
        import json

        from golden.energy_breakdown import energy_breakdown
        rep = energy_breakdown(cfg, table, published)
        stem = f"energy-breakdown-{cfg.name}"
        (out / f"{stem}.json").write_text(json.dumps(rep.to_dict(), indent=1))
        _plot_breakdown(out / f"{stem}.png", rep)
        if args.json:
            print(json.dumps(rep.to_dict(), indent=1))
        else:
            _print_breakdown(rep)
            print(f"wrote {out / stem}.json and .png ({time.perf_counter() - t0:.1f} s)")
        return 0
    if args.calibrate and args.tile:
        from cosim.tile_energy import calibrate_tile
        rep = calibrate_tile(cfg, table, layer=index, fraction=args.fraction, sim=args.sim,
                             seed=args.seed, out=out)
        _print_tile_calibration(rep)
        return 0
    if args.calibrate:
        from aqua.cli import progress
        from cosim.calibrate import CALIBRATION_RUNS, HELDOUT_RUNS, calibration_report
        with progress("calibration runs", len(CALIBRATION_RUNS) + len(HELDOUT_RUNS)) as adv:
            rep = calibration_report(cfg, table, sim=args.sim, seed=args.seed,
                                     fraction=args.fraction, out=out, advance=adv)
        _print_calibration(rep)
        return 0
    if args.tile:
        from cosim.tile_energy import tile_report
        rep = tile_report(cfg, table, layer=index, crop=crop, image=args.image,
                          fraction=args.fraction, sim=args.sim, seed=args.seed)
        _print_tile(rep)
        stem = f"energy-tile-{cfg.name}-layer{index}"
        _write(out, stem, rep, _plot_tile)
        print(f"wrote {out / stem}.json and .png ({time.perf_counter() - t0:.1f} s)")
        return 0

    from aqua.cli import progress
    from cosim.energy_report import energy_report
    with progress("toggle runs", None if args.analytic else 2) as adv:
        rep = energy_report(cfg, table, layer=index, crop=crop, fraction=args.fraction,
                            image=args.image, analytic=args.analytic, sim=args.sim,
                            seed=args.seed, advance=adv)
    _print(rep)
    stem = f"energy-{cfg.name}-layer{index}"
    _write(out, stem, rep, _plot)
    print(f"wrote {out / stem}.json and {out / stem}.png ({time.perf_counter() - t0:.1f} s)")
    return 0


def _run_model(args, cfg, table, t0) -> int:
    """``aqua energy --model``: the whole network (see the module docstring)."""
    import re
    from pathlib import Path

    from aqua._cmdutil import model_from_args
    from aqua.cli import UsageError
    from cosim.sim import BUILD_ROOT
    from golden.data import split_indices
    from golden.fixedpoint import QuantError
    from golden.graph import UnsupportedGraphError

    if args.calibrate:
        raise UsageError("--calibrate fits on the demo CNN's layers; it does not take --model")
    if args.tile and args.analytic:
        raise UsageError("--tile co-simulates the ConvTile; it cannot be --analytic")
    layer = _pick("layer", args.layer_pos, args.layer, None)
    if layer is not None and not args.tile:
        raise UsageError("with --model, LAYER (--layer) picks the layer of --tile; the "
                         "analytic report covers every layer")
    if layer is not None:
        if not str(layer).isdigit():
            raise UsageError(f"LAYER must be a crossbar layer index of the model, not {layer!r}")
        layer = int(layer)
    crop = str(_pick("crop", args.crop_pos, args.crop, "all"))
    if crop != "all" and (not crop.isdigit() or not 0 <= int(crop) < 16):
        raise UsageError(f"CROP must be a crop vector index 0..15 or 'all', not {crop!r}")
    crop = None if crop == "all" else int(crop)
    n_images = len(split_indices("test"))
    if not 0 <= args.image < n_images:
        raise UsageError(f"--image must lie in [0, {n_images - 1}]")
    out = _writable(Path(args.out) if args.out else BUILD_ROOT / "energy", is_file=False)
    choice = model_from_args(args)

    from golden.netreport import network_energy, quantize_model
    try:
        qg = quantize_model(cfg, choice.module, choice.size)
        rep = network_energy(cfg, table, choice.module, name=choice.name, size=choice.size,
                             image=args.image, crop=crop, fraction=args.fraction, qg=qg)
    except (UnsupportedGraphError, QuantError) as exc:
        raise UsageError(f"--model {choice.spec}: {exc}") from None
    _print_model(rep)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", choice.spec).strip("_.")[:60] or "model"
    stem = f"energy-{cfg.name}-{slug}-{choice.size}px"
    tile = None
    if args.tile:
        from cosim.tile_energy import model_tile_report
        try:
            tile, analytic_only = model_tile_report(
                cfg, table, qg, layer=layer, crop=crop, image=args.image,
                fraction=args.fraction, sim=args.sim, seed=args.seed, size=choice.size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if analytic_only:
            from aqua._cmdutil import console
            names = ", ".join(f"{i} {name}" for i, name, _ in analytic_only)
            console().print(f"analytic only (no ConvTile computes them: more rows than one "
                            f"crossbar, grouped or linear): {names}", soft_wrap=True)
        if tile is not None:
            _print_tile(tile)
    _write(out, stem, rep, _plot_model)
    if tile is not None:
        _write(out, f"{stem}-tile{tile.layer}", tile, _plot_tile)
    print(f"wrote {out / stem}.json and {out / stem}.png ({time.perf_counter() - t0:.1f} s)")
    return 0


def _write(out, stem, rep, plot) -> None:
    import json

    (out / f"{stem}.json").write_text(json.dumps(rep.to_dict(), indent=1))
    plot(out / f"{stem}.png", rep)


# -- text -------------------------------------------------------------------------------------

def _print(rep) -> None:
    from rich.table import Table

    from aqua._cmdutil import console
    from arch.energy import digital_pj
    from cosim.energy_report import digital_by_event

    con = console()
    rows, full, best = rep.crops, rep.full, rep.best
    keys = [k for k in full["by_event"] if not k.startswith("digital.")]
    t = Table(title=f"layer {rep.layer} ({rep.shape}) of the demo CNN, config {rep.config}, "
                    f"table {rep.table.name}, crop fraction {rep.fraction}, image {rep.image} "
                    f"(analytic, pJ)")
    for c in ("crop", "TBLR", "positions", *keys, "digital (cal.)", "total pJ", "saved",
              "L1 err"):
        t.add_column(c, justify="left" if c in ("crop", "TBLR") else "right")
    for r in rows:
        t.add_row(f"{r['crop']}{' *' if r is best else ''}", "".join(map(str, r["vector"])),
                  str(r["positions"]), *(f"{r['by_event'][k]:,.0f}" for k in keys),
                  f"{digital_by_event(r):,.0f}",
                  f"{r['total_pj']:,.0f}", f"{1 - r['total_pj'] / full['total_pj']:.1%}",
                  str(r["l1_error"]))
    con.print(t)
    con.print(f"* best crop: {best['crop']} (smallest L1 change of the layer output); "
              f"digital calibration: {rep.calibration_status}")
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
    for r in rep.layers:
        lt.add_row(str(r["layer"]), r["shape"], f"{r['full_pj']:,.0f}", str(r["best_crop"]),
                   f"{r['best_pj']:,.0f}", f"{1 - r['best_pj'] / r['full_pj']:.1%}")
    con.print(lt)
    if rep.rtl:
        first = next(iter(rep.rtl.values()))
        rt = Table(title=f"digital logic: RTL toggles ({first['sim']}) vs calibrated model (pJ)")
        for c in ("crop", "cycles", *first["digital_pj"], "toggles total", "calibrated model",
                  "error"):
            rt.add_column(c, justify="right")
        for crop, d in rep.rtl.items():
            est = d["calibrated_digital_pj"]
            rt.add_row(str(crop), f"{d['cycles']:,}",
                       *(f"{digital_pj(v):,.0f}" for v in d["digital_pj"].values()),
                       f"{d['digital_total_pj']:,.0f}", f"{est:,.0f}",
                       f"{est / d['digital_total_pj'] - 1:+.1%}" if est else "-")
        con.print(rt)
        con.print("RTL event counts equal the analytic model: True")
        for crop, d in rep.rtl.items():
            con.print(f"waveform of crop {crop}: {d['waves']}", soft_wrap=True)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1%}"


def _print_breakdown(rep) -> None:
    from rich.table import Table

    from aqua._cmdutil import console

    con = console()
    lay = rep.layer
    t = Table(title=f"{rep.config}: energy per ISAAC component, {lay['kernel']}x{lay['kernel']} "
                    f"conv {lay['in_channels']}->{lay['out_channels']} on "
                    f"{lay['height']}x{lay['width']} ({lay['rows']} rows, {rep.crossbars} "
                    f"crossbars, {rep.vectors:,} vectors), table {rep.table}, beside "
                    f"{rep.source}")
    for c in ("component", "charged as", "model pJ", "share", "share of IMA",
              "ISAAC mW", "ISAAC share of IMA", "ISAAC share of tile"):
        t.add_column(c, justify="left" if c in ("component", "charged as") else "right")
    for r in rep.rows:
        t.add_row(r["component"], r["kind"], "-" if r["pj"] is None else f"{r['pj']:,.0f}",
                  _pct(r["share"]), _pct(r["share_ima"]), f"{r['published_mw']:g}",
                  _pct(r["published_share_ima"]), _pct(r["published_share_tile"]))
    t.add_row("[b]silicon estimate[/b]", "", f"[b]{rep.estimate_pj:,.0f}[/b]", "100.0%", "",
              "", "", "")
    con.print(t)
    s = Table(title="RTL digital stand-ins, charged by their toggles (not in the estimate)")
    for c in ("RTL block", "stands for", "toggle pJ"):
        s.add_column(c, justify="right" if c == "toggle pJ" else "left")
    for r in rep.stand_ins:
        s.add_row(r["block"], r["what"], "not estimated" if r["pj"] is None
                  else f"{r['pj']:,.0f}")
    con.print(s)
    c = rep.cycles
    con.print(f"cycles per crossbar for the layer: sequential {c['sequential']:,}, overlapped "
              f"(ISAAC pipeline) {c['overlapped']:,} ({c['sequential'] / c['overlapped']:.3f}x)")
    for n in rep.notes:
        con.print(f"note: {n}", soft_wrap=True)


def _plot_breakdown(path, rep) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rep.rows if r["published_share_ima"] is not None]
    names = [r["component"] for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    ax.bar([x - 0.2 for x in xs], [100 * (r["share_ima"] or 0) for r in rows], 0.4,
           label=f"model ({rep.config}, {rep.table})", color="#4363d8")
    ax.bar([x + 0.2 for x in xs], [100 * r["published_share_ima"] for r in rows], 0.4,
           label=rep.source, color="#e6194b")
    ax.set_xticks(list(xs), names, rotation=30)
    ax.set_ylabel("share of the IMA, %")
    ax.set_title("energy per IMA component: model vs ISAAC's published power")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print_model(rep) -> None:
    """The tables of a :class:`golden.netreport.NetEnergyReport`."""
    from rich.table import Table

    from aqua._cmdutil import console

    con = console()
    full, best = rep.full, rep.best
    other = best if best["crop"] != 0 else (rep.crops[1] if len(rep.crops) > 1 else full)
    col = f"crop {other['crop']}" + (" (best)" if other is best else "")
    t = Table(title=f"{rep.model} at {rep.size}x{rep.size} on config {rep.config}, table "
                    f"{rep.table}, test image {rep.image}, crop fraction {rep.fraction}: every "
                    f"crossbar layer (analytic, nJ per image)")
    for c in ("layer", "shape", "groups", "xbars", "util", "cycles", "uncropped", col, "saved"):
        t.add_column(c, justify="left" if c in ("layer", "shape") else "right")
    i = rep.crops.index(other)
    for r in rep.layers:
        e0, e1 = r["pj"][0], r["pj"][i]
        t.add_row(r["layer"], r["shape"], str(r["conv_groups"]), str(r["crossbars"]),
                  f"{r['utilization']:.0%}", f"{r['cycles']:,}", f"{e0 / 1e3:,.1f}",
                  f"{e1 / 1e3:,.1f}", f"{1 - e1 / e0:.1%}" if e0 else "")
    t.add_row("[b]network[/b]", f"{len(rep.layers)} crossbar layers", "",
              f"[b]{rep.crossbars:,}[/b]", "", f"[b]{full['cycles']:,}[/b]",
              f"[b]{full['total_pj'] / 1e3:,.1f}[/b]", f"[b]{other['total_pj'] / 1e3:,.1f}[/b]",
              f"{other['saved']:.1%}")
    con.print(t)
    c = Table(title="per crop vector: the whole network (analytic)")
    for col in ("crop", "TBLR", "total nJ", "saved", "cycles", "class", "same class"):
        c.add_column(col, justify="right")
    for r in rep.crops:
        c.add_row(f"{r['crop']}{' *' if r is best else ''}", "".join(map(str, r["vector"])),
                  f"{r['total_pj'] / 1e3:,.1f}", f"{r['saved']:.1%}", f"{r['cycles']:,}",
                  str(r["predicted"]), "yes" if r["same_class"] else "no")
    con.print(c)
    con.print(f"* best crop: {best['crop']} (the cheapest that keeps the image's class); "
              f"{rep.crossbars:,} crossbars, {full['cycles']:,} cycles per image uncropped "
              f"(a layer's crossbars in parallel, layers one after another; digital adds and "
              f"pools not charged); digital calibration: {rep.calibration_status}",
              soft_wrap=True)


def _print_calibration(rep) -> None:
    p = rep.calibration.provenance
    for r in (*p["runs"], *p["heldout"]):
        kind = "fit" if r in p["runs"] else "held out"
        print(f"{kind:8} layer {r['layer']} crop {r['crop']:2} image {r['image']}: "
              f"{r['vectors']:5} vectors, toggles {r['measured_pj']:10,.0f} pJ, calibrated "
              f"model {r['predicted_pj']:10,.0f} pJ ({r['error']:+.1%})")
    print(f"held-out error: mean {p['heldout_mean_abs_error']:.1%}, max "
          f"{p['heldout_max_abs_error']:.1%}; wrote {rep.path} ({p['wall_s']} s)")


def _print_tile_calibration(rep) -> None:
    for b, ops in rep.pj.items():
        print(f"tile {b:7}: " + ", ".join(f"{op} {v:.4f} pJ" for op, v in ops.items())
              + f" (residual {rep.residual[b]:.1%})")
    print(f"wrote {rep.path}")


def _print_tile(rep) -> None:
    from rich.table import Table

    from aqua._cmdutil import console

    con = console()
    rows, full, best = rep.crops, rep.full, rep.best
    blocks = list(full["toggle_by_block"])
    t = Table(title=f"layer {rep.layer} on the RTL ConvTile ({rep.sim}), config {rep.config}, "
                    f"image {rep.image}, crop fraction {rep.fraction}: events x table + "
                    f"RTL toggles (pJ), analytic estimate beside")
    for c in ("crop", "cycles", *blocks, "toggles total", "analytic total", "digital: toggles",
              "digital: analytic", "error", "held out"):
        t.add_column(c, justify="right")
    for r in rows:
        dig = sum(r["toggle_digital_by_block"].values())
        err = r["digital_error"]
        t.add_row(f"{r['crop']}{' *' if r is best else ''}", f"{r['cycles']:,}",
                  *(f"{r['toggle_by_block'][b]:,.0f}" for b in blocks),
                  f"{r['toggle_total_pj']:,.0f}", f"{r['analytic_total_pj']:,.0f}",
                  f"{dig:,.0f}", f"{r['analytic_digital_pj']:,.0f}",
                  f"{err:+.1%}" if err is not None else "-", "yes" if r["held_out"] else "fit")
    con.print(t)
    c = Table(title=f"per class (digital, pJ): uncropped vs crop {best['crop']}")
    for col in ("class", "uncropped", f"crop {best['crop']}"):
        c.add_column(col, justify="right")
    for k in full["toggle_digital_by_class"]:
        c.add_row(k, f"{full['toggle_digital_by_class'][k]:,.0f}",
                  f"{best['toggle_digital_by_class'][k]:,.0f}")
    con.print(c)
    held = [abs(r["digital_error"]) for r in rows if r["held_out"] and r["digital_error"]
            is not None]
    if held:
        con.print(f"analytic digital estimate on held-out crops: mean |error| "
                  f"{sum(held) / len(held):.1%}, max {max(held):.1%} ({len(held)} crops)")
    con.print(f"digital calibration: {rep.calibration_status}", soft_wrap=True)
    if not rep.has_tile_pj:
        con.print("no tile calibration (tile_pj): the analytic estimate leaves out the tile's "
                  "own logic; run `aqua energy --tile --calibrate`")
    con.print("RTL event counts equal the analytic model: True")
    con.print(f"waveform: {rep.waves}", soft_wrap=True)


# -- plots ------------------------------------------------------------------------------------

def stacked_bars(ax, xs, rows, key, parts) -> None:
    """One bar per row at ``xs``, stacked by ``row[key][part]`` for ``part`` in ``parts`` (pJ,
    drawn in nJ), each part in its colour of :data:`COLOURS`."""
    bottom = [0.0] * len(rows)
    for part in parts:
        vals = [r[key][part] / 1e3 for r in rows]
        ax.bar(xs, vals, bottom=bottom, label=part, color=COLOURS.get(part),
               edgecolor="0.25", linewidth=0.3)
        bottom = [a + b for a, b in zip(bottom, vals)]


def _legend_outside(ax, **kw) -> None:
    """The legend to the right of ``ax``, top part of the stack first (as the bars stack)."""
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=7, frameon=False, **kw)


def _plot(path, rep):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, full, best, rtl = rep.crops, rep.full, rep.best, rep.rtl
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.8), width_ratios=[3, 1],
                             layout="constrained")
    ax = axes[0]
    xs = list(range(len(rows)))
    stacked_bars(ax, xs, rows, "by_event", full["by_event"])
    ax.set_xticks(xs, ["".join(map(str, r["vector"])) for r in rows], rotation=60)
    ax.set_xlabel("crop vector (top bottom left right)")
    ax.set_ylabel("energy, nJ (analytic)")
    ax.set_title(f"layer {rep.layer} energy per crop, by event class")
    _legend_outside(ax)
    ax = axes[1]
    labels = [f"crop {r['crop']}" for r in (full, best)]
    stacked_bars(ax, labels, (full, best), "by_block", full["by_block"])
    if rtl:
        from cosim.energy_report import digital_by_event
        analog = [r["total_pj"] - digital_by_event(r) for r in (full, best)]
        ax.scatter(labels, [(a + rtl[r["crop"]]["digital_total_pj"]) / 1e3
                            for a, r in zip(analog, (full, best))],
                   color="k", marker="_", s=400, label="events + RTL toggles", zorder=3)
    ax.set_title("uncropped vs best crop, by block")
    ax.set_ylabel("energy, nJ")
    _legend_outside(ax)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_model(path, rep):
    """Per crossbar layer: energy uncropped and under the best crop (nJ)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i = rep.crops.index(rep.best)
    names = [r["layer"] for r in rep.layers]
    xs = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names) + 3), 4.5), layout="constrained")
    w = 0.4
    ax.bar([x - w / 2 for x in xs], [r["pj"][0] / 1e3 for r in rep.layers], w,
           label="uncropped", color="#4363d8")
    ax.bar([x + w / 2 for x in xs], [r["pj"][i] / 1e3 for r in rep.layers], w,
           label=f"crop {rep.best_crop} (best)", color="#f58231")
    ax.set_xticks(xs, names, rotation=70, fontsize=7)
    ax.set_ylabel("energy, nJ (analytic)")
    ax.set_title(f"{rep.model} on {rep.config}: energy per crossbar layer")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_tile(path, rep):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, full, best = rep.crops, rep.full, rep.best
    fig, ax = plt.subplots(figsize=(13, 4.5), layout="constrained")
    xs = list(range(len(rows)))
    stacked_bars(ax, xs, rows, "toggle_by_block", full["toggle_by_block"])
    ax.scatter(xs, [r["analytic_total_pj"] / 1e3 for r in rows], color="k", marker="_", s=300,
               label="analytic (calibrated)", zorder=3)
    ax.set_xticks(xs, [f"{r['crop']}" + ("*" if r is best else "") for r in rows])
    ax.set_xlabel("crop index")
    ax.set_ylabel("energy, nJ")
    ax.set_title(f"layer {rep.layer} on the ConvTile: events + RTL toggles by block, per crop")
    _legend_outside(ax)
    fig.savefig(path, dpi=120)
    plt.close(fig)
