"""Helpers shared by the ``hdl`` components: parameter checks and balanced adder trees."""

from amaranth.hdl import Const, Value

from arch.config import AccelConfig

__all__ = ["check_config", "tree_sum", "above"]


def check_config(cfg) -> AccelConfig:
    """Return ``cfg`` if it is an :class:`~arch.config.AccelConfig`, else raise ``TypeError``.

    Configurations are validated when they are built (``AccelConfig.__post_init__``), so a
    component only has to make sure it was given one.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"cfg must be an AccelConfig (see arch.config.load_config), "
                        f"not {cfg!r}")
    return cfg


def tree_sum(values) -> Value:
    """Sum of ``values`` as a balanced tree of two-input adders (depth ``ceil(log2(n))``).

    Python's ``sum()`` would build a chain ``n - 1`` adders deep; the tree has the same adder
    count, a logarithmic depth, and widths that only grow by one bit per level.
    """
    values = [Value.cast(v) for v in values]
    if not values:
        raise ValueError("tree_sum needs at least one value")
    while len(values) > 1:
        paired = [a + b for a, b in zip(values[0::2], values[1::2])]
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values[0]


def above(value, maximum: int) -> Value:
    """``value > maximum``, or a constant 0 when ``value``'s width cannot exceed ``maximum``
    (so that no comparison is constant, which Verilator's lint rejects)."""
    value = Value.cast(value)
    if maximum >= (1 << len(value)) - 1 and not value.shape().signed:
        return Const(0, 1)
    return value > maximum
