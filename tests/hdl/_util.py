"""Helpers shared by the Amaranth-simulator tests of ``hdl/``."""

import os
import random

import torch
from amaranth.lib import data, enum

from arch.config import AccelConfig, load_config
from golden.arith import flag_words

SMALL_CONFIGS = ("small", "small_clip", "small_drop", "small_signed")


def seed_for(test_name: str) -> int:
    """The seed of a randomised test: ``AQUA_SEED`` if set, else one derived from the test name
    (stable across runs). Tests put it in every failure message."""
    base = int(os.environ.get("AQUA_SEED", "20240611"))
    return base + sum(map(ord, test_name))


def to_py(value):
    """A ``data.Const`` (as ``ctx.get`` returns for a view) as nested dicts, lists and ints."""
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [to_py(value[k]) for k in range(layout.length)]
        return {name: to_py(value[name]) for name, _ in layout}
    if isinstance(value, enum.Enum):
        return value.value
    return int(value)


def random_weights(cfg: AccelConfig, rng: random.Random) -> torch.Tensor:
    """``[rows, outputs]`` weights over the full range, with a row of each extreme."""
    w = torch.tensor([[rng.randint(cfg.weight_min, cfg.weight_max) for _ in range(cfg.outputs)]
                      for _ in range(cfg.rows)], dtype=torch.int64)
    w[0, :] = cfg.weight_max
    if cfg.rows > 1:
        w[1, :] = cfg.weight_min
    return w


def extreme_weights(cfg: AccelConfig, rng: random.Random) -> torch.Tensor:
    """Weights that push the column sums and accumulators to their limits."""
    kind = rng.choice(["max", "min", "alt"])
    if kind == "max":
        return torch.full((cfg.rows, cfg.outputs), cfg.weight_max, dtype=torch.int64)
    if kind == "min":
        return torch.full((cfg.rows, cfg.outputs), cfg.weight_min, dtype=torch.int64)
    w = torch.full((cfg.rows, cfg.outputs), cfg.weight_min, dtype=torch.int64)
    w[0::2] = cfg.weight_max
    return w


def random_inputs(cfg: AccelConfig, rng: random.Random, vectors: int) -> torch.Tensor:
    """``[vectors, rows]`` inputs over the full range; the first three vectors are all-maximum,
    all-minimum and zero."""
    rows = [[cfg.input_max] * cfg.rows, [cfg.input_min] * cfg.rows, [0] * cfg.rows]
    rows += [[rng.randint(cfg.input_min, cfg.input_max) for _ in range(cfg.rows)]
             for _ in range(max(0, vectors - 3))]
    return torch.tensor(rows[:vectors], dtype=torch.int64)


def weight_writes(cfg: AccelConfig, w: torch.Tensor) -> list[dict]:
    """The ``wr`` payloads that program ``w [rows, outputs]``, with the flags of section 1."""
    flags = flag_words(cfg, w)
    return [{"row": r, "group": o, "value": int(w[r, o]), "flags": flags[o]}
            for r in range(cfg.rows) for o in range(cfg.outputs)]


def config(name: str) -> AccelConfig:
    return load_config(name)
