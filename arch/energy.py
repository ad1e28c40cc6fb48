"""Technology energy tables (``configs/energy/*.toml``) and energy from event and toggle counts.

A table gives, with a unit and a source string each,

* ``[events.<name>]``: energy per event for the parts an RTL stand-in cannot model physically
  (:data:`EVENT_KEYS`: ADC conversion, DAC drive, crossbar row read, sample-and-hold,
  shift-and-add, the eDRAM buffer's reads and writes per bit of the feature maps, and the
  IMA's reduction additions and partial-sum memory reads and writes per bit), and
* ``[toggle.<class>]``: energy per bit toggle of the digital logic by signal class
  (``register``, ``comb``; ``clock`` is per register bit per clock cycle).

Units are ``fJ``, ``pJ`` or ``nJ``; everything is converted to pJ. ``adc_reference_bits`` is the
resolution of the ADC the ``adc_conversion`` entry was measured for; a configuration with another
ADC width is charged ``adc_conversion * 2**(adc_bits - adc_reference_bits)`` per conversion
(:func:`adc_scale`: the Walden figure of merit, energy per conversion proportional to
``2**bits`` at a constant FoM; Walden, IEEE JSAC 1999). ``load_energy_table``
validates the file and raises :class:`EnergyTableError` (a ``ConfigError``, so ``aqua`` prints it
as one ``error:`` line) naming the file, key and problem.

This module is also the one **event registry** of the energy model: the Datapath events
(:data:`DATAPATH_EVENTS`, counted by ``golden.events`` and read from the RTL by
``cosim.events``), the events of a whole conv layer (:data:`LAYER_EVENTS`,
``golden.energy_model``), which table entry is charged per which count and to which block
(:data:`EVENT_MAP`, :data:`TILE_MEMORY`), and which calibrated digital operation is charged per
which count (:data:`OPS`, :data:`TILE_OPS`); and of the one digital total
(:func:`digital_pj`, :func:`digital_total`: register + combinational + clock) and the one
non-negative least-squares fit of the calibrations (:func:`nnls_fit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arch.config import CONFIG_DIR, ConfigError, read_named_toml

__all__ = ["EnergyTable", "EnergyTableError", "load_energy_table", "ENERGY_DIR", "EVENT_KEYS",
           "TOGGLE_KEYS", "DATAPATH_EVENTS", "MEMORY_EVENTS", "LAYER_EVENTS", "EVENT_MAP",
           "TILE_MEMORY", "OPS", "TILE_OPS", "BLOCKS", "TILE_BLOCKS", "adc_scale", "event_pj",
           "event_energy", "toggle_energy", "block_toggle_energy", "digital_pj", "digital_total",
           "nnls_fit", "PublishedPower", "load_published_power", "BREAKDOWN",
           "STAND_IN_BLOCKS", "IMA_EVENTS", "IMA_EVENT_MAP", "ima_event_energy"]

ENERGY_DIR = CONFIG_DIR / "energy"
EVENT_KEYS = ("adc_conversion", "dac_drive", "row_read", "sample_hold", "shift_add",
              "edram_read_bit", "edram_write_bit", "ima_reduce_add", "psum_read_bit",
              "psum_write_bit")
TOGGLE_KEYS = ("register", "comb", "clock")
UNITS = {"fJ": 1e-3, "pJ": 1.0, "nJ": 1e3}

#: events of one Datapath run, analytic (``golden.events.datapath_events``) and from the RTL
#: (``cosim.events.rtl_events``); the table in ``golden/events.py`` says what each counts
DATAPATH_EVENTS = ("input_handshakes", "output_handshakes", "weight_writes", "xbar_steps",
                   "row_activations", "dac_drives", "dac_level_sum", "sample_holds", "adc_steps",
                   "adc_conversions", "shift_adds")
#: the feature-map memory traffic of a conv layer (``golden.energy_model``)
MEMORY_EVENTS = ("ifmap_reads", "ifmap_read_bits", "ofmap_writes", "ofmap_write_bits",
                 "fmap_writes", "gather_reads", "gather_read_bits")
#: every count of a conv layer (``golden.energy_model.conv_layer_events``), in report order
LAYER_EVENTS = ("positions", "crossbars", "vectors", *DATAPATH_EVENTS, *MEMORY_EVENTS,
                "idle_cycles")

#: the IMA's own events in one ``IMATile`` run (``golden.energy_model.ima_tile_events``
#: analytically, ``cosim.imatile.rtl_ima_events`` from the RTL): ``vectors`` the IMA takes,
#: ``ima_reduce_adds`` (per vector, lane and output: ``span - 1`` adder-tree additions, plus
#: one adding the previous passes' partial sum in a pass with chunk ``c > 0``), and the
#: partial-sum memory's word accesses and bits (read at every vector's take edge of a layer
#: with ``chunks > 1``; written by every vector of a pass that does not complete its groups)
IMA_EVENTS = ("vectors", "ima_reduce_adds", "psum_reads", "psum_read_bits", "psum_writes",
              "psum_write_bits")

#: table event -> (count of :data:`IMA_EVENTS`, block it is charged to)
IMA_EVENT_MAP = {
    "ima_reduce_add": ("ima_reduce_adds", "shiftadd"),
    "psum_read_bit": ("psum_read_bits", "memory"),
    "psum_write_bit": ("psum_write_bits", "memory"),
}

#: table event -> (count from golden.events, block it is charged to)
EVENT_MAP = {
    "adc_conversion": ("adc_conversions", "adc"),
    "dac_drive": ("dac_drives", "crossbar"),
    "row_read": ("row_activations", "crossbar"),
    "sample_hold": ("sample_holds", "crossbar"),
    "shift_add": ("shift_adds", "shiftadd"),
    "edram_read_bit": ("ifmap_read_bits", "memory"),
    "edram_write_bit": ("ofmap_write_bits", "memory"),
}

#: memory entries of a ``ConvTile`` run (``event_energy(..., tile=True)``): its input memory
#: is the eDRAM buffer the gather reads (``positions * k * k`` words, not each input once),
#: and both memories' writes are charged
TILE_MEMORY = {"edram_read_bit": ("gather_read_bits",),
               "edram_write_bit": ("ifmap_read_bits", "ofmap_write_bits")}

#: blocks energy is charged to (``golden.energy_model.LayerEnergy.by_block``); a ``ConvTile``
#: adds its AGUs
BLOCKS = ("crossbar", "adc", "shiftadd", "control", "memory")
TILE_BLOCKS = (*BLOCKS, "agu")

#: calibrated digital operation -> the event count it is charged per. ``xbar_step`` /
#: ``adc_step``: a clock cycle of the crossbar / ADC phase (clock, control and the fixed part of
#: their toggles); ``xbar_drive`` / ``adc_drive``: the data-dependent toggles of those cycles,
#: per nonzero DAC level driven; ``vector``: the final and output cycles of a vector;
#: ``weight_write``: a programming cycle; ``idle_cycle``: a cycle waiting for input.
OPS = {"xbar_step": "xbar_steps", "xbar_drive": "dac_drives", "adc_step": "adc_steps",
       "adc_drive": "dac_drives", "vector": "vectors", "weight_write": "weight_writes",
       "idle_cycle": "idle_cycles"}

#: the ``ConvTile``'s own digital logic (AGUs, memory ports, gather and FSM: everything
#: outside its Datapaths), calibrated per operation on tile toggle runs
#: (``aqua energy --tile --calibrate``): ``tile_pixel`` per kept pixel loaded,
#: ``tile_gather`` per gather read, ``tile_weight_write`` per weight write (the tile's share
#: of programming). Charged only with ``tile=True``; the Datapaths inside keep :data:`OPS`.
TILE_OPS = {"tile_pixel": "fmap_writes", "tile_gather": "gather_reads",
            "tile_weight_write": "weight_writes"}

assert {c for c, _ in EVENT_MAP.values()} | {c for cs in TILE_MEMORY.values() for c in cs} \
    | set(OPS.values()) | set(TILE_OPS.values()) <= set(LAYER_EVENTS)
assert {b for _, b in EVENT_MAP.values()} <= set(BLOCKS)
assert {b for _, b in IMA_EVENT_MAP.values()} <= set(BLOCKS)
assert {c for c, _ in IMA_EVENT_MAP.values()} <= set(IMA_EVENTS)
assert set(EVENT_MAP) | set(IMA_EVENT_MAP) == set(EVENT_KEYS)


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
    adc_reference_bits: int = 8

    def to_dict(self) -> dict:
        return {"name": self.name, "technology_nm": self.technology_nm, "path": self.path,
                "adc_reference_bits": self.adc_reference_bits,
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
    unknown = set(doc) - {"name", "description", "technology_nm", "adc_reference_bits", "events",
                          "toggle"}
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
    ref = doc.get("adc_reference_bits")
    if isinstance(ref, bool) or not isinstance(ref, int) or not 1 <= ref <= 24:
        raise EnergyTableError(f"{src}: adc_reference_bits must be an integer in [1, 24] (the "
                               f"ADC resolution adc_conversion is for), not {ref!r}")
    return EnergyTable(str(doc.get("name", path.stem)), str(doc.get("description", "")), nm,
                       sections["events"], sections["toggle"], src, ref)


def adc_scale(table: EnergyTable, cfg) -> float:
    """Factor on the table's ``adc_conversion`` energy for ``cfg``'s ADC:
    ``2**(cfg.adc_bits - table.adc_reference_bits)`` (energy per conversion doubles per bit at a
    constant Walden figure of merit; see docs/energy.md).

    >>> from arch.config import load_config
    >>> adc_scale(load_energy_table(), load_config("small"))     # 5-bit ADC, 8-bit reference
    0.125
    """
    return 2.0 ** (cfg.adc_bits - table.adc_reference_bits)


def event_pj(table: EnergyTable, cfg) -> dict[str, float]:
    """pJ per event of :data:`EVENT_KEYS` for ``cfg`` (the ADC scaled by :func:`adc_scale`)."""
    pj = {k: e.pj for k, e in table.events.items()}
    pj["adc_conversion"] *= adc_scale(table, cfg)
    return pj


def event_energy(table: EnergyTable, events: dict, cfg, *, tile: bool = False
                 ) -> dict[str, dict]:
    """pJ per event class (``{event: {"count", "pj", "block"}}``) from the counts of
    ``golden.events`` / ``golden.energy_model`` for ``cfg``. Events absent from ``events``
    (the feature-map memory of a bare Datapath run) count 0. Counts may be ints or ``[B]``
    tensors (then ``pj`` is a float64 tensor). ``tile``: the memory entries count a
    ``ConvTile``'s accesses (:data:`TILE_MEMORY`)."""
    pj = event_pj(table, cfg)
    out = {}
    for name, (count, block) in EVENT_MAP.items():
        counts = TILE_MEMORY[name] if tile and name in TILE_MEMORY else (count,)
        n = sum(events.get(c, 0) for c in counts)
        out[name] = {"count": n if hasattr(n, "dtype") else int(n), "block": block,
                     "pj": n.double() * pj[name] if hasattr(n, "dtype")
                     else n * pj[name]}
    return out


