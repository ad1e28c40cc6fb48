"""Technology energy tables (``configs/energy/*.toml``) and energy from event and toggle counts.

A table gives, with a unit and a source string each,

* ``[events.<name>]``: energy per event for the parts an RTL stand-in cannot model physically
  (:data:`EVENT_KEYS`: ADC conversion, DAC drive, crossbar row read, sample-and-hold,
  shift-and-add), and
* ``[toggle.<class>]``: energy per bit toggle of the digital logic by signal class
  (``register``, ``comb``; ``clock`` is per register bit per clock cycle).

Units are ``fJ``, ``pJ`` or ``nJ``; everything is converted to pJ. ``load_energy_table``
validates the file and raises :class:`EnergyTableError` (a ``ConfigError``, so ``aqua`` prints it
as one ``error:`` line) naming the file, key and problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aqua.config import CONFIG_DIR, ConfigError, read_named_toml

__all__ = ["EnergyTable", "EnergyTableError", "load_energy_table", "ENERGY_DIR", "EVENT_KEYS",
           "TOGGLE_KEYS", "EVENT_MAP", "event_energy", "toggle_energy"]

ENERGY_DIR = CONFIG_DIR / "energy"
EVENT_KEYS = ("adc_conversion", "dac_drive", "row_read", "sample_hold", "shift_add")
TOGGLE_KEYS = ("register", "comb", "clock")
UNITS = {"fJ": 1e-3, "pJ": 1.0, "nJ": 1e3}

#: table event -> (count from golden.events, block it is charged to)
EVENT_MAP = {
    "adc_conversion": ("adc_conversions", "adc"),
    "dac_drive": ("dac_drives", "crossbar"),
    "row_read": ("row_activations", "crossbar"),
    "sample_hold": ("sample_holds", "crossbar"),
    "shift_add": ("shift_adds", "shiftadd"),
}


class EnergyTableError(ConfigError):
    """An energy table that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class Entry:
    pj: float            # energy in pJ
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class EnergyTable:
    name: str
    description: str
    technology_nm: int
    events: dict[str, Entry]
    toggle: dict[str, Entry]
    path: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "technology_nm": self.technology_nm, "path": self.path,
                "events": {k: vars(e) for k, e in self.events.items()},
                "toggle": {k: vars(e) for k, e in self.toggle.items()}}


def _entry(src: str, section: str, key: str, doc) -> Entry:
    where = f"{src}: [{section}.{key}]"
    if not isinstance(doc, dict):
        raise EnergyTableError(f"{where} must be a table with energy, unit and source")
    extra = set(doc) - {"energy", "unit", "source"}
    if extra:
        raise EnergyTableError(f"{where}: unknown key(s) {sorted(extra)}; allowed: energy, "
                               f"unit, source")
    value = doc.get("energy")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise EnergyTableError(f"{where}.energy must be a non-negative number, not {value!r}")
    unit = doc.get("unit")
    if unit not in UNITS:
        raise EnergyTableError(f"{where}.unit must be one of {', '.join(UNITS)}, not {unit!r}")
    source = doc.get("source")
    if not isinstance(source, str) or not source.strip():
        raise EnergyTableError(f"{where}.source must say where the number comes from")
    return Entry(float(value) * UNITS[unit], float(value), unit, source)


def load_energy_table(name_or_path: str | Path = "isaac32nm") -> EnergyTable:
    """Load a shipped table by name (``configs/energy/<name>.toml``) or any TOML by path."""
    path, doc = read_named_toml(name_or_path, ENERGY_DIR, "energy table", EnergyTableError)
    src = str(path)
    unknown = set(doc) - {"name", "description", "technology_nm", "events", "toggle"}
    if unknown:
        raise EnergyTableError(f"{src}: unknown key(s) {sorted(unknown)}")
    sections = {}
    for section, keys in (("events", EVENT_KEYS), ("toggle", TOGGLE_KEYS)):
        got = doc.get(section, {})
        missing = [k for k in keys if k not in got]
        if missing:
            raise EnergyTableError(f"{src}: [{section}] is missing {', '.join(missing)}")
        bad = set(got) - set(keys)
        if bad:
            raise EnergyTableError(f"{src}: [{section}] has unknown entries {sorted(bad)}; "
                                   f"allowed: {', '.join(keys)}")
        sections[section] = {k: _entry(src, section, k, got[k]) for k in keys}
    nm = doc.get("technology_nm", 0)
    if isinstance(nm, bool) or not isinstance(nm, int) or nm < 0:
        raise EnergyTableError(f"{src}: technology_nm must be a non-negative integer")
    return EnergyTable(str(doc.get("name", path.stem)), str(doc.get("description", "")), nm,
                       sections["events"], sections["toggle"], src)


def event_energy(table: EnergyTable, events: dict[str, int]) -> dict[str, dict[str, float]]:
    """pJ per event class (``{event: {"count", "pj", "block"}}``) from ``golden.events`` counts."""
    return {name: {"count": int(events[count]), "block": block,
                   "pj": events[count] * table.events[name].pj}
            for name, (count, block) in EVENT_MAP.items()}


def toggle_energy(table: EnergyTable, toggles) -> dict[str, dict[str, float]]:
    """pJ of the digital logic per block and class from a ``cosim.toggles.Toggles``:
    register and combinational bit toggles, plus the clock (register bits x cycles)."""
    from cosim.toggles import BLOCKS, block_of

    split = toggles.by_block_class()
    reg_bits = dict.fromkeys(BLOCKS, 0)
    for key, arr in toggles.bits.items():
        if toggles.cls(key) == "register":
            reg_bits[block_of(key)] += len(arr)
    out = {}
    for b in BLOCKS:
        out[b] = {"register": split[b]["register"] * table.toggle["register"].pj,
                  "comb": split[b]["comb"] * table.toggle["comb"].pj,
                  "clock": reg_bits[b] * toggles.cycles * table.toggle["clock"].pj,
                  "register_toggles": split[b]["register"], "comb_toggles": split[b]["comb"],
                  "register_bits": reg_bits[b]}
    return out
