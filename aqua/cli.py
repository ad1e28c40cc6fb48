"""The ``aqua`` command-line tool.

Each subcommand lives in its own module (``aqua/cmd_*.py``, or any importable module) that
defines::

    HELP = "one line for `aqua --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...      # the exit status

and is listed once in :data:`COMMANDS`. A module's top level should import only the standard
library, so that ``aqua --help`` stays fast; heavy imports go inside ``run``.

A mistake of the user (a bad configuration path, invalid TOML, a configuration that
:class:`arch.config.ConfigError` refuses, an out-of-range option) is reported as a single
``error: ...`` line on standard error with exit status 2, never a traceback: commands raise
:class:`UsageError` (or let ``ConfigError`` through) and :func:`main` prints it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from contextlib import contextmanager

from arch.config import ConfigError

__all__ = ["main", "COMMANDS", "UsageError", "build_parser", "progress", "EXIT_USAGE"]

EXIT_USAGE = 2

#: subcommand -> module implementing it (see the module docstring)
COMMANDS: dict[str, str] = {
    "demo": "aqua.cmd_demo",
    "train": "aqua.cmd_train",
    "configs": "aqua.cmd_configs",
    "check-config": "aqua.cmd_check_config",
    "verilog": "aqua.cmd_verilog",
    "cosim": "aqua.cmd_cosim",
    "bench": "aqua.cmd_bench",
    "quantize": "aqua.cmd_quantize",
    "energy": "aqua.cmd_energy",
    "crop-study": "aqua.cmd_crop_study",
    "sweep": "aqua.cmd_sweep",
    "adc": "aqua.cmd_adc",
}


class UsageError(Exception):
    """A mistake in how the tool was called; printed as ``error: <message>``, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="aqua",
        description="Crossbar accelerator generator, golden model and co-simulation "
                    "(ISAAC-style tiles with AQuA activation cropping).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # One broken command must not take the others down; it reports when used.
            p = sub.add_parser(name, help=f"(unavailable: {exc})", add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(_run=_unavailable(name, exc))
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _unavailable(name: str, exc: ImportError):
    def run(args):
        raise UsageError(f"`aqua {name}` is unavailable: {exc}")
    return run


#: When standard error is not a terminal (CI logs, ``| tee``), :func:`progress` prints plain
#: lines instead of a bar: none in the first this-many seconds (quick work stays quiet), then
#: one each time another tenth of the work is done or this many seconds after the last line,
#: and a last one when the work ends.
PLAIN_PROGRESS_SECONDS = 10.0


@contextmanager
def progress(description: str, total: int | None):
    """Progress on standard error: a bar on a terminal, plain periodic lines otherwise
    (:data:`PLAIN_PROGRESS_SECONDS`), so that a long command is never silent in a log.

    Yields ``advance(n=1, total=None)``, which moves the bar ``n`` steps (and sets its total,
    if given: for loops that learn their length late).
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        with _plain_progress(description, total) as advance:
            yield advance
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1, total: int | None = None):
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, n)
        yield advance


@contextmanager
def _plain_progress(description: str, total: int | None, *, clock=None, stream=None,
                    every: float | None = None):
    """:func:`progress` without a terminal: ``description: done/total (p%), t s`` lines
    (:data:`PLAIN_PROGRESS_SECONDS`; ``every`` overrides it, ``clock`` and ``stream`` are for
    tests)."""
    import time

    clock = clock or time.monotonic
    every = PLAIN_PROGRESS_SECONDS if every is None else every
    start = clock()
    state = {"done": 0, "total": total, "tenth": 0, "last": start, "printed": None}

    def line(what: str) -> None:
        done, tot = state["done"], state["total"]
        count = f"{done}/{tot} ({100 * done / tot:.0f}%)" if tot else f"{done} steps"
        print(f"{description}: {what}{count}, {clock() - start:.0f} s",
              file=stream or sys.stderr, flush=True)
        state["printed"] = done

    def advance(n: int = 1, total: int | None = None) -> None:
        if total is not None:
            state["total"] = total
        state["done"] += n
        now, tot = clock(), state["total"]
        tenth = min(10, 10 * state["done"] // tot) if tot else 0
        new_tenth = tenth > state["tenth"]
        state["tenth"] = max(tenth, state["tenth"])
        if now - start >= every and (new_tenth or now - state["last"] >= every):
            state["last"] = now
            line("")

    yield advance
    if state["printed"] is not None and state["printed"] != state["done"]:
        line("finished, ")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Run the tool; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc))
    except RuntimeError as exc:
        from golden.kernels import KernelError       # (golden: not at the top, see above)
        if isinstance(exc, KernelError):              # no C compiler for the golden kernels
            return _fail(str(exc).splitlines()[0])
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # `aqua configs | head`
        return 0


if __name__ == "__main__":
    # Run the copy imported as ``aqua.cli`` (the one the commands import), not ``__main__``.
    from aqua.cli import main as _main
    sys.exit(_main())
