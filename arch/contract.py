"""Numbers that the golden model and the RTL must agree on, defined once for both.

``hdl`` builds its Amaranth types from these values (``hdl.layouts.Phase``, the setup layout's
fraction field); ``golden`` uses the plain integers, so it never imports Amaranth.
"""

from __future__ import annotations

__all__ = ["FRACTION_BITS", "PHASES", "PHASE_IDLE", "PHASE_XBAR", "PHASE_ADC", "PHASE_FINAL",
           "PHASE_OUT", "PHASE_XBAR_ADC", "PHASE_BITS"]

#: Width of the run-time crop fraction: an unsigned fixed-point code ``f = code / 2**8``.
FRACTION_BITS = 8

#: The datapath controller's states: what the *next* clock edge does
#: (``docs/arithmetic.md``, "Timing").
PHASE_IDLE = 0    #: waiting for an input vector
PHASE_XBAR = 1    #: forming column sums (one row group per clock)
PHASE_ADC = 2     #: converting columns (adc.columns_per_cycle per clock) and shift-adding
PHASE_FINAL = 3   #: correction, bias, FlexPoint shift, ReLU, saturation
PHASE_OUT = 4     #: output vector valid, waiting for ready
#: ``[pipeline] overlap`` only: a stage of the overlapped schedule, the ADC converting chunk
#: ``chunk`` from the sample-and-hold while the crossbar reads chunk ``chunk + 1``
PHASE_XBAR_ADC = 5

#: Name -> code, in code order (``hdl.layouts.Phase`` is built from it).
PHASES = {"IDLE": PHASE_IDLE, "XBAR": PHASE_XBAR, "ADC": PHASE_ADC, "FINAL": PHASE_FINAL,
          "OUT": PHASE_OUT, "XBAR_ADC": PHASE_XBAR_ADC}

#: Width of the phase field of the ``obs`` bus.
PHASE_BITS = 3
