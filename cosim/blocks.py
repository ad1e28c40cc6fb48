# amaranth: UnusedElaboratable=no
"""Co-simulation of the single blocks ``CrossbarMAC``, ``ADCQuantizer`` and ``ShiftAdd``.

The parent process (pytest or ``aqua cosim``) builds, for one configuration and seed, a *vector
table* with one row per clock cycle: the packed integer driven on every input port, and the
packed integer expected on every output port at the sample point (the read-only phase after the
falling edge at which that row's inputs were driven: combinational outputs show this row's
inputs, registers the state after the preceding rising edge). The generic bench
``cosim.tb_vectors`` replays the table and compares every output port on every cycle, so the
per-cycle Python in the simulator process is a handful of handle reads and writes.

The expected values come from small step models of the blocks, written with the helpers of
:mod:`golden.arith` (``encode_weights``/``slice_weights``, ``input_chunks``, ``adc_convert``,
``adc_reconstruct``, ``flip_recover``, ``chunk_positions``, ``chunk_signs``, ``finalize``).
Outside the contract (random flags, sums that overflow a register, a shift outside
``[shift_min, shift_max]``) the models follow the block docstrings: registers wrap at their
width and the shift is clamped. Stimulus that does follow the contract is additionally checked
at known cycles against the golden model computed in one piece, so a step model cannot quietly
drift from it: after a full weight programming sequence the crossbar's flags are those of
``encode_weights`` and, after the steps of a chunk, its column sums are the reads
``Σ_r x_t[r] c'[r, j]``; after the ADC steps of a vector the shift-add's ``acc``, ``xsum`` and
output are those of ``golden.trace.datapath_trace``.

The region-crop AGU (``agu``) has its own step model, :class:`AGUModel`, and stimulus
(all 16 crop vectors on several map shapes, fractions and scaled windows, back-pressure and
invalid setups); while the stimulus is generated, every run's transferred addresses are
checked against ``golden.crop.agu_sequence`` and, with an always-ready consumer, the run length
against ``golden.crop.agu_cycles``.

Port names are those of the generated Verilog: a struct or array member is one vector named
like the member (``col_sum``, ``layer``); a stream member ``wr`` is ``wr__valid`` and
``wr__payload``; sequential blocks also have ``clk`` and ``rst`` (synchronous reset of every
register to 0).
"""

from __future__ import annotations

import random
import time

import torch
from amaranth.hdl import Const, Shape, ValueCastable
from amaranth.lib import data, wiring

from arch.config import AccelConfig
from golden.arith import (adc_convert, adc_reconstruct, chunk_positions, chunk_signs,
                          encode_weights, finalize, flip_recover, input_chunks, slice_weights)

from .bits import pack_rows, unpack
from .run import CosimRun, _config_path, run_checked, save_stimulus, verilog_sources

__all__ = ["BLOCK_NAMES", "BENCH_BLOCKS", "REQUANT_BLOCKS", "AGUModel", "RequantModel",
           "ports", "port_fields", "pack_port", "build_table", "table_from_rows", "run_block",
           "requant_rows", "requant_value",
           "CrossbarModel", "ShiftAddModel", "adc_model", "ModelError"]

#: Blocks this bench covers, and whether each has a clock (and a synchronous reset).
BLOCK_NAMES = ("crossbar", "adc", "shiftadd")
#: The two requantizers of ``hdl/requant.py`` (``aqua quantize`` compares them).
REQUANT_BLOCKS = ("requant_shift", "requant_mult")
#: Every block the table bench can run: the datapath blocks, the region-crop AGU and the
#: requantizers.
BENCH_BLOCKS = (*BLOCK_NAMES, "agu", *REQUANT_BLOCKS)
CLOCKED = {"crossbar": True, "adc": False, "shiftadd": True, "agu": True,
           "requant_shift": True, "requant_mult": True}


class ModelError(AssertionError):
    """A step model disagrees with the golden model on stimulus that follows the contract: a
    bug of this file (or of ``golden``), found before any simulator runs."""


# -- ports and packing -------------------------------------------------------------------------

