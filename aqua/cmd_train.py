"""``aqua train``: train the demo CNN from scratch and save its state dict."""

from __future__ import annotations

import argparse

from aqua._cmdutil import positive_int, seed_int

HELP = "train the demo CNN (deterministic, CPU) and write build/models/democnn.pt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are resolved in run() so that building the parser does not import torch.
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="training epochs (default: those of the shipped model)")
    p.add_argument("--seed", type=seed_int, default=None,
                   help="training seed (default: that of the shipped model)")
    p.add_argument("--output", default=None, metavar="PATH",
                   help="where to write the state dict (default: build/models/democnn.pt)")


def run(args: argparse.Namespace) -> int:
    from aqua._cmdutil import check_output_file
    from aqua.cli import UsageError, progress
    from golden.cnn import BUILD_MODEL
    from golden.demo import train_and_save

    check_output_file(BUILD_MODEL if args.output is None else args.output, "--output")

    output = BUILD_MODEL if args.output is None else args.output

    from pathlib import Path

    output = Path(output)
    try:  # fail before a minute of training, not after
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    if output.is_dir():
        raise UsageError(f"cannot write {output}: it is a directory")
    with progress("training the demo CNN", None) as advance:
        def step(done, total):
            advance(total=total)
        try:
            report = train_and_save(output, epochs=args.epochs, seed=args.seed,
                                    progress=step)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"trained {report.steps} steps in {report.seconds:.1f} s; "
          f"test accuracy {100 * report.test_accuracy:.1f} %")
    print(f"wrote {report.path}; use it with `aqua demo --model {report.path}`")
    return 0
