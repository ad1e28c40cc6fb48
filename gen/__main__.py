"""``python -m gen --config small [--lint] [--synth]``: Verilog, manifest, lint and cell counts.

The project CLI (``aqua verilog``) calls :func:`gen.verilog.generate` and friends directly; this
entry point is the same thing without it, and prints the time of each step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from arch.config import ConfigError, load_config
from hdl import BLOCKS

from .lint import LintError, lint_dir
from .synth import SynthError, synth_dir
from .verilog import default_out_dir, generate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "-c", default="small",
                        help="configuration name or .toml path (default: small)")
    parser.add_argument("--out", type=Path, help="output directory "
                        "(default: build/verilog/<config>-<digest>)")
    parser.add_argument("--blocks", nargs="+", choices=list(BLOCKS), help="default: all")
    parser.add_argument("--lint", action="store_true", help="run Verilator and Icarus")
    parser.add_argument("--synth", action="store_true",
                        help="run Yosys synthesis for cell counts (slow for large crossbars)")
    parser.add_argument("--synth-timeout", type=float, default=600,
                        help="seconds allowed per block (default: 600)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or default_out_dir(cfg)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    manifest = generate(cfg, out, args.blocks, timings=timings)
    print(f"verilog: {out} ({time.perf_counter() - start:.2f} s)")
    for block, seconds in timings.items():
        entry = manifest["blocks"][block]
        print(f"  {entry['file']:<20} latency {entry['latency']!s:<5} {seconds:7.2f} s")
    if args.lint:
        start = time.perf_counter()
        try:
            results = lint_dir(out, args.blocks)
        except LintError as exc:
            print(f"lint failed:\n{exc}", file=sys.stderr)
            return 1
        for r in results:
            print(f"  lint {r.tool:<9} {Path(r.file).name:<20} {r.seconds:7.2f} s")
        print(f"lint: clean ({time.perf_counter() - start:.2f} s)")
    if args.synth:
        timings = {}
        try:
            doc = synth_dir(out, args.blocks, timeout=args.synth_timeout, timings=timings)
        except SynthError as exc:
            print(f"synthesis failed: {exc}", file=sys.stderr)
            return 1
        for block, seconds in timings.items():
            print(f"  synth {block:<10} {doc['blocks'][block]['cells']:>8} cells "
                  f"{seconds:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
