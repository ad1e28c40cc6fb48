"""Host side and bulk co-simulation of the :class:`~hdl.imatile.IMATile` (a layer larger than
one crossbar on an IMA, run in passes; ``docs/arithmetic.md`` section 9).

Per image the host runs every pass: program the IMA's crossbars for the pass (weight writes
while idle), set ``layer`` (with the pass), ``start`` with the image's setup and stream its kept
pixels; after the last pass it reads the output map, which must equal
``golden.crop.cropped_conv2d``, and every run must take ``golden.crop.tile_cycles`` edges (the
image ``golden.crop.ima_tile_cycles``). The bulk testbench is ``cosim.bulk_tb.tile_tb`` with
the IMATile's payload widths.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from arch.config import AccelConfig
from arch.geometry import ConvGeometry, Mapping
from golden.arith import flag_words
from golden.crop import ima_tile_cycles

from .bits import pack, pack_rows
from .bulk import (_build_tb, _crop_images, _image_word, _read_back, _tile_run, _words,
                   _write_streams)
from .bulk_tb import TL_BUSY, TL_CHECK, TL_DONE, TL_LAYER, TL_RD, TL_START, TL_WR, tile_tb

__all__ = ["ima_tile_writes", "ima_tile_layer", "ima_tile_sources", "ImaTileStimulus",
           "ima_tile_stimulus", "ima_tile_bulk", "ima_crop_sweep_bulk", "ima_demo_layers",
           "rtl_ima_events"]


def _weight_matrix(cfg: AccelConfig, geom: ConvGeometry, weight: torch.Tensor) -> torch.Tensor:
    cout, cin, kh, kw = weight.shape
    if (cout, cin, kh, kw) != (geom.out_channels, geom.in_channels, geom.kernel, geom.kernel):
        raise ValueError(f"weight {list(weight.shape)} does not match the geometry {geom}")
    mapping = Mapping(cfg, geom)
    wmat = torch.zeros(mapping.padded_rows, mapping.padded_outputs, dtype=torch.int64)
    wmat[:geom.rows, :cout] = weight.reshape(cout, -1).t()
    return wmat


def ima_tile_writes(cfg: AccelConfig, geom: ConvGeometry, weight: torch.Tensor, p: int,
                    crossbars: int | None = None) -> list[int]:
    """The ``wr`` transfers programming pass ``p``: every ``(xbar, row, output)`` of the IMA
    once, with the row tile and group :meth:`arch.geometry.ImaPlan.slots` assigns (zero
    weights for an unused slot, rows past the layer's and outputs past its channels), and the
    flags of section 1."""
    from hdl.layouts import ima_tile_weight_write_layout

    plan = Mapping(cfg, geom).ima(crossbars)
    wmat, R, O = _weight_matrix(cfg, geom, weight), cfg.rows, cfg.outputs
    layout = ima_tile_weight_write_layout(cfg, plan.used_crossbars)
    rows, outs = torch.meshgrid(torch.arange(R), torch.arange(O), indexing="ij")
    writes = []
    for slot in plan.slots(p):
        w = wmat[slot.row_tile * R:(slot.row_tile + 1) * R, slot.group * O:(slot.group + 1) * O] \
            if slot.used else torch.zeros(R, O, dtype=torch.int64)
        writes += pack_rows(layout, {
            "xbar": torch.full((R * O,), slot.slot), "row": rows.reshape(-1),
            "group": outs.reshape(-1), "value": w.reshape(-1),
            "flags": torch.tensor(flag_words(cfg, w)).repeat(R)})
    return writes


def ima_tile_layer(cfg: AccelConfig, geom: ConvGeometry, bias: torch.Tensor, shift: int,
                   relu: bool, p: int, crossbars: int | None = None) -> int:
    """The ``layer`` port value of pass ``p``: shift, ReLU, every channel's bias, the pass."""
    from hdl.layouts import ima_tile_layer_layout

    mapping = Mapping(cfg, geom)
    b = torch.zeros(mapping.padded_outputs, dtype=torch.int64)
    b[:geom.out_channels] = bias
    return pack(ima_tile_layer_layout(cfg, geom, mapping.passes(crossbars)), shift=shift,
                relu=int(relu), bias=b.tolist(), **{"pass": p})


def ima_tile_sources(cfg: AccelConfig, geom: ConvGeometry,
                     crossbars: int | None = None) -> tuple[list[Path], str]:
    """The Verilog of ``IMATile(cfg, geom, crossbars)`` (written if changed) and its module
    name, under ``build/verilog/<config>/imatiles/<digest>/``."""
    from hdl.imatile import IMATile

    from .tile import cached_tile_verilog

    return cached_tile_verilog(cfg, geom, "imatiles", "aqua_imatile",
                               lambda: IMATile(cfg, geom, crossbars), crossbars)


@dataclass
class ImaTileStimulus:
    """The streams of one bulk IMATile run and the tables that decode a mismatch."""
    folder: Path
    cycles: int
    outputs: int
    runs: list[tuple[int, int, int]]     # per run: (image, pass, start cycle)
    done_at: list[int]                   # per run: the cycle its done is expected
    out_index: list[tuple]               # per output word read: (image, row, col)


def ima_tile_stimulus(cfg: AccelConfig, geom: ConvGeometry, layer, images,
                      crossbars: int | None = None) -> ImaTileStimulus:
    """Control bytes, words and expectations of ``images`` (``cosim.tile.TileImage``, valid
    setups) run back to back, every pass of each, on ``IMATile(cfg, geom, crossbars)``: the
    weights of a pass written while idle, ``layer`` and ``start`` at the next cycle, ``done``
    after ``golden.crop.tile_cycles`` edges, the output map read after the last pass."""
    from hdl.layouts import (ima_tile_layer_layout, ima_tile_weight_write_layout,
                             tile_output_layout, tile_pixel_layout, tile_read_layout,
                             tile_setup_layout)

    plan = Mapping(cfg, geom).ima(crossbars)
    wl = ima_tile_weight_write_layout(cfg, plan.used_crossbars)
    ll = ima_tile_layer_layout(cfg, geom, plan.passes)
    sl, rl, outl = tile_setup_layout(cfg, geom), tile_read_layout(geom), tile_output_layout(cfg, geom)
    pixel_bits = tile_pixel_layout(cfg, geom).size
    pass_writes = [ima_tile_writes(cfg, geom, layer.weight, p, crossbars)
                   for p in range(plan.passes)]
    layers = [ima_tile_layer(cfg, geom, layer.bias, layer.shift, layer.relu, p, crossbars)
              for p in range(plan.passes)]
    # the timeline: [writes][run] per pass (writes only when the pass changes), reads at last
    ctrl: list[np.ndarray] = []
    c, programmed = 0, None
    runs, done_at, wr_words, layer_words, img_words, pix, rds, exps, out_index = \
        [], [], [], [], [], [], [], [], []
    for i, img in enumerate(images):
        if img.error or img.expected is None:
            raise ValueError(f"image '{img.label}': the IMATile bulk run takes valid setups")
        n = img.cycles
        m = img.out_height * img.out_width
        for p in range(plan.passes):
            if programmed != p:
                w = len(pass_writes[p])
                ctrl.append(np.zeros(w + 1, dtype=np.uint8))
                ctrl[-1][:w] = TL_WR
                wr_words.append(_words(pass_writes[p], wl.size))
                c += w + 1
                programmed = p
            last = p == plan.passes - 1
            span = np.zeros(n + (m + 1 if last else 1), dtype=np.uint8)
            span[0] |= TL_START | TL_LAYER
            span[1:n] |= TL_BUSY
            span[n] |= TL_DONE
            layer_words.append(_words([layers[p]], ll.size))
            img_words.append(_image_word(img, sl.size))
            if img.pixels:
                pix.append(_words(img.pixels, pixel_bits))
            runs.append((i, p, c))
            done_at.append(c + n)
            if last:
                span[n:n + m] |= TL_RD
                span[n + 1:n + m + 1] |= TL_CHECK
                rd, exp, where = _read_back(rl, outl, img, i)
                rds.append(rd), exps.append(exp)
                out_index += where
            ctrl.append(span)
            c += len(span)
    ctrl_all = np.concatenate(ctrl)
    h = hashlib.sha256()
    for part in [ctrl_all.tobytes(), *img_words,
                 *[a.tobytes() for a in wr_words + layer_words + pix + rds + exps]]:
        h.update(part)
    key = f"imatile-{cfg.name}-{h.hexdigest()[:16]}"
    folder = _write_streams({"cycles.bin": ctrl_all, "wr.bin": wr_words or [b""],
                             "layer.bin": layer_words, "img.bin": b"".join(img_words),
                             "pix.bin": pix or [b""], "rd.bin": rds or [b""],
                             "exp.bin": exps or [b""]}, key)
    return ImaTileStimulus(folder, len(ctrl_all), len(out_index), runs, done_at, out_index)


def _build(cfg, geom, sim, crossbars, waves=False):
    from hdl.layouts import ima_tile_layer_layout, ima_tile_weight_write_layout

    plan = Mapping(cfg, geom).ima(crossbars)
    sources, top = ima_tile_sources(cfg, geom, crossbars)
    return _build_tb(sim, sources, tile_tb(
        cfg, geom, top, wr_layout=ima_tile_weight_write_layout(cfg, plan.used_crossbars),
        layer_layout=ima_tile_layer_layout(cfg, geom, plan.passes)), waves)


def ima_tile_bulk(cfg: AccelConfig, geom: ConvGeometry, layer, images, sim: str, *,
                  seed: int = 0, label: str = "imatile", crossbars: int | None = None,
                  rerun_with_waves: bool = True):
    """``images`` back to back, every pass, on ``IMATile(cfg, geom, crossbars)`` under
    ``sim``, checked in the simulator (``done``/``busy`` every cycle of every run, every
    output read after the last pass). Each run is expected to end after ``img.cycles`` edges
    (``golden.crop.tile_cycles``); a passing run therefore took, per image,
    ``golden.crop.ima_tile_cycles``, which the returned :class:`cosim.tile.TileRun`'s rows
    give."""
    from hdl.layouts import tile_setup_layout

    from .bits import unpack

    t0 = time.perf_counter()
    stim = ima_tile_stimulus(cfg, geom, layer, images, crossbars)
    passes = Mapping(cfg, geom).passes(crossbars)

    def rows(passed):
        out = []
        for img in images:
            size = unpack(tile_setup_layout(cfg, geom), img.setup)
            golden = ima_tile_cycles(cfg, geom, size["height"], size["width"], img.window,
                                     crossbars)
            out.append({"label": img.label, "window": img.window, "passes": passes,
                        "cycles_rtl": golden if passed else None, "cycles_golden": golden,
                        "error": img.error, "outputs_equal": passed})
        return out

    def results(passed):
        return [{"sent": len(img.pixels) * passes} for img in images] if passed else []

    runs = [(s, im, f", pass {p}", f"pass {p} started") for im, p, s in stim.runs]
    return _tile_run(cfg, geom, sim, images, stim, partial(_build, cfg, geom, sim, crossbars),
                     runs, seed, label, rerun_with_waves, t0, rows, results)


def ima_demo_layers(cfg: AccelConfig) -> list[int]:
    """The demo CNN's conv layers that need more than one crossbar's rows on ``cfg`` (those a
    ``ConvTile`` cannot compute and an ``IMATile`` does)."""
    from golden.cnn import CONV_SPECS
    return [i for i, s in enumerate(CONV_SPECS) if Mapping(cfg, s.geometry).row_tiles > 1]


def ima_crop_sweep_bulk(cfg: AccelConfig, index: int, sim: str, *, crops=range(16),
                        fraction: float = 0.25, image: int = 0, seed: int = 0,
                        crossbars: int | None = None, rerun_with_waves: bool = True):
    """Demo conv layer ``index`` on test image ``image`` under each crop vector in ``crops``,
    every pass of each, back to back on the IMATile, checked in the simulator."""
    layer, geom, images = _crop_images(cfg, index, crops, fraction, image)
    return ima_tile_bulk(cfg, geom, layer, images, sim, seed=seed, label=f"layer{index}",
                         crossbars=crossbars, rerun_with_waves=rerun_with_waves)


def rtl_ima_events(cfg: AccelConfig, geom: ConvGeometry, *, crop=None, fraction=None,
                   window=None, passes=None, crossbars: int | None = None,
                   max_cycles: int = 1_000_000) -> dict[str, int]:
    """The IMA's events (:data:`arch.energy.IMA_EVENTS`) of one image on
    ``IMATile(cfg, geom, crossbars)``, counted on its strobes in the Amaranth simulator: one
    run per pass in ``passes`` (default all), under a crop vector and fraction or an explicit
    kept ``window`` (``None``: the whole map), from the ``start`` edge to the edge raising
    ``done``. Per clock: a vector is taken (``ima.i`` handshake, charged ``lanes * outputs``
    reductions of ``span - 1`` adder-tree additions, plus one partial-sum addition unless the
    IMA's ``layer.first``), and the partial-sum memory's read and write enables (a word of
    ``lanes * outputs * sum_bits`` bits each). The counts do not depend on the weights or
    the pixel values, so the weights are not programmed and the pixels are zeros. Must equal
    ``golden.energy_model.ima_tile_events``."""
    from amaranth.sim import Simulator

    from hdl.imatile import IMATile

    from .tile import tile_setup

    mapping = Mapping(cfg, geom)
    plan = mapping.ima(crossbars)
    passes = range(plan.passes) if passes is None else list(passes)
    H, W = geom.height, geom.width
    if window is None and crop is not None:
        from golden.crop import crop_index, fraction_code
        setup = tile_setup(cfg, geom, height=H, width=W, mode=1, crop=crop_index(crop),
                           fraction=fraction_code(fraction))
    else:
        r0, r1, c0, c1 = (0, H, 0, W) if window is None else window
        setup = tile_setup(cfg, geom, height=H, width=W, r0=r0, r1=r1, c0=c0, c1=c1)
    dut = IMATile(cfg, geom, crossbars)
    sim = Simulator(dut)                    # elaborates dut: dut.strobes exists from here on
    st = dut.strobes
    word = plan.lanes * cfg.outputs * cfg.sum_bits(mapping.row_tiles)
    tree = plan.lanes * cfg.outputs
    counts = dict.fromkeys(("vectors", "ima_reduce_adds", "psum_reads", "psum_writes"), 0)

    async def bench(ctx):
        ctx.set(dut.fmap.valid, 1)
        ctx.set(dut.setup.as_value(), setup)
        for p in passes:
            ctx.set(dut.layer.as_value(), ima_tile_layer(
                cfg, geom, torch.zeros(geom.out_channels, dtype=torch.int64), 0, False, p,
                crossbars))
            ctx.set(dut.start, 1)
            for cycle in range(max_cycles):
                if ctx.get(st.take):
                    counts["vectors"] += 1
                    counts["ima_reduce_adds"] += tree * (plan.span - 1
                                                         + (not ctx.get(st.first)))
                if st.psum_rd is not None:
                    counts["psum_reads"] += ctx.get(st.psum_rd)
                    counts["psum_writes"] += ctx.get(st.psum_wr)
                await ctx.tick()
                ctx.set(dut.start, 0)
                if ctx.get(dut.done):
                    break
            else:
                raise RuntimeError(f"pass {p}: no done after {max_cycles} cycles")
            if ctx.get(dut.error):
                raise ValueError(f"the IMATile refused the setup of pass {p}")

    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    counts["psum_read_bits"] = counts["psum_reads"] * word
    counts["psum_write_bits"] = counts["psum_writes"] * word
    return counts
