"""Compiled bulk co-simulation: every cycle compared inside the simulator, at its own speed.

The cocotb benches (``cosim/tb_datapath.py``, ``cosim/tb_convtile.py``) run Python on every
clock; they stay for protocol, handshake and corner tests. For volume, this module

1. computes, vectorised, the whole stimulus *and* the expected value of every compared signal
   on every cycle (the handshake schedule -- bubbles and back-pressure -- is drawn ahead from a
   seeded RNG, so the golden trace is fully known before the simulation starts);
2. writes them as binary streams (one record per cycle, plus one stream per payload that
   advances only when the schedule says so), big-endian words as ``$fread`` reads them;
3. runs ONE generated self-checking Verilog testbench, the same text under Icarus
   (``vvp``, with a clock module) and Verilator (a ten-line C++ main toggles the clock): at the
   falling edge it drives the cycle's inputs, at the rising edge it compares the values the
   edge samples (registers before their update, combinational outputs settled), and stops at
   the first mismatch printing the cycle, what differed and both words;
4. decodes that cycle in Python with the layouts (``cosim.bits.unpack``: the field name,
   expected, actual, the seed) and reruns up to it with waves on, dumping only a window.

Builds are cached in ``build/bulk/<top>-<sim>-<hash>/`` (the hash covers the design's
Verilog, the harness, the simulator and its flags), shared by tests, benches and the CLI.
The same executable runs free (``+raw=N``: inputs always valid and ready, nothing read or
compared) to measure the raw speed of the compiled model.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import subprocess
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from arch.config import AccelConfig
from arch.geometry import ConvGeometry

from .sim import BUILD_ROOT, ensure_simulator

__all__ = ["BulkBuild", "BulkOutcome", "build_bulk", "run_bulk", "datapath_bulk",
           "DatapathStimulus", "datapath_stimulus", "tile_bulk", "TileStimulus",
           "tile_stimulus", "crop_sweep_bulk", "plan_sweep_bulk", "bulk_toggles", "raw_speed",
           "SpeedRow", "datapath_speed", "tile_speed", "speed_table", "BULK_ROOT"]

from .bulk_tb import (DP_EXP_I_READY, DP_EXP_O_VALID, DP_I_NEXT, DP_I_VALID, DP_LAYER,
                      DP_O_READY, DP_WHAT, DP_WR, ICARUS_TOP, MAIN_CPP, TL_BUSY, TL_CHECK,
                      TL_DONE, TL_ERROR, TL_LAYER, TL_RD, TL_START, TL_WHAT, TL_WR,
                      datapath_tb, nbytes, tile_tb)

BULK_ROOT = BUILD_ROOT / "bulk"
VERILATOR_FLAGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-lint",
                   "-Wno-style", "-Wno-MULTIDRIVEN", "-Wno-INITIALDLY"]
WINDOW = 200          # cycles of waveform before a mismatch in the rerun


# -- builds -----------------------------------------------------------------------------------

@dataclass
class BulkBuild:
    """A compiled bulk harness: run ``command`` (plus plusargs) in a stimulus folder."""
    sim: str
    top: str
    path: Path
    command: list[str]
    env: dict
    waves: bool
    build_s: float = 0.0     # 0 when the cached build was reused


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_bulk(sim: str, sources: list[Path], tb_text: str, tb_top: str, *,
               waves: bool = False) -> BulkBuild:
    """Compile ``tb_text`` (module ``tb_top`` with one input ``clk``) with the design's
    ``sources`` under ``sim``, or reuse the cached build of the same texts and flags."""
    env = ensure_simulator(sim)
    design = b"".join(Path(s).read_bytes() for s in sources)
    flags = VERILATOR_FLAGS + (["--trace-fst"] if waves else []) if sim == "verilator" \
        else ["-g2005"]
    harness = tb_text + (MAIN_CPP if sim == "verilator" else ICARUS_TOP)
    path = BULK_ROOT / f"{tb_top}-{sim}-{_digest(design, harness, sim, flags, waves)}"
    path.mkdir(parents=True, exist_ok=True)
    exe = path / ("obj" / Path("Vbulk") if sim == "verilator" else Path("sim.vvp"))
    command = [str(exe)] if sim == "verilator" else ["vvp", "-n", str(exe)] + \
        (["-fst"] if waves else ["-none"])
    t0 = time.perf_counter()
    with open(path / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():
            return BulkBuild(sim, tb_top, path, command, env, waves)
        (path / "tb.v").write_text(tb_text)
        run_env = {**os.environ, **env}
        if sim == "verilator":
            (path / "main.cpp").write_text(MAIN_CPP.format(top=tb_top))
            cmd = [str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--cc", "--exe",
                   "--build", "-j", "2", *flags, "--top-module", tb_top, "--Mdir", "obj",
                   "-o", "Vbulk", "tb.v", *[str(s) for s in sources], "main.cpp"]
        else:
            (path / "clock.v").write_text(ICARUS_TOP.format(tb=tb_top))
            cmd = ["iverilog", *flags, "-o", "sim.vvp.tmp", "-s", "aqua_bulk_clock",
                   "clock.v", "tb.v", *[str(s) for s in sources]]
        out = subprocess.run(cmd, cwd=path, env=run_env, capture_output=True, text=True)
        (path / "build.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-20:])
            raise RuntimeError(f"the {sim} bulk build of {tb_top} failed in {path}:\n{tail}")
        if sim == "icarus":
            (path / "sim.vvp.tmp").replace(exe)
    return BulkBuild(sim, tb_top, path, command, env, waves, time.perf_counter() - t0)


def _build_tb(sim: str, sources: list[Path], tb: tuple[str, str], waves: bool) -> BulkBuild:
    """:func:`build_bulk` of a generated testbench ``(text, module)`` for ``sim``."""
    text, name = tb
    return build_bulk(sim, sources, text.replace("{SIM}", sim), name, waves=waves)


# -- runs -------------------------------------------------------------------------------------

@dataclass
class BulkOutcome:
    """What one bulk simulation printed: ``passed``, or the first mismatch."""
    passed: bool
    cycles: int
    outputs: int
    wall_s: float
    mismatch: dict | None = None     # cycle, what, index, expected/actual (ints or text)
    log: str = ""
    waves: Path | None = None

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.wall_s if self.wall_s else 0.0


_PASS = re.compile(r"AQUA_PASS cycles=(\d+) outputs=(\d+)")
_MISMATCH = re.compile(r"AQUA_MISMATCH cycle=(\d+) what=(\d+) index=(\d+) "
                       r"expected=([0-9a-fA-FxXzZ]+) actual=([0-9a-fA-FxXzZ]+)")


def _hex(text: str):
    return int(text, 16) if re.fullmatch(r"[0-9a-fA-F]+", text) else text


def run_bulk(build: BulkBuild, folder: Path, plusargs: list[str], *,
             timeout: float | None = None) -> BulkOutcome:
    """Run ``build`` with the stimulus in ``folder`` (its working directory)."""
    t0 = time.perf_counter()
    out = subprocess.run([*build.command, *plusargs], cwd=folder,
                         env={**os.environ, **build.env}, capture_output=True, text=True,
                         timeout=timeout)
    wall = time.perf_counter() - t0
    log = out.stdout + out.stderr
    waves = None
    if build.waves:
        wave = folder / f"waves-{build.sim}.fst"
        waves = wave if wave.exists() else None
    m = _MISMATCH.search(log)
    if m:
        cycle, what, index = (int(m.group(i)) for i in (1, 2, 3))
        return BulkOutcome(False, cycle, 0, wall, {
            "cycle": cycle, "what": what, "index": index,
            "expected": _hex(m.group(4)), "actual": _hex(m.group(5))}, log, waves)
    p = _PASS.search(log)
    if p and out.returncode == 0:
        return BulkOutcome(True, int(p.group(1)), int(p.group(2)), wall, None, log, waves)
    tail = "\n".join(log.strip().splitlines()[-15:])
    return BulkOutcome(False, 0, 0, wall, {"cycle": -1, "what": -1, "index": 0,
                                           "expected": "", "actual": tail}, log, waves)


def _write_streams(streams: dict[str, bytes | np.ndarray], key: str) -> Path:
    """The stimulus streams, written once under ``build/bulk/stim/<key>/`` (atomically)."""
    folder = BULK_ROOT / "stim" / key
    if (folder / "complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in streams.items():
        tmp = folder / f"{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            if isinstance(blob, list):
                for part in blob:
                    fh.write(part if isinstance(part, bytes) else part.tobytes())
            else:
                fh.write(blob if isinstance(blob, bytes) else blob.tobytes())
        tmp.replace(folder / name)
    (folder / "complete").write_text("")
    return folder


def _be(words: np.ndarray, nbytes: int) -> np.ndarray:
    """Little-endian packed rows (``cosim.bits.pack_bytes``) as ``nbytes`` big-endian bytes
    each, the order ``$fread`` fills a vector in."""
    rows = words.shape[0]
    out = np.zeros((rows, nbytes), dtype=np.uint8)
    out[:, :words.shape[1]] = words
    return out[:, ::-1]


def _words(values: list[int], bits: int) -> np.ndarray:
    """Python ints as big-endian ``$fread`` words."""
    n = nbytes(bits)
    return np.frombuffer(b"".join(v.to_bytes(n, "big") for v in values), dtype=np.uint8)


# -- the Datapath -----------------------------------------------------------------------------

@dataclass
class DatapathStimulus:
    """The streams of one bulk Datapath run and what is needed to decode a mismatch."""
    folder: Path
    cycles: int
    vectors: int
    outputs: int
    out_words: list[int] = field(default_factory=list)   # expected outputs, in order


def _schedule(cfg: AccelConfig, jobs: list[dict], rng: random.Random, bubble: float,
              backpressure: float):
    """Per cycle: control byte, the vector whose trace row is expected (-1 before the job's
    first vector: the state left by the previous job) and the edge within it (``E`` for the
    IDLE state after its output was taken). The source and sink draw bubbles and back-pressure
    from ``rng`` exactly as the cocotb bench's ``StreamSource`` and ``StreamSink`` do, so the
    same seed gives the same cycles on both paths."""
    E = cfg.latency + 1
    ctrl, vec, pos, job_of = [], [], [], []
    for j, job in enumerate(jobs):
        writes = cfg.rows * cfg.outputs
        # the state: (vector, edge) expected this cycle; (-1, E) the previous job's last state
        v_cur, p_cur = -1, E
        for k in range(writes + 1):     # the cocotb WriteDriver idles one cycle after them
            ready = not (backpressure > 0 and rng.random() < backpressure)
            ctrl.append((DP_WR if k < writes else 0) | (DP_O_READY if ready else 0)
                        | DP_EXP_I_READY)
            vec.append(v_cur), pos.append(p_cur), job_of.append(j)
        V = job["x"].shape[0]
        presenting, fired, next_v, taken, first = False, False, 0, 0, True
        while taken < V:
            c = DP_LAYER if first else 0
            first = False
            if fired:
                presenting = False
            if not presenting and next_v < V and not (bubble > 0 and rng.random() < bubble):
                presenting = True
                next_v += 1
                c |= DP_I_NEXT
            ready = not (backpressure > 0 and rng.random() < backpressure)
            idle = p_cur == E
            out = p_cur == E - 1
            i_ready = idle or (out and ready)
            c |= (DP_I_VALID if presenting else 0) | (DP_O_READY if ready else 0) | \
                (DP_EXP_O_VALID if out else 0) | (DP_EXP_I_READY if i_ready else 0)
            ctrl.append(c), vec.append(v_cur), pos.append(p_cur), job_of.append(j)
            fired = presenting and i_ready
            o_fire = out and ready
            taken += o_fire
            if fired:
                v_cur, p_cur = next_v - 1, 0
            elif p_cur < E - 1:
                p_cur += 1
            elif o_fire:
                p_cur = E
    return (np.array(ctrl, dtype=np.uint8), np.array(vec, dtype=np.int64),
            np.array(pos, dtype=np.int64), np.array(job_of, dtype=np.int64))


def datapath_stimulus(cfg: AccelConfig, jobs: list[dict], *, seed: int, bubble: float = 0.2,
                      backpressure: float = 0.2, inject_cycle: int = -1) -> DatapathStimulus:
    """Compute and write the bulk streams of ``jobs`` (``cosim.run.random_jobs`` or
    ``cnn_jobs``): every cycle's inputs and expected ``obs``, ``o.valid``, ``i.ready``, and
    every output. ``inject_cycle`` corrupts one expected ``obs.acc[0]`` (the checker's
    self-test)."""
    from golden.arith import flag_words
    from golden.trace import datapath_trace
    from hdl.layouts import (input_layout, layer_config_layout, obs_layout, output_layout,
                             weight_write_layout)

    from .bits import pack, pack_bytes

    rng = random.Random(seed)
    ctrl, vec, pos, job_of = _schedule(cfg, jobs, rng, bubble, backpressure)
    E = cfg.latency + 1
    ol, il, wl, ll, outl = (obs_layout(cfg), input_layout(cfg), weight_write_layout(cfg),
                            layer_config_layout(cfg), output_layout(cfg))
    OB = nbytes(ol.size)
    phase_bytes = np.zeros(OB, dtype=np.uint8)
    ph = ol["phase"]
    for b in range(ph.offset, ph.offset + ph.width):
        phase_bytes[b // 8] |= 1 << (b % 8)
    block = max(1, (1 << 24) // (E * ((ol.size + 7) // 8 * 8)))
    records, inputs, writes, layers, outs = [], [], [], [], []
    out_words: list[int] = []
    state = np.zeros(OB, dtype=np.uint8)       # obs after reset
    at = 0                                      # first cycle of the current job
    for j, job in enumerate(jobs):
        flag_bits = flag_words(cfg, job["w"])
        writes.append(_words([pack(wl, row=r, group=o, value=int(job["w"][r, o]),
                                   flags=flag_bits[o])
                              for r in range(cfg.rows) for o in range(cfg.outputs)], wl.size))
        layers.append(_words([pack(ll, shift=job["shift"], relu=int(job["relu"]),
                                   bias=job["bias"].tolist())], ll.size))
        end = at + int(np.searchsorted(job_of[at:], j, side="right"))
        jv, jp = vec[at:end], pos[at:end]
        x = job["x"]
        V = x.shape[0]
        # first_chunk 0: every chunk streamed (the per-region precision field of the payload)
        inputs.append(_be(pack_bytes(il, {"x": x, "first_chunk": torch.zeros(V)}),
                          nbytes(il.size)))
        rec = np.zeros((end - at, OB + 1), dtype=np.uint8)
        rec[:, OB] = ctrl[at:end]
        held = jv < 0
        rec[held, :OB] = state[::-1]
        for start in range(0, V, block):
            tr = datapath_trace(cfg, job["w"], x[start:start + block], job["bias"],
                                shift=job["shift"], relu=job["relu"])
            n = tr.vectors
            flat = {f: getattr(tr, f).reshape(n * E, *getattr(tr, f).shape[2:])
                    for f in tr.fields}
            rows = pack_bytes(ol, flat).reshape(n, E, OB)
            idle = rows[:, -1] & ~phase_bytes
            table = np.concatenate([rows, idle[:, None]], 1)          # [n, E + 1, OB]
            sel = (jv >= start) & (jv < start + n)
            rec[sel, :OB] = table[jv[sel] - start, jp[sel]][:, ::-1]
            o = pack_bytes(outl, {"y": tr.out})
            outs.append(_be(o, nbytes(outl.size)))
            out_words += [int.from_bytes(r.tobytes(), "little") for r in o]
            state = table[-1, -1]
        if 0 <= inject_cycle - at < end - at:
            bit = ol["acc"].offset
            rec[inject_cycle - at, OB - 1 - bit // 8] ^= 1 << (bit % 8)
        records.append(rec)
        at = end
    content = hashlib.sha256()
    for a in records + inputs + writes + layers + outs:
        content.update(a.tobytes())
    key = _digest(cfg.digest, seed, bubble, backpressure, inject_cycle, content.digest())
    folder = _write_streams({"cycles.bin": records, "in.bin": inputs, "wr.bin": writes,
                             "layer.bin": layers, "out.bin": outs}, f"datapath-{cfg.name}-{key}")
    return DatapathStimulus(folder, len(ctrl), sum(job["x"].shape[0] for job in jobs),
                            len(out_words), out_words)


def _datapath_build(cfg: AccelConfig, sim: str, waves: bool = False) -> BulkBuild:
    from .run import verilog_sources
    sources, top = verilog_sources(cfg, "datapath")
    return _build_tb(sim, sources, datapath_tb(cfg, top), waves)


def _describe_datapath(cfg: AccelConfig, mm: dict, seed: int) -> str:
    from hdl.layouts import obs_layout, output_layout

    from .bits import unpack

    what = DP_WHAT.get(mm["what"], "the bench")
    e, a = mm["expected"], mm["actual"]
    if mm["what"] == 4:
        return f"cycle {mm['cycle']}: the stimulus ended early (config {cfg.name}, seed {seed})"
    if mm["what"] < 0:
        return f"the bulk bench failed without a mismatch record (seed {seed}):\n{a}"
    if isinstance(a, str):
        signal, e, a = what, e, f"unresolved bits (X/Z) {a}"
    elif mm["what"] in (0, 3):
        layout = obs_layout(cfg) if mm["what"] == 0 else output_layout(cfg)
        ue, ua = unpack(layout, e), unpack(layout, a)
        name = next(k for k in ue if ue[k] != ua[k])
        signal = f"obs.{name}" if mm["what"] == 0 else \
            f"o.payload.{name} (output {mm['index']})"
        e, a = ue[name], ua[name]
    else:
        signal = what
    return f"cycle {mm['cycle']}: {signal} expected {e}, got {a} (config {cfg.name}, seed {seed})"


def datapath_bulk(cfg: AccelConfig, sim: str, *, jobs: list[dict], seed: int,
                  bubble: float = 0.2, backpressure: float = 0.2, inject_cycle: int = -1,
                  rerun_with_waves: bool = True, activity: bool = False):
    """The Datapath on ``jobs`` under ``sim``, every cycle compared inside the simulator.
    Returns a :class:`cosim.run.CosimRun` (``stats["path"] == "bulk"``); a failing run is
    repeated with waves from ``WINDOW`` cycles before the mismatch, path in the message.

    With ``activity`` the run itself dumps the whole stimulus (from the first cycle after
    reset) to an FST, ``run.waves``: the switching activity of the same run
    (:func:`bulk_toggles`)."""
    from .run import CosimRun

    t0 = time.perf_counter()
    stim = datapath_stimulus(cfg, jobs, seed=seed, bubble=bubble, backpressure=backpressure,
                             inject_cycle=inject_cycle)
    t_stim = time.perf_counter() - t0
    build = _datapath_build(cfg, sim, waves=activity)
    args = [f"+cycles={stim.cycles}"] + (["+dump_from=0"] if activity else [])
    res = run_bulk(build, stim.folder, args)
    message, waves = "", res.waves
    if not res.passed:
        message = _describe_datapath(cfg, res.mismatch, seed)
        if rerun_with_waves and not activity:
            again = run_bulk(_datapath_build(cfg, sim, waves=True), stim.folder,
                             [*args, f"+dump_from={max(0, res.mismatch['cycle'] - WINDOW)}"])
            waves = again.waves
            message += f"; waveform: {waves}" if waves else "; no waveform written"
    compared = res.cycles if res.passed else res.mismatch["cycle"]
    stats = {"path": "bulk", "cycles": compared, "wall_s": res.wall_s, "stimulus_s": t_stim,
             "build_s": build.build_s, "stim_folder": str(stim.folder), "seed": seed,
             "mismatch": res.mismatch,
             # every output transfer is compared with the golden output vector
             "outputs": stim.vectors if res.passed else 0}
    return CosimRun(block="datapath", sim=sim, config=cfg.name, cycles=compared,
                    compared=compared, vectors=stim.vectors if res.passed else 0,
                    passed=res.passed and res.outputs == stim.outputs,
                    wall_s=time.perf_counter() - t0, sim_wall_s=res.wall_s, seed=seed,
                    message=message, waves=waves, stats=stats,
                    outputs=stim.out_words if res.passed else None)


def bulk_toggles(fst: Path) -> dict:
    """Per-bit toggle counts of the design's nets in a bulk run's FST, keyed as
    :func:`cosim.toggles.fst_toggles` keys a cocotb run (the testbench's scopes dropped)."""
    from .toggles import fst_toggles

    out = {}
    for key, counts in fst_toggles(fst, from_reset=False).items():
        head, sep, rest = key.partition("dut.")
        if sep and "." not in head.rstrip("."):
            out[rest] = counts
    return out


# -- the ConvTile ------------------------------------------------------------------------------

@dataclass
class TileStimulus:
    """The streams of one bulk ConvTile run and the tables that decode a mismatch."""
    folder: Path
    cycles: int
    outputs: int
    starts: list[int]            # the start cycle of each image
    done_at: list[int]           # the cycle each image's done is expected (sampled)
    out_index: list[tuple]       # per output word read: (image, row, col)


def tile_stimulus(cfg: AccelConfig, geom: ConvGeometry, layer, images) -> TileStimulus:
    """Control bytes, words and expectations of ``images`` (``cosim.tile.TileImage``) run
    back to back on ``ConvTile(cfg, geom)`` programmed with ``layer``, in the order and timing
    of the cocotb bench (``cosim/tb_convtile.py``) with the done edges of
    ``golden.crop.tile_cycles``."""
    from hdl.layouts import (tile_layer_layout, tile_output_layout, tile_pixel_layout,
                             tile_read_layout, tile_setup_layout, tile_weight_write_layout)

    from .tile import tile_layer, tile_writes

    wl, ll, sl, pl, rl, outl = (tile_weight_write_layout(cfg, geom), tile_layer_layout(cfg, geom),
                                tile_setup_layout(cfg, geom), tile_pixel_layout(cfg, geom),
                                tile_read_layout(geom), tile_output_layout(cfg, geom))
    writes = tile_writes(cfg, geom, layer.weight)
    spans, c = [], len(writes)
    for img in images:
        n = img.cycles
        m = 0 if img.expected is None else img.out_height * img.out_width
        spans.append((c, n, m))
        c += n + m + 1
    total = c
    ctrl = np.zeros(total, dtype=np.uint8)
    ctrl[:len(writes)] = TL_WR
    ctrl[len(writes)] |= TL_LAYER
    img_words, pix, rds, exps, out_index = [], [], [], [], []
    for i, (img, (s, n, m)) in enumerate(zip(images, spans)):
        ctrl[s] |= TL_START
        ctrl[s + 1:s + n] |= TL_BUSY
        ctrl[s + n] |= TL_DONE | (TL_ERROR if img.error else 0)
        img_words.append(_image_word(img, sl.size))
        if img.pixels:
            pix.append(_words(img.pixels, pl.size))
        if m:
            ctrl[s + n:s + n + m] |= TL_RD
            ctrl[s + n + 1:s + n + m + 1] |= TL_CHECK
            rd, exp, where = _read_back(rl, outl, img, i)
            rds.append(rd), exps.append(exp)
            out_index += where
    h = hashlib.sha256()
    for part in [ctrl.tobytes(), *img_words, *[a.tobytes() for a in pix + rds + exps],
                 _words(writes, wl.size).tobytes()]:
        h.update(part)
    key = f"tile-{cfg.name}-{h.hexdigest()[:16]}"
    folder = _write_streams({"cycles.bin": ctrl, "wr.bin": _words(writes, wl.size),
                             "layer.bin": _words([tile_layer(cfg, geom, layer.bias, layer.shift,
                                                             layer.relu)], ll.size),
                             "img.bin": b"".join(img_words), "pix.bin": pix or [b""],
                             "rd.bin": rds or [b""], "exp.bin": exps or [b""]}, key)
    return TileStimulus(folder, total, len(out_index), [s for s, _, _ in spans],
                        [s + n for s, n, _ in spans], out_index)


def _tile_outputs(layout) -> int:
    from amaranth.lib import data
    shape = layout["y"].shape
    return shape.length if isinstance(shape, data.ArrayLayout) else 1


# -- what the ConvTile and the IMATile (cosim.imatile) bulk paths share -----------------------

def _image_word(img, setup_bits: int) -> bytes:
    """An image's ``img.bin`` word: its pixel count above its setup."""
    sb = nbytes(setup_bits)
    return (len(img.pixels) << (8 * sb) | img.setup).to_bytes(sb + 4, "big")


def _read_back(rl, outl, img, i: int):
    """Image ``i``'s whole output map read back: the ``rd`` words (read layout ``rl``), the
    expected ``rd_data`` words (output layout ``outl``), both as ``$fread`` bytes, and per
    word ``(image, row, col)``."""
    from .bits import pack_bytes

    m = img.out_height * img.out_width
    rr, cc = torch.meshgrid(torch.arange(img.out_height), torch.arange(img.out_width),
                            indexing="ij")
    rd = _be(pack_bytes(rl, {"row": rr.reshape(-1), "col": cc.reshape(-1)}), nbytes(rl.size))
    y = img.expected.permute(1, 2, 0).reshape(m, -1)                # [positions, Cout]
    full = torch.zeros(m, _tile_outputs(outl), dtype=torch.int64)
    full[:, :y.shape[1]] = y
    exp = _be(pack_bytes(outl, {"y": full}), nbytes(outl.size))
    return rd, exp, [(i, r, q) for r in range(img.out_height) for q in range(img.out_width)]


def _describe_tile(cfg, geom, images, stim, runs, mm: dict, seed: int) -> str:
    """The message of a tile bulk mismatch ``mm``: an output word read (``what`` 3) names the
    first field that differs, its image, row and column; a control mismatch names the run it
    fell in. ``runs``: per run, in order, ``(start cycle, image index, its name after the
    image's, what started it)``; ``stim.done_at[k]`` is the cycle run ``k``'s done is due."""
    from hdl.layouts import tile_output_layout

    from .bits import unpack

    where = f"(config {cfg.name}, seed {seed})"
    if mm["what"] < 0:
        return f"the bulk bench failed without a mismatch record {where}:\n{mm['actual']}"
    cycle = mm["cycle"]
    if mm["what"] == 3:
        im, r, q = stim.out_index[mm["index"]]
        if not isinstance(mm["actual"], int):
            return (f"cycle {cycle}: image '{images[im].label}' row {r}, col {q}: rd_data "
                    f"unresolved {mm['actual']} {where}")
        layout = tile_output_layout(cfg, geom)
        e, a = unpack(layout, mm["expected"]), unpack(layout, mm["actual"])
        o = next(k for k in e if e[k] != a[k])
        return (f"cycle {cycle}: image '{images[im].label}': channel {o[2:-1]}, row {r}, col "
                f"{q}: rd_data.{o} expected {e[o]}, got {a[o]} {where}")
    k = max(0, int(np.searchsorted(np.array([r[0] for r in runs]), cycle, side="right")) - 1)
    s, im, name, started = runs[k]
    extra = ""
    if mm["what"] == 0:
        extra = (f" ({started} at cycle {s}, golden done after {images[im].cycles} edges, "
                 f"at cycle {stim.done_at[k]})")
    return (f"cycle {cycle}: image '{images[im].label}'{name}: "
            f"{TL_WHAT.get(mm['what'], '?')} expected {mm['expected']}, got {mm['actual']}"
            f"{extra} {where}")


def _tile_run(cfg: AccelConfig, geom: ConvGeometry, sim: str, images, stim, build, runs,
              seed: int, label: str, rerun_with_waves: bool, t0: float, rows, results):
    """Run a tile's bulk ``stim`` on ``build(waves=False)``; a mismatch is described by
    :func:`_describe_tile` (with ``runs``) and, with ``rerun_with_waves``, run again with
    waves from ``WINDOW`` cycles before it. ``rows(passed)`` and ``results(passed)`` fill the
    returned :class:`cosim.tile.TileRun` (``run.path == "bulk"``; ``t0``: when the work
    started)."""
    from .tile import TileRun

    built = build()
    args = [f"+cycles={stim.cycles}"]
    res = run_bulk(built, stim.folder, args)
    message, waves = "", None
    passed = res.passed and res.outputs == stim.outputs
    if not res.passed:
        message = _describe_tile(cfg, geom, images, stim, runs, res.mismatch, seed)
        if rerun_with_waves:
            again = run_bulk(build(waves=True), stim.folder,
                             [*args, f"+dump_from={max(0, res.mismatch['cycle'] - WINDOW)}"])
            waves = again.waves
            message += f"; waveform: {waves}" if waves else "; no waveform written"
    run = TileRun(sim=sim, config=cfg.name, label=label, images=images, results=results(passed),
                  passed=passed, message=message,
                  cycles=res.cycles if res.passed else res.mismatch["cycle"],
                  sim_wall_s=res.wall_s, wall_s=time.perf_counter() - t0, seed=seed,
                  rows=rows(passed), waves=str(waves) if waves else None)
    run.build_s = built.build_s
    run.path = "bulk"
    return run


def _crop_images(cfg: AccelConfig, index: int, crops, fraction: float, image: int):
    """Demo conv layer ``index`` (its layer and geometry) and test image ``image`` under each
    crop vector in ``crops``, labelled ``crop  c TB--``."""
    from golden.crop import CROP_VECTORS

    from .tile import demo_tile_layer, tile_image

    layer, geom, x = demo_tile_layer(cfg, index, image)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=fraction,
                         label=f"crop {c:2d} "
                               + "".join("TBLR"[i] if b else "-"
                                         for i, b in enumerate(CROP_VECTORS[c])))
              for c in crops]
    return layer, geom, images


