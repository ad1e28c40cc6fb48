"""The model's energy per ISAAC component beside ISAAC's published power table
(``aqua energy --breakdown``; ``docs/energy.md``, "Fidelity").

A layer that fills an IMA (:data:`IMA_LAYER`: ``3x3``, 14 -> 128 channels on a ``16x16`` map,
padding 1 -- 126 of 128 rows of each of 8 crossbars on ``isaac``, exactly ISAAC's 8 crossbars
per IMA, every crossbar busy for every output position) is charged with the analytic model
(:func:`golden.energy_model.conv_layer_energy`, DAC counts at their upper bound, every level
driven, as ISAAC's power figures assume busy DACs). Each of ISAAC's components
(:data:`arch.energy.BREAKDOWN`) gets the events charged to it; the *silicon estimate* is their
sum (plus the calibrated toggles of the real digital registers when the config has a
calibration). The RTL's digital stand-ins of analog parts (:data:`arch.energy.STAND_IN_BLOCKS`)
are charged by their toggles only through a calibration, and then shown apart, never in the
estimate. Shares are of energy; ISAAC's are of power, the same ratio over a common run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arch.config import AccelConfig
from arch.energy import BREAKDOWN, STAND_IN_BLOCKS, EnergyTable, PublishedPower
from arch.geometry import ConvGeometry, Mapping

from .energy_model import conv_layer_energy, load_calibration

__all__ = ["IMA_LAYER", "BreakdownReport", "energy_breakdown"]

#: in, out channels, kernel, stride, padding, map: 126 im2col rows, 128 outputs
IMA_LAYER = dict(in_channels=14, out_channels=128, kernel=3, stride=1, padding=1, height=16,
                 width=16)

#: calibrated RTL block whose toggles stand for a component's real digital registers
_TOGGLE_BLOCK = {"input_register": "control"}


@dataclass
class BreakdownReport:
    config: str
    table: str
    published: str
    source: str
    layer: dict
    crossbars: int
    vectors: int
    cycles: dict                      # schedule -> cycles of the layer per crossbar
    calibration: str | None
    rows: list                        # one per component
    stand_ins: list                   # RTL blocks shown apart
    estimate_pj: float
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def energy_breakdown(cfg: AccelConfig, table: EnergyTable, published: PublishedPower, *,
                     geometry: ConvGeometry | None = None) -> BreakdownReport:
    """Per-component energy of ``geometry`` (default :data:`IMA_LAYER`) on ``cfg`` with
    ``table``, beside ``published``."""
    geom = geometry or ConvGeometry(**IMA_LAYER)
    cal = load_calibration(cfg, table)
    e = conv_layer_energy(cfg, table, geom, calibration=cal)
    digital = cal.digital(e.events) if cal else {}
    pj = {}
    for comp, (events, kind, _) in BREAKDOWN.items():
        if kind == "digital toggles":
            block = _TOGGLE_BLOCK.get(comp)
            pj[comp] = float(sum(digital.get(block, {}).values())) if block and cal else None
        else:
            pj[comp] = float(sum(e.by_event[k] for k in events))
    estimate = sum(v for v in pj.values() if v is not None)
    ima = [c for c, (_, _, r) in BREAKDOWN.items() if r.startswith("ima.")]
    ima_model = sum(pj[c] for c in ima if pj[c] is not None)
    ima_pub, tile_pub = published.ima_total(), published.tile_total()
    rows = []
    for comp, (events, kind, ref) in BREAKDOWN.items():
        v = pj[comp]
        mw = published.mw(ref)
        scale = published.imas_per_tile if ref.startswith("ima.") else 1
        rows.append({
            "component": comp, "kind": kind if v is not None else f"{kind} (not counted)",
            "events": list(events), "pj": v,
            "share": v / estimate if v is not None and estimate else None,
            "share_ima": v / ima_model if v is not None and ref.startswith("ima.") and ima_model
            else None,
            "published": ref, "published_mw": mw, "published_spec": published.rows[ref][1],
            "published_share_ima": mw / ima_pub if ref.startswith("ima.") else None,
            "published_share_tile": mw * scale / tile_pub})
    stand_ins = [{"block": b, "what": what,
                  "pj": float(sum(digital[b].values())) if b in digital else None}
                 for b, what in STAND_IN_BLOCKS.items()]
    m = Mapping(cfg, geom)
    seq, ovl = cfg.replace(pipeline_overlap=False), cfg.replace(pipeline_overlap=True)
    P = e.events["positions"]
    notes = []
    if cal is None:
        notes.append(f"no calibration for {cfg.name} / {table.name}: the RTL's toggles (input "
                     f"and output registers, stand-ins) are not estimated; `aqua energy "
                     f"--config {cfg.name} --calibrate` makes one")
    notes.append("DAC drives at their upper bound (every level of every row driven), as "
                 "ISAAC's power figures assume busy DACs")
    notes.append("the table's output register has no event in the model; ISAAC's shares are "
                 "of power, the model's of energy (the same ratio over a common run time)")
    return BreakdownReport(
        cfg.name, table.name, published.name, published.source,
        {**{k: getattr(geom, k) for k in IMA_LAYER}, "rows": geom.rows},
        m.crossbars, int(e.events["vectors"]),
        {"sequential": P * (seq.latency + 1), "overlapped": P * (ovl.latency + 1),
         "this config": P * (cfg.latency + 1)},
        e.calibration, rows, stand_ins, estimate, notes)
