"""``aqua sweep`` (``aqua.sweep``): spec checking, serial == local Dask cluster point for point,
a killed worker, resume without recomputation, a failing point recorded."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from aqua import sweep as SW
from aqua.cli import main

distributed = pytest.importorskip("distributed")

SPEC = """
[sweep]
name = "t"
base = "small"
images = 2
chunk = 1
area = false
[fixed]
"adc.mode" = "clip"
[grid]
"adc.bits" = [3, 5]
"study.fraction" = [0.125, 0.25]
"""

#: compared point for point between engines (everything but the timing and the versions)
COMPARED = ("key", "idx", "label", "config_digest", "status", "error", *SW.METRICS,
            "energy_calibration", "extra")


def _spec(tmp_path, text=SPEC, name="spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(report):
    return [{k: r[k] for k in COMPARED} for r in report.rows]


# -- spec checking ---------------------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (('"adc.bits" = [3, 5]', '"adc.bitz" = [3, 5]'),
     "point 0 (adc.mode=clip, adc.bitz=3, study.fraction=0.125): unknown key 'adc.bitz'; "
     "allowed keys in [adc] are: bits, columns_per_cycle, mode"),
    (('"adc.bits" = [3, 5]', '"adc.bits" = [3, 30]'),
     "point 2 (adc.mode=clip, adc.bits=30, study.fraction=0.125): 'adc.bits' must be at "
     "most 24, not 30"),
    (('"adc.bits" = [3, 5]', '"adc.bits" = []'),
     "the grid is empty: grid key 'adc.bits' has no values"),
    (('"study.fraction" = [0.125, 0.25]', '"study.fraction" = [0.5]'),
     "point 0 (adc.mode=clip, adc.bits=3, study.fraction=0.5): 'study.fraction' must be a "
     "number in (0, 0.5), not 0.5"),
    (('"study.fraction" = [0.125, 0.25]', '"study.fractoin" = [0.25]'),
     "point 0 (adc.mode=clip, adc.bits=3, study.fractoin=0.25): unknown key "
     "'study.fractoin'; study keys are: study.fraction, study.top_k, study.from_layer, "
     "study.model"),
    (('images = 2', 'imagez = 2'),
     "unknown key 'sweep.imagez'; allowed keys in [sweep] are: name, base, images, chunk, "
     "area, table, rtl_images, rtl_sim"),
])
def test_bad_spec_refused_before_work(tmp_path, capsys, edit, message):
    spec = _spec(tmp_path, SPEC.replace(*edit))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--serial", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {spec}: {message}\n"
    assert not out.exists()


def test_empty_spec_refused(tmp_path, capsys):
    spec = _spec(tmp_path, '[sweep]\nbase = "small"\n')
    assert main(["sweep", str(spec), "--serial", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"error: {spec}: the grid is empty: give [grid] "
                                       f"values or [[points]]\n")


def test_lossless_adc_too_narrow_names_point(tmp_path):
    spec = _spec(tmp_path, SPEC.replace('"adc.mode" = "clip"', '"adc.mode" = "lossless"'))
    with pytest.raises(SW.SpecError, match=r"point 0 \(adc.mode=lossless, adc.bits=3, "
                                           r"study.fraction=0.125\): 'adc.bits' = 3 is too "
                                           r"narrow for adc.mode = 'lossless'"):
        SW.load_spec(spec)


def test_example_spec_has_24_points():
    spec = SW.load_spec(Path(__file__).resolve().parent.parent / "configs" / "sweeps"
                        / "small_grid.toml")
    assert len(spec.points) == 24
    assert len({p.key for p in spec.points}) == 24
    assert len({p.cfg.digest for p in spec.points}) == 12


def test_pareto_front():
    rows = [dict(key=k, top1=a, energy_pj=e, area_cells=None, cycles=c)
            for k, a, e, c in [("a", 0.9, 10, 5), ("b", 0.8, 12, 5), ("c", 0.95, 20, 5),
                               ("d", 0.9, 10, 6)]]
    # b is worse than a in both; d worse in cycles; area not measured: left out
    assert SW.pareto_front(rows) == ["a", "c"]


# -- running -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    return SW.run_sweep(SW.load_spec(_spec(tmp)), tmp / "out")


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    # the workers cannot import this test module: ship its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    c = SW.local_client(2)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


def test_serial_equals_local_cluster(serial, client, tmp_path):
    assert serial.computed == 4 and serial.failed == 0
    dist = SW.run_sweep(SW.load_spec(_spec(tmp_path)), tmp_path / "out", client=client)
    assert dist.engine.startswith("dask")
    assert _rows(dist) == _rows(serial)
    assert dist.front == serial.front
    # the two points with a 3-bit clipping ADC lose accuracy, the lossless 5-bit ones do not
    top1 = {r["label"]: r["top1"] for r in serial.rows}
    assert all(r["status"] == "ok" and r["energy_pj"] > 0 and r["cycles"] > 0
               for r in serial.rows)
    assert len(top1) == 4


def _kill_once(flag: str, point, lo, hi):
    """:func:`aqua.sweep.run_chunk`, but the first call anywhere kills its own worker."""
    if not os.path.exists(flag):
        Path(flag).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return SW.run_chunk(point, lo, hi)


def test_killed_worker_sweep_completes(serial, client, tmp_path):
    flag = tmp_path / "killed"
    dist = SW.run_sweep(SW.load_spec(_spec(tmp_path)), tmp_path / "out", client=client,
                        chunk_fn=functools.partial(_kill_once, str(flag)))
    assert flag.exists()                     # a worker did die
    assert dist.failed == 0 and dist.computed == 4
    assert _rows(dist) == _rows(serial)


def test_resume_recomputes_nothing(serial, tmp_path):
    spec = SW.load_spec(_spec(tmp_path))
    stored = []

    def stop_after_two(key):
        stored.append(key)
        if len(stored) == 2:
            raise KeyboardInterrupt

    first = SW.run_sweep(spec, tmp_path / "out", on_point=stop_after_two)
    assert first.interrupted and first.computed == 2 and len(first.rows) == 2
    calls = []

    def counting(point, lo, hi):
        calls.append(point.key)
        return SW.run_chunk(point, lo, hi)

    second = SW.run_sweep(spec, tmp_path / "out", chunk_fn=counting)
    assert second.reused == 2 and second.computed == 2 and not second.interrupted
    assert not set(calls) & set(stored)      # no finished point ran again
    assert [r["computed"] for r in second.rows] == [1, 1, 1, 1]
    assert _rows(second) == _rows(serial)
    third = SW.run_sweep(spec, tmp_path / "out", chunk_fn=counting)
    assert third.computed == 0 and third.reused == 4 and len(calls) == 4


def _fail_narrow(point, lo, hi):
    if point.cfg.adc_bits == 3 and lo == 1:
        raise RuntimeError("deliberate failure\nsecond line")
    return SW.run_chunk(point, lo, hi)


def test_failing_point_recorded_others_finish(serial, tmp_path):
    rep = SW.run_sweep(SW.load_spec(_spec(tmp_path)), tmp_path / "out", chunk_fn=_fail_narrow)
    assert rep.failed == 2 and rep.computed == 4
    by = {r["idx"]: r for r in rep.rows}
    for i in (0, 1):
        assert by[i]["status"] == "error"
        assert by[i]["error"] == "images 1..: RuntimeError: deliberate failure"
        assert by[i]["top1"] is None
    ok = [r for r in _rows(rep) if r["status"] == "ok"]
    assert ok == [r for r in _rows(serial) if r["idx"] in (2, 3)]
    # a rerun retries only the failed points
    again = SW.run_sweep(SW.load_spec(_spec(tmp_path)), tmp_path / "out")
    assert again.computed == 2 and again.failed == 0
    assert [r["computed"] for r in again.rows] == [2, 2, 1, 1]


def test_cli_writes_report(tmp_path, capsys):
    spec = _spec(tmp_path, SPEC.replace('"adc.bits" = [3, 5]', '"adc.bits" = [5]'))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--serial", "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["points"]) == 2 and doc["computed"] == 2
    assert (out / "pareto_energy_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "2 points computed, 0 reused" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--serial", "--out", str(out)]) == 0
    assert "0 points computed, 2 reused" in capsys.readouterr().out


def test_rtl_step_is_a_task_of_its_point(tmp_path):
    """``rtl_images``: the co-simulation runs as one more task once the point's chunks are
    done, with the oracle's choices; its verdict is stored, its failure fails the point."""
    seen = []

    def fake_rtl(point, choice):
        seen.append((point.index, list(choice)))
        if point.cfg.adc_bits == 3:
            raise RuntimeError("simulator exploded")
        return {"passed": True, "images": []}

    text = SPEC.replace("area = false", "area = false\nrtl_images = 1")
    spec = SW.load_spec(_spec(tmp_path, text.replace('[0.125, 0.25]', '[0.25]')))
    rep = SW.run_sweep(spec, tmp_path / "out", rtl_fn=fake_rtl)
    assert sorted(i for i, _ in seen) == [0, 1] and all(len(c) == 2 for _, c in seen)
    by = {r["idx"]: r for r in rep.rows}
    assert by[0]["status"] == "error" and by[0]["error"] == "rtl: RuntimeError: simulator exploded"
    assert by[1]["status"] == "ok" and by[1]["rtl_passed"] == 1.0
    assert by[1]["extra"]["rtl"] == {"passed": True, "images": []}
