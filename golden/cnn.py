"""The demo CNN: a small float network trained on :mod:`golden.data`'s cluttered digits.

Four 3x3 convolutions with ReLU, global average pooling and one linear classifier::

    conv0  1 -> 8,  stride 1, pad 1   32x32 -> 32x32
    conv1  8 -> 16, stride 2, pad 1   32x32 -> 16x16
    conv2 16 -> 16, stride 1, pad 1   16x16 -> 16x16
    conv3 16 -> 32, stride 2, pad 1   16x16 ->  8x8
    mean over 8x8, linear 32 -> 10

No batch normalisation, so that every layer maps one-to-one onto a crossbar layer (weights and a
bias) when :mod:`golden.fixedpoint` quantizes it. Training is deterministic on the CPU: same
seed, same torch build and same CPU kind give the same weights.

A trained state dict is shipped in the package (``aqua/data/democnn.pt``, the default of
:func:`load_democnn`); :func:`train_democnn` makes a new one, which the command-line tool
(``aqua train``) writes to ``build/models/democnn.pt``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from arch.geometry import ConvGeometry
from golden.data import cluttered_digits, split_indices

__all__ = ["DemoConv", "CONV_SPECS", "DemoCNN", "TrainResult", "train_democnn", "evaluate",
           "load_democnn", "save_democnn", "SHIPPED_MODEL", "BUILD_MODEL", "TRAIN_SEED",
           "TRAIN_EPOCHS"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO_ROOT / "aqua" / "data" / "democnn.pt"   #: trained weights shipped in git
BUILD_MODEL = REPO_ROOT / "build" / "models" / "democnn.pt"  #: where ``aqua train`` writes
TRAIN_SEED = 0
TRAIN_EPOCHS = 120
TRAIN_THREADS = 1
WEIGHT_DECAY = 5e-4
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class DemoConv:
    """One convolution of the demo CNN: its :class:`~arch.geometry.ConvGeometry` (on the map
    it sees in the network) and whether a ReLU follows (every conv's does)."""
    geometry: ConvGeometry
    relu: bool = True


CONV_SPECS: tuple[DemoConv, ...] = (
    DemoConv(ConvGeometry(1, 8, kernel=3, stride=1, padding=1, height=32, width=32)),
    DemoConv(ConvGeometry(8, 16, kernel=3, stride=2, padding=1, height=32, width=32)),
    DemoConv(ConvGeometry(16, 16, kernel=3, stride=1, padding=1, height=16, width=16)),
    DemoConv(ConvGeometry(16, 32, kernel=3, stride=2, padding=1, height=16, width=16)),
)
CLASSES = 10


class DemoCNN(nn.Module):
    """The float demo network: ``convs`` (a ``ModuleList`` of :data:`CONV_SPECS`), ReLU after
    each, global average pooling and ``fc`` (``Linear(32, 10)``)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(g.in_channels, g.out_channels, g.kernel, stride=g.stride, padding=g.padding)
            for g in (s.geometry for s in CONV_SPECS))
        self.fc = nn.Linear(CONV_SPECS[-1].geometry.out_channels, CLASSES)

    def features(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The activations after conv layer ``upto - 1`` (its ReLU included), i.e. the input of
        conv layer ``upto``; ``upto=None`` runs all conv layers."""
        n = len(self.convs) if upto is None else upto
        for spec, conv in zip(CONV_SPECS[:n], self.convs[:n]):
            x = conv(x)
            if spec.relu:
                x = torch.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_democnn` returns."""
    model: DemoCNN
    test_accuracy: float
    seconds: float
    steps: int


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` on images ``x`` with labels ``y`` (a fraction in [0, 1])."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(len(x), 1)


def train_democnn(*, epochs: int = TRAIN_EPOCHS, seed: int = TRAIN_SEED, batch: int = 64,
                  lr: float = 3e-3, max_steps: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train the demo CNN from scratch, deterministically, on the CPU.

    Every epoch draws a fresh rendering of the training digits
    (``cluttered_digits("train", seed=1000 * seed + epoch)``), which acts as data augmentation.
    AdamW (weight decay :data:`WEIGHT_DECAY`) with a cosine learning-rate decay, cross-entropy
    loss with label smoothing :data:`LABEL_SMOOTHING`, one torch thread (so that the result
    does not depend on the machine's core count).

    Parameters
    ----------
    epochs, seed, batch, lr
        The usual; the defaults are those of the shipped model.
    max_steps : int, optional
        Stop after this many optimiser steps (for tests that only check the loop runs).
    progress : callable, optional
        Called as ``progress(step, total_steps)`` after every step.

    Returns
    -------
    TrainResult
        The model (in eval mode), its accuracy on the test split, wall time and steps taken.
    """
    return train_on_digits(DemoCNN, epochs=epochs, seed=seed, batch=batch, lr=lr,
                           max_steps=max_steps, progress=progress)


def train_on_digits(factory: Callable[[], nn.Module], *, epochs: int, seed: int, batch: int,
                    lr: float, max_steps: int | None = None, data_seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train ``factory()`` on the cluttered digits, deterministically, with one torch thread:
    the one training loop of the shipped models (the demo CNN, ``golden.zoo``'s tiny ResNet).

    Epoch ``e`` draws a fresh rendering of the training digits
    (``cluttered_digits("train", seed=data_seed + 1000 * seed + e)``); AdamW (weight decay
    :data:`WEIGHT_DECAY`), cosine learning-rate decay, cross-entropy with label smoothing
    :data:`LABEL_SMOOTHING`. The model is built after ``torch.manual_seed(seed)``.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(factory, epochs, seed, batch, lr, max_steps, data_seed, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(factory, epochs, seed, batch, lr, max_steps, data_seed, progress) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = factory()
    n_train = 2 * len(split_indices("train"))    # two renderings per digit and epoch
    per_epoch = -(-n_train // batch)
    total = epochs * per_epoch if max_steps is None else min(max_steps, epochs * per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    step = 0
    for epoch in range(epochs):
        if step >= total:
            break
        x, y = cluttered_digits("train", seed=data_seed + 1000 * seed + epoch)
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            if step >= total:
                break
            sel = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[sel]), y[sel])
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total)
    xt, yt = cluttered_digits("test")
    acc = evaluate(model, xt, yt)
    model.eval()
    return TrainResult(model, acc, time.perf_counter() - start, step)


def save_democnn(model: DemoCNN, path: str | Path = BUILD_MODEL) -> Path:
    """Write ``model``'s state dict to ``path`` (atomically, creating folders); return it."""
    return save_state_dict(model, path)


def save_state_dict(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict to ``path`` atomically (a temporary file, then a rename;
    folders created), contiguous tensors so the file does not depend on views; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)
    return path


def _first_line(exc: BaseException, limit: int = 120) -> str:
    """``Kind: first line of the message``, shortened: torch's load errors run to pages."""
    lines = str(exc).strip().splitlines()
    text = f"{exc.__class__.__name__}: {lines[0] if lines else ''}".strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_democnn(path: str | Path | None = None) -> DemoCNN:
    """The trained demo CNN, in eval mode.

    Parameters
    ----------
    path : str or Path, optional
        A state dict written by :func:`save_democnn`. Default: the shipped model.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a state dict of :class:`DemoCNN`.
    """
    path = Path(SHIPPED_MODEL if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a corrupt or foreign file
        raise ValueError(f"{path}: not a saved demo CNN ({_first_line(exc)})") from None
    model = DemoCNN()
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a state dict of the demo CNN ({_first_line(exc)})") \
            from None
    model.eval()
    return model