def ports(cfg: AccelConfig, block: str) -> dict[str, tuple[str, object]]:
    """Verilog port name -> (``"input"``/``"output"``, shape) of ``block``, from the
    component's signature (constant members such as ``wr.ready`` are not ports); ``rst`` is
    added for clocked blocks (``clk`` is driven by the bench, not by the table)."""
    from hdl import BLOCKS
    if block not in BENCH_BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BENCH_BLOCKS)}, not {block!r}")
    component = BLOCKS[block](cfg)
    out = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            continue
        direction = "input" if member.flow == wiring.In else "output"
        out["__".join(map(str, path))] = (direction, member.shape)
    if CLOCKED[block]:
        out["rst"] = ("input", 1)
    return out


def pack_port(shape, values) -> list[int]:
    """Packed integers of one port for every cycle.

    ``values`` is, for a struct layout, ``{field: [cycles, ...]}``; for an array layout a
    ``[cycles, length]`` tensor; for a plain shape a sequence of Python integers (negative
    values in two's complement)."""
    if isinstance(shape, data.StructLayout):
        return pack_rows(shape, {k: torch.as_tensor(v, dtype=torch.int64)
                                 for k, v in values.items()})
    if isinstance(shape, data.Layout):
        return pack_rows(data.StructLayout({"_": shape}),
                         {"_": torch.as_tensor(values, dtype=torch.int64)})
    mask = (1 << Shape.cast(shape).width) - 1
    return [int(v) & mask for v in values]


def port_fields(name: str, shape, value: int) -> dict[str, int]:
    """Every field of the packed ``value`` of port ``name``, as ``{"col_sum[3]": v, ...}``
    (signed fields sign-extended; a plain port is one field named like the port)."""
    if isinstance(shape, data.Layout):
        return {(f"{name}{path}" if path.startswith("[") else f"{name}.{path}"): v
                for path, v in unpack(shape, value).items()}
    return unpack(data.StructLayout({name: shape}), value)


def _wrap(v, bits: int, *, signed: bool):
    """``v`` reduced to a ``bits``-wide register (two's complement if ``signed``)."""
    if signed:
        half = 1 << (bits - 1)
        return (v + half) % (1 << bits) - half
    return v % (1 << bits)


def _bits_of(value: int, n: int) -> torch.Tensor:
    """Bits ``0 .. n-1`` of the Python integer ``value`` (which may be wider than 64 bits)."""
    return torch.tensor([(value >> i) & 1 for i in range(n)], dtype=torch.int64)


def _int_of(bits: torch.Tensor) -> int:
    return sum(int(b) << i for i, b in enumerate(bits.tolist()))


# -- step models -------------------------------------------------------------------------------

class CrossbarModel:
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
                "flags": _int_of(self.flags.to(torch.int64))}

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
                self.flags[o * S:(o + 1) * S] = _bits_of(row["wr__payload.flags"], S).bool()
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


