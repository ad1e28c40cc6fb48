"""arch.contract: the numbers golden and hdl share are one set, and hdl builds from them."""

from __future__ import annotations

from arch import contract


def test_phase_codes_are_distinct_and_fit():
    codes = list(contract.PHASES.values())
    assert codes == [0, 1, 2, 3, 4, 5]
    assert max(codes) < 1 << contract.PHASE_BITS


def test_hdl_phase_is_built_from_arch():
    from hdl.layouts import FRACTION_BITS, Phase
    assert {p.name: p.value for p in Phase} == contract.PHASES
    assert Phase.as_shape().width == contract.PHASE_BITS
    assert FRACTION_BITS == contract.FRACTION_BITS


def test_golden_uses_arch_codes():
    from golden import trace
    from golden.crop import fraction_code
    assert (trace.PHASE_IDLE, trace.PHASE_XBAR, trace.PHASE_ADC, trace.PHASE_FINAL,
            trace.PHASE_OUT, trace.PHASE_XBAR_ADC) == tuple(contract.PHASES.values())
    assert fraction_code(0.25) == 1 << (contract.FRACTION_BITS - 2)
