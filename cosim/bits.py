"""Packing and unpacking port payloads with the layouts of ``hdl/layouts.py``.

The RTL flattens each struct-typed port into one bit vector; these helpers use the very same
layout objects, so the bit position of every field is defined once. Packing is vectorised: a
whole golden trace becomes a list of Python integers (one per cycle) without a Python loop over
fields and cycles.
"""

from __future__ import annotations

import numpy as np
import torch
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["leaves", "pack_rows", "pack_bytes", "pack", "unpack", "field_mask"]


def leaves(layout: data.Layout, prefix: str = "", offset: int = 0):
    """Yield ``(path, offset, width, signed)`` for every scalar field, in bit order.

    Array elements are named ``field[i]``."""
    if isinstance(layout, data.ArrayLayout):
        elem = layout.elem_shape
        width = Shape.cast(elem).width
        for i in range(layout.length):
            yield from _leaf(elem, f"{prefix}[{i}]", offset + i * width)
        return
    for name, field in layout:
        path = f"{prefix}.{name}" if prefix else name
        yield from _leaf(field.shape, path, offset + field.offset)


def _leaf(shape, path, offset):
    if isinstance(shape, data.Layout):
        yield from leaves(shape, path, offset)
    else:
        s = Shape.cast(shape)
        yield path, offset, s.width, s.signed


def _flat_fields(layout: data.Layout, values: dict[str, torch.Tensor], rows: int):
    """Map each leaf to a ``[rows]`` int64 tensor from ``values`` keyed by top-level field."""
    out = []
    for name, field in layout:
        v = values[name]
        v = torch.as_tensor(v, dtype=torch.int64).reshape(rows, -1)
        sub = field.shape
        if isinstance(sub, data.ArrayLayout):
            width = Shape.cast(sub.elem_shape).width
            for i in range(sub.length):
                out.append((field.offset + i * width, width, v[:, i]))
        else:
            width = Shape.cast(sub).width if not isinstance(sub, data.Layout) else sub.size
            out.append((field.offset, width, v[:, 0]))
    return out


def pack_bytes(layout: data.Layout, values: dict[str, torch.Tensor]) -> np.ndarray:
    """Pack ``rows`` records as a ``uint8`` array ``[rows, ceil(size / 8)]``, each row
    little-endian (byte 0 holds bits 0..7); ``values`` as for :func:`pack_rows`."""
    rows = next(iter(values.values())).shape[0]
    nbytes = (layout.size + 7) // 8
    # 64-bit lanes, each leaf OR-ed in at its offset (split across two lanes if it straddles)
    lanes = np.zeros((rows, (nbytes + 7) // 8 + 1), dtype=np.uint64)
    for offset, width, v in _flat_fields(layout, values, rows):
        if width > 64:
            raise ValueError(f"a field of {width} bits is wider than 64")
        u = v.numpy().astype(np.uint64)          # two's complement for negative values
        if width < 64:
            u &= np.uint64((1 << width) - 1)
        lane, shift = divmod(offset, 64)
        lanes[:, lane] |= u << np.uint64(shift)
        if shift + width > 64:
            lanes[:, lane + 1] |= u >> np.uint64(64 - shift)
    return lanes.astype("<u8").view(np.uint8)[:, :nbytes].copy()


def pack_rows(layout: data.Layout, values: dict[str, torch.Tensor]) -> list[int]:
    """Pack ``rows`` records into integers; ``values[field]`` is ``[rows]`` or ``[rows, n]``
    for an array field. Negative values are stored in two's complement."""
    return [int.from_bytes(row.tobytes(), "little") for row in pack_bytes(layout, values)]


def pack(layout: data.Layout, **fields) -> int:
    """Pack one record (arrays as sequences)."""
    values = {k: torch.as_tensor([v], dtype=torch.int64) for k, v in fields.items()}
    return pack_rows(layout, values)[0]


def unpack(layout: data.Layout, value: int) -> dict[str, int]:
    """Every leaf of ``value`` as ``{path: int}`` (signed leaves sign-extended)."""
    out = {}
    for path, offset, width, is_signed in leaves(layout):
        v = (value >> offset) & ((1 << width) - 1)
        if is_signed and v >> (width - 1):
            v -= 1 << width
        out[path] = v
    return out


def field_mask(layout: data.Layout, name: str) -> int:
    """Bit mask of the top-level field ``name``."""
    field = layout[name]
    width = field.width
    return ((1 << width) - 1) << field.offset