def _tile_build(cfg: AccelConfig, geom: ConvGeometry, sim: str, waves: bool = False):
    from .tile import tile_sources
    sources, top = tile_sources(cfg, geom)
    return _build_tb(sim, sources, tile_tb(cfg, geom, top), waves)


def tile_bulk(cfg: AccelConfig, geom: ConvGeometry, layer, images, sim: str, *, seed: int = 0,
              label: str = "tile", rerun_with_waves: bool = True):
    """``images`` back to back on ``ConvTile(cfg, geom)`` under ``sim``, checked in the
    simulator: ``done``/``busy`` every cycle (so every cycle count equals
    ``golden.crop.tile_cycles``), ``error`` and the pixels taken at each ``done``, every output
    read bit for bit. Returns a :class:`cosim.tile.TileRun` whose ``rows`` hold, per image,
    the cycles (RTL equal to golden when it passed) and ``stats``-like fields."""
    t0 = time.perf_counter()
    stim = tile_stimulus(cfg, geom, layer, images)

    def rows(passed):
        return [{"label": img.label, "window": img.window,
                 "cycles_rtl": img.cycles if passed else None, "cycles_golden": img.cycles,
                 "error": img.error,
                 "outputs_equal": passed if img.expected is not None else None}
                for img in images]

    def results(passed):
        # every image's pixels are streamed in full (the testbench checks the count)
        return [{"sent": len(img.pixels)} for img in images] if passed else []

    runs = [(s, i, "", "start") for i, s in enumerate(stim.starts)]
    return _tile_run(cfg, geom, sim, images, stim, partial(_tile_build, cfg, geom, sim), runs,
                     seed, label, rerun_with_waves, t0, rows, results)


