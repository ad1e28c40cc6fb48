"""``aqua energy --tile``: a demo-CNN conv layer run through the RTL ``ConvTile`` (AGUs,
memories, gather, one Datapath per output group), uncropped and under each crop vector, back to
back in one Verilator simulation; per crop the toggle-based digital energy per block and class,
the RTL events (held equal to the analytic model), and the analytic estimate
(``conv_layer_energy(..., tile=True)`` with the calibration's ``tile_pj``) with its error.

``--tile --calibrate`` fits ``tile_pj`` (the tile's own logic per operation) on the crops
``cosim.tile_energy.TILE_FIT_CROPS`` of test image ``TILE_FIT_IMAGE`` and writes it into the
calibration file; the report on image 0 then holds out every crop of that image.
"""

from __future__ import annotations


def check_tile_layer(cfg, index: int):
    """The demo layer ``index`` must fit one crossbar of ``cfg`` (one row tile)."""
    from aqua.cli import UsageError
    from cosim.tile import demo_layers_for
    from golden.cnn import CONV_SPECS

    if index not in demo_layers_for(cfg):
        s = CONV_SPECS[index]
        raise UsageError(f"--tile: layer {index} needs {s.cin * s.kernel ** 2} crossbar rows, "
                         f"{cfg.name} has {cfg.rows}; layers that fit: "
                         f"{', '.join(map(str, demo_layers_for(cfg))) or 'none'}")


def _images(cfg, index, image, crops, fraction):
    from cosim.tile import demo_tile_layer, tile_image
    from golden.crop import CROP_VECTORS

    layer, geom, x = demo_tile_layer(cfg, index, image)
    imgs = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=fraction,
                       label=f"crop {c}") for c in crops]
    return layer, geom, imgs


def tile_rows(cfg, table, index, image, crops, fraction, sim, seed, calibration=None):
    """One row per crop: window, RTL events (checked equal to the analytic ones), toggle
    digital pJ per block and class, analytic pJ per event and block, and the error of the
    calibrated digital estimate. Returns ``(rows, TileEnergyRun)``."""
    from cosim.tile_energy import analytic_tile, by_block, by_class, tile_energy_run

    layer, geom, imgs = _images(cfg, index, image, crops, fraction)
    r = tile_energy_run(cfg, geom, layer, imgs, sim, seed=seed, label=f"energy-tile-l{index}")
    rows = []
    for i, (c, img) in enumerate(zip(crops, imgs)):
        e = analytic_tile(cfg, table, layer, img.window, calibration)
        ev = {k: int(v.sum()) if hasattr(v, "sum") else v for k, v in e.events.items()}
        bad = {k: (v, ev[k]) for k, v in r.events[i].items() if v != ev[k]}
        if bad:
            raise RuntimeError(f"tile RTL events differ from the analytic model for crop {c}: "
                               f"{bad} (RTL, analytic)")
        d = r.digital(table, i)
        analog = {k: float(v) for k, v in e.by_event.items() if not k.startswith("digital.")}
        est = sum(float(v) for k, v in e.by_event.items() if k.startswith("digital."))
        tog_block = by_block(d)
        tog = sum(tog_block.values())
        ev_block = {b: 0.0 for b in e.by_block}
        from arch.energy import event_energy
        for x in event_energy(table, ev, cfg, tile=True).values():
            ev_block[x["block"]] += float(x["pj"])
        rows.append({
            "crop": c, "window": list(img.window), "cycles": r.run.rows[i]["cycles_rtl"],
            "l1_error": int((img.expected - imgs[0].expected).abs().sum()),
            "events": r.events[i], "events_match": True, "analog_pj": analog,
            "toggle_digital_by_block": tog_block, "toggle_digital_by_class": by_class(d),
            "toggle_total_pj": sum(analog.values()) + tog,
            "toggle_by_block": {b: ev_block.get(b, 0.0) + tog_block.get(b, 0.0)
                                for b in e.by_block},
            "analytic_digital_pj": est, "analytic_total_pj": float(e.total_pj),
            "analytic_by_block": {b: float(v) for b, v in e.by_block.items()},
            "digital_error": est / tog - 1 if est else None,
            "calibration": e.calibration})
    return rows, r