def ima_event_energy(table: EnergyTable, events: dict) -> dict[str, dict]:
    """pJ per IMA event class (``{event: {"count", "pj", "block"}}``, :data:`IMA_EVENT_MAP`)
    from the counts of ``golden.energy_model.ima_tile_events`` (or the RTL's); absent counts
    are 0."""
    out = {}
    for name, (count, block) in IMA_EVENT_MAP.items():
        n = int(events.get(count, 0))
        out[name] = {"count": n, "block": block, "pj": n * table.events[name].pj}
    return out


def toggle_energy(table: EnergyTable, toggles) -> dict[str, dict[str, float]]:
    """pJ of the digital logic per block and class from a ``cosim.toggles.Toggles``:
    register and combinational bit toggles, memory-port toggles (priced as combinational
    nets), plus the clock (register bits x cycles)."""
    split = toggles.by_block_class()
    reg_bits = toggles.register_bits()
    return {b: block_toggle_energy(table, split[b], reg_bits[b], toggles.cycles)
            for b in toggles.blocks}


def block_toggle_energy(table: EnergyTable, toggles: dict[str, int], register_bits: int,
                        cycles: int) -> dict[str, float]:
    """pJ of one block from its toggles per class (``register``, ``comb`` and, if present,
    ``memport``), its register bits and the cycles: ``register``, ``comb``, ``clock`` pJ (the
    memory ports' toggles are in ``comb``) and the counts behind them."""
    r, c, k = (table.toggle[x].pj for x in ("register", "comb", "clock"))
    reg, comb, mp = (toggles.get(x, 0) for x in ("register", "comb", "memport"))
    return {"register": reg * r, "comb": (comb + mp) * c,
            "clock": register_bits * cycles * k, "register_toggles": reg,
            "comb_toggles": comb, "memport_toggles": mp,
            "register_bits": register_bits}


