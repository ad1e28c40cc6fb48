"""Event counts of a co-simulated Datapath run, read from its FST waveform.

Every count is taken from RTL signals sampled just before each rising clock edge (the state the
edge acts on; registers change at the edge, the bench drives inputs at the falling edge):

* ``input_handshakes`` / ``output_handshakes`` / ``weight_writes``: edges with
  ``i.valid & i.ready`` / ``o.valid & o.ready`` / ``wr.valid``;
* ``xbar_steps``: edges with ``phase = XBAR``; ``row_activations`` = that times
  ``rows_per_cycle``; ``dac_drives`` / ``dac_level_sum``: at those edges, the rows of the
  crossbar's ``levels`` input in the row group its ``step`` input selects (decoded with the
  port's own layout), rows with a nonzero level and the sum of the levels;
* ``adc_steps``: cycles with the ``adc_valid`` register set (each ADC step edge sets it for
  exactly one cycle; the schedule never stalls inside a vector); ``adc_conversions`` and
  ``shift_adds`` = that times ``adc_columns_per_cycle``;
* ``sample_holds``: first ADC step edges of a chunk (an ADC edge right after a crossbar
  edge) times ``cols``.

With ``[pipeline] overlap`` a crossbar step can share its edge with an ADC step (phase
``XBAR_ADC``), so the crossbar steps are the edges with the crossbar's own ``en`` input set,
and ``sample_holds`` are the edges with its ``hold`` input set (the sample-and-hold bank
loading a chunk's sums) times ``cols``; the other counts are read as above.

:func:`golden.events.datapath_events` computes the same numbers with no simulation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arch.energy import MEMORY_EVENTS
from arch.geometry import Mapping
from golden.events import EVENTS
from hdl.layouts import Phase

from .bits import unpack
from .toggles import normalise

__all__ = ["rtl_events", "rtl_tile_events", "TILE_EVENTS"]



def _signals(path, keys: set[str]) -> dict[str, tuple[np.ndarray, list]]:
    """``key -> (times, values)`` of the widest variable with each key (x read as 0)."""
    import pywellen

    w = pywellen.Waveform(str(path))
    found: dict[str, tuple[int, object]] = {}
    for v in w.all_vars():
        key = normalise(v.full_name)
        if key in keys and (key not in found or v.bitwidth > found[key][0]):
            found[key] = (v.bitwidth, v)
    missing = keys - set(found)
    if missing:
        raise KeyError(f"{path}: no signal {sorted(missing)}")
    out = {}
    for key, (_, v) in found.items():
        s = v.signal
        ch = [s[i] for i in range(len(s))]
        vals = [c[1] if isinstance(c[1], int) else
                int(str(c[1]).lower().replace("x", "0").replace("z", "0"), 2) for c in ch]
        out[key] = (np.asarray([c[0] for c in ch], dtype=np.int64), vals)
    return out


def _at(sig, times: np.ndarray) -> list:
    """Values of ``sig`` at ``times`` (the last change at or before each)."""
    t, vals = sig
    idx = np.searchsorted(t, times, side="right") - 1
    return [vals[i] if i >= 0 else 0 for i in idx]


def _edges(waves, keys: set[str]):
    """``(rising, sig)``: the rising edges of ``clk`` and ``key -> (times, values)``."""
    sig = _signals(waves, keys | {"clk"})
    ct, cv = sig["clk"]
    cv = np.asarray(cv)
    return ct[1:][(cv[1:] == 1) & (cv[:-1] == 0)], sig


_DATAPATH_KEYS = ("phase", "adc_valid", "i__valid", "i__ready", "o__valid", "o__ready",
                  "wr__valid", "crossbar.levels", "crossbar.step")
#: the crossbar's step enable and sample-and-hold load, read with ``[pipeline] overlap``
_OVERLAP_KEYS = ("crossbar.en", "crossbar.hold")


def _datapath_keys(cfg) -> tuple[str, ...]:
    return _DATAPATH_KEYS + (_OVERLAP_KEYS if cfg.pipeline_overlap else ())


def _datapath_events(cfg, sig, before: np.ndarray, prefix: str = "") -> dict[str, int]:
    """The events of :data:`golden.events.EVENTS` of the Datapath whose nets are
    ``prefix + name``, at the edges whose preceding instants are ``before``."""
    from .blocks import ports

    a = {k: np.asarray(_at(sig[prefix + k], before), dtype=np.int64)
         for k in _DATAPATH_KEYS[:7]}
    xbar = a["phase"] == Phase.XBAR.value
    adc = a["phase"] == Phase.ADC.value
    if cfg.pipeline_overlap:
        xbar = np.asarray(_at(sig[prefix + "crossbar.en"], before), dtype=np.int64) == 1
    levels_layout = ports(cfg, "crossbar")["levels"][1]
    P = cfg.rows_per_cycle
    drives = level_sum = 0
    for v, group in zip(_at(sig[prefix + "crossbar.levels"], before[xbar]),
                        _at(sig[prefix + "crossbar.step"], before[xbar])):
        row_levels = list(unpack(levels_layout, v).values())[group * P:(group + 1) * P]
        drives += sum(lv != 0 for lv in row_levels)
        level_sum += sum(row_levels)
    adc_steps = int(a["adc_valid"].sum())
    ev = {
        "input_handshakes": int((a["i__valid"] & a["i__ready"]).sum()),
        "output_handshakes": int((a["o__valid"] & a["o__ready"]).sum()),
        "weight_writes": int(a["wr__valid"].sum()),
        "xbar_steps": int(xbar.sum()),
        "row_activations": int(xbar.sum()) * P,
        "dac_drives": int(drives),
        "dac_level_sum": int(level_sum),
        "adc_steps": adc_steps,
        "adc_conversions": adc_steps * cfg.adc_columns_per_cycle,
        "shift_adds": adc_steps * cfg.adc_columns_per_cycle,
    }
    # sample-and-hold: the first ADC step of each chunk (ADC edges right after an XBAR edge)
    prev_xbar = np.concatenate([[False], xbar[:-1]])
    ev["sample_holds"] = int((adc & prev_xbar).sum()) * cfg.cols
    if cfg.pipeline_overlap:
        hold = np.asarray(_at(sig[prefix + "crossbar.hold"], before), dtype=np.int64)
        ev["sample_holds"] = int(hold.sum()) * cfg.cols
    assert set(ev) == set(EVENTS)
    return ev


def rtl_events(cfg, waves: str | Path) -> dict[str, int]:
    """The events of :data:`golden.events.EVENTS` counted from the run's FST ``waves``."""
    rising, sig = _edges(waves, set(_datapath_keys(cfg)))
    return _datapath_events(cfg, sig, rising - 1)


