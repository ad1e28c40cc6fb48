"""The bottom layer of aqua-hw: what the accelerator *is*, imported by every other layer.

``arch`` holds the accelerator configuration (:mod:`arch.config`), the layer geometry and its
crossbar mapping (:mod:`arch.geometry`), the integer range helpers (:mod:`arch.ranges`), the
numbers golden and hdl must agree on (:mod:`arch.contract`), the technology energy tables
(:mod:`arch.energy`) and the other single sources of truth that ``golden/``, ``hdl/``, ``gen/``,
``cosim/`` and the ``aqua`` command all share. It imports nothing of the project, and nothing
but the standard library and numeric packages, so the golden model needs neither Amaranth nor
cocotb (``tests/test_layering.py`` holds this).
"""
