"""RTL-measured throughput of the Datapath's two schedules (``docs/arithmetic.md`` section 8):
the sequential one and ISAAC's overlapped pipeline (``[pipeline] overlap``).

Random jobs stream through the compiled bulk harness (:func:`cosim.bulk.datapath_bulk`, every
cycle compared with the golden trace) with an always-valid producer and an always-ready
consumer, once with ``V`` and once with ``2V`` vectors (the same number of jobs, so the same
programming); the cycles per vector are *measured* as the difference of the two runs' cycles
over ``V`` and set beside ``cfg.latency + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

from arch.config import AccelConfig

__all__ = ["ThroughputRow", "schedule_throughput", "throughput_table"]


@dataclass
class ThroughputRow:
    config: str
    schedule: str              # "sequential" or "overlapped"
    sim: str
    vectors: int               # V
    cycles: int                # cycles of the run of 2V vectors, programming included
    cycles_half: int           # cycles of the run of V vectors
    latency: int               # cfg.latency

    @property
    def cycles_per_vector(self) -> float:
        return (self.cycles - self.cycles_half) / self.vectors

    @property
    def vectors_per_kcycle(self) -> float:
        return 1000.0 / self.cycles_per_vector

    def to_dict(self) -> dict:
        return {**vars(self), "cycles_per_vector": self.cycles_per_vector,
                "vectors_per_kcycle": self.vectors_per_kcycle}


def schedule_throughput(cfg: AccelConfig, sim: str = "verilator", *, vectors: int = 200,
                        seed: int = 7) -> list[ThroughputRow]:
    """``cfg`` on both schedules (the same jobs), measured on the RTL under ``sim``."""
    from .bulk import datapath_bulk
    from .run import random_jobs

    rows = []
    for overlap in (False, True):
        c = cfg.replace(pipeline_overlap=overlap,
                        name=cfg.name.removesuffix("_pipelined") + ("_pipelined" if overlap
                                                                    else ""))
        cycles = []
        for n in (vectors, 2 * vectors):
            run = datapath_bulk(c, sim, jobs=random_jobs(c, n, seed), seed=seed, bubble=0.0,
                                backpressure=0.0)
            if not run.passed:
                raise AssertionError(run.message)
            cycles.append(run.cycles)
        rows.append(ThroughputRow(c.name, "overlapped" if overlap else "sequential", sim,
                                  vectors, cycles[1], cycles[0], c.latency))
    return rows


def throughput_table(rows: list[ThroughputRow]) -> str:
    head = (f"{'config':20} {'schedule':11} {'sim':9} {'vectors':>7} {'cycles':>9} "
            f"{'cyc/vector':>10} {'latency+1':>9} {'vec/1k cyc':>10} {'speed-up':>8}")
    lines = [head, "-" * len(head)]
    base = {}
    for r in rows:
        base.setdefault(r.config.removesuffix("_pipelined"), r.cycles_per_vector)
        up = base[r.config.removesuffix("_pipelined")] / r.cycles_per_vector
        lines.append(f"{r.config:20} {r.schedule:11} {r.sim:9} {2 * r.vectors:7d} {r.cycles:9,d} "
                     f"{r.cycles_per_vector:10.2f} {r.latency + 1:9d} "
                     f"{r.vectors_per_kcycle:10.2f} {up:7.3f}x")
    return "\n".join(lines)
