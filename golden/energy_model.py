"""The analytic energy model of a conv layer on crossbars: event counts and pJ, no simulation.

A ``Cin -> Cout`` ``k x k`` convolution is mapped as :func:`golden.layer.conv2d` maps it: its
im2col patches have ``K = Cin*k*k`` rows, cut into ``row_tiles`` crossbars of ``cfg.rows`` rows
and ``groups`` of ``cfg.outputs`` outputs (:class:`arch.geometry.Mapping`). Under a kept
``window`` of the layer's input map (``golden.crop``), only the output positions of
:func:`golden.crop.output_window` are computed; each computed position is one input vector of
every ``(row tile, group)`` crossbar, so ``vectors = positions * row_tiles * groups``, and each
vector has the per-vector events of :mod:`golden.events` (the Datapath's schedule). On top of
the Datapath, the layer reads its kept input activations once from the eDRAM buffer (the AGU
order of :func:`golden.crop.agu_sequence`) and writes its computed outputs once.

Counts (all exact for the Datapath; the test suite holds them equal to
:func:`golden.events.datapath_events` on the explicit cropped im2col vectors and to the RTL):

=======================  ===================================================================
``positions``            computed output positions (``crop_counts(...).positions``)
``crossbars``            ``row_tiles * groups``
``vectors``              ``positions * crossbars`` (= input and output handshakes)
``weight_writes``        ``crossbars * rows * outputs`` (each crossbar programmed once)
``xbar_steps`` ...       per vector as :mod:`golden.events` (``T*X`` crossbar steps, ``T*R``
                         row reads, ``T*C`` sample-holds, ADC conversions and shift-adds,
                         ``T*G`` ADC steps)
``dac_drives``           ``groups *`` (cropped im2col entry, chunk) pairs with a nonzero DAC
                         level; ``dac_level_sum`` the sum of those levels
``ifmap_reads``          kept input activations read (``kept positions * Cin``);
                         ``ifmap_read_bits = ifmap_reads * input_bits``
``ofmap_writes``         outputs written (``positions * Cout``); ``ofmap_write_bits`` ``=
                         ofmap_writes * output_bits``
``fmap_writes``          kept pixels (words of ``Cin`` activations) written into a
                         ``ConvTile``'s input memory (its write enables)
``gather_reads``         the ``ConvTile``'s im2col gather: ``positions * k * k`` input-memory
                         words read (its read enables, padding and cropped taps included);
                         ``gather_read_bits = gather_reads * Cin * input_bits``
``idle_cycles``          0: the layer streams its vectors back to back (a co-simulated run
                         has some; the calibration fits their cost)
=======================  ===================================================================

Without the input activations ``x`` the DAC counts are an **upper bound** (every DAC level of
every im2col row of every computed position driven, padding included); with ``x`` they are
exact per image and the data-dependent counts are ``[B]`` tensors.

Energy (:func:`conv_layer_energy`): the event counts times the table's pJ per event
(:func:`arch.energy.event_pj`, ADC scaled to ``cfg.adc_bits``) plus, when a calibration is
available, the digital energy of each block as pJ per operation fitted on RTL toggle runs
(:class:`Calibration`, ``configs/energy/calibration/<config>/<table>.toml``, made by
``aqua energy --calibrate``). A calibration is fitted for one config *and* one energy table
(the toggles are priced with the table); without one for the pair, the digital logic is not
charged and :attr:`LayerEnergy.calibration_status` says so (:func:`calibration_status`).

The layer is an :class:`arch.geometry.ConvGeometry` (:func:`layer_geometry` of a quantized
layer); the event names, the blocks and the calibrated operations are those of the registry in
:mod:`arch.energy`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from arch.config import AccelConfig
from arch.energy import (BLOCKS, ENERGY_DIR, LAYER_EVENTS, OPS, TILE_BLOCKS, TILE_OPS,
                         EnergyTable, EnergyTableError, event_energy)
from arch.geometry import ConvGeometry, Mapping, conv_out_size

from .arith import input_chunks
from .crop import check_window, crop_counts, output_window

__all__ = ["conv_layer_events", "ima_tile_events", "conv_layer_energy", "LayerEnergy", "Calibration",
           "load_calibration", "save_calibration", "calibration_path", "calibration_status",
           "layer_geometry", "CALIBRATION_DIR", "LAYER_EVENTS", "OPS", "BLOCKS", "TILE_OPS",
           "TILE_BLOCKS", "tile_idle_cycles"]

CALIBRATION_DIR = ENERGY_DIR / "calibration"

def _multiplicity(H: int, W: int, k: int, s: int, p: int, ow) -> torch.Tensor:
    """``[H, W]``: how many (computed output position, kernel offset) pairs read each input
    position, i.e. how often it appears in the im2col patches of the positions in ``ow``."""
    ho, wo = conv_out_size(H, k, s, p), conv_out_size(W, k, s, p)
    on = torch.zeros(ho, wo, dtype=torch.float64)
    on[ow[0]:ow[1], ow[2]:ow[3]] = 1
    cols = on.reshape(1, 1, ho * wo).expand(1, k * k, ho * wo)
    m = F.fold(cols, (H, W), (k, k), padding=p, stride=s)          # sums patches back
    return m.reshape(H, W).round().to(torch.int64)


def _dac_counts(cfg: AccelConfig, x: torch.Tensor, window, mult: torch.Tensor):
    """``(drives, level_sum)`` per image of the cropped im2col inputs of one crossbar group:
    ``Σ`` over kept input values of (nonzero chunks, chunk sum) times their multiplicity."""
    r0, r1, c0, c1 = window
    kept = x[:, :, r0:r1, c0:c1]                                    # [B, Cin, h, w]
    levels = input_chunks(cfg, kept.unsqueeze(-1)).squeeze(-1)       # [B, Cin, h, w, T]
    m = mult[r0:r1, c0:c1]
    drives = ((levels != 0).sum(-1) * m).sum(dim=(1, 2, 3))
    level_sum = (levels.sum(-1) * m).sum(dim=(1, 2, 3))
    return drives, level_sum


def layer_geometry(layer) -> ConvGeometry:
    """The :class:`~arch.geometry.ConvGeometry` of a quantized conv layer
    (``golden.fixedpoint.QuantLayer``: ``weight [Cout, Cin, k, k]``, ``stride``, ``padding``,
    input ``x [B, Cin, H, W]``)."""
    cout, cin, k, _ = layer.weight.shape
    _, _, H, W = layer.x.shape
    return ConvGeometry(int(cin), int(cout), int(k), int(layer.stride), int(layer.padding),
                        int(H), int(W))


def conv_layer_events(cfg: AccelConfig, geometry: ConvGeometry, *, window=None,
                      x: torch.Tensor | None = None, chunks: torch.Tensor | None = None,
                      absent: int = 0) -> dict[str, int | torch.Tensor]:
    """Event counts of the conv layer ``geometry`` on ``cfg``'s crossbars (the table in the
    module docstring, keys :data:`LAYER_EVENTS`).

    Parameters
    ----------
    geometry : arch.geometry.ConvGeometry
        The layer: channels, kernel, stride, padding and its ``height x width`` input map.
    window : (r0, r1, c0, c1) or None
        Kept window of this layer's ``height x width`` input map; ``None`` keeps everything.
    x : torch.Tensor, optional
        The layer's integer input activations, ``[B, Cin, H, W]`` or ``[Cin, H, W]``. With
        ``x``, ``dac_drives`` and ``dac_level_sum`` are exact per image (cropped and padding
        taps drive ``absent``, by default 0: nothing) and are ``[B]`` int64 tensors (``[1]``
        for a ``[Cin, H, W]`` input); every other count is an int. Without ``x`` they are an
        **upper bound**: every DAC level of every im2col entry of every computed position is
        driven (``dac_drives`` counts chunks, ``dac_level_sum`` their maximum levels).
    chunks : torch.Tensor, optional
        Per-region precision (``docs/arithmetic.md``, "Per-region precision"): int ``[Ho, Wo]``,
        the chunks ``T_pos`` each output position streams (``golden.precision.position_chunks``),
        positive exactly on the computed positions of ``window``. The per-chunk events
        (crossbar steps, row reads, sample-holds, ADC steps and conversions, shift-adds) are
        then ``crossbars * sum(chunks)`` chunks in place of ``vectors * T``; give ``x`` reduced
        for exact DAC counts. ``None``: every computed position streams all ``T`` chunks.
    absent : int
        The input code an absent tap (padding, or a pixel outside ``window``) of a computed
        position drives: 0, or the offset ``c = 2**(Bx-1)`` of a layer with the input offset
        rule (``docs/arithmetic.md``, "Signed activations on unsigned inputs"; ``x`` is then
        the driven codes). Counted in the exact DAC counts (with ``x``) only.

    Raises
    ------
    ValueError
        For a bad geometry or window, or ``x`` of the wrong shape or range.
    """
    if not isinstance(geometry, ConvGeometry):
        raise TypeError(f"geometry must be an arch.geometry.ConvGeometry, not "
                        f"{type(geometry).__name__}")
    g = geometry
    in_channels, out_channels, k = g.in_channels, g.out_channels, g.kernel
    stride, padding, H, W = g.stride, g.padding, g.height, g.width
    window = (0, H, 0, W) if window is None else check_window(window, H, W)
    cc = crop_counts(cfg, in_channels, out_channels, H, W, k, stride, padding, window)
    K = g.rows
    mapping = Mapping(cfg, g)
    tiles, groups = mapping.row_tiles, mapping.groups
    V, T = cc.activations, cfg.input_cycles
    VT = V * T if chunks is None else tiles * groups * _chunk_total(cfg, g, window, chunks)
    kept = (window[1] - window[0]) * (window[3] - window[2])
    ev: dict[str, int | torch.Tensor] = {
        "positions": cc.positions,
        "crossbars": tiles * groups,
        "vectors": V,
        "input_handshakes": V,
        "output_handshakes": V,
        "weight_writes": tiles * groups * cfg.rows * cfg.outputs,
        "xbar_steps": VT * cfg.xbar_steps,
        "row_activations": VT * cfg.rows,
        "sample_holds": VT * cfg.cols,
        "adc_steps": VT * cfg.adc_steps,
        "adc_conversions": VT * cfg.cols,
        "shift_adds": VT * cfg.cols,
        "ifmap_reads": kept * in_channels,
        "ifmap_read_bits": kept * in_channels * cfg.input_bits,
        "ofmap_writes": cc.positions * out_channels,
        "ofmap_write_bits": cc.positions * out_channels * cfg.output_bits,
        "fmap_writes": kept,
        "gather_reads": cc.positions * k * k,
        "gather_read_bits": cc.positions * k * k * in_channels * cfg.input_bits,
        "idle_cycles": 0,
    }
    entries = cc.positions * K                      # im2col entries of one group
    if x is None:
        ev["dac_drives"] = groups * entries * T
        ev["dac_level_sum"] = groups * entries * sum((1 << cfg.chunk_width(t)) - 1
                                                     for t in range(T))
    else:
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or tuple(x.shape[1:]) != (in_channels, H, W):
            raise ValueError(f"x must be [B, {in_channels}, {H}, {W}] or "
                             f"[{in_channels}, {H}, {W}], not {list(x.shape)}")
        ow = output_window(window, H, W, k, stride, padding)
        mult = _multiplicity(H, W, k, stride, padding, ow)
        drives, level_sum = _dac_counts(cfg, x, window, mult)
        if absent:
            r0, r1, c0, c1 = window
            taps = cc.positions * k * k - int(mult[r0:r1, c0:c1].sum())   # per channel
            lv = input_chunks(cfg, torch.tensor([int(absent)]))[:, 0]      # [T] levels
            drives = drives + in_channels * taps * int((lv != 0).sum())
            level_sum = level_sum + in_channels * taps * int(lv.sum())
        ev["dac_drives"] = groups * drives
        ev["dac_level_sum"] = groups * level_sum
    return {key: ev[key] for key in LAYER_EVENTS}


def ima_tile_events(cfg: AccelConfig, geometry: ConvGeometry, *, window=None,
                    crossbars: int | None = None, passes=None) -> dict[str, int]:
    """The IMA's own events (:data:`arch.energy.IMA_EVENTS`) of one image on an
    ``IMATile(cfg, geometry, crossbars)``: every pass in ``passes`` (default all of the
    :class:`~arch.geometry.ImaPlan`'s) streams the ``n`` computed positions of ``window``
    (``golden.crop.crop_counts``), one vector each. Per vector of pass ``p`` (chunk
    ``c = p % chunks``) each of the ``lanes * outputs`` reduction outputs takes ``span - 1``
    adder-tree additions plus one adding the partial sum when ``c > 0``; a layer with
    ``chunks > 1`` reads one partial-sum word per vector in every pass (the read port is
    enabled at each take edge) and writes one per vector in a pass with ``c < chunks - 1``.
    A word is ``lanes * outputs * cfg.sum_bits(row_tiles)`` bits. The RTL's counts
    (``cosim.imatile.rtl_ima_events``) equal these exactly.

    >>> from arch.config import load_config
    >>> from golden.cnn import CONV_SPECS
    >>> ev = ima_tile_events(load_config("small"), CONV_SPECS[2].geometry)
    >>> ev["vectors"], ev["ima_reduce_adds"], ev["psum_reads"], ev["psum_writes"]
    (2048, 61440, 2048, 1024)
    """
    if not isinstance(geometry, ConvGeometry):
        raise TypeError(f"geometry must be an arch.geometry.ConvGeometry, not "
                        f"{type(geometry).__name__}")
    g = geometry
    H, W = g.height, g.width
    window = (0, H, 0, W) if window is None else check_window(window, H, W)
    n = crop_counts(cfg, g.in_channels, g.out_channels, H, W, g.kernel, g.stride, g.padding,
                    window).positions
    mapping = Mapping(cfg, g)
    plan = mapping.ima(crossbars)
    passes = range(plan.passes) if passes is None else list(passes)
    word = plan.lanes * cfg.outputs * cfg.sum_bits(mapping.row_tiles)
    reads = n * len(passes) if plan.chunks > 1 else 0
    writes = n * sum(plan.chunk(p) < plan.chunks - 1 for p in passes)
    adds = n * plan.lanes * cfg.outputs * sum(plan.span - 1 + (plan.chunk(p) > 0)
                                             for p in passes)
    return {"vectors": n * len(passes), "ima_reduce_adds": adds, "psum_reads": reads,
            "psum_read_bits": reads * word, "psum_writes": writes,
            "psum_write_bits": writes * word}


def _chunk_total(cfg: AccelConfig, g: ConvGeometry, window, chunks) -> int:
    """``sum(chunks)``, checked: ``[Ho, Wo]`` ints in ``[0, T]``, positive exactly on the
    computed positions (:func:`golden.crop.output_window` of ``window``)."""
    ho, wo = g.out_height, g.out_width
    ch = torch.as_tensor(chunks)
    if ch.is_floating_point() or tuple(ch.shape) != (ho, wo):
        raise ValueError(f"chunks must be an integer [{ho}, {wo}] map, not "
                         f"{ch.dtype} {list(ch.shape)}")
    ch = ch.to(torch.int64)
    T = cfg.input_cycles
    if ch.numel() and (int(ch.min()) < 0 or int(ch.max()) > T):
        raise ValueError(f"chunks must lie in [0, {T}], found values in "
                         f"[{int(ch.min())}, {int(ch.max())}]")
    r0, r1, c0, c1 = output_window(window, g.height, g.width, g.kernel, g.stride, g.padding)
    on = torch.zeros(ho, wo, dtype=torch.bool)
    on[r0:r1, c0:c1] = True
    if not torch.equal(ch > 0, on):
        raise ValueError("chunks must be positive exactly on the computed output positions "
                         f"{(r0, r1, c0, c1)} of the window")
    return int(ch.sum())


@dataclass(frozen=True)
class Calibration:
    """Digital energy per operation of each block, fitted on RTL toggle runs of one config.

    ``pj[block][op]`` is pJ per operation ``op`` of :data:`OPS` (charged per the event count
    ``OPS[op]``); ``provenance`` records the runs, date, seed, table and fit residuals."""
    config: str
    digest: str
    table: str
    pj: dict[str, dict[str, float]]
    provenance: dict = field(default_factory=dict)
    path: str = ""
    tile_pj: dict[str, dict[str, float]] = field(default_factory=dict)

    def digital(self, events: dict, *, tile: bool = False
                ) -> dict[str, dict[str, float | torch.Tensor]]:
        """``{block: {op: pJ}}`` for the counts of :func:`conv_layer_events` (or any dict with
        the counts of :data:`OPS`); with ``tile``, also the ``ConvTile``'s own logic
        (:data:`TILE_OPS`, ``tile_pj``)."""
        out = {b: {op: _scale(events[OPS[op]], e) for op, e in ops.items()}
               for b, ops in self.pj.items()}
        if tile:
            for b, ops in self.tile_pj.items():
                out.setdefault(b, {}).update({op: _scale(events[TILE_OPS[op]], e)
                                              for op, e in ops.items()})
        return out

    def to_toml(self) -> str:
        """The calibration file (read back by :func:`load_calibration`)."""
        import json

        lines = ["# Digital energy per operation, fitted by `aqua energy --calibrate` on RTL",
                 "# toggle runs (docs/energy.md). pJ per operation, per block.",
                 f"config = {json.dumps(self.config)}", f"digest = {json.dumps(self.digest)}",
                 f"table = {json.dumps(self.table)}", ""]
        for section, table in (("pj", self.pj), ("tile_pj", self.tile_pj)):
            for b, ops in table.items():
                lines.append(f"[{section}.{b}]")
                lines += [f"{op} = {v!r}" for op, v in ops.items()]
                lines.append("")
        lines.append("[provenance]")
        lines += _toml_values(self.provenance, "provenance")
        return "\n".join(lines) + "\n"


def _toml_values(d: dict, prefix: str) -> list[str]:
    """``d`` as TOML lines (scalars, lists and inline tables; nested dicts as sub-tables)."""
    out, subs = [], []
    for key, v in d.items():
        if isinstance(v, dict):
            subs.append((key, v))
        else:
            out.append(f"{key} = {_toml_inline(v)}")
    for key, v in subs:
        out += ["", f"[{prefix}.{key}]", *_toml_values(v, f"{prefix}.{key}")]
    return out


def _toml_inline(v) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_inline(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_inline(e)}" for k, e in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _scale(count, pj: float):
    return count.double() * pj if isinstance(count, torch.Tensor) else count * pj


def _name(x) -> str:
    return x if isinstance(x, str) else x.name


def calibration_path(cfg: AccelConfig | str, table: EnergyTable | str) -> Path:
    """Where the calibration of config ``cfg`` under energy table ``table`` (objects or names)
    lives: ``configs/energy/calibration/<config>/<table>.toml``. One file per pair, so a
    calibration for another table never overwrites this one."""
    return CALIBRATION_DIR / _name(cfg) / f"{_name(table)}.toml"


def save_calibration(cal: Calibration, path: str | Path | None = None) -> Path:
    """Write ``cal`` to ``path`` or to :func:`calibration_path` of its config and table (the
    folder is made); returns the path."""
    p = Path(path) if path is not None else calibration_path(cal.config, cal.table)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(cal.to_toml())
    return p


def calibration_status(cal: Calibration | None, cfg: AccelConfig | str,
                       table: EnergyTable | str) -> str:
    """One line for reports: the calibration file used, or that there is none for this config
    and table and the digital logic is therefore not counted."""
    if cal is not None:
        return cal.path or f"{cal.config} / {cal.table}"
    c, t = _name(cfg), _name(table)
    return (f"none for config {c} and table {t} - digital energy not counted (fit it with "
            f"`aqua energy --calibrate --config {c} --table {t}`)")


def load_calibration(cfg: AccelConfig, table: EnergyTable | str,
                     path: str | Path | None = None) -> Calibration | None:
    """The calibration of ``cfg`` under the energy table ``table`` (:func:`calibration_path`,
    or the file ``path``), or ``None`` if there is none, it was fitted for another tile (its
    ``digest`` differs from ``cfg.digest``) or under another table.

    Raises
    ------
    EnergyTableError
        If the file exists but is malformed (names the file and the key).
    """
    p = Path(path) if path is not None else calibration_path(cfg, table)
    if not p.is_file():
        return None
    try:
        doc = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EnergyTableError(f"{p}: invalid TOML: {exc}") from None
    for key in ("config", "digest", "table", "pj"):
        if key not in doc:
            raise EnergyTableError(f"{p}: missing {key!r}")
    if doc["digest"] != cfg.digest or doc["table"] != _name(table):
        return None
    tables = {}
    for section, blocks, allowed in (("pj", BLOCKS, OPS), ("tile_pj", TILE_BLOCKS, TILE_OPS)):
        tables[section] = {}
        for b, ops in doc.get(section, {}).items():
            if b not in blocks:
                raise EnergyTableError(f"{p}: [{section}.{b}]: unknown block; allowed: "
                                       f"{', '.join(blocks)}")
            bad = set(ops) - set(allowed)
            if bad:
                raise EnergyTableError(f"{p}: [{section}.{b}] has unknown operations "
                                       f"{sorted(bad)}; allowed: {', '.join(allowed)}")
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
                   for v in ops.values()):
                raise EnergyTableError(f"{p}: [{section}.{b}] values must be non-negative "
                                       f"numbers")
            tables[section][b] = {op: float(v) for op, v in ops.items()}
    return Calibration(doc["config"], doc["digest"], doc["table"], tables["pj"],
                       doc.get("provenance", {}), str(p), tables["tile_pj"])


@dataclass(frozen=True)
class LayerEnergy:
    """Energy of one conv layer (:func:`conv_layer_energy`).

    ``events``: :func:`conv_layer_events`; ``by_event``: pJ per table event (``adc_conversion``,
    ``dac_drive``, ... of :data:`arch.energy.EVENT_MAP`) and, when calibrated, per digital
    operation (``digital.<op>``, summed over blocks); ``by_block``: pJ per block of
    :data:`BLOCKS`; ``total_pj``: their sum. Values are floats, or ``[B]`` float64 tensors when
    ``x`` was batched. ``calibration``: the calibration file used, or ``None`` (event energies
    only: the digital logic is not charged); ``calibration_status`` says which, in words
    (:func:`calibration_status`).
    """
    events: dict
    by_event: dict
    by_block: dict
    total_pj: float | torch.Tensor
    calibration: str | None = None
    calibration_status: str = ""


def tile_idle_cycles(events: dict) -> int:
    """Idle cycles of the Datapaths of a ``ConvTile`` run (charged per ``idle_cycle``): each
    crossbar waits while the kept pixels load (``fmap_writes`` cycles), and while the others
    are programmed (``weight_writes`` are one cycle each, one crossbar at a time)."""
    n = events["crossbars"]
    return n * events["fmap_writes"] + (n - 1) * events["weight_writes"]


def conv_layer_energy(cfg: AccelConfig, table: EnergyTable, geometry: ConvGeometry, *,
                      window=None, x: torch.Tensor | None = None,
                      calibration: Calibration | None = None, tile: bool = False,
                      chunks: torch.Tensor | None = None, absent: int = 0) -> LayerEnergy:
    """pJ of the conv layer ``geometry``: :func:`conv_layer_events` times ``table`` (ADC
    scaled to ``cfg.adc_bits``), plus the calibrated digital energy.

    ``tile``: the layer as one ``ConvTile`` computes it (its geometry must fit one crossbar):
    memory energy is that of the tile's memories (:data:`arch.energy.TILE_MEMORY`: the
    gather's reads, the input memory's and the output memory's writes, per bit) and the
    calibration's ``tile_pj`` charges the tile's own logic (block ``agu`` among them).

    ``chunks``: per-position chunk counts of a precision plan; ``absent``: the code an absent
    tap drives (both :func:`conv_layer_events`).

    ``calibration=None`` loads the calibration of ``cfg`` and ``table``
    (:func:`load_calibration`); if there is none, only the event energies are charged,
    ``LayerEnergy.calibration`` is ``None`` and ``LayerEnergy.calibration_status`` says so. Without ``x`` the DAC energy is an
    upper bound (see :func:`conv_layer_events`).

    Raises
    ------
    ValueError
        If an explicit ``calibration`` was fitted for another config or table.
    """
    events = conv_layer_events(cfg, geometry, window=window, x=x, chunks=chunks, absent=absent)
    if calibration is None:
        calibration = load_calibration(cfg, table)
    elif calibration.digest != cfg.digest or calibration.table != table.name:
        raise ValueError(f"calibration {calibration.path or calibration.config} is for config "
                         f"{calibration.config} ({calibration.digest}) and table "
                         f"{calibration.table}, not {cfg.name} ({cfg.digest}) and {table.name}")
    if tile:
        events = {**events, "idle_cycles": tile_idle_cycles(events)}
    by_event, by_block = {}, dict.fromkeys(TILE_BLOCKS if tile else BLOCKS, 0.0)
    for name, e in event_energy(table, events, cfg, tile=tile).items():
        by_event[name] = e["pj"]
        by_block[e["block"]] = by_block[e["block"]] + e["pj"]
    if calibration is not None:
        for b, ops in calibration.digital(events, tile=tile).items():
            for op, pj in ops.items():
                by_event[f"digital.{op}"] = by_event.get(f"digital.{op}", 0.0) + pj
                by_block[b] = by_block[b] + pj
    total = sum(by_block.values())
    return LayerEnergy(events, by_event, by_block, total,
                       calibration.path or calibration.config if calibration else None,
                       calibration_status(calibration, cfg, table))
