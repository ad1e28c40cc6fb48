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

:func:`golden.events.datapath_events` computes the same numbers with no simulation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.events import EVENTS
from hdl.layouts import Phase

from .bits import unpack
from .toggles import normalise

__all__ = ["rtl_events"]



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


def rtl_events(cfg, waves: str | Path) -> dict[str, int]:
    """The events of :data:`golden.events.EVENTS` counted from the run's FST ``waves``."""
    from .blocks import ports

    keys = {"clk", "phase", "adc_valid", "i__valid", "i__ready", "o__valid", "o__ready",
            "wr__valid", "crossbar.levels", "crossbar.step"}
    sig = _signals(waves, keys)
    ct, cv = sig["clk"]
    cv = np.asarray(cv)
    rising = ct[1:][(cv[1:] == 1) & (cv[:-1] == 0)]
    before = rising - 1                          # the state each edge acts on
    a = {k: np.asarray(_at(sig[k], before), dtype=np.int64)
         for k in ("phase", "adc_valid", "i__valid", "i__ready", "o__valid", "o__ready",
                   "wr__valid")}
    xbar = a["phase"] == Phase.XBAR.value
    adc = a["phase"] == Phase.ADC.value
    levels_layout = ports(cfg, "crossbar")["levels"][1]
    P = cfg.rows_per_cycle
    drives = level_sum = 0
    for v, group, on in zip(_at(sig["crossbar.levels"], before),
                            _at(sig["crossbar.step"], before), xbar):
        if not on:
            continue
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
    assert set(ev) == set(EVENTS)
    return ev