def crop_sweep_bulk(cfg: AccelConfig, index: int, sim: str, *, crops=range(16),
                    fraction: float = 0.25, image: int = 0, seed: int = 0,
                    rerun_with_waves: bool = True):
    """:func:`cosim.tile.crop_sweep` on the bulk path: demo conv layer ``index`` on test image
    ``image`` under each crop vector in ``crops``, back to back, checked in the simulator.
    The result is a :class:`cosim.tile.TileRun` (``run.path == "bulk"``), so
    ``cosim.tile.tile_cosim_row`` and the crop-cycle table take it unchanged."""
    layer, geom, images = _crop_images(cfg, index, crops, fraction, image)
    return tile_bulk(cfg, geom, layer, images, sim, seed=seed, label=f"layer{index}",
                     rerun_with_waves=rerun_with_waves)


def plan_sweep_bulk(cfg: AccelConfig, index: int, sim: str, *, plans, fraction=0.25,
                    image: int = 0, seed: int = 0, rerun_with_waves: bool = True):
    """Demo conv layer ``index`` on test image ``image`` through the RTL ``ConvTile`` under
    each precision plan in ``plans`` (``(bt, bb, bl, br)``; the tile reduces the pixels as it
    loads them and streams each position's ``T_pos`` chunks), back to back in one simulation,
    checked in the simulator against ``golden.precision.plan_conv2d`` and the cycles of
    ``golden.crop.tile_cycles`` with per-position chunks (``cosim.tile.plan_image``).
    ``fraction``: the bands' fraction, one for all plans or one per plan."""
    from .tile import demo_tile_layer, plan_image

    plans = [tuple(int(v) for v in p) for p in plans]
    fractions = list(fraction) if isinstance(fraction, (list, tuple)) else [fraction] * len(plans)
    if len(fractions) != len(plans):
        raise ValueError(f"{len(fractions)} fractions for {len(plans)} plans")
    layer, geom, x = demo_tile_layer(cfg, index, image)
    images = [plan_image(cfg, geom, x, layer, p, f, label=f"plan {i:2d} {p} f={f}")
              for i, (p, f) in enumerate(zip(plans, fractions))]
    return tile_bulk(cfg, geom, layer, images, sim, seed=seed, label=f"layer{index}-plans",
                     rerun_with_waves=rerun_with_waves)


