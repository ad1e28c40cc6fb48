"""The fused kernel of the bit-serial layer model (:func:`golden.layer.bitserial_acc`): the
column reads of every input chunk, the ADC on each read and the shift-add over chunks, in one
pass over the inputs, in C (``kernels.c``), built with the system C compiler at first
use and cached (:func:`library`).

The reads come from lookup tables rather than from a matrix product. A read is
``Σ_r x_t[r] c[r, col]`` over a tile's rows, ``x_t[r]`` a ``d``-bit DAC level (section 2). Cut
the rows into groups of ``g``: a group's share depends only on the ``g`` levels it sees, so it
is one row of a table of ``E = 2**(d*g)`` rows (:func:`tables`), indexed by the levels packed
``d`` bits apiece, the group's first row lowest. A read is the sum of ``G = ceil(rows / g)``
table rows: with ``g = 8`` one-bit levels, two table loads per column and chunk on a 16-row
tile instead of sixteen products (the 8 chunks' indices of 8 byte inputs are one 8x8 bit
transpose). All of it is integer arithmetic: a read (int32, below ``2**31``: ``rows * M *
(2**d - 1) + h``), its code ``min((read + h) >> k, 2**A - 1)`` (section 4: ``k`` dropped bits,
``h = 2**(k-1)``), and the shift-added codes of a tile in int32, moved into the sums (int64,
or a float type in which the caller knows them exact) before they could overflow
(:func:`_plan_chunks`).

Requires a C compiler (``$CC``, else ``cc``): the library is built once per source, compiler
and CPU (``-march=native``), in about a second, into ``build/kernels/`` of the checkout (or
``~/.cache/aqua-hw/kernels`` when that is read-only), and loaded from there afterwards.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import torch

from arch.config import AccelConfig

__all__ = ["KernelError", "library", "build_seconds", "group_rows", "tables", "code_bound",
           "Kernel", "lut_reduce", "LANES", "dense", "dense_args", "dense_weights",
           "DENSE_MACS"]

SOURCE = Path(__file__).with_suffix(".c")
#: Columns per SIMD block: the tables' and the sums' column counts are padded to a multiple.
LANES = 16
_MAXT, _MAXIDX = 64, 4096
_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-std=c11", "-shared", "-fPIC")
_PORTABLE_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC")


class KernelError(RuntimeError):
    """The C kernel cannot be built or loaded (no C compiler, or it failed)."""


class _Plan(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in
                ("R", "g", "G", "E", "C", "T", "d", "k", "top", "ngroups", "out", "out_size",
                 "init")] + \
               [(name, ctypes.c_void_p) for name in ("pos", "mask", "shift", "neg", "start",
                                                      "base")]


def _cache_dir() -> Path:
    """``build/kernels`` in the source checkout, or the user's cache when the checkout is
    read-only or this is an installed package."""
    root = SOURCE.resolve().parent.parent
    here = root / "build" / "kernels"
    try:
        if (root / "pyproject.toml").exists():
            here.mkdir(parents=True, exist_ok=True)
            if os.access(here, os.W_OK):
                return here
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aqua-hw" / "kernels"


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags (Linux), else its name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


_build_seconds = 0.0


def build_seconds() -> float:
    """Seconds this process spent compiling the kernel (0 when a cached build was loaded)."""
    return _build_seconds


@lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """The compiled kernel: built once per source, compiler and CPU into :func:`_cache_dir`
    (atomically: concurrent processes may build it at the same time), then loaded.

    Raises
    ------
    KernelError
        If no C compiler (``$CC``, else ``cc``/``gcc``) is found or the build fails.
    """
    global _build_seconds
    cc = shlex.split(os.environ.get("CC", "")) or \
        [c for c in (shutil.which("cc") or shutil.which("gcc"),) if c]
    if not cc:
        raise KernelError("golden's compiled kernels need a C compiler (gcc or clang; set CC)")
    source = SOURCE.read_bytes()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KernelError(f"the C compiler {' '.join(cc)} does not run: {exc}") from None
    key = hashlib.sha256(b"\0".join([source, " ".join(cc).encode(), version.encode(),
                                     " ".join(_FLAGS).encode(),
                                     _cpu_id().encode(), sys.platform.encode()])).hexdigest()
    out = _cache_dir() / f"kernels-{key[:20]}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            for flags in (_FLAGS, _PORTABLE_FLAGS):      # (-march=native: not on every target)
                done = subprocess.run([*cc, *flags, "-o", tmp, str(SOURCE)],
                                      capture_output=True, text=True)
                if not done.returncode:
                    break
            else:
                raise KernelError(f"building {SOURCE.name} with {' '.join(cc)} failed: "
                                  f"{done.stderr.strip()}")
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _build_seconds += time.perf_counter() - t0
    lib = ctypes.CDLL(str(out))
    args = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_void_p, ctypes.POINTER(_Plan), ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_int64, ctypes.c_void_p]
    for rows in ("u8", "bits8", "i32", "i64"):
        fn = getattr(lib, f"lut_{rows}")
        fn.argtypes, fn.restype = args, ctypes.c_int
    lib.dense.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.dense.restype = ctypes.c_int
    return lib


#: Most multiply-adds (batch * K * N) :func:`dense` is used for: beyond, a float product
#: (BLAS) is faster than its int64 loop, and its fixed cost no longer matters.
DENSE_MACS = 1 << 16


class _DensePlan(ctypes.Structure):
    _fields_ = [("K", ctypes.c_int64), ("N", ctypes.c_int64), ("Np", ctypes.c_int64),
                ("w", ctypes.c_void_p), ("bias", ctypes.c_void_p)] + \
               [(name, ctypes.c_int64) for name in ("xlo", "xhi", "shift", "c", "relu", "lo",
                                                     "hi")]


def dense_weights(w: torch.Tensor) -> torch.Tensor:
    """``w [K, N]`` as :func:`dense` takes it: float64 ``[K, Np]``, ``N`` padded with zero
    columns to a multiple of 8."""
    K, N = w.shape
    out = torch.zeros(K, -(-N // 8) * 8, dtype=torch.float64)
    out[:, :N] = w
    return out


def dense_args(cfg: AccelConfig, w: torch.Tensor, N: int, bias: torch.Tensor | None,
               shift: int, relu: bool) -> tuple:
    """What :func:`dense` passes besides the inputs: ``w`` (:func:`dense_weights` of the
    ``N`` outputs) and ``bias`` (int64 ``[N]``, contiguous) must live as long as the result."""
    K, Np = w.shape
    n = -shift if shift < 0 else 0
    lo, hi = cfg.output_range
    plan = _DensePlan(K, N, Np, w.data_ptr(), None if bias is None else bias.data_ptr(),
                      cfg.input_min, cfg.input_max, shift,
                      ((1 << (cfg.output_bits - 1)) >> n) + 1, int(relu), lo, hi)
    return N, ctypes.addressof(plan), plan


def dense(x: torch.Tensor, args: tuple) -> torch.Tensor | None:
    """``finalize(x @ w + bias)`` (int64 ``[B, N]``) of int64 ``x [B, K]`` (contiguous) in one
    call of the C kernel (``dense`` in ``kernels.c``), its other operands :func:`dense_args`:
    exact when ``K * max|x| * max|w| + max|bias| < 2**53`` (the caller's condition), the
    output stage of :func:`golden.arith.finalize`; ``shift`` must be valid. Returns None if
    an input lies outside the input range (the caller raises)."""
    out = torch.empty(x.shape[0], args[0], dtype=torch.int64)
    return None if library().dense(x.shape[0], x.data_ptr(), out.data_ptr(), args[1]) else out


# Bytes of the tables of one kernel call: they stay in the core's L2 cache.
_TABLE_BYTES = 1 << 20


def group_rows(cfg: AccelConfig, batch: int) -> int:
    """Rows per table group ``g``: up to 8 bits of levels (a 256-row table), fewer when the
    batch is too small to repay building the tables (``2**(d*g) <= T * batch / 4``)."""
    d, T = cfg.dac_bits, cfg.input_cycles
    g = max(1, 8 // d)
    while g > 1 and (1 << (d * g)) * 4 > T * batch:
        g -= 1
    return g


def tables(cfg: AccelConfig, cells: torch.Tensor, g: int, dtype: torch.dtype) -> torch.Tensor:
    """The read tables of the cells ``[tiles, rows, columns]`` of row groups of ``g``:
    ``[tiles, G, 2**(d*g), columns]`` of ``dtype``, entry ``[k, j, e, c]`` the share
    ``Σ_i level_i(e) cells[k, j*g + i, c]`` of group ``j`` (``level_i(e) = (e >> d*i) &
    (2**d - 1)``; rows past the tile's end are 0), plus the ADC's rounding offset ``h`` in
    group 0, so that the sum over groups is ``read + h``."""
    kt, R, cols = cells.shape
    d, k = cfg.dac_bits, cfg.adc_drop
    G, E = -(-R // g), 1 << (d * g)
    levels = (torch.arange(E).view(E, 1) >> (d * torch.arange(g))) & ((1 << d) - 1)
    grouped = torch.zeros(kt, G * g, cols, dtype=torch.float64)
    grouped[:, :R] = cells
    # float64, then int32: every entry is an integer below g * M * (2**d - 1) + h < 2**31
    t = torch.matmul(levels.to(torch.float64), grouped.view(kt, G, g, cols))
    t[:, 0] += (1 << k) >> 1
    return t.to(dtype)


def _plan_chunks(cfg: AccelConfig, code_bound: int):
    """The chunks in groups whose int32 sums of ``±code << shift[t]`` cannot overflow
    (``Σ code_bound << shift < 2**31``; a single term cannot: ``code < 2**24``), the sum of a
    group moving into int64 shifted left by the group's ``base``. Returns ``(shift, neg,
    start, base)``: ``shift[t] = p_t - base``, ``neg[t] = -1`` for ``σ_t = -1``, group ``i``
    the chunks ``start[i] .. start[i+1] - 1``."""
    T = cfg.input_cycles
    pos = [cfg.chunk_position(t) for t in range(T)]
    shift, start, base = [0] * T, [0], [pos[0]]
    running = 0
    for t in range(T):
        term = code_bound << (pos[t] - base[-1])
        if t > start[-1] and running + term >= (1 << 31):
            start.append(t)
            base.append(pos[t])
            running, term = 0, code_bound
        running += term
        shift[t] = pos[t] - base[-1]
    neg = [-1 if cfg.chunk_negative(t) else 0 for t in range(T)]
    return shift, neg, start + [T], base


_OUT = {torch.int64: 0, torch.float64: 1, torch.float32: 2}


def code_bound(cfg: AccelConfig) -> int:
    """The largest ADC code of a read (``min((max read + h) >> k, 2**A - 1)``)."""
    k = cfg.adc_drop
    return min((cfg.rows * cfg.cell_max * cfg.dac_max + ((1 << k) >> 1)) >> k,
               cfg.adc_code_max)


class Kernel:
    """The kernel prepared for one layer's cells ``[tiles, rows, columns]`` and flags
    ``[tiles, columns]``: the chunk plan, the flip masks and, per row-group size, the tables
    (built on first use, in pieces of at most ``_TABLE_BYTES``). :meth:`reduce` runs it.
    """

    def __init__(self, cfg: AccelConfig, cells: torch.Tensor, flags: torch.Tensor):
        self.cfg = cfg
        kt, R, cols = cells.shape
        T = cfg.input_cycles
        self.tiles, self.rows, self.cols = kt, R, cols
        self.padded_cols = cp = -(-cols // LANES) * LANES
        shift, neg, start, base = _plan_chunks(cfg, code_bound(cfg))
        self._arrays = [
            torch.tensor([cfg.chunk_position(t) for t in range(T)], dtype=torch.int64),
            torch.tensor([(1 << cfg.chunk_width(t)) - 1 for t in range(T)], dtype=torch.int64),
            torch.tensor(shift, dtype=torch.int32), torch.tensor(neg, dtype=torch.int32),
            torch.tensor(start, dtype=torch.int64), torch.tensor(base, dtype=torch.int32)]
        self._groups = len(base)
        self._m = torch.zeros(kt, cp, dtype=torch.int64)
        self._m[:, :cols] = -flags.to(torch.int64)
        self._cells = torch.zeros(kt, R, cp, dtype=torch.int64)
        self._cells[..., :cols] = cells
        self._pieces: dict[int, list] = {}
        self._call_args: dict[tuple, list] = {}
        self._keep: list = []

    def _pieces_of(self, g: int) -> list:
        """``[(c0, k0, tables, masks, plan)]`` for row groups of ``g``."""
        if g in self._pieces:
            return self._pieces[g]
        cfg, kt, R, cp = self.cfg, self.tiles, self.rows, self.padded_cols
        d = cfg.dac_bits
        G, E = -(-R // g), 1 << (d * g)
        per_column = G * E * 4                                   # int32 tables
        cb = cp if per_column * cp <= _TABLE_BYTES else \
            max(LANES, _TABLE_BYTES // per_column // LANES * LANES)
        pieces = []
        for c0 in range(0, cp, cb):
            c1 = min(cp, c0 + cb)
            tiles = max(1, _TABLE_BYTES // (per_column * (c1 - c0)))
            for k0 in range(0, kt, tiles):
                k1 = min(kt, k0 + tiles)
                lut = tables(cfg, self._cells[k0:k1, :, c0:c1], g, torch.int32).contiguous()
                pieces.append((c0, k0, k1, lut, self._m[k0:k1, c0:c1].contiguous(),
                               (R, g, G, E, c1 - c0, cfg.input_cycles, d, cfg.adc_drop,
                                cfg.adc_code_max, self._groups)))
        self._pieces[g] = pieces
        return pieces

    def reduce(self, rows: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """``red [B, columns]``: ``Σ_tiles Σ_t σ_t 2**p_t (±code)`` of every column, the ADC
        code of its read of chunk ``t``, negated in a flagged column (flip recovery's
        ``-rec``, :func:`golden.layer.bitserial_acc`), as ``dtype`` (int64, or float64 /
        float32 when the caller knows that every partial sum, ``|red| <= tiles * Σ_t 2**p_t *
        code_bound``, is below ``2**53`` / ``2**24``).

        ``rows [B, tiles * rows]``: the inputs' bit patterns, an integer type (uint8, int32
        or int64: chunk ``t`` is ``(x >> p_t) & mask_t``, two's complement), zero padded to
        whole tiles.
        """
        B = rows.shape[0]
        red = torch.empty(B, self.padded_cols, dtype=dtype)
        if B == 0 or self.cols == 0 or self.tiles == 0:
            return red[:, :self.cols].zero_()
        rows = rows.contiguous()
        size = red.element_size()
        g = group_rows(self.cfg, B)
        # (scratch of this call: concurrent calls, from threads, share the rest)
        off = torch.empty(self.cfg.input_cycles * -(-self.rows // g), dtype=torch.int64)
        rp, ld, rp_red, op = rows.data_ptr(), rows.shape[1], red.data_ptr(), off.data_ptr()
        for fn, k0, ktiles, lut, plan, mk, c0 in self._calls(g, rows.dtype, dtype):
            if fn(B, rp, ld, k0, ktiles, lut, plan, mk, rp_red + size * c0, self.padded_cols,
                  op):
                raise KernelError("the bit-serial kernel refused its arguments")
        return red[:, :self.cols]

    def _calls(self, g: int, narrow: torch.dtype, dtype: torch.dtype) -> list:
        """The kernel calls' fixed arguments for row groups of ``g``, inputs of type
        ``narrow`` and sums of type ``dtype`` (kept: a small layer's cost is its fixed
        overhead)."""
        key = (g, narrow, dtype)
        if key in self._call_args:
            return self._call_args[key]
        cfg = self.cfg
        T, d = cfg.input_cycles, cfg.dac_bits
        if narrow == torch.uint8:
            bits8 = d == 1 and g == 8 and T == 8 and self.rows % 8 == 0 and \
                all(cfg.chunk_position(t) == t for t in range(T))
            kind = "bits8" if bits8 else "u8"
        else:
            kind = {torch.int32: "i32", torch.int64: "i64"}[narrow]
        fn = getattr(library(), f"lut_{kind}")
        pointers = [a.data_ptr() for a in self._arrays]
        size = torch.empty(0, dtype=dtype).element_size()
        calls = []
        for c0, k0, k1, lut, mk, dims in self._pieces_of(g):
            plan = _Plan(*dims, _OUT[dtype], size, k0 == 0, *pointers)
            calls.append((fn, k0, k1 - k0, lut.data_ptr(), ctypes.byref(plan), mk.data_ptr(),
                          c0))
        self._keep.append(calls)                    # (the plans stay alive)
        self._call_args[key] = calls
        return calls


def lut_reduce(cfg: AccelConfig, rows: torch.Tensor, cells: torch.Tensor, flags: torch.Tensor,
               dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """:meth:`Kernel.reduce` of a kernel prepared for ``cells`` and ``flags`` (one call)."""
    return Kernel(cfg, cells, flags).reduce(rows, dtype)
