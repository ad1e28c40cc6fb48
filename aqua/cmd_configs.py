"""``aqua configs``: the shipped configurations and their key parameters."""

from __future__ import annotations

import argparse

HELP = "list the shipped accelerator configurations"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from aqua._cmdutil import console

    from arch.config import CONFIG_DIR, config_names, load_config

    table = Table(title=f"configurations in {CONFIG_DIR}")
    for col in ("name", "crossbar", "cell", "weights", "inputs", "DAC", "ADC", "output",
                "shift", "latency", "description"):
        table.add_column(col)
    for name in config_names():
        c = load_config(name)
        table.add_row(
            c.name, f"{c.rows}x{c.cols}", f"{c.cell_bits} b",
            f"{c.weight_bits} b {c.weight_encoding}{', flip' if c.flip else ''}",
            f"{c.input_bits} b {'signed' if c.input_signed else 'unsigned'}",
            f"{c.dac_bits} b", f"{c.adc_bits} b {c.adc_mode}", f"{c.output_bits} b",
            f"{c.shift_min}..{c.shift_max}", f"{c.latency} cyc", c.description)
    console().print(table)
    return 0