def run_tile_report(cfg, table, args, index, crop, out_dir) -> int:
    import json
    import time

    from golden.energy_model import load_calibration

    t0 = time.perf_counter()
    check_tile_layer(cfg, index)
    cal = load_calibration(cfg)
    crops = list(range(16)) if crop is None else sorted({0, crop})
    rows, r = tile_rows(cfg, table, index, args.image, crops, args.fraction, args.sim,
                        args.seed, cal)
    full = rows[0]
    # the best crop as in the analytic report: smallest L1 change of the layer output
    best = min(rows[1:], key=lambda x: (x["l1_error"], x["toggle_total_pj"])) \
        if len(rows) > 1 else full
    fit = (cal.provenance.get("tile", {}) if cal else {})
    fitted = {(int(i), int(c)) for i, c in fit.get("fitted", [])}
    for row in rows:
        row["held_out"] = (args.image, row["crop"]) not in fitted
    _print(cfg, table, args, index, rows, full, best, cal)
    doc = {"config": cfg.name, "table": table.name, "layer": index, "image": args.image,
           "fraction": args.fraction, "sim": args.sim, "seed": args.seed,
           "cycles": r.run.cycles, "waves": r.waves, "crops": rows, "best_crop": best["crop"],
           "tile_calibration": fit, "wall_s": round(time.perf_counter() - t0, 1)}
    stem = f"energy-tile-{cfg.name}-layer{index}"
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    _plot(out_dir / f"{stem}.png", index, rows, full, best)
    print(f"wrote {out_dir / stem}.json and .png ({time.perf_counter() - t0:.1f} s)")
    return 0


def calibrate_tile(cfg, table, args, index) -> int:
    """Fit ``tile_pj`` on :data:`TILE_FIT_CROPS` of image :data:`TILE_FIT_IMAGE`; write it
    into the calibration file (its Datapath part unchanged)."""
    import dataclasses
    import datetime
    from pathlib import Path

    from cosim.tile_energy import TILE_FIT_CROPS, TILE_FIT_IMAGE, fit_tile
    from golden.energy_model import calibration_path, load_calibration

    check_tile_layer(cfg, index)
    cal = load_calibration(cfg)
    if cal is None:
        from aqua.cli import UsageError
        raise UsageError(f"--tile --calibrate needs the Datapath calibration of {cfg.name} "
                         f"first: run `aqua energy --calibrate --config {cfg.name}`")
    layer, geom, imgs = _images(cfg, index, TILE_FIT_IMAGE, TILE_FIT_CROPS, args.fraction)
    from cosim.tile_energy import tile_energy_run
    r = tile_energy_run(cfg, geom, layer, imgs, args.sim, seed=args.seed,
                        label=f"cal-tile-l{index}")
    pj, residual = fit_tile(table, [r], [list(range(len(imgs)))])
    prov = {**cal.provenance, "tile": {
        "command": f"aqua energy --tile --calibrate --config {cfg.name} --layer {index} "
                   f"--sim {args.sim} --seed {args.seed} --fraction {args.fraction}",
        "date": datetime.date.today().isoformat(), "layer": index,
        "fitted": [[TILE_FIT_IMAGE, c] for c in TILE_FIT_CROPS],
        "fit_residual_rms": {k: round(v, 4) for k, v in residual.items()}}}
    cal = dataclasses.replace(cal, tile_pj=pj, provenance=prov)
    path = Path(args.out) if args.out else calibration_path(cfg)
    path.write_text(cal.to_toml())
    for b, ops in pj.items():
        print(f"tile {b:7}: " + ", ".join(f"{op} {v:.4f} pJ" for op, v in ops.items())
              + f" (residual {residual[b]:.1%})")
    print(f"wrote {path}")
    return 0


def _print(cfg, table, args, index, rows, full, best, cal):
    from rich.table import Table

    from aqua._cmdutil import console

    con = console()
    blocks = list(full["toggle_by_block"])
    t = Table(title=f"layer {index} on the RTL ConvTile ({args.sim}), config {cfg.name}, "
                    f"image {args.image}, crop fraction {args.fraction}: events x table + "
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
    if cal is None or not cal.tile_pj:
        con.print("no tile calibration (tile_pj): the analytic estimate leaves out the tile's "
                  "own logic; run `aqua energy --tile --calibrate`")
    con.print("RTL event counts equal the analytic model: True")


def _plot(path, index, rows, full, best):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5))
    from .cmd_energy import stacked_bars

    xs = list(range(len(rows)))
    stacked_bars(ax, xs, rows, "toggle_by_block", full["toggle_by_block"])
    ax.scatter(xs, [r["analytic_total_pj"] / 1e3 for r in rows], color="k", marker="_", s=300,
               label="analytic (calibrated)", zorder=3)
    ax.set_xticks(xs, [f"{r['crop']}" + ("*" if r is best else "") for r in rows])
    ax.set_xlabel("crop index")
    ax.set_ylabel("nJ")
    ax.set_title(f"layer {index} on the ConvTile: events + RTL toggles by block, per crop")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
