"""Helpers shared by the ``aqua`` subcommands: option types, loading with clear errors."""

from __future__ import annotations

import argparse
import errno
import os
import tempfile
from pathlib import Path

from arch.config import AccelConfig, load_config
from golden.timing import best_time, single_thread  # noqa: F401 - the commands use them here

__all__ = ["console", "positive_int", "nonnegative_int", "seed_int", "add_config_argument",
           "config_from_args", "load_model", "best_time", "single_thread", "check_output_dir",
           "check_output_file", "atomic_write", "INT_LIMIT", "SEED_LIMIT",
           "add_model_arguments", "model_from_args", "ModelChoice", "MODEL_HELP", "WEIGHTS_HELP",
           "named_model_spec", "SIZE_LIMITS", "percentage_points", "add_bound_argument",
           "add_json_argument", "check_test_images"]

#: The largest value any integer option takes: far above every sensible count (images,
#: epochs, cycles), small enough that no library behind an option overflows on it.
INT_LIMIT = 10 ** 9
#: Seeds are 32-bit unsigned (numpy's ``default_rng``, torch and ``random`` all take them).
SEED_LIMIT = 2 ** 32 - 1


def console():
    """A rich console on standard output: the terminal's width on a terminal, 200 columns when
    piped (rich's default of 80 would wrap the tables; the energy report is that wide)."""
    from rich.console import Console

    con = Console()
    return con if con.is_terminal else Console(width=200)


