"""The per-region precision study: every image under a set of precision plans
(:mod:`golden.precision`), batched like the crop study (:mod:`golden.study`).

For a batch of ``B`` images the ``C`` plans run as one batch of ``C * B`` through the golden
quantized network (a :class:`~golden.fixedpoint.QuantNet` or a :class:`golden.qnet.QGraph`),
:func:`plans_forward`. From crossbar layer ``from_layer`` on, every spatial crossbar layer's
input (after its saturation to the input range) is reduced to the plan's precision map
(:func:`golden.precision.reduce_activations`; the band window of ``from_layer``'s map, scaled to
each later map, :func:`plan_windows`); only the output positions with ``p_max > 0`` are
computed (those of :func:`golden.crop.output_window` of the plan's
:func:`~golden.precision.zero_window`), the others read 0. The computation reuses the crop
study's layer functions (:func:`golden.study.crops_conv2d`, :func:`golden.study.crops_conv_node`)
with the plan's zero window on reduced inputs, in the crop study's walk of the network
(:func:`golden.study.layers_forward`), so a crop-equivalent plan gives the crop
study's integers exactly.

Energy (:func:`plan_energy`): ``golden.energy_model.conv_layer_energy`` per crossbar layer with
the plan's zero window, its reduced integer inputs (exact DAC counts) and the per-position chunk
counts ``T_pos`` (:func:`golden.precision.position_chunks`): per-chunk events are charged per
chunk streamed.

A graph's layer with the input offset rule (``docs/arithmetic.md``, "Signed activations on
unsigned inputs") is reduced on its logical signed input (``reduce_activations(...,
offset=c)``), a 0-bit pixel being the logical 0 driven as ``c``; its energy is that of the
driven codes (:func:`plan_energy` with ``golden.study.input_offsets``).

Predictors: :func:`precision_risk` generalises a region-importance metric's removed share to
``Σ imp * (1 - p/Bx) / Σ imp`` over the image's pixels (``p`` the plan's precision on the
image), which is the removed share for a crop plan.
"""

from __future__ import annotations

from typing import Sequence

import torch

from arch.config import AccelConfig
from arch.geometry import ConvGeometry

from .crop import scale_window
from .precision import (band_window, bits_maps, position_bits, position_chunks,
                        reduce_activations, zero_window)
from .study import layers_forward

__all__ = ["plan_windows", "plans_forward", "plan_energy", "precision_risk", "image_bits"]


def plan_windows(geoms: Sequence[ConvGeometry], fraction, from_layer: int = 0
                 ) -> list[tuple[int, int, int, int] | None]:
    """Per crossbar layer, the band window of its input map (None: the layer is not reduced,
    before ``from_layer`` or a 1x1 map). ``from_layer`` takes
    :func:`~golden.precision.band_window` of its map, later layers that window scaled.

    Raises
    ------
    ValueError
        If ``from_layer`` is not a spatial layer.
    """
    spatial = [i for i, g in enumerate(geoms) if g.height * g.width > 1]
    if from_layer not in spatial:
        raise ValueError(f"from_layer must be one of the conv layers {spatial}, "
                         f"not {from_layer}")
    base = geoms[from_layer]
    w0 = band_window(fraction, base.height, base.width)
    return [None if i < from_layer or i not in spatial else
            scale_window(w0, base.height, base.width, g.height, g.width)
            for i, g in enumerate(geoms)]


def _reduce(cfg: AccelConfig, x: torch.Tensor, plans, window, offset: int = 0):
    """``x [1 or C, B, Cin, H, W]`` reduced per plan (the logical values of a layer with input
    offset ``offset``), and each plan's zero window (None when the layer is not reduced)."""
    C = len(plans)
    if window is None:
        return x, [None] * C
    H, W = x.shape[-2:]
    bits = bits_maps(plans, window, H, W, cfg)                             # [C, H, W]
    x = reduce_activations(cfg, x.expand(C, *x.shape[1:]), bits[:, None, None], offset=offset)
    return x, [zero_window(p, window, H, W) for p in plans]


