"""Step models of the single blocks: what every output port shows on every cycle.

A clocked model holds the block's registers; ``outputs()`` is what the ports show before the
next rising edge, ``edge(row)`` applies that edge for the inputs of ``row`` (a dict keyed by
port name, or ``port.field`` for struct ports). :meth:`StepModel.run` steps a model through a
whole stimulus and returns the per-cycle outputs. The combinational ADC is computed for all
cycles at once.

The models are written with the helpers of :mod:`golden.arith` (``encode_weights``/
``slice_weights``, ``input_chunks``, ``adc_convert``, ``adc_reconstruct``, ``flip_recover``,
``chunk_positions``, ``chunk_signs``, ``finalize``), :mod:`golden.requant` and the block
docstrings. Outside the contract (random flags, sums that overflow a register, a shift outside
``[shift_min, shift_max]``) they follow the block docstrings: registers wrap at their width and
the shift is clamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from arch.config import AccelConfig
from golden.arith import (adc_convert, adc_reconstruct, chunk_positions, chunk_signs, finalize,
                          flip_recover, slice_weights)

from .ports import column

__all__ = ["ModelError", "StepModel", "CrossbarModel", "ADCModel", "adc_model", "ShiftAddModel",
           "AGUModel", "Requantizer", "REQUANTIZERS", "RequantModel", "requant_value"]


class ModelError(AssertionError):
    """A step model disagrees with the golden model on stimulus that follows the contract: a
    bug of the bench (or of ``golden``), found before any simulator runs."""


def _wrap(v, bits: int, *, signed: bool):
    """``v`` reduced to a ``bits``-wide register (two's complement if ``signed``)."""
    if signed:
        half = 1 << (bits - 1)
        return (v + half) % (1 << bits) - half
    return v % (1 << bits)


def bits_of(value: int, n: int) -> torch.Tensor:
    """Bits ``0 .. n-1`` of the Python integer ``value`` (which may be wider than 64 bits)."""
    return torch.tensor([(value >> i) & 1 for i in range(n)], dtype=torch.int64)


def int_of(bits: torch.Tensor) -> int:
    """The Python integer whose bit ``i`` is ``bits[i]``."""
    return sum(int(b) << i for i, b in enumerate(bits.tolist()))


class StepModel:
    """A clocked block one rising edge at a time (subclasses define ``reset``, ``outputs``
    and ``edge``)."""

    def reset(self):
        raise NotImplementedError

    def outputs(self) -> dict:
        """What the output ports show before the next edge (struct ports: one key per field)."""
        raise NotImplementedError

    def edge(self, row: dict):
        """Apply one rising edge with the inputs of ``row``."""
        raise NotImplementedError

    def run(self, rows: list[dict]) -> dict:
        """Output key -> per-cycle values (a ``[cycles, ...]`` tensor for array ports) of the
        whole stimulus: row ``c`` shows the state before row ``c``'s edge."""
        outs: dict[str, list] = {}
        for row in rows:
            for name, value in self.outputs().items():
                outs.setdefault(name, []).append(value)
            self.edge(row)
        return {name: torch.stack(v) if isinstance(v[0], torch.Tensor) else v
                for name, v in outs.items() if v}


class CrossbarModel(StepModel):
    """``CrossbarMAC`` one clock edge at a time: cells, flags, column sums and ``insum``."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.reset()

    def reset(self):
        cfg = self.cfg
        # Every register 0: the cells hold u = 0, which is the weight weight_min.
        self.w = torch.full((cfg.rows, cfg.outputs), cfg.weight_min, dtype=torch.int64)
        self.flags = torch.zeros(cfg.cols, dtype=torch.bool)
        self.col_sum = torch.zeros(cfg.cols, dtype=torch.int64)
        self.insum = 0
        self._cells = None

    def cells(self) -> torch.Tensor:
        """``c'[r, j]``: the stored cells, complemented in flagged columns (section 1)."""
        if self._cells is None:
            cfg = self.cfg
            c = slice_weights(cfg, self.w).reshape(cfg.rows, cfg.cols)
            self._cells = torch.where(self.flags, cfg.cell_max - c, c)
        return self._cells

    def outputs(self) -> dict:
        return {"col_sum": self.col_sum, "insum": self.insum,
                "flags": int_of(self.flags.to(torch.int64))}

    def _partial(self, levels: torch.Tensor, step: int):
        cfg = self.cfg
        P, X = cfg.rows_per_cycle, cfg.xbar_steps
        if X == 1:
            lo = 0                      # a single row group: the step input is not decoded
        elif step < X:
            lo = step * P
        else:
            return torch.zeros(cfg.cols, dtype=torch.int64), 0
        lv = levels[lo:lo + P]
        return (lv.unsqueeze(1) * self.cells()[lo:lo + P]).sum(0), int(lv.sum())

    def edge(self, row: dict):
        cfg = self.cfg
        if row["rst"]:
            self.reset()
            return
        partial, pin = self._partial(torch.as_tensor(row["levels"]), row["step"])
        if row["wr__valid"]:
            r, o = row["wr__payload.row"], row["wr__payload.group"]
            S = cfg.slices
            if o < cfg.outputs:          # writes to a group >= outputs are ignored
                if r < cfg.rows:
                    self.w[r, o] = row["wr__payload.value"]
                self.flags[o * S:(o + 1) * S] = bits_of(row["wr__payload.flags"], S).bool()
                self._cells = None
        if row["clear"]:
            self.col_sum = torch.zeros(cfg.cols, dtype=torch.int64)
            self.insum = 0
        elif row["en"]:
            first = row["step"] == 0
            self.col_sum = _wrap((0 if first else self.col_sum) + partial, cfg.read_bits,
                                 signed=False)
            self.insum = _wrap((0 if first else self.insum) + pin, cfg.insum_bits, signed=False)


def adc_model(cfg: AccelConfig, col_sum: torch.Tensor, group: torch.Tensor) -> dict:
    """``ADCQuantizer`` (combinational) for every row: ``col_sum [n, cols]``, ``group [n]`` ->
    ``code``, ``rec`` ``[n, adc_columns_per_cycle]``."""
    N, G = cfg.adc_columns_per_cycle, cfg.adc_steps
    lanes = col_sum.view(-1, G, N)[torch.arange(col_sum.shape[0]), group]
    code = adc_convert(cfg, lanes)
    return {"code": code, "rec": adc_reconstruct(cfg, code)}


class ADCModel:
    """``ADCQuantizer``: combinational, so every cycle is computed at once (:func:`adc_model`)."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg

    def run(self, rows: list[dict]) -> dict:
        return adc_model(self.cfg, torch.as_tensor(column(rows, "col_sum")),
                         torch.tensor(column(rows, "group")))


class ShiftAddModel(StepModel):
    """``ShiftAdd`` one clock edge at a time: accumulators, ``xsum`` and the output register."""

    def __init__(self, cfg: AccelConfig):
        from hdl.layouts import xsum_bits
        self.cfg = cfg
        self.xsum_bits = xsum_bits(cfg)
        self.pos, self.sign = chunk_positions(cfg), chunk_signs(cfg)
        self.reset()

    def reset(self):
        O = self.cfg.outputs
        self.acc = torch.zeros(O, dtype=torch.int64)
        self.xsum = 0
        self.y = torch.zeros(O, dtype=torch.int64)

    def outputs(self) -> dict:
        return {"acc": self.acc, "xsum": self.xsum, "y": self.y}

    def edge(self, row: dict):
        cfg = self.cfg
        if row["rst"]:
            self.reset()
            return
        if row["finalize"]:
            # the contract leaves a shift outside [shift_min, shift_max] undefined; the block
            # documents that it clamps
            shift = min(max(row["layer.shift"], cfg.shift_min), cfg.shift_max)
            v = self.acc - cfg.weight_bias * self.xsum + torch.as_tensor(row["layer.bias"])
            self.y = finalize(cfg, v, shift=shift, relu_enable=bool(row["layer.relu"]))
        if row["clear"]:
            self.acc = torch.zeros(cfg.outputs, dtype=torch.int64)
            self.xsum = 0
        elif row["en"]:
            t, g = row["chunk"], row["group"]
            N, S = cfg.adc_columns_per_cycle, cfg.slices
            j = g * N + torch.arange(N)
            flags = bits_of(row["flags"], cfg.cols).bool()[j]
            y = flip_recover(cfg, torch.as_tensor(row["rec"]), row["insum"], flags)
            coef = self.sign[t] << (self.pos[t] + (j % S) * cfg.cell_bits)
            self.acc = _wrap(self.acc.index_add(0, j // S, y * coef), cfg.acc_bits, signed=True)
            if g == 0:
                xs = int(self.sign[t]) * (row["insum"] << int(self.pos[t]))
                self.xsum = _wrap(self.xsum + xs, self.xsum_bits, signed=True)


class AGUModel(StepModel):
    """``RegionCropAGU`` one clock edge at a time (its docstring is the specification):
    latched setup, row/column/linear registers, ``busy``, ``done`` and ``error``. Registers
    are as wide as in the RTL, so a rejected setup latches truncated start values."""

    def __init__(self, max_height: int = 32, max_width: int = 32):
        from hdl.layouts import agu_address_layout
        self.max_height, self.max_width = max_height, max_width
        address = agu_address_layout(max_height, max_width)
        self.row_mask, self.col_mask, self.lin_mask = (
            (1 << address[name].width) - 1 for name in ("row", "col", "linear"))
        self.reset()

    @classmethod
    def of(cls, component) -> "AGUModel":
        """The model of the ``RegionCropAGU`` ``component`` (its largest map)."""
        return cls(component.max_height, component.max_width)

    def reset(self):
        self.held = dict.fromkeys(("height", "width", "r0", "r1", "c0", "c1"), 0)
        self.row = self.col = self.linear = self.row_base = 0
        self.busy = self.done = self.error = 0

    @property
    def last(self) -> int:
        return int(self.row + 1 == self.held["r1"] and self.col + 1 == self.held["c1"])

    def outputs(self) -> dict:
        h = self.held
        return {"addr__valid": self.busy, "addr__payload.row": self.row,
                "addr__payload.col": self.col, "addr__payload.linear": self.linear,
                "addr__payload.first": int(self.row == h["r0"] and self.col == h["c0"]),
                "addr__payload.last": self.last,
                "busy": self.busy, "done": self.done, "error": self.error}

    def bad(self, s: dict) -> bool:
        return not (0 < s["height"] <= self.max_height and 0 < s["width"] <= self.max_width
                    and s["r0"] < s["r1"] <= s["height"] and s["c0"] < s["c1"] <= s["width"])

    def edge(self, row: dict):
        if row["rst"]:
            self.reset()
            return
        self.done = 0
        if not self.busy and row["start"]:
            s = {f: row[f"setup.{f}"] for f in self.held}
            bad = int(self.bad(s))
            self.held = s
            self.row, self.col = s["r0"] & self.row_mask, s["c0"] & self.col_mask
            self.linear = self.row_base = (s["r0"] * s["width"] + s["c0"]) & self.lin_mask
            self.busy, self.error, self.done = 1 - bad, bad, bad
        elif self.busy and row["addr__ready"]:
            h = self.held
            if self.last:
                self.busy, self.done = 0, 1
            elif self.col + 1 == h["c1"]:
                self.row = (self.row + 1) & self.row_mask
                self.col = h["c0"] & self.col_mask
                self.row_base = (self.row_base + h["width"]) & self.lin_mask
                self.linear = self.row_base
            else:
                self.col = (self.col + 1) & self.col_mask
                self.linear = (self.linear + 1) & self.lin_mask


# -- requantizers ------------------------------------------------------------------------------

def _shift_value(cfg: AccelConfig, row: dict) -> int:
    from golden.requant import shift_round_requant
    return int(shift_round_requant(torch.tensor([row["acc"]]), row["shift"],
                                   cfg.output_bits)[0])


def _mult_value(cfg: AccelConfig, row: dict) -> int:
    from golden.requant import multiplier_requant
    return int(multiplier_requant(torch.tensor([row["acc"]]), row["multiplier"], row["shift"],
                                  cfg.output_bits)[0])


def _shift_setting(cfg: AccelConfig, rng) -> dict:
    return {"shift": rng.randint(0, cfg.acc_bits)}


def _mult_setting(cfg: AccelConfig, rng) -> dict:
    from golden.requant import quantize_multiplier
    m0, e = quantize_multiplier(rng.uniform(1e-6, 0.999))
    return {"multiplier": m0 if rng.random() < 0.9 else rng.randint(0, 7),
            "shift": min(e, cfg.acc_bits)}


@dataclass(frozen=True)
class Requantizer:
    """One requantizer of ``hdl/requant.py``: its setting ports (held by the host between
    accumulators), what it registers for a row of inputs (``golden.requant``) and a random
    setting for the random stimulus."""
    name: str
    settings: tuple[str, ...]
    value: Callable[[AccelConfig, dict], int]
    random_setting: Callable[[AccelConfig, object], dict]


#: The two requantizers (``aqua quantize`` compares them), by block name.
REQUANTIZERS: dict[str, Requantizer] = {r.name: r for r in (
    Requantizer("requant_shift", ("shift",), _shift_value, _shift_setting),
    Requantizer("requant_mult", ("multiplier", "shift"), _mult_value, _mult_setting),
)}


def requant_value(cfg: AccelConfig, block: str, row: dict) -> int:
    """What requantizer ``block`` registers for the inputs of ``row`` (``golden.requant``)."""
    return REQUANTIZERS[block].value(cfg, row)


class RequantModel(StepModel):
    """A requantizer one clock edge at a time: the output register ``y``."""

    def __init__(self, cfg: AccelConfig, block: str | Requantizer):
        self.cfg = cfg
        self.requantizer = block if isinstance(block, Requantizer) else REQUANTIZERS[block]
        self.reset()

    def reset(self):
        self.y = 0

    def outputs(self) -> dict:
        return {"y": self.y}

    def edge(self, row: dict):
        self.y = 0 if row["rst"] else self.requantizer.value(self.cfg, row)
