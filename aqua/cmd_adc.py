"""``aqua adc``: accuracy against ADC bits, naive vs ADC-aware quantization (``golden.qadc``).

From a base configuration (``--config``, default ``small``) the ADC is replaced by a lossless
one and by each ``--modes`` ADC from one bit narrower than lossless down to ``--min-bits``;
every ``--models`` network is quantized plainly and ADC-aware and its top-1 on the test digits
is compared with float. A point whose ADC-aware top-1 is more than ``--bound`` below float is
reported as a configuration that cannot hold the network's accuracy.
"""

from __future__ import annotations

import argparse

from aqua._cmdutil import (add_bound_argument, add_config_argument, add_json_argument,
                           positive_int)

HELP = ("accuracy against ADC bits (lossless, drop_lsb, clip): float vs naive vs ADC-aware "
        "quantization, and which ADCs cannot hold a network's accuracy")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--models", default="democnn,zoo:tinyresnet", metavar="LIST",
                   help="comma-separated models: democnn, zoo:<name>, module:factory "
                        "(default: democnn,zoo:tinyresnet)")
    p.add_argument("--modes", default="drop_lsb,clip", metavar="LIST",
                   help="lossy ADC modes to sweep (default: drop_lsb,clip)")
    p.add_argument("--min-bits", type=positive_int, default=3, metavar="A",
                   help="the narrowest ADC (default: 3)")
    p.add_argument("--images", type=positive_int, default=120, metavar="N",
                   help="test images for top-1: the first N of the test split (default: 120)")
    p.add_argument("--search-images", type=positive_int, default=64, metavar="N",
                   help="calibration images the ADC-aware search measures on (default: 64)")
    add_bound_argument(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import (atomic_write, check_output_file, check_test_images,
                               config_from_args, console)
    from aqua.cli import UsageError

    if args.json:
        check_output_file(args.json, "--json")
    base = config_from_args(args.config)
    if args.min_bits > base.read_bits:
        raise UsageError(f"--min-bits must be at most {base.read_bits} (the lossless ADC width "
                         f"of '{base.name}'), not {args.min_bits}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("drop_lsb", "clip")]
    if bad or not modes:
        raise UsageError(f"--modes takes drop_lsb and/or clip, not {args.modes!r}")
    specs = [m.strip() for m in args.models.split(",") if m.strip()]
    if not specs:
        raise UsageError("--models names no model")
    check_test_images(args.images)
    import json

    from golden.data import cluttered_digits

    from golden.fixedpoint import CALIBRATION_IMAGES, calibration_images
    from golden.qadc import adc_sweep

    if args.search_images > CALIBRATION_IMAGES:
        raise UsageError(f"--search-images must be at most {CALIBRATION_IMAGES}, not "
                         f"{args.search_images}")
    cal = calibration_images()
    x, y = cluttered_digits("test")
    con = console()
    try:
        report = adc_sweep(specs, base, x[:args.images], y[:args.images], cal, modes=modes,
                           min_bits=args.min_bits, bound=args.bound / 100,
                           search_images=args.search_images, say=con.print)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    con.print(report.table(), highlight=False, markup=False)
    if args.json:
        atomic_write(args.json, json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
        con.print(f"wrote {args.json}")
    return 0
