"""Per-region activation precision (``docs/arithmetic.md``, "Per-region precision").

AQuA's dynamic quantization by image region, cropping being its 0-bit case. A **plan** is
``(bt, bb, bl, br)``: the input bit widths of the top, bottom, left and right border bands, each
in ``[0, Bx]`` (``Bx = cfg.input_bits``); the centre keeps ``Bx``.

* **Bands.** On a map of ``H x W`` the bands are those of the all-sides crop window
  ``(r0, r1, c0, c1) = kept_window(15, f, H, W)`` (:func:`band_window`): ``top`` = rows
  ``r < r0``, ``bottom`` = rows ``r >= r1``, ``left`` = cols ``c < c0``, ``right`` = cols
  ``c >= c1``. A pixel in two bands (a corner) gets the minimum of the two
  (:func:`bits_map`). Later layers scale the window like a crop window
  (:func:`golden.crop.scale_window`).
* **Crops are plans.** Crop vector ``(t, b, l, r)`` is plan ``(Bx*(1-t), Bx*(1-b), Bx*(1-l),
  Bx*(1-r))`` (:func:`crop_as_plan`); it gives exactly :func:`golden.crop.cropped_conv2d`.
* **Reduction** of an input ``x`` to ``p`` bits, ``k = Bx - p`` dropped LSBs
  (:func:`reduce_activations`): ``p = Bx``: ``x``; ``p = 0``: 0; else ``saturate((x +
  2**(k-1)) >> k, lo_p, hi_p) << k`` -- round to nearest, ties up, then saturate to the
  ``p``-bit range of the config's signedness, as the ``drop_lsb`` ADC rounds. A layer with the
  input offset rule reduces its logical signed input with the signed rule
  (``reduce_activations(..., offset=c)``); its driven codes ``x + c`` keep the low ``k`` bits 0,
  and its absent taps (padding, 0-bit pixels) are driven as ``c``, whose low ``Bx - 1`` bits
  are 0, so chunk skipping stays exact.
* **Cycles.** An output position whose receptive field's largest tap precision (taps inside
  the map; padding does not count) is ``p_max`` (:func:`position_bits`) streams
  ``T_pos = T - floor((Bx - p_max) / d)`` chunks, and none when ``p_max = 0``
  (:func:`position_chunks`): its low ``floor((Bx - p_max)/d)`` chunks are 0 in every row and
  are skipped. Skipping is exact in every ADC mode (:func:`skip_matvec` streams only the kept
  chunks and equals the full computation on the reduced inputs).

**Plan sets.** With levels ``(Bx, low, 0)`` on every side, the 81 plans are indexed like
:data:`golden.crop.CROP_VECTORS` in base 3: ``index = 27*it + 9*ib + 3*il + ir`` where ``i*``
is the level index (0 = full ``Bx``, 1 = ``low``, 2 = ``0``, cropped): plan 0 is the full
network and the 16 crops are the plans whose digits are all 0 or 2 (:func:`crop_plan_index`).
"""

from __future__ import annotations

from numbers import Integral

import torch
import torch.nn.functional as F

from arch.config import AccelConfig

from .arith import (adc_convert, adc_reconstruct, check_range, chunk_positions, chunk_signs,
                    finalize, flip_recover, input_chunks)
from .crop import crop_vector, kept_window
from .layer import conv2d, program

__all__ = ["Plan", "NLEVELS", "NPLANS", "plan_levels", "plan_vectors", "plan_index",
           "check_plan", "crop_as_plan", "crop_plan_index", "is_crop_plan", "band_window",
           "bits_map", "bits_maps", "zero_window", "reduce_activations", "position_bits",
           "position_chunks", "skipped_chunks", "plan_conv2d", "skip_matvec"]

Plan = tuple[int, int, int, int]
NLEVELS = 3                     #: levels per side of a plan set: (Bx, low, 0)
NPLANS = NLEVELS ** 4           #: plans in a plan set (81)


def _bx(cfg_or_bits) -> int:
    return cfg_or_bits.input_bits if isinstance(cfg_or_bits, AccelConfig) else int(cfg_or_bits)


