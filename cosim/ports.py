"""Ports of a generated block and the packing of per-cycle values, from the component's own
signature and layouts (``hdl/layouts.py``), so no port name or bit position is written here.

Port names are those of the generated Verilog: a struct or array member is one vector named
like the member (``col_sum``, ``layer``); a stream member ``wr`` is ``wr__valid`` and
``wr__payload``; clocked blocks also have ``clk`` and ``rst`` (synchronous reset of every
register to 0).
"""

from __future__ import annotations

import torch
from amaranth.hdl import Const, Shape, ValueCastable
from amaranth.lib import data, wiring

from .bits import pack_rows, unpack

__all__ = ["component_ports", "pack_port", "port_fields", "pack_columns", "column", "width"]


def component_ports(component: wiring.Component, *, clocked: bool
                    ) -> dict[str, tuple[str, object]]:
    """Verilog port name -> (``"input"``/``"output"``, shape) of ``component``, from its
    signature (constant members such as ``wr.ready`` are not ports); ``rst`` is added for a
    clocked block (``clk`` is driven by the bench, not by the table)."""
    out = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            continue
        direction = "input" if member.flow == wiring.In else "output"
        out["__".join(map(str, path))] = (direction, member.shape)
    if clocked:
        out["rst"] = ("input", 1)
    return out


def width(shape) -> int:
    """Bits of a port of ``shape`` (a layout or a plain shape)."""
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


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


def pack_columns(shapes: dict, column) -> dict[str, list[int]]:
    """Packs every port of ``shapes`` (name -> shape); ``column(key)`` gives the per-cycle
    values of ``key``: a port name, or ``port.field`` for each field of a struct port."""
    out = {}
    for name, shape in shapes.items():
        if isinstance(shape, data.StructLayout):
            out[name] = pack_port(shape, {f: column(f"{name}.{f}") for f, _ in shape})
        else:
            out[name] = pack_port(shape, column(name))
    return out


def port_fields(name: str, shape, value: int) -> dict[str, int]:
    """Every field of the packed ``value`` of port ``name``, as ``{"col_sum[3]": v, ...}``
    (signed fields sign-extended; a plain port is one field named like the port)."""
    if isinstance(shape, data.Layout):
        return {(f"{name}{path}" if path.startswith("[") else f"{name}.{path}"): v
                for path, v in unpack(shape, value).items()}
    return unpack(data.StructLayout({name: shape}), value)


def column(rows: list[dict], key: str):
    """The per-cycle values of ``key`` in ``rows``: a ``[cycles, ...]`` tensor when each value
    is a list (an array port), else the list of values."""
    values = [row[key] for row in rows]
    return torch.as_tensor(values, dtype=torch.int64) if isinstance(values[0], list) \
        else values
