"""Host side of the ``ConvTile``: what a host sends (weight writes, layer settings, per-image
setup and the kept pixels in AGU order) and what it expects back (the golden cropped layer and
the cycle count), shared by the Amaranth unit tests and the cocotb co-simulation.

Every word is packed with the tile's layouts (``hdl/layouts.py``), so no bit position is
written down here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aqua.config import AccelConfig, ConvGeometry
from golden.arith import encode_weights
from golden.crop import (crop_index, cropped_conv2d, fraction_code, kept_window,
                         output_window, tile_cycles)
from hdl.layouts import (tile_layer_layout, tile_pixel_layout, tile_setup_layout,
                         tile_weight_write_layout)

from .bits import pack, pack_rows

__all__ = ["TileImage", "tile_writes", "tile_layer", "tile_image", "bad_setup",
           "TileRun", "run_tile", "demo_tile_layer", "check_tile_run"]


def tile_writes(cfg: AccelConfig, geom: ConvGeometry, weight: torch.Tensor) -> list[int]:
    """The ``wr`` transfers that program ``weight [Cout, Cin, k, k]``: every ``(xbar, row,
    output)`` once, unused rows and outputs with weight 0, flags per ``docs/arithmetic.md``."""
    cout, cin, kh, kw = weight.shape
    if (cout, cin, kh, kw) != (geom.out_channels, geom.in_channels, geom.kernel, geom.kernel):
        raise ValueError(f"weight {list(weight.shape)} does not match the geometry {geom}")
    O = cfg.outputs
    wmat = torch.zeros(cfg.rows, geom.groups(cfg) * O, dtype=torch.int64)
    wmat[:geom.rows, :cout] = weight.reshape(cout, -1).t()
    layout = tile_weight_write_layout(cfg, geom)
    writes = []
    for x in range(geom.groups(cfg)):
        w = wmat[:, x * O:(x + 1) * O]
        _, flags = encode_weights(cfg, w)
        flag_bits = [sum(int(f) << s for s, f in enumerate(row)) for row in flags.tolist()]
        rows, outs = torch.meshgrid(torch.arange(cfg.rows), torch.arange(O), indexing="ij")
        writes += pack_rows(layout, {
            "xbar": torch.full((cfg.rows * O,), x), "row": rows.reshape(-1),
            "group": outs.reshape(-1), "value": w.reshape(-1),
            "flags": torch.tensor(flag_bits).repeat(cfg.rows)})
    return writes


def tile_layer(cfg: AccelConfig, geom: ConvGeometry, bias: torch.Tensor, shift: int,
               relu: bool) -> int:
    """The ``layer`` port value: shift, ReLU and the bias of every output channel."""
    b = torch.zeros(geom.groups(cfg) * cfg.outputs, dtype=torch.int64)
    b[:geom.out_channels] = bias
    return pack(tile_layer_layout(cfg, geom), shift=shift, relu=int(relu), bias=b.tolist())


@dataclass
class TileImage:
    """One image for the tile: the ``setup`` word, the kept pixels in AGU order, and what the
    golden model expects (``expected [Cout, Ho, Wo]``, ``cycles``, ``error``)."""
    label: str
    setup: int
    pixels: list[int]
    out_height: int
    out_width: int
    expected: torch.Tensor | None
    cycles: int
    error: bool = False
    window: tuple | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "setup": self.setup, "pixels": self.pixels,
                "out_height": self.out_height, "out_width": self.out_width,
                "error": self.error}


def tile_image(cfg: AccelConfig, geom: ConvGeometry, x: torch.Tensor, layer, *, crop=None,
               fraction=None, window=None, label: str = "") -> TileImage:
    """Image ``x [Cin, H, W]`` under a crop vector and fraction (the tile computes the window,
    ``mode = 1``) or an explicit ``window`` (``mode = 0``); ``layer`` is a
    ``golden.fixedpoint.QuantLayer``-like object (``weight, bias, shift, relu``)."""
    cin, H, W = x.shape
    setup = {"height": H, "width": W, "mode": 0, "crop": 0, "fraction": 0,
             "r0": 0, "r1": 0, "c0": 0, "c1": 0}
    if window is None:
        window = kept_window(crop, fraction, H, W)
        setup.update(mode=1, crop=crop_index(crop), fraction=fraction_code(fraction))
    else:
        setup.update(zip(("r0", "r1", "c0", "c1"), window))
    r0, r1, c0, c1 = window
    kept = x[:, r0:r1, c0:c1].permute(1, 2, 0).reshape(-1, cin)      # AGU order, [n, Cin]
    pixels = pack_rows(tile_pixel_layout(cfg, geom), {"x": kept})
    expected = cropped_conv2d(cfg, x.unsqueeze(0), layer.weight, layer.bias,
                              stride=geom.stride, padding=geom.padding, shift=layer.shift,
                              relu=layer.relu, window=window)[0]
    return TileImage(label or f"window {tuple(window)}", pack(tile_setup_layout(geom), **setup),
                     pixels, geom.out_size(H), geom.out_size(W), expected,
                     tile_cycles(cfg, geom, H, W, window), window=tuple(window))


def bad_setup(geom: ConvGeometry, label: str, **fields) -> TileImage:
    """A setup the tile must refuse (``error`` and ``done`` at the start edge, 1 cycle)."""
    setup = {"height": 1, "width": 1, "mode": 0, "crop": 0, "fraction": 0,
             "r0": 0, "r1": 1, "c0": 0, "c1": 1, **fields}
    return TileImage(label, pack(tile_setup_layout(geom), **setup), [], 0, 0, None, 1,
                     error=True)