def plan_levels(cfg_or_bits, low: int) -> tuple[int, int, int]:
    """The levels ``(Bx, low, 0)`` of a plan set; ``low`` must lie in ``[1, Bx - 1]``.

    >>> plan_levels(8, 4)
    (8, 4, 0)
    """
    bx = _bx(cfg_or_bits)
    if isinstance(low, bool) or not isinstance(low, Integral) or not 1 <= low < bx:
        raise ValueError(f"low precision must be an integer in [1, {bx - 1}] "
                         f"(input bits {bx}), not {low!r}")
    return bx, int(low), 0


def plan_vectors(cfg_or_bits, low: int) -> tuple[Plan, ...]:
    """The :data:`NPLANS` plans of levels :func:`plan_levels`, by index (module docstring).

    >>> p = plan_vectors(8, 4)
    >>> p[0], p[1], p[2], p[27], p[80]
    ((8, 8, 8, 8), (8, 8, 8, 4), (8, 8, 8, 0), (4, 8, 8, 8), (0, 0, 0, 0))
    """
    lv = plan_levels(cfg_or_bits, low)
    return tuple(tuple(lv[(i // 3 ** (3 - s)) % 3] for s in range(4)) for i in range(NPLANS))


def plan_index(plan, cfg_or_bits, low: int) -> int:
    """The index of ``plan`` in :func:`plan_vectors` (``ValueError`` if it is not one)."""
    lv = plan_levels(cfg_or_bits, low)
    p = check_plan(plan, cfg_or_bits)
    if any(v not in lv for v in p):
        raise ValueError(f"plan {p} has a side outside the levels {lv}")
    return sum(lv.index(v) * 3 ** (3 - s) for s, v in enumerate(p))


def check_plan(plan, cfg_or_bits) -> Plan:
    """``plan`` as a tuple of four ints in ``[0, Bx]``.

    Raises
    ------
    ValueError
        "plan must be four bit widths (top, bottom, left, right) in [0, 8], not ...".
    """
    bx = _bx(cfg_or_bits)
    try:
        p = tuple(int(v) for v in plan)
        ok = len(p) == 4 and all(0 <= v <= bx for v in p) and not any(
            isinstance(v, bool) for v in plan)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"plan must be four bit widths (top, bottom, left, right) in "
                         f"[0, {bx}], not {plan!r}")
    return p


def crop_as_plan(crop, cfg_or_bits) -> Plan:
    """The plan of crop vector (or index) ``crop``: a cropped side has 0 bits, the others
    ``Bx``.

    >>> crop_as_plan((1, 0, 0, 1), 8), crop_as_plan(0, 8)
    ((0, 8, 8, 0), (8, 8, 8, 8))
    """
    bx = _bx(cfg_or_bits)
    return tuple(bx * (1 - b) for b in crop_vector(crop))


def crop_plan_index(crop) -> int:
    """The index in a plan set of crop ``crop`` (a cropped side is level 2, 0 bits).

    >>> crop_plan_index(0), crop_plan_index(15), crop_plan_index((1, 0, 0, 0))
    (0, 80, 54)
    """
    return sum(2 * b * 3 ** (3 - s) for s, b in enumerate(crop_vector(crop)))


def is_crop_plan(plan, cfg_or_bits) -> bool:
    """Whether every side of ``plan`` is 0 or ``Bx`` (the plan is a crop)."""
    bx = _bx(cfg_or_bits)
    return all(v in (0, bx) for v in check_plan(plan, bx))


def band_window(fraction, H: int, W: int) -> tuple[int, int, int, int]:
    """The all-sides window ``(r0, r1, c0, c1) = kept_window(15, fraction, H, W)`` whose
    complement is the four bands.

    >>> band_window(0.25, 32, 32)
    (8, 24, 8, 24)
    """
    return kept_window(15, fraction, H, W)


def bits_maps(plans, window, H: int, W: int, cfg_or_bits) -> torch.Tensor:
    """Int64 ``[len(plans), H, W]``: the precision of every pixel of an ``H x W`` map under each
    plan, with band window ``window = (r0, r1, c0, c1)`` of that map (``None``: every pixel at
    ``Bx``, the layer is not reduced). Corners take the minimum of their two bands."""
    bx = _bx(cfg_or_bits)
    p = torch.tensor([check_plan(q, bx) for q in plans], dtype=torch.int64).view(-1, 4)
    n = p.shape[0]
    if window is None:
        return torch.full((n, H, W), bx, dtype=torch.int64)
    r0, r1, c0, c1 = (int(v) for v in window)
    r, c = torch.arange(H), torch.arange(W)
    full = torch.full((n, 1), bx, dtype=torch.int64)
    rows = torch.where(r[None] < r0, p[:, 0:1], torch.where(r[None] >= r1, p[:, 1:2], full))
    cols = torch.where(c[None] < c0, p[:, 2:3], torch.where(c[None] >= c1, p[:, 3:4], full))
    return torch.minimum(rows[:, :, None], cols[:, None, :])


def bits_map(plan, window, H: int, W: int, cfg_or_bits) -> torch.Tensor:
    """Int64 ``[H, W]``: :func:`bits_maps` of one plan.

    >>> bits_map((0, 8, 4, 8), (1, 3, 1, 3), 4, 4, 8).tolist()
    [[0, 0, 0, 0], [4, 8, 8, 8], [4, 8, 8, 8], [4, 8, 8, 8]]
    """
    return bits_maps([plan], window, H, W, cfg_or_bits)[0]


def zero_window(plan, window, H: int, W: int) -> tuple[int, int, int, int]:
    """The rectangle of pixels with more than 0 bits: the crop window of the plan's 0-bit
    sides (``window`` = the band window, ``None`` for the whole map). A pixel outside it is a
    cropped pixel (never loaded)."""
    if window is None:
        return 0, H, 0, W
    r0, r1, c0, c1 = (int(v) for v in window)
    bt, bb, bl, br = (int(v) for v in plan)
    return (r0 if bt == 0 else 0, r1 if bb == 0 else H, c0 if bl == 0 else 0,
            c1 if br == 0 else W)


def _pow2(e: torch.Tensor) -> torch.Tensor:
    return torch.bitwise_left_shift(torch.ones_like(e), e)


def reduce_activations(cfg: AccelConfig, x: torch.Tensor, bits, *, offset: int = 0
                       ) -> torch.Tensor:
    """``x`` (integer crossbar inputs in the config's range) with every activation reduced to
    the precision ``bits`` (int tensor broadcasting against ``x``, e.g. ``[H, W]`` for
    ``x [B, C, H, W]``; values in ``[0, Bx]``): int64, the low ``Bx - p`` bits 0.

    Rounds to nearest with ties up (``(x + 2**(k-1)) >> k``, ``>>`` floors), then saturates to
    the ``p``-bit range of the same signedness, then shifts back: the ``drop_lsb`` ADC's rule.

    >>> from arch.config import load_config
    >>> cfg = load_config("small")                     # 8-bit unsigned inputs
    >>> x = torch.tensor([0, 7, 8, 23, 24, 255])
    >>> reduce_activations(cfg, x, 4).tolist()          # k = 4: multiples of 16, at most 240
    [0, 0, 16, 16, 32, 240]
    >>> reduce_activations(cfg, x, torch.tensor([8, 8, 8, 1, 1, 0])).tolist()
    [0, 7, 8, 0, 0, 0]

    ``offset`` (``c = 2**(Bx-1)``, a layer with the input offset rule of
    ``docs/arithmetic.md``, "Signed activations on unsigned inputs"): ``x`` is the logical
    signed input in ``[-c, c - 1]`` and is reduced with the signed rule, a 0-bit pixel to the
    logical 0 (driven as ``c``). For ``p >= 1`` this equals the unsigned reduction of the
    driven code ``x + c``, minus ``c``.

    >>> reduce_activations(cfg, torch.tensor([-128, -9, -8, 7, 8, 127]), 4, offset=128).tolist()
    [-128, -16, 0, 0, 16, 112]

    Raises
    ------
    golden.arith.RangeError
        If an input lies outside the config's range (with ``offset``, ``[-c, c - 1]``).
    ValueError
        If a precision lies outside ``[0, Bx]``, or ``offset`` is neither 0 nor
        ``2**(Bx-1)`` on an unsigned-input configuration.
    """
    bx = cfg.input_bits
    if offset:
        if offset != 1 << (bx - 1) or cfg.input_signed:
            raise ValueError(f"offset must be 2**(input_bits - 1) = {1 << (bx - 1)} on an "
                             f"unsigned-input configuration, not {offset}")
        check_range("inputs", x, -offset, offset - 1)
    else:
        check_range("inputs", x, cfg.input_min, cfg.input_max)
    signed = cfg.input_signed or bool(offset)
    p = torch.as_tensor(bits, dtype=torch.int64)
    if p.numel() and (int(p.min()) < 0 or int(p.max()) > bx):
        raise ValueError(f"precisions must lie in [0, {bx}], found values in "
                         f"[{int(p.min())}, {int(p.max())}]")
    x = x.to(torch.int64)
    k = bx - p
    half = torch.where(k > 0, _pow2((k - 1).clamp_min(0)), torch.zeros_like(k))
    q = torch.bitwise_right_shift(x + half, k)
    if signed:
        m = _pow2((p - 1).clamp_min(0))
        lo, hi = -m, m - 1
    else:
        lo, hi = torch.zeros_like(p), _pow2(p) - 1
    q = torch.bitwise_left_shift(torch.minimum(torch.maximum(q, lo), hi), k)
    out = torch.where(p == 0, torch.zeros_like(q), q)
    return torch.where(p == bx, x, out)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, Integral) else tuple(int(a) for a in v)


def position_bits(bits: torch.Tensor, kernel, stride=1, padding=0, dilation=1
                  ) -> torch.Tensor:
    """``p_max`` of every output position of a conv on the precision map ``bits [..., H, W]``:
    the largest precision among the position's taps inside the map (padding taps do not
    count; 0 when none). Returns int64 ``[..., Ho, Wo]``. ``kernel``, ``stride``,
    ``padding``, ``dilation``: ints or (rows, cols) pairs.

    >>> b = torch.tensor([[0, 0, 0, 0], [0, 2, 2, 2], [0, 2, 4, 4], [0, 2, 4, 8]])
    >>> position_bits(b, 3, 1, 1).tolist()
    [[2, 2, 2, 2], [2, 4, 4, 4], [2, 4, 8, 8], [2, 4, 8, 8]]
    >>> position_bits(b, 1, 2, 0).tolist()
    [[0, 0], [0, 4]]
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    b = torch.as_tensor(bits)
    lead, (H, W) = b.shape[:-2], b.shape[-2:]
    f = F.pad(b.reshape(-1, 1, H, W).to(torch.float32), (pw, pw, ph, ph), value=-1.0)
    m = F.max_pool2d(f, (kh, kw), (sh, sw), dilation=(dh, dw))
    return m.clamp_min(0).to(torch.int64).reshape(*lead, *m.shape[-2:])


def skipped_chunks(cfg: AccelConfig, pmax: torch.Tensor) -> torch.Tensor:
    """Low chunks a vector of largest tap precision ``pmax`` skips: ``floor((Bx - p_max)/d)``
    (all ``T`` when ``p_max = 0``: the position is not computed)."""
    p = torch.as_tensor(pmax, dtype=torch.int64)
    T = cfg.input_cycles
    return torch.where(p > 0, (cfg.input_bits - p) // cfg.dac_bits, torch.full_like(p, T))


def position_chunks(cfg: AccelConfig, pmax: torch.Tensor) -> torch.Tensor:
    """``T_pos = T - floor((Bx - p_max) / d)`` chunks streamed per vector, 0 for ``p_max = 0``
    (int64, the shape of ``pmax``).

    >>> from arch.config import load_config
    >>> position_chunks(load_config("small"), torch.tensor([0, 1, 4, 8])).tolist()
    [0, 1, 4, 8]
    """
    return cfg.input_cycles - skipped_chunks(cfg, pmax)


def skip_matvec(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor,
                bias: torch.Tensor | None = None, *, skip: torch.Tensor, shift: int = 0,
                relu: bool = False) -> torch.Tensor:
    """The datapath (sections 2-7) for ``x [B, K]``, ``w [K, N]`` where vector ``b`` streams
    only chunks ``t >= skip[b]``: the skipped chunks are never read, converted or added (their
    ``acc`` and ``xsum`` terms are absent). A reference, explicit chunk by chunk (int64); it
    equals :func:`golden.layer.matvec` on inputs whose skipped chunks are 0, in every ADC mode.
    Returns int64 ``[B, N]``."""
    layer = program(cfg, w)
    B, K = x.shape
    R, kt, T = cfg.rows, layer.row_tiles, cfg.input_cycles
    xpad = torch.zeros(B, kt * R, dtype=torch.int64)
    xpad[:, :K] = x
    chunks = input_chunks(cfg, xpad.view(B, kt, R))                       # [B, kt, T, R]
    cells = torch.stack(layer.cells)                                      # [kt, R, cols]
    flags = torch.stack(layer.flags)                                      # [kt, cols]
    read = torch.einsum("bktr,krc->bktc", chunks, cells)
    insum = chunks.sum(-1, keepdim=True)
    y = flip_recover(cfg, adc_reconstruct(cfg, adc_convert(cfg, read)), insum, flags[None, :, None])
    streamed = (torch.arange(T)[None] >= torch.as_tensor(skip).view(-1, 1))   # [B, T]
    st = streamed[:, None, :, None].to(torch.int64)
    sig = chunk_signs(cfg) * _pow2(chunk_positions(cfg))                  # [T]
    sl = _pow2(torch.arange(cfg.slices) * cfg.cell_bits)                 # [S]
    y = (y * st).reshape(B, kt, T, -1, cfg.slices)
    acc = torch.einsum("bktos,t,s->bo", y, sig, sl)
    xsum = torch.einsum("bkt,t->b", (insum * st).squeeze(-1), sig)
    v = (acc - cfg.weight_bias * xsum[:, None])[:, :layer.out_features]
    if bias is not None:
        check_range("bias", bias, *cfg.bias_range)
        v = v + bias.to(torch.int64)
    return finalize(cfg, v, shift=shift, relu_enable=relu)


def plan_conv2d(cfg: AccelConfig, x: torch.Tensor, w: torch.Tensor,
                bias: torch.Tensor | None = None, *, stride: int = 1, padding: int = 0,
                shift: int = 0, relu: bool = False, bits, skip_chunks: bool = False,
                layer=None) -> torch.Tensor:
    """:func:`golden.layer.conv2d` of ``x [B, Cin, H, W]`` reduced to the precision map ``bits
    [H, W]`` (:func:`reduce_activations`); positions with ``p_max = 0`` are not computed and
    are 0, as in :func:`golden.crop.cropped_conv2d`. With ``skip_chunks`` every computed
    position streams only its ``T_pos`` chunks (:func:`skip_matvec`, the RTL's schedule; slow);
    the result is the same. Returns int64 ``[B, Cout, Ho, Wo]``."""
    if w.dim() != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"w must be [Cout, Cin, k, k], not {list(w.shape)}")
    bits = torch.as_tensor(bits, dtype=torch.int64)
    xr = reduce_activations(cfg, x, bits)
    pmax = position_bits(bits, w.shape[2], stride, padding)                # [Ho, Wo]
    if skip_chunks:
        B, cin, H, W_ = x.shape
        cout, _, k, _ = w.shape
        ftype = torch.float32 if cfg.input_bits <= 24 else torch.float64
        patches = F.unfold(xr.to(ftype), k, padding=padding, stride=stride)
        rows = patches.transpose(1, 2).reshape(-1, cin * k * k).to(torch.int64)
        skip = skipped_chunks(cfg, pmax).reshape(1, -1).expand(B, -1).reshape(-1)
        y = skip_matvec(cfg, rows, w.reshape(cout, -1).t(), bias, skip=skip, shift=shift,
                        relu=relu)
        y = y.view(B, *pmax.shape, cout).permute(0, 3, 1, 2)
    else:
        y = conv2d(cfg, xr, w, bias, stride=stride, padding=padding, shift=shift, relu=relu,
                   layer=layer)
    return torch.where(pmax > 0, y, torch.zeros_like(y))
