# amaranth: UnusedElaboratable=no
"""Stimulus of the single-block benches: per-cycle input values over full ranges, written
segment by segment, with golden check points.

Each generator ``(cfg, cycles, draw) -> Rows`` returns at least ``cycles`` rows of input
values. Stimulus that follows the contract is additionally checked at known cycles against the
golden model computed in one piece (``Rows.check``), so a step model cannot quietly drift from
it: after a full weight programming sequence the crossbar's flags are those of
``encode_weights`` and, after the steps of a chunk, its column sums are the reads
``Σ_r x_t[r] c'[r, j]``; after the ADC steps of a vector the shift-add's ``acc``, ``xsum`` and
output are those of ``golden.trace.datapath_trace``.

The region-crop AGU's stimulus runs all 16 crop vectors on several map shapes, fractions and
scaled windows, with back-pressure and invalid setups; while it is generated, every run's
transferred addresses are checked against ``golden.crop.agu_sequence`` and, with an
always-ready consumer, the run length against ``golden.crop.agu_cycles``.
"""

from __future__ import annotations

import random

import torch
from amaranth.hdl import Shape

from arch.config import AccelConfig
from arch.ranges import int_range
from golden.arith import adc_convert, adc_reconstruct, encode_weights, input_chunks
from hdl import CrossbarMAC, RegionCropAGU

from .models import REQUANTIZERS, AGUModel, ModelError, int_of
from .ports import component_ports

__all__ = ["Rows", "Draw", "crossbar_rows", "adc_rows", "shiftadd_rows", "agu_rows",
           "requant_rows", "requant_random_rows", "random_accumulators",
           "random_requant_settings", "AGU_SHAPES", "AGU_FRACTIONS"]


class Rows:
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


class Draw:
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
        bias_hi = cfg.bias_range[1]
        if self.chance(off_range):
            # representable in the shift field but outside the configured range
            top = int_range(cfg.shift_bits, signed=True)[1]
            outside = [s for s in range(-top - 1, top + 1)
                       if not cfg.shift_min <= s <= cfg.shift_max]
            shift = self.rng.choice(outside) if outside else cfg.shift_max
        else:
            shift = self.int(cfg.shift_min, cfg.shift_max, 0, 1)
        return {"layer.shift": shift, "layer.relu": self.rng.randint(0, 1),
                "layer.bias": self.vector(-bias_hi - 1, bias_hi, cfg.outputs).tolist()}


