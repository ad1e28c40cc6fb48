"""RTL-measured throughput of the Datapath's two schedules (``docs/arithmetic.md`` section 8):
the sequential one and ISAAC's overlapped pipeline (``[pipeline] overlap``).

The same random jobs stream through the compiled bulk harness (:func:`cosim.bulk.datapath_bulk`,
every cycle compared with the golden trace) with an always-valid producer and an always-ready
consumer; the cycles per vector are *measured* -- the cycles of the run minus those of the
crossbar programming, over the vectors -- and set beside ``cfg.latency + 1``.
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
    vectors: int
    cycles: int                # cycles of the whole run, programming included
    program_cycles: int        # of which programming the crossbar (rows * outputs + 1 per job)
    latency: int               # cfg.latency

    @property
    def cycles_per_vector(self) -> float:
        return (self.cycles - self.program_cycles) / self.vectors

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

    jobs = random_jobs(cfg, vectors, seed)
    rows = []
    for overlap in (False, True):
        c = cfg.replace(pipeline_overlap=overlap,
                        name=cfg.name.removesuffix("_pipelined") + ("_pipelined" if overlap
                                                                    else ""))
        run = datapath_bulk(c, sim, jobs=jobs, seed=seed, bubble=0.0, backpressure=0.0)
        if not run.passed:
            raise AssertionError(run.message)
        n = sum(job["x"].shape[0] for job in jobs)
        # the first handshake is at the cycle after programming (rows*outputs writes + 1 idle)
        prog = len(jobs) * (c.rows * c.outputs + 1)
        rows.append(ThroughputRow(c.name, "overlapped" if overlap else "sequential", sim, n,
                                  run.cycles, prog, c.latency))
    return rows


def throughput_table(rows: list[ThroughputRow]) -> str:
    head = (f"{'config':16} {'schedule':11} {'sim':9} {'vectors':>7} {'cycles':>9} "
            f"{'cyc/vector':>10} {'latency+1':>9} {'vec/1k cyc':>10} {'speed-up':>8}")
    lines = [head, "-" * len(head)]
    base = {}
    for r in rows:
        base.setdefault(r.config.removesuffix("_pipelined"), r.cycles_per_vector)
        up = base[r.config.removesuffix("_pipelined")] / r.cycles_per_vector
        lines.append(f"{r.config:16} {r.schedule:11} {r.sim:9} {r.vectors:7d} {r.cycles:9,d} "
                     f"{r.cycles_per_vector:10.2f} {r.latency + 1:9d} "
                     f"{r.vectors_per_kcycle:10.2f} {up:7.3f}x")
    return "\n".join(lines)