# -- raw speed ---------------------------------------------------------------------------------

def raw_speed(build: BulkBuild, cycles: int, folder: Path | None = None) -> BulkOutcome:
    """The same compiled harness running free for ``cycles`` (inputs always valid and ready,
    nothing compared; the ConvTile restarts the first image of the stimulus in ``folder``
    whenever it is idle): the speed of the compiled model itself."""
    if folder is None:
        folder = build.path / "raw"
        folder.mkdir(exist_ok=True)
    return run_bulk(build, folder, [f"+raw={cycles}"])


# -- the speed table (make bench) ---------------------------------------------------------------

@dataclass
class SpeedRow:
    """Cycles per second of one design on one simulator, three ways."""
    block: str
    config: str
    sim: str
    raw: float
    bulk: float
    cocotb: float | None
    cycles: int

    @property
    def bulk_over_raw(self) -> float:
        return self.bulk / self.raw if self.raw else 0.0

    @property
    def bulk_over_cocotb(self) -> float | None:
        return self.bulk / self.cocotb if self.cocotb else None


def datapath_speed(cfg: AccelConfig, sim: str, *, vectors: int, cocotb_vectors: int,
                   seed: int = 7) -> SpeedRow:
    """The Datapath on random jobs: the bulk path, the same executable running free for as many
    cycles, and the cocotb path on ``cocotb_vectors`` (0: not run)."""
    from .run import random_jobs, run_datapath

    bulk = datapath_bulk(cfg, sim, jobs=random_jobs(cfg, vectors, seed), seed=seed)
    if not bulk.passed:
        raise AssertionError(bulk.message)
    raw = raw_speed(_datapath_build(cfg, sim), bulk.cycles)
    coco = None
    if cocotb_vectors:
        run = run_datapath(cfg, sim, jobs=random_jobs(cfg, cocotb_vectors, seed), seed=seed)
        if not run.passed:
            raise AssertionError(run.message)
        coco = run.cycles_per_s
    return SpeedRow("datapath", cfg.name, sim, raw.cycles_per_s, bulk.cycles_per_s, coco,
                    bulk.cycles)