def crossbar_rows(cfg: AccelConfig, cycles: int, draw: Draw) -> Rows:
    R, O, S, T, X = cfg.rows, cfg.outputs, cfg.slices, cfg.input_cycles, cfg.xbar_steps
    from hdl.layouts import weight_write_layout
    wl = weight_write_layout(cfg)
    row_top, group_top = ((1 << wl[f].width) - 1 for f in ("row", "group"))
    step = component_ports(CrossbarMAC(cfg), clocked=True)["step"][1]
    step_top = (1 << Shape.cast(step).width) - 1
    rows = Rows({"rst": 0, "wr__valid": 0, "wr__payload.row": 0, "wr__payload.group": 0,
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
        flag_bits = [int_of(f.to(torch.int64)) for f in flags]
        order = [(r, o) for r in range(R) for o in range(O)]
        rnd.shuffle(order)
        for r, o in order:
            rows.add(wr__valid=1, **{"wr__payload.row": r, "wr__payload.group": o,
                                     "wr__payload.value": int(w[r, o]),
                                     "wr__payload.flags": flag_bits[o]},
                     levels=levels(), step=rnd.randint(0, step_top))
        rows.check("flags", int_of(flags.reshape(-1).to(torch.int64)))
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


def adc_rows(cfg: AccelConfig, cycles: int, draw: Draw) -> Rows:
    C, G = cfg.cols, cfg.adc_steps
    top = (1 << cfg.read_bits) - 1
    k = cfg.adc_drop
    special = {0, 1, cfg.max_read, cfg.max_read + 1, top, cfg.adc_code_max,
               cfg.adc_code_max + 1}
    if k:   # rounding and saturation boundaries of drop_lsb
        for base in ((cfg.adc_code_max << k), 1 << (k - 1), 3 << (k - 1)):
            special |= {base - 1, base, base + 1}
    special = sorted(s for s in special if 0 <= s <= top)
    rows = Rows({"col_sum": [0] * C, "group": 0})
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


def shiftadd_rows(cfg: AccelConfig, cycles: int, draw: Draw) -> Rows:
    from golden.trace import datapath_trace
    R, C, N, G, T = cfg.rows, cfg.cols, cfg.adc_columns_per_cycle, cfg.adc_steps, \
        cfg.input_cycles
    rec_top, insum_top = (1 << cfg.read_bits) - 1, (1 << cfg.insum_bits) - 1
    rows = Rows({"rst": 0, "rec": [0] * N, "insum": 0, "flags": 0, "chunk": 0, "group": 0,
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
                 flags=int_of(flags.reshape(-1).to(torch.int64)))
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



#: (H, W, kernel, stride, padding) of the AGU runs: the demo CNN's layers (32x32 3x3/1/1,
#: 32x32 3x3/2/1, 16x16, 8x8) and small, odd and degenerate maps.
AGU_SHAPES = ((32, 32, 3, 1, 1), (32, 32, 3, 2, 1), (16, 16, 3, 1, 1), (8, 8, 3, 2, 1),
              (7, 5, 3, 1, 1), (1, 1, 1, 1, 0), (2, 9, 5, 2, 2), (12, 3, 1, 1, 0))
AGU_FRACTIONS = (0.0, 0.1, 0.125, 0.25, 0.3, 0.45)


def agu_rows(cfg: AccelConfig, cycles: int, draw: Draw) -> Rows:
    """Runs of every crop vector (a shuffled round of all 16 first, then more), with golden
    windows of several shapes and fractions, windows scaled to a smaller layer, back-pressure,
    ignored starts while busy, junk setups between runs and invalid setups. The step model
    runs alongside; each run's transferred addresses must be ``golden.crop.agu_sequence`` and,
    with a consumer that is always ready, its length ``agu_cycles``."""
    from golden.crop import agu_cycles, agu_sequence, kept_window, scale_window
    from hdl.layouts import agu_config_layout
    dut = RegionCropAGU(cfg)
    model = AGUModel.of(dut)
    fields = {name: f.width for name, f in agu_config_layout(dut.max_height, dut.max_width)}
    rows = Rows({"rst": 0, "start": 0, "addr__ready": 0,
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


def requant_rows(cfg: AccelConfig, block: str, accs, settings) -> Rows:
    """Reset, then one row per accumulator of ``accs`` with the settings (``shift``, and
    ``multiplier`` for ``requant_mult``) of the same index of ``settings``, then one idle
    row so that the last result is compared."""
    keys = REQUANTIZERS[block].settings
    rows = Rows({"rst": 0, "acc": 0, **dict.fromkeys(keys, 0)}, sticky=keys)
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
    draw_setting = REQUANTIZERS[block].random_setting
    rng = random.Random(seed)
    out, setting = [], None
    for _ in range(n):
        if setting is None or rng.random() < 0.05:
            setting = draw_setting(cfg, rng)
        out.append(setting)
    return out


def requant_random_rows(block: str):
    """The random stimulus of requantizer ``block``: :func:`random_accumulators` with
    :func:`random_requant_settings`."""
    def rows(cfg: AccelConfig, cycles: int, draw: Draw) -> Rows:
        accs = random_accumulators(cfg, cycles, draw.seed)
        return requant_rows(cfg, block, accs,
                            random_requant_settings(cfg, block, len(accs), draw.seed + 1))
    return rows