def digital_pj(block: dict) -> float:
    """pJ of one block of :func:`block_toggle_energy`: register + combinational + clock."""
    return float(block["register"] + block["comb"] + block["clock"])


def digital_total(te: dict[str, dict]) -> float:
    """pJ of a :func:`toggle_energy` result (``{block: block_toggle_energy}``) summed over
    blocks and classes (:func:`digital_pj` of each block)."""
    return sum(digital_pj(b) for b in te.values())


def nnls_fit(A, y):
    """``(coef, residual)``: the non-negative least-squares fit ``A @ coef ~ y``
    (``scipy.optimize.nnls``, columns scaled to an equal weight first) and its relative RMS
    residual ``rms(A @ coef - y) / mean(|y|)`` (``None`` when ``y`` is all zero). An all-zero
    ``A`` or ``y`` fits zeros.

    >>> coef, res = nnls_fit([[1, 0], [0, 2], [1, 1]], [2, 4, 4])
    >>> [round(c, 6) for c in coef], round(res, 6)
    ([2.0, 2.0], 0.0)
    """
    import numpy as np
    from scipy.optimize import nnls

    A, y = np.asarray(A, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not A.any() or not y.any():
        coef = np.zeros(A.shape[1])
    else:
        scale = np.where(A.max(0) > 0, A.max(0), 1.0)        # columns of equal weight
        coef = nnls(A / scale, y)[0] / scale
    residual = (float(np.sqrt(np.mean((A @ coef - y) ** 2)) / np.mean(np.abs(y)))
                if y.any() else None)
    return [float(c) for c in coef], residual


# -- a published power table beside the model (aqua energy --breakdown) -------------------------

#: ISAAC's components (its Table 6 rows) -> (the table events charged to it, what kind of
#: estimate it is, the published row ``ima.<key>`` / ``tile.<key>``). ``analog event`` and
#: ``digital event``: counted events x pJ per event from the energy table; ``digital toggles``:
#: the calibrated toggles of an RTL block that is real digital logic (``control``: the input
#: latch, the controller), counted only when the config has a calibration.
BREAKDOWN = {
    "adc": (("adc_conversion",), "analog event", "ima.adc"),
    "dac": (("dac_drive",), "analog event", "ima.dac"),
    "sample_hold": (("sample_hold",), "analog event", "ima.sample_hold"),
    "crossbar": (("row_read",), "analog event", "ima.crossbar"),
    "shift_add": (("shift_add",), "digital event", "ima.shift_add"),
    "input_register": ((), "digital toggles", "ima.input_register"),
    "output_register": ((), "digital toggles", "ima.output_register"),
    "edram": (("edram_read_bit", "edram_write_bit"), "digital event", "tile.edram"),
}
#: RTL blocks that are digital stand-ins of analog parts (register cells and adder trees for
#: the array's column sums and the sample-and-hold, a combinational transfer function for the
#: SAR ADC) or that duplicate a part the table already charges per event (``shiftadd``): their
#: toggles are shown apart and never added to the silicon estimate
STAND_IN_BLOCKS = {"crossbar": "crossbar cells, adder trees, column sums and S&H registers "
                               "(stand-in of the analog array and S&H)",
                   "adc": "ADC transfer function (stand-in of the SAR ADC)",
                   "shiftadd": "RTL shift-and-add and accumulators (ISAAC's S+A is charged "
                               "per event)"}


@dataclass(frozen=True)
class PublishedPower:
    """A published power table (``configs/energy/isaac_table6.toml``): mW per component,
    ``rows["ima.adc"] = (mW, spec)``."""
    name: str
    source: str
    imas_per_tile: int
    rows: dict
    path: str = ""

    def mw(self, key: str) -> float:
        return self.rows[key][0]

    def ima_total(self) -> float:
        return sum(v for k, (v, _) in self.rows.items() if k.startswith("ima."))

    def tile_total(self) -> float:
        return self.imas_per_tile * self.ima_total() + sum(
            v for k, (v, _) in self.rows.items() if k.startswith("tile."))


def load_published_power(name_or_path: str | Path = "isaac_table6") -> PublishedPower:
    """Load a published power table by name (``configs/energy/<name>.toml``) or path."""
    path, doc = read_named_toml(name_or_path, ENERGY_DIR, "published power table",
                                EnergyTableError)
    rows = {}
    for scope in ("ima", "tile"):
        for key, entry in doc.get(scope, {}).items():
            mw = entry.get("power_mw") if isinstance(entry, dict) else None
            if isinstance(mw, bool) or not isinstance(mw, (int, float)) or mw < 0:
                raise EnergyTableError(f"{path}: [{scope}.{key}].power_mw must be a "
                                       f"non-negative number, not {mw!r}")
            rows[f"{scope}.{key}"] = (float(mw), str(entry.get("spec", "")))
    missing = [r for _, _, r in BREAKDOWN.values() if r not in rows]
    if missing:
        raise EnergyTableError(f"{path}: missing {', '.join(missing)}")
    n = doc.get("imas_per_tile")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EnergyTableError(f"{path}: imas_per_tile must be a positive integer, not {n!r}")
    return PublishedPower(str(doc.get("name", path.stem)), str(doc.get("source", "")), n,
                          rows, str(path))