class ShiftAddModel:
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
            flags = _bits_of(row["flags"], cfg.cols).bool()[j]
            y = flip_recover(cfg, torch.as_tensor(row["rec"]), row["insum"], flags)
            coef = self.sign[t] << (self.pos[t] + (j % S) * cfg.cell_bits)
            self.acc = _wrap(self.acc.index_add(0, j // S, y * coef), cfg.acc_bits, signed=True)
            if g == 0:
                xs = int(self.sign[t]) * (row["insum"] << int(self.pos[t]))
                self.xsum = _wrap(self.xsum + xs, self.xsum_bits, signed=True)


# -- stimulus ----------------------------------------------------------------------------------

class _Rows:
    """Per-cycle input values, appended segment by segment. Keys are port names, or
    ``port.field`` for struct ports. ``add`` fills missing keys from ``idle``, except the
    ``sticky`` ones, which keep the previous cycle's value (settings held by the host).
    ``checks`` holds ``(cycle, port, expected)``: golden values the model must reproduce."""

    def __init__(self, idle: dict, sticky: tuple[str, ...] = ()):
        self.idle, self.sticky = idle, sticky
        self.rows: list[dict] = []
        self.checks: list[tuple[int, str, object]] = []

    def add(self, **values):
        row = dict(self.idle)
        if self.rows:
            row.update({k: self.rows[-1][k] for k in self.sticky})
        row.update(values)
        self.rows.append(row)

    def check(self, port: str, expected, cycle: int | None = None):
        """Expect ``port`` to show ``expected`` at ``cycle`` (default: the next cycle, i.e.
        after the edge of the row added last)."""
        self.checks.append((len(self.rows) if cycle is None else cycle, port, expected))

    def __len__(self):
        return len(self.rows)


class _Draw:
    """Seeded random values over full ranges, with the extremes drawn often."""

    def __init__(self, seed: int):
        self.seed = seed
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def int(self, lo: int, hi: int, *special: int) -> int:
        if self.chance(0.25):
            return self.rng.choice([lo, hi, *[s for s in special if lo <= s <= hi]])
        return self.rng.randint(lo, hi)

    def vector(self, lo: int, hi: int, shape) -> torch.Tensor:
        """All-minimum, all-maximum, alternating, extremes only, or uniform."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        r = self.rng.random()
        if r < 0.08:
            return torch.full(shape, lo, dtype=torch.int64)
        if r < 0.16:
            return torch.full(shape, hi, dtype=torch.int64)
        if r < 0.24:
            t = torch.full(shape, lo, dtype=torch.int64).flatten()
            t[self.rng.randint(0, 1)::2] = hi
            return t.view(shape)
        if r < 0.32:
            pick = torch.randint(0, 2, shape, generator=self.gen)
            return torch.where(pick.bool(), hi, lo).to(torch.int64)
        return torch.randint(lo, hi + 1, shape, generator=self.gen, dtype=torch.int64)

    def weights(self, cfg: AccelConfig, job: int) -> torch.Tensor:
        """Weights of job ``job``: all maximum, all minimum, alternating, then random."""
        lo, hi, shape = cfg.weight_min, cfg.weight_max, (cfg.rows, cfg.outputs)
        if job % 4 == 1:
            return torch.full(shape, hi, dtype=torch.int64)
        if job % 4 == 2:
            return torch.full(shape, lo, dtype=torch.int64)
        return self.vector(lo, hi, shape)

    def layer(self, cfg: AccelConfig, *, off_range: float = 0.0) -> dict:
        bias_hi = (1 << (cfg.bias_bits - 1)) - 1
        if self.chance(off_range):
            # representable in the shift field but outside the configured range
            top = (1 << (cfg.shift_bits - 1)) - 1
            outside = [s for s in range(-top - 1, top + 1)
                       if not cfg.shift_min <= s <= cfg.shift_max]
            shift = self.rng.choice(outside) if outside else cfg.shift_max
        else:
            shift = self.int(cfg.shift_min, cfg.shift_max, 0, 1)
        return {"layer.shift": shift, "layer.relu": self.rng.randint(0, 1),
                "layer.bias": self.vector(-bias_hi - 1, bias_hi, cfg.outputs).tolist()}


def _crossbar_rows(cfg: AccelConfig, cycles: int, draw: _Draw) -> _Rows:
    R, O, S, T, X = cfg.rows, cfg.outputs, cfg.slices, cfg.input_cycles, cfg.xbar_steps
    from hdl.layouts import weight_write_layout
    wl = weight_write_layout(cfg)
    row_top, group_top = ((1 << wl[f].width) - 1 for f in ("row", "group"))
    step_top = (1 << Shape.cast(ports(cfg, "crossbar")["step"][1]).width) - 1
    rows = _Rows({"rst": 0, "wr__valid": 0, "wr__payload.row": 0, "wr__payload.group": 0,
                  "wr__payload.value": 0, "wr__payload.flags": 0, "levels": [0] * R,
                  "step": 0, "en": 0, "clear": 0})
    rnd = draw.rng

    def levels():
        return draw.vector(0, cfg.dac_max, R).tolist()

    def junk(n):
        """Every input random, writes to any row/group (the block ignores groups >= outputs)
        with any flags: the column sums then wrap modulo 2**read_bits, as documented."""
        for _ in range(n):
            rows.add(rst=int(draw.chance(0.01)), wr__valid=int(draw.chance(0.3)),
                     **{"wr__payload.row": rnd.randint(0, row_top),
                        "wr__payload.group": rnd.randint(0, group_top),
                        "wr__payload.value": draw.int(cfg.weight_min, cfg.weight_max),
                        "wr__payload.flags": rnd.randint(0, (1 << S) - 1)},
                     levels=levels(), step=rnd.randint(0, step_top),
                     en=int(draw.chance(0.6)), clear=int(draw.chance(0.1)))

    rows.add(rst=1)
    job = 0
    while len(rows) < cycles:
        # Program every weight (shuffled order) with the flags the host computes.
        w = draw.weights(cfg, job)
        cells, flags = encode_weights(cfg, w)
        flag_bits = [_int_of(f.to(torch.int64)) for f in flags]
        order = [(r, o) for r in range(R) for o in range(O)]
        rnd.shuffle(order)
        for r, o in order:
            rows.add(wr__valid=1, **{"wr__payload.row": r, "wr__payload.group": o,
                                     "wr__payload.value": int(w[r, o]),
                                     "wr__payload.flags": flag_bits[o]},
                     levels=levels(), step=rnd.randint(0, step_top))
        rows.check("flags", _int_of(flags.reshape(-1).to(torch.int64)))
        # Stream input vectors chunk by chunk, X steps per chunk, with bubbles and clears.
        cells = cells.reshape(R, cfg.cols)
        for _ in range(rnd.randint(2, 4)):
            x = draw.vector(cfg.input_min, cfg.input_max, R)
            chunks = input_chunks(cfg, x)                           # [T, R]
            if draw.chance(0.3):
                rows.add(clear=1, levels=levels(), step=rnd.randint(0, step_top))
                rows.check("col_sum", torch.zeros(cfg.cols, dtype=torch.int64))
            for t in range(T):
                for i in range(X):
                    while draw.chance(0.15):
                        rows.add(levels=levels(), step=rnd.randint(0, step_top))
                    rows.add(levels=chunks[t].tolist(), step=i, en=1)
                rows.check("col_sum", (chunks[t].unsqueeze(1) * cells).sum(0))
                rows.check("insum", int(chunks[t].sum()))
        junk(rnd.randint(10, 60))
        job += 1
    rows.add()      # the last check looks at the cycle after the last row
    return rows


def _adc_rows(cfg: AccelConfig, cycles: int, draw: _Draw) -> _Rows:
    C, G = cfg.cols, cfg.adc_steps
    top = (1 << cfg.read_bits) - 1
    k = cfg.adc_drop
    special = {0, 1, cfg.max_read, cfg.max_read + 1, top, cfg.adc_code_max,
               cfg.adc_code_max + 1}
    if k:   # rounding and saturation boundaries of drop_lsb
        for base in ((cfg.adc_code_max << k), 1 << (k - 1), 3 << (k - 1)):
            special |= {base - 1, base, base + 1}
    special = sorted(s for s in special if 0 <= s <= top)
    rows = _Rows({"col_sum": [0] * C, "group": 0})
    # Every value in every lane: for each group, sweep 0 .. 2**read_bits - 1 (when small).
    if (top + 1) * G <= cycles // 2:
        for g in range(G):
            for v in range(top + 1):
                rows.add(col_sum=[(v + j) % (top + 1) for j in range(C)], group=g)
    while len(rows) < cycles:
        r = draw.rng.random()
        if r < 0.3:
            col = torch.tensor([draw.rng.choice(special) for _ in range(C)])
        elif r < 0.6:
            col = draw.vector(0, cfg.max_read, C)
        else:
            col = draw.vector(0, top, C)
        rows.add(col_sum=col.tolist(), group=draw.rng.randint(0, G - 1))
    return rows


def _shiftadd_rows(cfg: AccelConfig, cycles: int, draw: _Draw) -> _Rows:
    from golden.trace import datapath_trace
    R, C, N, G, T = cfg.rows, cfg.cols, cfg.adc_columns_per_cycle, cfg.adc_steps, \
        cfg.input_cycles
    rec_top, insum_top = (1 << cfg.read_bits) - 1, (1 << cfg.insum_bits) - 1
    rows = _Rows({"rst": 0, "rec": [0] * N, "insum": 0, "flags": 0, "chunk": 0, "group": 0,
                  "clear": 0, "en": 0, "finalize": 0, "layer.shift": 0, "layer.relu": 0,
                  "layer.bias": [0] * cfg.outputs},
                 sticky=("flags", "layer.shift", "layer.relu", "layer.bias"))
    rnd = draw.rng

    def noise(**over):
        """A cycle of random data on the data inputs (controls as given)."""
        return {"rec": draw.vector(0, rec_top, N).tolist(), "insum": draw.int(0, insum_top),
                "chunk": rnd.randint(0, T - 1), "group": rnd.randint(0, G - 1), **over}

    def junk(n):
        """Every input random, out-of-contract values included (sums may wrap)."""
        for _ in range(n):
            rows.add(**noise(rst=int(draw.chance(0.01)), clear=int(draw.chance(0.1)),
                             en=int(draw.chance(0.6)), finalize=int(draw.chance(0.2)),
                             flags=rnd.getrandbits(C)),
                     **(draw.layer(cfg, off_range=0.05) if draw.chance(0.2) else {}))

    rows.add(rst=1, **draw.layer(cfg))
    job = 0
    while len(rows) < cycles:
        # One input vector through a programmed crossbar: the reads, ADC codes and flags of
        # section 1-5, fed ADC step by ADC step; acc, xsum and y must be those of the golden
        # datapath trace.
        w = draw.weights(cfg, job)
        x = draw.vector(cfg.input_min, cfg.input_max, (1, R))
        layer = draw.layer(cfg)
        bias = torch.tensor(layer["layer.bias"])
        cells, flags = encode_weights(cfg, w)
        chunks = input_chunks(cfg, x)[0]                                   # [T, R]
        read = (chunks.unsqueeze(-1) * cells.reshape(R, C)).sum(1)         # [T, C]
        rec = adc_reconstruct(cfg, adc_convert(cfg, read))
        insum = chunks.sum(-1)
        trace = datapath_trace(cfg, w, x, bias, shift=layer["layer.shift"],
                               relu=bool(layer["layer.relu"]))
        rows.add(**noise(clear=1, en=int(draw.chance(0.3))), **layer,
                 flags=_int_of(flags.reshape(-1).to(torch.int64)))
        for t in range(T):
            for g in range(G):
                while draw.chance(0.15):
                    rows.add(**noise())
                rows.add(rec=rec[t, g * N:(g + 1) * N].tolist(), insum=int(insum[t]),
                         chunk=t, group=g, en=1)
        rows.check("acc", trace.acc[0, -1])
        rows.check("xsum", int(trace.xsum[0, -1]))
        while draw.chance(0.15):
            rows.add(**noise())
        rows.add(**noise(finalize=1))
        rows.check("y", trace.out[0])
        junk(rnd.randint(5, 40))
        job += 1
    rows.add()
    return rows


class AGUModel:
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


#: (H, W, kernel, stride, padding) of the AGU runs: the demo CNN's layers (32x32 3x3/1/1,
#: 32x32 3x3/2/1, 16x16, 8x8) and small, odd and degenerate maps.
AGU_SHAPES = ((32, 32, 3, 1, 1), (32, 32, 3, 2, 1), (16, 16, 3, 1, 1), (8, 8, 3, 2, 1),
              (7, 5, 3, 1, 1), (1, 1, 1, 1, 0), (2, 9, 5, 2, 2), (12, 3, 1, 1, 0))
AGU_FRACTIONS = (0.0, 0.1, 0.125, 0.25, 0.3, 0.45)


def _agu_rows(cfg: AccelConfig, cycles: int, draw: _Draw) -> _Rows:
    """Runs of every crop vector (a shuffled round of all 16 first, then more), with golden
    windows of several shapes and fractions, windows scaled to a smaller layer, back-pressure,
    ignored starts while busy, junk setups between runs and invalid setups. The step model
    runs alongside; each run's transferred addresses must be ``golden.crop.agu_sequence`` and,
    with a consumer that is always ready, its length ``agu_cycles``."""
    from golden.crop import agu_cycles, agu_sequence, kept_window, scale_window
    from hdl import BLOCKS
    from hdl.layouts import agu_config_layout
    dut = BLOCKS["agu"](cfg)
    model = AGUModel(dut.max_height, dut.max_width)
    fields = {name: f.width for name, f in agu_config_layout(dut.max_height, dut.max_width)}
    rows = _Rows({"rst": 0, "start": 0, "addr__ready": 0,
                  **{f"setup.{f}": 0 for f in fields}})
    rows.crops = []          # crop vector index of every run, in order
    rnd = draw.rng

    def step(**values) -> dict:
        rows.add(**values)
        before = model.outputs()
        model.edge(rows.rows[-1])
        return before

    def junk_setup() -> dict:
        return {f"setup.{f}": rnd.getrandbits(w) for f, w in fields.items()}

    step(rst=1)
    order = list(range(16))
    rnd.shuffle(order)
    job = 0
    while len(rows) < cycles or job < 16:
        for _ in range(rnd.randint(0, 4)):                  # idle clocks, junk on the inputs
            step(rst=int(draw.chance(0.02)), addr__ready=rnd.randint(0, 1), **junk_setup())
        if job >= 16 and draw.chance(0.15):                 # an invalid setup
            setup = junk_setup()
            while not model.bad({f: setup[f"setup.{f}"] for f in fields}):
                setup = junk_setup()
            step(start=1, addr__ready=rnd.randint(0, 1), **setup)
            if not (model.done and model.error and not model.busy):
                raise ModelError(f"agu step model, seed {draw.seed}: setup {setup} was not "
                                 f"rejected")
            rows.check("error", 1)
            continue
        crop = order[job] if job < 16 else rnd.randrange(16)
        H, W, k, s, p = rnd.choice(AGU_SHAPES[:2] if job < 2 else AGU_SHAPES)
        win = kept_window(crop, rnd.choice(AGU_FRACTIONS), H, W)
        if draw.chance(0.25):                               # the window of a later layer
            H2, W2 = rnd.randint(1, H), rnd.randint(1, W)
            win, H, W = scale_window(win, H, W, H2, W2), H2, W2
        always = H * W > 300 or draw.chance(0.3)
        p_ready = 1.0 if always else rnd.choice([0.3, 0.6, 0.9])
        r0, r1, c0, c1 = win
        setup = {"setup.height": H, "setup.width": W, "setup.r0": r0, "setup.r1": r1,
                 "setup.c0": c0, "setup.c1": c1}
        step(start=1, addr__ready=rnd.randint(0, 1), **setup)
        edges, got = 1, []
        while not model.done:
            ready = int(rnd.random() < p_ready)
            spurious = draw.chance(0.05)                    # ignored: the AGU is busy
            out = step(addr__ready=ready, start=int(spurious),
                       **(junk_setup() if spurious or draw.chance(0.2) else {}))
            edges += 1
            if out["addr__valid"] and ready:
                got.append((out["addr__payload.row"], out["addr__payload.col"],
                            out["addr__payload.linear"], bool(out["addr__payload.first"]),
                            bool(out["addr__payload.last"])))
        want = [(e.row, e.col, e.linear, e.first, e.last)
                for e in agu_sequence(H, W, k, s, p, win)]
        if got != want or model.error:
            raise ModelError(f"agu step model, seed {draw.seed}: window {win} of {H}x{W} "
                             f"gives {got[:4]}..., golden.crop says {want[:4]}...")
        if always and edges != agu_cycles(H, W, k, s, p, win):
            raise ModelError(f"agu step model, seed {draw.seed}: {edges} edges for window "
                             f"{win} of {H}x{W}, "
                             f"golden.crop.agu_cycles says {agu_cycles(H, W, k, s, p, win)}")
        rows.check("error", 0)
        rows.crops.append(crop)
        job += 1
    rows.add()
    return rows


def requant_value(cfg: AccelConfig, block: str, row: dict) -> int:
    """What requantizer ``block`` registers for the inputs of ``row`` (``golden.requant``)."""
    from golden.requant import multiplier_requant, shift_round_requant
    acc = torch.tensor([row["acc"]])
    if block == "requant_shift":
        return int(shift_round_requant(acc, row["shift"], cfg.output_bits)[0])
    return int(multiplier_requant(acc, row["multiplier"], row["shift"], cfg.output_bits)[0])


class RequantModel:
    """A requantizer one clock edge at a time: the output register ``y``."""

    def __init__(self, cfg: AccelConfig, block: str):
        self.cfg, self.block = cfg, block
        self.reset()

    def reset(self):
        self.y = 0

    def outputs(self) -> dict:
        return {"y": self.y}

    def edge(self, row: dict):
        self.y = 0 if row["rst"] else requant_value(self.cfg, self.block, row)


def requant_rows(cfg: AccelConfig, block: str, accs, settings) -> _Rows:
    """Reset, then one row per accumulator of ``accs`` with the settings (``shift``, and
    ``multiplier`` for ``requant_mult``) of the same index of ``settings``, then one idle
    row so that the last result is compared."""
    keys = ("shift",) if block == "requant_shift" else ("multiplier", "shift")
    rows = _Rows({"rst": 0, "acc": 0, **dict.fromkeys(keys, 0)}, sticky=keys)
    rows.add(rst=1)
    for acc, setting in zip(accs, settings, strict=True):
        rows.add(acc=int(acc), **{k: int(setting[k]) for k in keys})
    rows.add()
    return rows


def random_accumulators(cfg: AccelConfig, cycles: int, seed: int) -> list[int]:
    """Accumulators over the full ``acc_bits`` range, every magnitude equally likely (random
    values shifted right by a random amount), extremes and the values around 0 first."""
    rng = random.Random(seed)
    A = cfg.acc_bits
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    return [lo, hi, 0, -1, 1, lo + 1, hi - 1] + \
        [rng.randint(lo, hi) >> rng.randint(0, A - 1) for _ in range(cycles)]


def random_requant_settings(cfg: AccelConfig, block: str, n: int, seed: int) -> list[dict]:
    """Settings held for a few to a few dozen cycles each: shifts ``0 .. acc_bits`` and, for
    the multiplier, normalised multipliers of random scales (and a few small ones)."""
    from golden.requant import quantize_multiplier
    rng = random.Random(seed)
    out, setting = [], None
    for _ in range(n):
        if setting is None or rng.random() < 0.05:
            if block == "requant_shift":
                setting = {"shift": rng.randint(0, cfg.acc_bits)}
            else:
                m0, e = quantize_multiplier(rng.uniform(1e-6, 0.999))
                setting = {"multiplier": m0 if rng.random() < 0.9 else rng.randint(0, 7),
                           "shift": min(e, cfg.acc_bits)}
        out.append(setting)
    return out


def _requant_random_rows(block: str):
    def rows(cfg: AccelConfig, cycles: int, draw: _Draw) -> _Rows:
        accs = random_accumulators(cfg, cycles, draw.seed)
        return requant_rows(cfg, block, accs,
                            random_requant_settings(cfg, block, len(accs), draw.seed + 1))
    return rows


_STIMULUS = {"crossbar": _crossbar_rows, "adc": _adc_rows, "shiftadd": _shiftadd_rows,
             "agu": _agu_rows, **{b: _requant_random_rows(b) for b in REQUANT_BLOCKS}}


# -- the table ---------------------------------------------------------------------------------

def _column(rows: list[dict], key: str):
    values = [row[key] for row in rows]
    return torch.as_tensor(values, dtype=torch.int64) if isinstance(values[0], list) \
        else values


def _pack(shapes: dict, columns) -> dict[str, list[int]]:
    """``columns(port, field)`` -> per-cycle values; packs every port of ``shapes``."""
    out = {}
    for name, shape in shapes.items():
        if isinstance(shape, data.StructLayout):
            out[name] = pack_port(shape, {f: columns(f"{name}.{f}") for f, _ in shape})
        else:
            out[name] = pack_port(shape, columns(name))
    return out


def build_table(cfg: AccelConfig, block: str, *, cycles: int, seed: int) -> dict:
    """Stimulus and expected outputs of ``block``, one row per cycle (at least ``cycles``).

    Returns ``{"block", "config", "seed", "cycles", "inputs": {port: [int]}, "outputs":
    {port: [int]}}``.

    Raises
    ------
    ModelError
        If the step model misses a golden check point (see the module docstring).
    """
    return table_from_rows(cfg, block, _STIMULUS[block](cfg, cycles, _Draw(seed)), seed=seed)


def table_from_rows(cfg: AccelConfig, block: str, rows: _Rows, *, seed: int) -> dict:
    """The table of :func:`build_table` for given stimulus ``rows``: the block's step model
    computes the expected outputs and the golden check points are verified."""
    all_ports = ports(cfg, block)
    n = len(rows)
    outs: dict[str, list] = {name: [] for name, (d, _) in all_ports.items() if d == "output"}
    if block == "adc":
        got = adc_model(cfg, torch.as_tensor(_column(rows.rows, "col_sum")),
                        torch.tensor(_column(rows.rows, "group")))
        outs = {name: got[name] for name in outs}
    else:
        if block == "agu":
            from hdl import BLOCKS
            dut = BLOCKS["agu"](cfg)
            model = AGUModel(dut.max_height, dut.max_width)
        elif block in REQUANT_BLOCKS:
            model = RequantModel(cfg, block)
        else:
            model = CrossbarModel(cfg) if block == "crossbar" else ShiftAddModel(cfg)
        for row in rows.rows:
            for name, value in model.outputs().items():   # the state before this row's edge
                outs.setdefault(name, []).append(value)   # struct ports: one key per field
            model.edge(row)
        outs = {name: torch.stack(v) if isinstance(v[0], torch.Tensor) else v
                for name, v in outs.items() if v}
    for cycle, port, want in rows.checks:
        have = outs[port][cycle]
        same = have == want if isinstance(want, int) else torch.equal(have, want)
        if not same:
            raise ModelError(f"{block} step model, config {cfg.name}, seed {seed}: {port} at "
                             f"cycle {cycle} is {have}, the golden model says {want}")
    inputs = {name: shape for name, (d, shape) in all_ports.items() if d == "input"}
    outputs = {name: shape for name, (d, shape) in all_ports.items() if d == "output"}
    return {"block": block, "config": cfg.name, "seed": seed, "cycles": n,
            "inputs": _pack(inputs, lambda key: _column(rows.rows, key)),
            "outputs": _pack(outputs, lambda key: outs[key])}


# -- running -----------------------------------------------------------------------------------

def run_block(cfg: AccelConfig, block: str, sim: str, *, cycles: int, seed: int,
              rerun_with_waves: bool = True,
              corrupt: tuple[int, str] | None = None) -> CosimRun:
    """Co-simulate ``block`` under ``sim`` for ``cycles`` random cycles and compare every
    output port on every cycle.

    ``corrupt = (cycle, port)`` flips bit 0 of that expected value: a self-test showing that
    the bench is not vacuous. A failing run is repeated with waveforms on, and the FST path is
    added to the message.
    """
    t0 = time.perf_counter()
    sources, top = verilog_sources(cfg, block)
    table = build_table(cfg, block, cycles=cycles, seed=seed)
    label = f"{block}-{seed}-{cycles}"
    if corrupt is not None:
        cycle, port = corrupt
        table["outputs"][port][cycle] ^= 1
        label += f"-corrupt{cycle}{port}"
    path = save_stimulus(table, f"{cfg.name}-{cfg.digest}-{label}")
    params = {"config": str(_config_path(cfg)), "seed": seed, "block": block,
              "table": str(path)}
    run, _ = run_checked(block, cfg, sim, sources, top, "cosim.tb_vectors", params,
                         seed=seed, t0=t0, rerun_with_waves=rerun_with_waves)
    return run

