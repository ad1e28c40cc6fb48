"""Helpers shared by the ``aqua`` subcommands: option types, loading with clear errors."""

from __future__ import annotations

import argparse

from arch.config import AccelConfig, load_config
from golden.timing import best_time, single_thread  # noqa: F401 - the commands use them here

__all__ = ["console", "positive_int", "nonnegative_int", "add_config_argument", "config_from_args",
           "load_model", "best_time", "single_thread"]


def console():
    """A rich console on standard output: the terminal's width on a terminal, 200 columns when
    piped (rich's default of 80 would wrap the tables; the energy report is that wide)."""
    from rich.console import Console

    con = Console()
    return con if con.is_terminal else Console(width=200)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {value}")
    return value


def add_config_argument(parser: argparse.ArgumentParser, default: str = "small") -> None:
    parser.add_argument("--config", default=default, metavar="NAME|PATH",
                        help=f"a shipped configuration name or a .toml path "
                             f"(default: {default}; see `aqua configs`)")


def config_from_args(value: str) -> AccelConfig:
    """Load ``--config``; :class:`~arch.config.ConfigError` (or an unreadable file, reported as
    :class:`~aqua.cli.UsageError`) goes up to :func:`aqua.cli.main`."""
    from aqua.cli import UsageError

    try:
        return load_config(value)
    except OSError as exc:
        raise UsageError(f"cannot read configuration {value!r}: {exc.strerror or exc}") from None


def load_model(path: str | None):
    """The demo CNN from ``path`` (default: the shipped model), errors as ``UsageError``."""
    from aqua.cli import UsageError
    from golden.cnn import load_democnn

    try:
        return load_democnn(path)
    except (FileNotFoundError, ValueError) as exc:
        hint = " (run `aqua train` to make one)" if isinstance(exc, FileNotFoundError) else ""
        raise UsageError(f"{exc}{hint}") from None
    except OSError as exc:
        raise UsageError(f"cannot read model {path}: {exc.strerror or exc}") from None
