"""Analytic event counts of the ``Datapath``: what the RTL does per vector, with no simulation.

Follows the schedule of ``docs/arithmetic.md`` section 8 (``T`` chunks, ``X = R/P`` crossbar
steps and ``G = C/N`` ADC steps per chunk). For ``V`` vectors of ``x [V, rows]``:

=====================  ============================================  ==========================
event                  what is counted                               count
=====================  ============================================  ==========================
``input_handshakes``   input stream transfers                        ``V``
``output_handshakes``  output stream transfers                       ``V``
``weight_writes``      ``wr`` port transfers (programming)           ``jobs * rows * outputs``
``xbar_steps``         crossbar step edges                           ``V * T * X``
``row_activations``    crossbar rows read (``P`` per step)           ``V * T * R``
``dac_drives``         (vector, chunk, row) with a nonzero level     from ``x``
``dac_level_sum``      sum of the DAC levels driven                  from ``x``
``sample_holds``       column sums held for the ADC (one per column  ``V * T * C``
                       per chunk)
``adc_steps``          ADC step edges                                ``V * T * G``
``adc_conversions``    ADC codes produced (``N`` per ADC step)       ``V * T * C``
``shift_adds``         accumulator updates (one per ADC code)        ``V * T * C``
=====================  ============================================  ==========================

The same counts are read from a co-simulated run's waveform by :func:`cosim.events.rtl_events`
and a test holds them equal exactly.
"""

from __future__ import annotations

import torch

from arch.config import AccelConfig
from arch.energy import DATAPATH_EVENTS

from .arith import input_chunks

__all__ = ["EVENTS", "datapath_events", "jobs_events"]

#: the keys of :func:`datapath_events`: :data:`arch.energy.DATAPATH_EVENTS` (the one registry)
EVENTS = DATAPATH_EVENTS


def datapath_events(cfg: AccelConfig, x: torch.Tensor, *, jobs: int = 0) -> dict[str, int]:
    """Event counts of streaming ``x [V, rows]`` through the Datapath (plus the programming of
    ``jobs`` weight sets)."""
    if x.dim() != 2 or x.shape[1] != cfg.rows:
        raise ValueError(f"x must be [vectors, {cfg.rows}], not {list(x.shape)}")
    V, T = x.shape[0], cfg.input_cycles
    levels = input_chunks(cfg, x)                                  # [V, T, rows]
    ev = {
        "input_handshakes": V,
        "output_handshakes": V,
        "weight_writes": jobs * cfg.rows * cfg.outputs,
        "xbar_steps": V * T * cfg.xbar_steps,
        "row_activations": V * T * cfg.rows,
        "dac_drives": int((levels != 0).sum()),
        "dac_level_sum": int(levels.sum()),
        "sample_holds": V * T * cfg.cols,
        "adc_steps": V * T * cfg.adc_steps,
        "adc_conversions": V * T * cfg.cols,
        "shift_adds": V * T * cfg.cols,
    }
    return {k: ev[k] for k in EVENTS}


def jobs_events(cfg: AccelConfig, jobs: list[dict]) -> dict[str, int]:
    """:func:`datapath_events` summed over the jobs of ``cosim.run.random_jobs`` /
    ``cnn_jobs`` (each job programs the crossbar once, then streams its ``x``)."""
    total = dict.fromkeys(EVENTS, 0)
    for job in jobs:
        for k, v in datapath_events(cfg, job["x"], jobs=1).items():
            total[k] += v
    return total
