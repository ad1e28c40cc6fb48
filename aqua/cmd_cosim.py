"""``aqua cosim``: see :mod:`cosim.cli` (kept there, beside the benches it runs)."""

from cosim.cli import HELP, add_arguments, run  # noqa: F401