#: events of a ConvTile run beyond the Datapaths' (of the registry in ``arch.energy``)
TILE_EVENTS = ("positions", "vectors", *MEMORY_EVENTS)


def _one(nets: set[str], what: str) -> str:
    if len(nets) != 1:
        raise ValueError(f"expected one net for {what}, found {sorted(nets)}")
    return next(iter(nets))


def rtl_tile_events(cfg, geom, waves: str | Path, verilog: str | Path,
                    windows: list[tuple[int, int]]) -> list[dict[str, int]]:
    """Events of a ``ConvTile`` run from its FST ``waves``, one dict per ``(t0, t1)`` window
    of rising-edge times (both included): the Datapath events of every ``xbar<i>`` summed
    (:data:`golden.events.EVENTS`), and the memory accesses read from the memories' port
    enables (:func:`cosim.toggles.memory_ports`): ``fmap_writes`` (input-memory write
    enables: kept pixels loaded; ``ifmap_reads`` = that x ``in_channels`` activations),
    ``gather_reads`` (input-memory read enables of the im2col gather), ``ofmap_writes``
    (output-memory write enables x ``out_channels``; ``positions`` = the enables), with
    ``*_bits`` as ``golden.energy_model.conv_layer_events``; ``vectors`` = input handshakes."""
    from .toggles import memory_ports

    mp = memory_ports(verilog)
    en = {"fmap_writes": _one(mp["fmap_mem"]["write"]["en"], "the fmap_mem write enable"),
          "gather_reads": _one(mp["fmap_mem"]["read"]["en"], "the fmap_mem read enable"),
          "positions": _one(mp["out_mem"]["write"]["en"], "the out_mem write enable")}
    groups = Mapping(cfg, geom).groups
    keys = {f"xbar{x}.{k}" for x in range(groups) for k in _datapath_keys(cfg)} \
        | set(en.values())
    rising, sig = _edges(waves, keys)
    out = []
    for t0, t1 in windows:
        before = rising[(rising >= t0) & (rising <= t1)] - 1
        ev = dict.fromkeys(EVENTS, 0)
        for x in range(groups):
            for k, v in _datapath_events(cfg, sig, before, f"xbar{x}.").items():
                ev[k] += v
        for k, net in en.items():
            ev[k] = int(np.asarray(_at(sig[net], before), dtype=np.int64).sum())
        cin, cout = geom.in_channels, geom.out_channels
        ev.update(vectors=ev["input_handshakes"], ifmap_reads=ev["fmap_writes"] * cin,
                  ifmap_read_bits=ev["fmap_writes"] * cin * cfg.input_bits,
                  gather_read_bits=ev["gather_reads"] * cin * cfg.input_bits,
                  ofmap_writes=ev["positions"] * cout,
                  ofmap_write_bits=ev["positions"] * cout * cfg.output_bits)
        assert set(ev) == set(EVENTS) | set(TILE_EVENTS)
        out.append(ev)
    return out