def _bounded_int(text: str, lo: int, hi: int, what: str, too_big: str | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text[:40]!r}") from None
    if not lo <= value <= hi:
        shown = str(value) if len(str(value)) <= 20 else f"{str(value)[:20]}..."
        what = too_big if too_big and value > hi else what
        raise argparse.ArgumentTypeError(f"must be {what}, not {shown}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer in [1, :data:`INT_LIMIT`]."""
    return _bounded_int(text, 1, INT_LIMIT, "a positive integer",
                        f"a positive integer of at most {INT_LIMIT:,}")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer in [0, :data:`INT_LIMIT`]."""
    return _bounded_int(text, 0, INT_LIMIT, "an integer >= 0",
                        f"an integer >= 0 of at most {INT_LIMIT:,}")


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2**32 - 1]."""
    return _bounded_int(text, 0, SEED_LIMIT, f"a seed in [0, {SEED_LIMIT}]")


def percentage_points(text: str) -> float:
    """argparse type: percentage points in [0, 100)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of percentage points, "
                                         f"not {text[:40]!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"must be in [0, 100) percentage points, not {value}")
    return value


# -- options that several commands take in the same words -------------------------------------

def add_bound_argument(parser: argparse.ArgumentParser) -> None:
    """``--bound PP``: the allowed top-1 loss against float (``aqua adc``, ``aqua quantize``)."""
    parser.add_argument("--bound", type=percentage_points, default=1.0, metavar="PP",
                        help="allowed top-1 loss against float, percentage points (default: 1)")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: also write the report as JSON (check it with
    :func:`check_output_file` before the work starts)."""
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the report as JSON")


def check_test_images(count: int, option: str = "--images") -> None:
    """Refuse (:class:`~aqua.cli.UsageError`) more than the test split's images."""
    from golden.data import TEST_PER_CLASS

    n_test = 10 * TEST_PER_CLASS
    if count > n_test:
        raise _usage(f"{option} must be at most {n_test} (the test split), not {count}")


# -- output paths ---------------------------------------------------------------------------
# Every command that writes checks its output folder or file *before* the work starts
# (check_output_dir / check_output_file: one message, nothing left behind), and writes each
# report atomically (atomic_write: a temporary file in the same folder, then os.replace), so a
# failure leaves neither a half-written report nor an empty folder.

def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _usage(message: str):
    from aqua.cli import UsageError
    return UsageError(message)


def _existing_ancestor(start: Path, path: Path, what: str) -> Path:
    """The nearest existing ancestor of ``start`` (itself included), which must be a folder;
    messages name ``path``, the output the user gave."""
    p = start
    while True:
        try:
            exists = p.exists()
        except (OSError, ValueError) as exc:
            raise _usage(f"cannot write {what} {path}: "
                         f"{_why(exc) if isinstance(exc, OSError) else exc}") from None
        if exists:
            break
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        where = "it" if p == path else str(p)
        raise _usage(f"cannot write {what} {path}: {where} is a file, not a folder")
    return p


def _probe_dir(folder: Path, path: Path, what: str) -> None:
    """Create and delete a temporary file in ``folder``: the real test of writability (root
    ignores permission bits, read-only mounts and /proc do not)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".aqua-probe-", dir=folder)
    except OSError as exc:
        raise _usage(f"cannot write {what} {path}: {folder} is not writable "
                     f"({_why(exc)})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_dir(path, what: str = "output folder") -> Path:
    """Raise :class:`~aqua.cli.UsageError` now, with one line, unless ``path`` is (or can be
    created as) a folder this process can write into. Creates nothing that stays: a missing
    folder is not made here (the command makes it when it writes), its nearest existing
    ancestor is probed instead."""
    path = Path(path)
    _probe_dir(_existing_ancestor(path, path, what), path, what)
    return path


def check_output_file(path, what: str = "output file") -> Path:
    """Like :func:`check_output_dir` for a file: ``path`` must not be a folder and its folder
    must be writable (the file is replaced atomically, so its own mode does not matter)."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError) as exc:
        raise _usage(f"cannot write {what} {path}: "
                     f"{_why(exc) if isinstance(exc, OSError) else exc}") from None
    if is_dir or str(path).endswith(os.sep):
        raise _usage(f"cannot write {what} {path}: it is a folder, not a file")
    _probe_dir(_existing_ancestor(path.parent, path, what), path, what)
    return path


def atomic_write(path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` all at once: a temporary file in the same folder, then
    ``os.replace``; the folder is created if needed. On failure nothing is left behind and
    :class:`~aqua.cli.UsageError` says why in one line."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        why = "it is a folder, not a file" if exc.errno == errno.EISDIR else _why(exc)
        raise _usage(f"cannot write {path}: {why}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


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


# -- --model: one option, one loader, one set of messages for every command -------------------

#: ``--model`` help, the same words in ``aqua demo``, ``quantize``, ``energy`` and ``crop-study``
MODEL_HELP = ("democnn (the shipped demo CNN), zoo:<name> (zoo:tinyresnet, zoo:resnet18, "
              "zoo:vgg11_bn, zoo:mobilenet_v2), torchvision:<name> (resnet18, vgg11_bn, "
              "mobilenet_v2: built from this project's re-implementation of torchvision's "
              "model, random seeded weights or --weights in torchvision's key names), an ONNX "
              "file (PATH.onnx), module:factory (with --weights) or a demo CNN state dict "
              "written by `aqua train` (PATH.pt)")
#: ``--weights`` help, the same words wherever ``--model`` is
WEIGHTS_HELP = ("state dict for --model module:factory or torchvision:<name> (torchvision's "
                "key names)")


def named_model_spec(spec: str | None) -> bool:
    """``--model`` names a model :func:`golden.graph.load_model` builds or reads itself:
    ``zoo:<name>``, ``torchvision:<name>`` or ``PATH.onnx`` (not a ``module:factory``)."""
    return spec is not None and (spec.startswith(("zoo:", "torchvision:"))
                                 or Path(spec).suffix.lower() == ".onnx")
#: ``--size``: the smallest and largest image side (the shipped digits are 32x32)
SIZE_LIMITS = (8, 512)


class ModelChoice:
    """What ``--model`` (``--weights``, ``--size``) named, loaded and checked.

    ``spec`` is the option as given (``None``: not given); ``name`` labels reports;
    ``module`` is the float ``nn.Module`` (eval mode); ``democnn`` says it is a
    :class:`golden.cnn.DemoCNN` (shipped or a state dict); ``size`` is the side of the square
    images it is fed (the shipped 32x32 digits, resized when ``--size`` says so)."""

    def __init__(self, spec, name, module, democnn, size):
        self.spec, self.name, self.module, self.democnn, self.size = \
            spec, name, module, democnn, size

    @property
    def graph_path(self) -> bool:
        """True when ``--model`` was given: the command takes the path of every model (lowered
        to a graph, fixed point on the whole network); False for the command's historic
        default, the shipped demo CNN's own reports."""
        return self.spec is not None


def add_model_arguments(parser: argparse.ArgumentParser, *, default_text: str) -> None:
    """``--model``, ``--weights`` and ``--size`` (:func:`model_from_args` reads them)."""
    g = parser.add_argument_group("the model (the same option in demo, quantize, energy and "
                                  "crop-study)")
    g.add_argument("--model", default=None, metavar="SPEC",
                   help=f"{MODEL_HELP}; {default_text}")
    g.add_argument("--weights", default=None, metavar="FILE", help=WEIGHTS_HELP)
    g.add_argument("--size", type=positive_int, default=None, metavar="PIXELS",
                   help=f"feed the model the shipped digits resized to PIXELS x PIXELS "
                        f"(default 32, as shipped; {SIZE_LIMITS[0]}..{SIZE_LIMITS[1]})")


def model_from_args(args) -> ModelChoice:
    """The model of ``--model`` / ``--weights`` / ``--size``, checked cheaply (loaded, and a
    float forward pass on one image of the right shape); every refusal one
    :class:`~aqua.cli.UsageError` line. Models are fed the shipped digits (one channel, ten
    classes): a zoo model is built for them."""
    from aqua.cli import UsageError

    spec, weights = args.model, getattr(args, "weights", None)
    size = getattr(args, "size", None)
    if size is not None and not SIZE_LIMITS[0] <= size <= SIZE_LIMITS[1]:
        raise UsageError(f"--size must lie in [{SIZE_LIMITS[0]}, {SIZE_LIMITS[1]}], not {size}")
    size = 32 if size is None else size
    named = named_model_spec(spec)
    module_spec = spec is not None and ":" in spec and not named and not Path(spec).exists()
    torchvision = named and spec.startswith("torchvision:")
    if weights is not None and not (module_spec or torchvision):
        raise UsageError(f"--weights goes with --model module:factory, not "
                         f"{spec or 'the default model'} (or with torchvision:<name>)")
    if spec is None or spec == "democnn":
        model = load_model(None)
        return ModelChoice(spec, "demo CNN", model, True, size)
    if named:
        from golden.graph import load_model as load_named
        kwargs = {} if Path(spec).suffix.lower() == ".onnx" else \
            dict(num_classes=10, in_channels=1, **({"weights": weights} if torchvision else {}))
        try:
            model = load_named(spec, **kwargs)
        except ValueError as exc:
            raise UsageError(f"--model: {exc}") from None
        return _probed(ModelChoice(spec, spec, model, False, size))
    if module_spec:
        from aqua.userdata import load_user_model
        model, _ = load_user_model(spec, weights)
        return _probed(ModelChoice(spec, f"user model {spec}", model, False, size))
    from golden.graph import _is_torchscript
    if Path(spec).is_file() and _is_torchscript(Path(spec)):
        raise UsageError(f"--model {spec}: a TorchScript model cannot take the golden "
                         f"fixed-point path (its graph is not lowered); give it as "
                         f"module:factory with --weights")
    model = load_model(spec)
    return ModelChoice(spec, f"demo CNN {spec}", model, True, size)


def _probed(choice: ModelChoice) -> ModelChoice:
    """``choice`` once its model took one ``[1, 1, size, size]`` image and gave ten logits."""
    import torch

    from aqua.cli import UsageError

    s = choice.size
    try:
        with torch.no_grad():
            out = choice.module(torch.zeros(1, 1, s, s))
    except Exception as exc:  # noqa: BLE001 - whatever a user's model raises on bad input
        from aqua.userdata import _short
        raise UsageError(f"--model {choice.spec}: the model does not take the shipped digits "
                         f"[N, 1, {s}, {s}] ({_short(exc, 200)}); check --size") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, 10):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"--model {choice.spec}: the model must return 10 logits [N, 10] "
                         f"for the shipped digits, not {shape}")
    return choice
