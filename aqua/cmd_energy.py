"""``aqua energy``: energy of the demo CNN's first conv layer, uncropped and for every crop.

For one test image, the layer runs on one crossbar (``cosim.run.cnn_jobs``); a crop streams only
the im2col patches of the output positions that ``golden.crop.output_window`` says are computed
(with the cropped activations at zero), so a crop removes work. For the uncropped run and each of
the 16 crop vectors, the analytic model (``golden.events`` x the energy table) gives the energy
per event class and per block; for the uncropped run and the best crop an actual co-simulation
adds the toggle-based digital energy and checks the RTL's event counts against the analytic ones.

The *best crop* is the non-trivial crop vector whose cropped layer output is closest (L1) to the
uncropped one: the crop that removes work where this image has nothing to compute.
"""

from __future__ import annotations

HELP = "energy of the first conv layer, uncropped and per crop vector (analytic + toggles)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", default="small", help="accelerator config (name or path)")
    parser.add_argument("--table", default="isaac32nm",
                        help="energy table: name in configs/energy/ or path (default isaac32nm)")
    parser.add_argument("--fraction", type=float, default=0.25, help="crop fraction (0.25)")
    parser.add_argument("--image", type=int, default=0, help="test image index (0)")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"),
                        help="simulator of the toggle runs (verilator)")
    parser.add_argument("--no-rtl", action="store_true",
                        help="analytic model only (no co-simulation)")
    parser.add_argument("--out", default=None, help="output folder (build/energy/)")


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


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from aqua.cli import UsageError, progress
    from aqua.config import load_config
    from aqua.energy import EVENT_MAP, event_energy, load_energy_table, toggle_energy
    from cosim.sim import BUILD_ROOT
    from golden.cnn import load_democnn
    from golden.crop import CROP_VECTORS, cropped_conv2d, kept_window
    from golden.data import cluttered_digits
    from golden.events import jobs_events
    from golden.fixedpoint import quant_layer, quantize_democnn
    from golden.layer import conv2d

    t0 = time.perf_counter()
    cfg = load_config(args.config)
    table = load_energy_table(args.table)
    if not 0 <= args.fraction < 0.5:
        raise UsageError(f"--fraction must lie in [0, 0.5), not {args.fraction}")
    out_dir = Path(args.out) if args.out else BUILD_ROOT / "energy"
    out_dir.mkdir(parents=True, exist_ok=True)

    net = quantize_democnn(cfg, load_democnn())
    x, _ = cluttered_digits("test")
    if not 0 <= args.image < x.shape[0]:
        raise UsageError(f"--image must lie in [0, {x.shape[0] - 1}]")
    layer = quant_layer(net, 0, x[args.image:args.image + 1])
    _, _, H, W = layer.x.shape
    conv = dict(stride=layer.stride, padding=layer.padding, shift=layer.shift, relu=layer.relu)
    full_out = conv2d(cfg, layer.x, layer.weight, layer.bias, **conv)

    rows = []
    for i, vec in enumerate(CROP_VECTORS):
        window = kept_window(i, args.fraction, H, W)
        jobs, ow = crop_jobs(cfg, layer, window)
        events = jobs_events(cfg, jobs)
        ee = event_energy(table, events, cfg)
        err = int((cropped_conv2d(cfg, layer.x, layer.weight, layer.bias, window=window,
                                  **conv) - full_out).abs().sum())
        rows.append({"crop": i, "vector": list(vec), "window": list(window),
                     "output_window": list(ow), "positions": (ow[1] - ow[0]) * (ow[3] - ow[2]),
                     "events": events, "event_pj": {k: v["pj"] for k, v in ee.items()},
                     "analog_pj": sum(v["pj"] for v in ee.values()), "l1_error": err,
                     "jobs": jobs})
    full = rows[0]
    best = min(rows[1:], key=lambda r: (r["l1_error"], r["analog_pj"]))

    rtl = {}
    if not args.no_rtl:
        from cosim.events import rtl_events
        from cosim.toggles import toggle_run
        with progress("toggle runs", 2) as advance:
            for r in (full, best):
                tg, res = toggle_run(cfg, args.sim, jobs=r["jobs"], seed=args.image,
                                     bubble=0.0, backpressure=0.0,
                                     label=f"energy-crop{r['crop']}")
                ev = rtl_events(cfg, res.waves)
                te = toggle_energy(table, tg)
                rtl[r["crop"]] = {"sim": args.sim, "cycles": tg.cycles, "waves": str(res.waves),
                                  "events_match": ev == r["events"], "rtl_events": ev,
                                  "digital_pj": te,
                                  "digital_total_pj": sum(b["register"] + b["comb"] + b["clock"]
                                                          for b in te.values())}
                if ev != r["events"]:
                    raise RuntimeError(f"RTL events differ from the analytic model for crop "
                                       f"{r['crop']}: {ev} vs {r['events']}")
                advance()

    _print(cfg, table, args, rows, full, best, rtl)
    for r in rows:
        del r["jobs"]
    doc = {"config": cfg.name, "table": table.to_dict(), "fraction": args.fraction,
           "image": args.image, "layer": layer.shape, "map": [H, W], "crops": rows,
           "best_crop": best["crop"], "rtl": {str(k): v for k, v in rtl.items()},
           "wall_s": round(time.perf_counter() - t0, 2)}
    json_path = out_dir / f"energy-{cfg.name}-layer0.json"
    json_path.write_text(json.dumps(doc, indent=1))
    png = out_dir / f"energy-{cfg.name}-layer0.png"
    _plot(png, rows, full, best, rtl, list(EVENT_MAP))
    print(f"wrote {json_path} and {png} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _print(cfg, table, args, rows, full, best, rtl):
    from rich.console import Console
    from rich.table import Table

    from aqua.energy import EVENT_MAP

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    t = Table(title=f"layer 0 of the demo CNN, config {cfg.name}, table {table.name}, "
                    f"crop fraction {args.fraction} (analytic, pJ)")
    t.add_column("crop")
    t.add_column("TBLR")
    t.add_column("positions", justify="right")
    for k in EVENT_MAP:
        t.add_column(k, justify="right")
    t.add_column("analog pJ", justify="right")
    t.add_column("saved", justify="right")
    t.add_column("L1 err", justify="right")
    for r in rows:
        mark = " *" if r is best else ""
        t.add_row(f"{r['crop']}{mark}", "".join(map(str, r["vector"])), str(r["positions"]),
                  *(f"{r['event_pj'][k]:,.0f}" for k in EVENT_MAP), f"{r['analog_pj']:,.0f}",
                  f"{1 - r['analog_pj'] / full['analog_pj']:.1%}", str(r["l1_error"]))
    console.print(t)
    console.print(f"* best crop: {best['crop']} (smallest L1 change of the layer output)")
    if rtl:
        b = Table(title=f"uncropped vs best crop {best['crop']}: per block (pJ; digital from "
                        f"{rtl[0]['sim']} toggles)")
        for c in ("crop", "block", "analog events", "digital reg", "digital comb",
                  "digital clock", "total"):
            b.add_column(c, justify="right" if c not in ("crop", "block") else "left")
        for r in (full, best):
            d = rtl[r["crop"]]["digital_pj"]
            for blk in d:
                analog = sum(r["event_pj"][k] for k, (_, bb) in EVENT_MAP.items() if bb == blk)
                dd = d[blk]
                b.add_row(str(r["crop"]), blk, f"{analog:,.1f}", f"{dd['register']:,.1f}",
                          f"{dd['comb']:,.1f}", f"{dd['clock']:,.1f}",
                          f"{analog + dd['register'] + dd['comb'] + dd['clock']:,.1f}")
            tot = r["analog_pj"] + rtl[r["crop"]]["digital_total_pj"]
            b.add_row(str(r["crop"]), "[b]layer[/b]", f"{r['analog_pj']:,.1f}", "", "", "",
                      f"[b]{tot:,.1f}[/b]")
        console.print(b)
        ok = all(v["events_match"] for v in rtl.values())
        console.print(f"RTL event counts equal the analytic model: {ok}")


def _plot(path, rows, full, best, rtl, event_keys):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=[3, 1])
    ax = axes[0]
    xs = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for k in event_keys:
        vals = [r["event_pj"][k] / 1e3 for r in rows]
        ax.bar(xs, vals, bottom=bottom, label=k)
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax.set_xticks(xs, ["".join(map(str, r["vector"])) for r in rows], rotation=60)
    ax.set_xlabel("crop vector (top bottom left right)")
    ax.set_ylabel("nJ (analytic, analog events)")
    ax.set_title("layer 0 energy per crop")
    ax.legend(fontsize=8)
    ax = axes[1]
    if rtl:
        labels = [f"crop {r['crop']}" for r in (full, best)]
        bottom = [0.0, 0.0]
        parts = {"analog events": [r["analog_pj"] for r in (full, best)]}
        for cls in ("register", "comb", "clock"):
            parts[f"digital {cls}"] = [sum(b[cls] for b in rtl[r["crop"]]["digital_pj"].values())
                                       for r in (full, best)]
        for name, vals in parts.items():
            vals = [v / 1e3 for v in vals]
            ax.bar(labels, vals, bottom=bottom, label=name)
            bottom = [a + b for a, b in zip(bottom, vals)]
        ax.set_title("uncropped vs best crop (RTL toggles)")
        ax.set_ylabel("nJ")
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