def plans_forward(net, images: torch.Tensor, plans, windows, *, with_inputs: bool = False):
    """Integer logits ``[C, B, classes]`` of the quantized network under each of the ``C``
    plans, with band windows ``windows`` (:func:`plan_windows`); with ``with_inputs`` also
    every crossbar layer's reduced integer inputs ``[C or 1, B, ...]``. Plan ``(Bx,)*4`` gives
    the full network; a crop-equivalent plan the crop study's logits."""
    cfg = net.cfg

    def prepare(i, conv, x, offset):
        if not conv:
            return x, None
        x, zw = _reduce(cfg, x, plans, windows[i], offset)
        return x, zw[:x.shape[0]]

    return layers_forward(net, images, len(plans), prepare, with_inputs)


def plan_energy(cfg: AccelConfig, table, geoms: Sequence[ConvGeometry], plans, windows,
                inputs, groups: Sequence[int] | None = None,
                offsets: Sequence[int] | None = None) -> torch.Tensor:
    """Energy in pJ, ``[C, B, layers]`` float64: ``conv_layer_energy`` of every crossbar layer
    under each plan (its zero window, reduced inputs ``inputs[l] [C or 1, B, ...]`` and
    per-position chunk counts). ``groups[l]`` conv groups are their own layers and
    ``offsets[l]`` is layer ``l``'s input offset, as in :func:`golden.study.crop_energy`."""
    from golden import energy_model as em

    groups = [1] * len(geoms) if groups is None else list(groups)
    offsets = [0] * len(geoms) if offsets is None else list(offsets)
    C, B = len(plans), inputs[0].shape[1]
    cal = em.load_calibration(cfg, table)            # once, not per layer and plan
    out = torch.zeros(C, B, len(geoms), dtype=torch.float64)
    for i, g in enumerate(geoms):
        xi, win = inputs[i], windows[i]
        if win is not None:
            bits = bits_maps(plans, win, g.height, g.width, cfg)
            chunks = position_chunks(cfg, position_bits(bits, g.kernel, g.stride, g.padding))
        done = {}
        for c in range(C):
            shared = xi.shape[0] == 1
            key = -1 if shared and win is None else c
            if key in done:
                out[c, :, i] = done[key]
                continue
            x = xi[0 if shared else c]
            x = x[:, :, None, None] if x.dim() == 2 else x
            ng = groups[i]
            if ng > 1:
                x = x.reshape(x.shape[0] * ng, -1, *x.shape[2:])
            off = offsets[i]
            if win is None:
                e = em.conv_layer_energy(cfg, table, g, x=x + off, calibration=cal, absent=off)
            else:
                e = em.conv_layer_energy(cfg, table, g, window=zero_window(
                    plans[c], win, g.height, g.width), x=x + off, chunks=chunks[c],
                    calibration=cal, absent=off)
            pj = torch.as_tensor(e.total_pj, dtype=torch.float64)
            if ng > 1:
                pj = pj.view(-1, ng).sum(1)
            done[key] = out[c, :, i] = pj
    return out


def image_bits(plans, fraction, H: int, W: int, cfg_or_bits) -> torch.Tensor:
    """``[C, H, W]``: every plan's precision map on an ``H x W`` image (the band window of the
    image itself)."""
    return bits_maps(plans, band_window(fraction, H, W), H, W, cfg_or_bits)


def precision_risk(maps: torch.Tensor, plans, fraction, cfg_or_bits) -> torch.Tensor:
    """``[N, C]``: ``Σ imp * (1 - p/Bx) / Σ imp`` of each importance map ``maps [N, H, W]``
    under each plan (0 for an image with no importance): the importance share removed,
    weighted by the precision lost. For a crop plan it is
    :func:`golden.predictors.removed_share`."""
    from .precision import _bx

    bx = _bx(cfg_or_bits)
    lost = 1 - image_bits(plans, fraction, *maps.shape[-2:], bx).to(maps.dtype) / bx
    total = maps.sum((1, 2))
    removed = torch.einsum("nhw,chw->nc", maps, lost)
    return torch.where(total[:, None] > 0, removed / total.clamp_min(1e-300)[:, None],
                       torch.zeros_like(removed)).clamp(0, 1)
