"""Toggle-based energy of a co-simulated ``ConvTile``: per image (crop), per block and class,
beside the analytic model, and the per-operation calibration of the tile's own logic.

One simulation runs the images back to back (``cosim.tile.run_tile`` with waves); the bench
records the start edge and the edge raising ``done`` of each image. The FST is read once into
per-cycle toggles (:func:`cosim.toggles.fst_cycle_toggles`), grouped by block and by whether a
net belongs to a Datapath (``xbar<i>.``) or to the tile itself (AGUs, memory ports, gather, FSM);
an image's energy is the sum over its cycles (start edge to ``done`` edge) **plus the weight
programming** before the first image (each image is charged as a run of its own would be). The
read-out of the output memory between images is not charged. Events are counted over the same
windows (:func:`cosim.events.rtl_tile_events`) and must equal
``golden.energy_model.conv_layer_events`` exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["TileEnergyRun", "tile_energy_run", "tile_toggles", "analytic_tile", "fit_tile",
           "TILE_FIT_CROPS", "TILE_FIT_IMAGE"]

#: the calibration of the tile's own logic is fitted on these crops of demo layer 0 on test
#: image :data:`TILE_FIT_IMAGE`; the report's image 0 and the other crops are held out
TILE_FIT_CROPS = (0, 5, 10, 15)
TILE_FIT_IMAGE = 1


def _group(classes):
    """``key -> "block"`` for nets of a Datapath, ``"block.tile"`` for the tile's own."""
    from .toggles import block_of

    def group(key: str) -> str:
        b = block_of(key, classes)
        return b if re.match(r"xbar\d+\.", key) else f"{b}.tile"
    return group


@dataclass
class TileEnergyRun:
    """A co-simulated tile run read into per-image windows (see the module docstring)."""
    run: object                    # cosim.tile.TileRun
    geom: object
    rising: np.ndarray
    per: dict                      # (group, class) -> toggles per cycle
    reg_bits: dict                 # group -> register bits
    windows: list                  # per image: (first cycle, last cycle), indices in rising
    program: tuple                 # the programming cycles (first, last)
    events: list                   # per image: RTL events, programming included
    waves: str

    def digital(self, table, i: int) -> dict[str, dict[str, float]]:
        """pJ per group (``block`` / ``block.tile``) and class of image ``i`` (its cycles and
        the programming): :func:`arch.energy.block_toggle_energy` of each group."""
        from arch.energy import block_toggle_energy

        (a, b), (p, q) = self.windows[i], self.program
        out = {}
        for g in sorted({g for g, _ in self.per}):
            counts = {c: int(arr[a:b + 1].sum() + arr[p:q + 1].sum())
                      for (gg, c), arr in self.per.items() if gg == g}
            out[g] = block_toggle_energy(table, counts, self.reg_bits.get(g, 0),
                                         (b - a + 1) + (q - p + 1))
        return out


def _total(e: dict) -> float:
    return float(e["register"] + e["comb"] + e["clock"])


def by_block(digital: dict) -> dict[str, float]:
    """pJ per block (Datapath and tile nets of a block together) of :meth:`TileEnergyRun.digital`."""
    out: dict[str, float] = {}
    for g, e in digital.items():
        b = g.split(".")[0]
        out[b] = out.get(b, 0.0) + _total(e)
    return out


def by_class(digital: dict) -> dict[str, float]:
    """pJ per class: ``register``, ``comb``, ``memport`` (memory-port toggles), ``clock``."""
    out = dict.fromkeys(("register", "comb", "memport", "clock"), 0.0)
    for e in digital.values():
        mp = e["memport_toggles"] * (e["comb"] / (e["comb_toggles"] + e["memport_toggles"])
                                     if e["comb_toggles"] + e["memport_toggles"] else 0.0)
        out["register"] += e["register"]
        out["comb"] += e["comb"] - mp
        out["memport"] += mp
        out["clock"] += e["clock"]
    return out