def tile_speed(cfg: AccelConfig, sim: str, *, crops, cocotb_crops, seed: int = 7) -> SpeedRow:
    """The ConvTile on demo conv0 under ``crops``: bulk, free-running, and cocotb on
    ``cocotb_crops`` (empty: not run)."""
    from golden.crop import CROP_VECTORS

    from .tile import crop_sweep, demo_tile_layer, tile_image

    layer, geom, x = demo_tile_layer(cfg, 0)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=0.25,
                         label=f"crop {c:2d}") for c in crops]
    bulk = tile_bulk(cfg, geom, layer, images, sim, seed=seed, label="speed")
    if not bulk.passed:
        raise AssertionError(bulk.message)
    stim = tile_stimulus(cfg, geom, layer, images)
    raw = raw_speed(_tile_build(cfg, geom, sim), bulk.cycles, stim.folder)
    coco = None
    if cocotb_crops:
        run = crop_sweep(cfg, 0, sim, crops=cocotb_crops, seed=seed)
        if not run.passed:
            raise AssertionError(run.message)
        coco = run.cycles_per_s
    return SpeedRow("convtile", cfg.name, sim, raw.cycles_per_s, bulk.cycles_per_s, coco,
                    bulk.cycles)


def speed_table(rows: list[SpeedRow]) -> str:
    """The rows as a plain-text table with the ratios."""
    head = (f"{'block':9} {'config':7} {'sim':9} {'cycles':>9} {'raw c/s':>11} {'bulk c/s':>11} "
            f"{'cocotb c/s':>11} {'bulk/raw':>9} {'bulk/cocotb':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        bc = r.bulk_over_cocotb
        lines.append(f"{r.block:9} {r.config:7} {r.sim:9} {r.cycles:9,d} {r.raw:11,.0f} "
                     f"{r.bulk:11,.0f} "
                     f"{(f'{r.cocotb:11,.0f}' if r.cocotb else '          -')} "
                     f"{r.bulk_over_raw:8.0%} "
                     f"{(f'{bc:11.1f}x' if bc else '           -')}")
    return "\n".join(lines)
