"""``aqua sweep SPEC.toml``: a design-space sweep (``aqua.sweep``) over configuration keys and
study options, on Dask distributed: a local cluster of this machine's cores by default,
``--address`` an existing scheduler, ``--serial`` in this process. Results go to
``sweep.sqlite`` in ``--out`` (default ``build/sweep/<spec name>/``), one row per point; a rerun
resumes (finished points are not recomputed). Prints the table and writes ``sweep.json`` and
the Pareto plots ``pareto_energy_accuracy.png`` and ``pareto_area_energy.png``.
"""

from __future__ import annotations

import argparse

from aqua._cmdutil import positive_int

HELP = ("design-space sweep (grid of config keys and study options) on Dask: accuracy, energy, "
        "area, cycles and their Pareto front")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.toml",
                   help="the sweep spec (e.g. configs/sweeps/small_grid.toml)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder: the store sweep.sqlite, sweep.json, plots "
                        "(default build/sweep/<spec name>/)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", default=None, metavar="HOST:PORT",
                       help="run on the existing Dask scheduler at this address")
    where.add_argument("--serial", action="store_true",
                       help="run every task in this process, one after the other")
    where.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="worker processes of the local cluster (default: the CPU count)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from aqua import sweep as SW
    from aqua._cmdutil import atomic_write, check_output_dir, console
    from aqua.cli import UsageError, progress
    from cosim.sim import BUILD_ROOT

    spec = SW.load_spec(args.spec)           # every point checked before any work
    out = check_output_dir(args.out if args.out else BUILD_ROOT / "sweep" / spec.name, "--out")
    client = None
    if not args.serial and SW.pending_points(spec, out):     # no cluster just to resume nothing
        try:
            import distributed
        except ImportError as exc:
            raise UsageError(f"aqua sweep needs Dask distributed ({exc}); install it, or run "
                             f"with --serial") from None
        try:
            if args.address:
                client = distributed.Client(args.address, timeout="10s")
            else:
                client = SW.local_client(args.workers)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"cannot reach the Dask scheduler {args.address}: "
                             f"{exc}") from None
    try:
        with progress(f"sweep {spec.name}: {len(spec.points)} points, tasks", None) as adv:
            report = SW.run_sweep(spec, out, client=client, progress=adv)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None and not args.address:
                cluster.close()
    con = console()
    _table(report, con)
    atomic_write(Path(out) / "sweep.json", json.dumps(report.to_dict(), indent=1) + "\n")
    paths = [atomic_write(Path(out) / name, png)
             for name, png in SW.render_plots(report.rows).items()]
    print(f"wrote {report.store}, {Path(out) / 'sweep.json'}"
          + "".join(f", {p}" for p in paths))
    print(f"{report.computed} points computed, {report.reused} reused from the store, "
          f"{report.failed} failed; {report.wall_s:.1f} s on {report.engine}")
    if report.interrupted:
        print("interrupted: run the same command again to resume")
        return 130
    return 1 if report.failed else 0


def _table(report, con) -> None:
    from rich.table import Table

    front = set(report.front)
    t = Table(title=f"sweep {report.spec} ({len(report.rows)} points; * = Pareto front of "
                    f"top-1, energy, area, cycles)")
    for col in ("#", "point", "config", "top-1", "top-1 uncropped", "energy uJ/img",
                "saved", "cycles/img", "area cells", "calibrated", "status"):
        t.add_column(col, justify="left" if col in ("point", "status", "config") else "right")
    for r in report.rows:
        ok = r["status"] == "ok"
        f = (lambda v, fmt: "-" if v is None else fmt.format(v))   # noqa: E731
        t.add_row(f"{r['idx']}{'*' if r['key'] in front else ''}", r["label"],
                  r["config_digest"],
                  f(r["top1"] and 100 * r["top1"] if ok else None, "{:.1f}%"),
                  f(r["top1_uncropped"] and 100 * r["top1_uncropped"] if ok else None,
                    "{:.1f}%"),
                  f(r["energy_pj"] / 1e6 if ok else None, "{:.3f}"),
                  f(r["energy_saved"] and 100 * r["energy_saved"] if ok else None, "{:.1f}%"),
                  f(r["cycles"], "{:,.0f}"), f(r["area_cells"], "{:,.0f}"),
                  ("yes" if r["energy_calibration"] else "no") if ok else "-",
                  "ok" if ok else f"[red]error[/]: {r['error']}")
    con.print(t)