def tile_energy_run(cfg, geom, layer, images, sim: str = "verilator", *, seed: int = 0,
                    label: str = "tile-energy") -> TileEnergyRun:
    """Co-simulate ``images`` on ``ConvTile(cfg, geom)`` with waves on, check the outputs
    against the golden model, and read per-image toggles and events."""
    from .events import rtl_tile_events
    from .tile import tile_sources
    from .toggles import fst_cycle_toggles

    bits, run = tile_toggles(cfg, geom, layer, images, sim, seed=seed, label=label)
    waves, classes = bits.source, bits.classes
    verilog = tile_sources(cfg, geom)[0][0]
    group = _group(classes)
    rising, per = fst_cycle_toggles(waves, classes, blocks=(), group=group)
    reg_bits: dict[str, int] = {}
    for key, arr in bits.bits.items():
        if bits.cls(key) == "register":
            reg_bits[group(key)] = reg_bits.get(group(key), 0) + len(arr)
    t = [(int(r["t_start"]), int(r["t_done"])) for r in run.results]
    scale = _time_scale(rising, t[0][0])
    idx = lambda ns: int(np.searchsorted(rising, ns * scale))        # noqa: E731
    windows = [(idx(a), idx(b)) for a, b in t]
    program = (0, windows[0][0] - 1)
    ev = rtl_tile_events(cfg, geom, waves, verilog,
                         [(rising[a], rising[b]) for a, b in [program, *windows]])
    prog = ev[0]
    events = [{**e, "weight_writes": e["weight_writes"] + prog["weight_writes"]}
              for e in ev[1:]]
    return TileEnergyRun(run, geom, rising, per, reg_bits, windows, program, events,
                         str(waves))


def tile_toggles(cfg, geom, layer, images, sim: str, *, seed: int = 0,
                 label: str = "tile-toggles"):
    """``(Toggles, TileRun)``: co-simulate ``images`` on ``ConvTile(cfg, geom)`` with waves on
    (outputs checked against the golden model) and count every net's per-bit toggles, with
    the tile's blocks (:data:`cosim.toggles.TILE_BLOCKS`) and classes (memory ports
    included)."""
    from .tile import run_tile, tile_sources
    from .toggles import TILE_BLOCKS, Toggles, fst_toggles, signal_classes

    run = run_tile(cfg, geom, layer, images, sim, seed=seed, label=label, waves=True)
    if not run.passed:
        raise RuntimeError(f"{sim} tile run failed against the golden model: {run.message}")
    waves = run.waves
    if waves is None:
        raise RuntimeError(f"{sim} wrote no FST for the tile run")
    classes = signal_classes(tile_sources(cfg, geom)[0][0])
    return Toggles(fst_toggles(waves), classes, run.cycles, str(waves), TILE_BLOCKS), run


def _time_scale(rising: np.ndarray, t_ns: int) -> int:
    """Waveform time units per ns (the FST's timescale), from a rising edge at ``t_ns``."""
    for scale in (1, 1000, 1_000_000):
        if np.any(rising == t_ns * scale):
            return scale
    raise RuntimeError(f"no rising edge at {t_ns} ns in the waveform")


def analytic_tile(cfg, table, layer, window, calibration=None):
    """``golden.energy_model.conv_layer_energy(..., tile=True)`` of ``layer`` (one image)
    under the kept ``window``."""
    from aqua.cmd_energy import layer_geometry
    from golden.energy_model import conv_layer_energy

    return conv_layer_energy(cfg, table, window=window, x=layer.x, calibration=calibration,
                             tile=True, **layer_geometry(layer))


def fit_tile(table, runs: list[TileEnergyRun], images: list[list[int]]):
    """``({block: {op: pJ}}, residuals)``: NNLS of the tile's own energy per group
    (``agu.tile``, ``memory.tile``, ``control.tile``) over the images ``images[j]`` of
    ``runs[j]``, against the counts of :data:`golden.energy_model.TILE_OPS`."""
    from scipy.optimize import nnls

    from golden.energy_model import TILE_OPS

    rows, ys = [], {}
    for r, idx in zip(runs, images):
        for i in idx:
            rows.append([float(r.events[i][TILE_OPS[op]]) for op in TILE_OPS])
            d = r.digital(table, i)
            for g, e in d.items():
                if g.endswith(".tile"):
                    ys.setdefault(g.split(".")[0], []).append(_total(e))
    A = np.asarray(rows)
    scale = np.where(A.max(0) > 0, A.max(0), 1.0)
    pj, residual = {}, {}
    for b, y in ys.items():
        y = np.asarray(y)
        coef = nnls(A / scale, y)[0] / scale
        pj[b] = {op: float(v) for op, v in zip(TILE_OPS, coef)}
        residual[b] = float(np.sqrt(np.mean((A @ coef - y) ** 2)) / np.mean(np.abs(y)))
    return pj, residual
