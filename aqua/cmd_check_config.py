"""``aqua check-config``: validate a configuration and print every derived width."""

from __future__ import annotations

import argparse

from aqua._cmdutil import config_from_args, console

HELP = "validate a configuration file and print its derived widths"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="PATH", help="a .toml file (or a shipped name)")


def _range(lo: int, hi: int) -> str:
    return f"[{lo}, {hi}]"


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    c = config_from_args(args.config)
    table = Table(title=f"{c.name}: valid (digest {c.digest})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    rows = [
        ("slices", c.slices, "cells (columns) per weight"),
        ("outputs", c.outputs, "output neurons per crossbar"),
        ("weight range", _range(c.weight_min, c.weight_max),
         f"{c.weight_encoding}, stored with offset {c.weight_bias}"),
        ("input range", _range(c.input_min, c.input_max),
         "signed" if c.input_signed else "unsigned"),
        ("input_cycles", c.input_cycles, f"DAC chunks of {c.dac_bits} bit(s) per input"),
        ("max_read", c.max_read, "largest column read per cycle"
         + (" (flipped columns)" if c.flip else "")),
        ("read_bits", c.read_bits, "width of a column sum"),
        ("adc_drop", c.adc_drop, f"LSBs dropped by the ADC ({c.adc_mode})"),
        ("insum_bits", c.insum_bits, "width of the per-cycle sum of DAC levels"),
        ("product_bits", c.product_bits, "signed width of an exact crossbar dot product"),
        ("bias_bits", c.bias_bits, "signed width of a bias"),
        ("acc_bits", c.acc_bits, "signed width of an output accumulator"),
        ("shift_bits", c.shift_bits, f"signed FlexPoint shift, {c.shift_min}..{c.shift_max}"),
        ("output range", _range(c.output_min, c.output_max), f"{c.output_bits}-bit signed"),
        ("xbar_steps", c.xbar_steps, f"clocks per chunk to sum rows ({c.rows_per_cycle}/clock)"),
        ("adc_steps", c.adc_steps,
         f"clocks per chunk to convert columns ({c.adc_columns_per_cycle}/clock)"),
        ("latency", c.latency, "clocks from input handshake to valid output"),
    ]
    for name, value, meaning in rows:
        table.add_row(name, str(value), meaning)
    console().print(table)
    return 0
