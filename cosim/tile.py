"""Host side of the ``ConvTile``: what a host sends (weight writes, layer settings, per-image
setup and the kept pixels in AGU order) and what it expects back (the golden cropped layer and
the cycle count), shared by the Amaranth unit tests and the cocotb co-simulation.

Every word is packed with the tile's layouts (``hdl/layouts.py``), so no bit position is
written down here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from amaranth.lib import data

from arch.config import AccelConfig
from arch.geometry import ConvGeometry, Mapping
from golden.arith import flag_words
from golden.crop import (crop_index, cropped_conv2d, fraction_code, kept_window, output_window,
                         tile_cycles)
from golden.precision import (band_window, bits_map, check_plan, plan_conv2d, position_bits,
                              position_chunks, zero_window)
from hdl.layouts import (tile_layer_layout, tile_pixel_layout, tile_setup_layout,
                         tile_weight_write_layout)

from .bits import pack, pack_rows

__all__ = ["TileImage", "tile_writes", "tile_layer", "tile_setup", "tile_image", "plan_image",
           "plan_positions", "bad_setup",
           "TileRun", "run_tile", "tile_geometry", "demo_tile_layer", "check_tile_run"]


def tile_writes(cfg: AccelConfig, geom: ConvGeometry, weight: torch.Tensor) -> list[int]:
    """The ``wr`` transfers that program ``weight [Cout, Cin, k, k]``: every ``(xbar, row,
    output)`` once, unused rows and outputs with weight 0, flags per ``docs/arithmetic.md``."""
    cout, cin, kh, kw = weight.shape
    if (cout, cin, kh, kw) != (geom.out_channels, geom.in_channels, geom.kernel, geom.kernel):
        raise ValueError(f"weight {list(weight.shape)} does not match the geometry {geom}")
    O, mapping = cfg.outputs, Mapping(cfg, geom).check_one_row_tile()
    wmat = torch.zeros(mapping.padded_rows, mapping.padded_outputs, dtype=torch.int64)
    wmat[:geom.rows, :cout] = weight.reshape(cout, -1).t()
    layout = tile_weight_write_layout(cfg, geom)
    writes = []
    for x in range(mapping.groups):
        w = wmat[:, x * O:(x + 1) * O]
        flag_bits = flag_words(cfg, w)
        rows, outs = torch.meshgrid(torch.arange(cfg.rows), torch.arange(O), indexing="ij")
        writes += pack_rows(layout, {
            "xbar": torch.full((cfg.rows * O,), x), "row": rows.reshape(-1),
            "group": outs.reshape(-1), "value": w.reshape(-1),
            "flags": torch.tensor(flag_bits).repeat(cfg.rows)})
    return writes


def tile_layer(cfg: AccelConfig, geom: ConvGeometry, bias: torch.Tensor, shift: int,
               relu: bool) -> int:
    """The ``layer`` port value: shift, ReLU and the bias of every output channel."""
    b = torch.zeros(Mapping(cfg, geom).padded_outputs, dtype=torch.int64)
    b[:geom.out_channels] = bias
    return pack(tile_layer_layout(cfg, geom), shift=shift, relu=int(relu), bias=b.tolist())


@dataclass
class TileImage:
    """One image for the tile: the ``setup`` word, the kept pixels in AGU order, and what the
    golden model expects (``expected [Cout, Ho, Wo]``, ``cycles``, ``error``)."""
    label: str
    setup: int
    pixels: list[int]
    out_height: int
    out_width: int
    expected: torch.Tensor | None
    cycles: int
    error: bool = False
    window: tuple | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "setup": self.setup, "pixels": self.pixels,
                "out_height": self.out_height, "out_width": self.out_width,
                "error": self.error}


def tile_setup(cfg: AccelConfig, geom: ConvGeometry, **fields) -> int:
    """The ``setup`` word with ``fields`` set (``tile_setup_layout``); the others are 0."""
    layout = tile_setup_layout(cfg, geom)
    names = [name for name, _ in layout]
    unknown = set(fields) - set(names)
    if unknown:
        raise ValueError(f"unknown setup fields {sorted(unknown)}; the layout has {names}")
    zero = {name: [0] * f.shape.length if isinstance(f.shape, data.ArrayLayout) else 0
            for name, f in layout}
    return pack(layout, **{name: fields.get(name, zero[name]) for name in names})


def tile_image(cfg: AccelConfig, geom: ConvGeometry, x: torch.Tensor, layer, *, crop=None,
               fraction=None, window=None, plan=None, label: str = "") -> TileImage:
    """Image ``x [Cin, H, W]`` under a crop vector and fraction (the tile computes the window,
    ``mode = 1``), an explicit ``window`` (``mode = 0``) or a precision ``plan`` ``(bt, bb,
    bl, br)`` on the bands of ``fraction`` (``plan = 1``; :func:`plan_image`); ``layer`` is
    a ``golden.fixedpoint.QuantLayer``-like object (``weight, bias, shift, relu``)."""
    if plan is not None:
        return plan_image(cfg, geom, x, layer, plan, fraction, label=label)
    cin, H, W = x.shape
    if window is None:
        window = kept_window(crop, fraction, H, W)
        setup = tile_setup(cfg, geom, height=H, width=W, mode=1, crop=crop_index(crop),
                           fraction=fraction_code(fraction))
    else:
        setup = tile_setup(cfg, geom, height=H, width=W, **dict(zip(("r0", "r1", "c0", "c1"),
                                                               window)))
    r0, r1, c0, c1 = window
    kept = x[:, r0:r1, c0:c1].permute(1, 2, 0).reshape(-1, cin)      # AGU order, [n, Cin]
    pixels = pack_rows(tile_pixel_layout(cfg, geom), {"x": kept})
    expected = cropped_conv2d(cfg, x.unsqueeze(0), layer.weight, layer.bias,
                              stride=geom.stride, padding=geom.padding, shift=layer.shift,
                              relu=layer.relu, window=window)[0]
    return TileImage(label or f"window {tuple(window)}", setup, pixels, geom.out_size(H), geom.out_size(W), expected,
                     tile_cycles(cfg, geom, H, W, window), window=tuple(window))


def plan_positions(cfg: AccelConfig, geom: ConvGeometry, plan, fraction, H: int, W: int):
    """What the tile does under precision ``plan`` with bands of ``fraction`` on an ``H x W``
    map: ``(bits [H, W], window, chunks [Ho, Wo])`` -- every pixel's precision
    (``golden.precision.bits_map``), the kept window (the pixels above 0 bits, the ones the
    host streams) and the chunks each output position streams (``T_pos``, 0 where not
    computed; ``golden.precision.position_chunks``)."""
    plan = check_plan(plan, cfg)
    bands = band_window(fraction, H, W)
    bits = bits_map(plan, bands, H, W, cfg)
    chunks = position_chunks(cfg, position_bits(bits, geom.kernel, geom.stride, geom.padding))
    return bits, zero_window(plan, bands, H, W), chunks


def plan_image(cfg: AccelConfig, geom: ConvGeometry, x: torch.Tensor, layer, plan, fraction,
               *, label: str = "") -> TileImage:
    """Image ``x [Cin, H, W]`` under precision ``plan`` ``(bt, bb, bl, br)`` with bands of
    ``fraction`` (``setup.plan = 1``): the host streams the pixels of the kept window (above 0
    bits) unreduced, in AGU order -- the tile reduces each as it loads it; expected are
    ``golden.precision.plan_conv2d`` and the cycles of ``golden.crop.tile_cycles`` with the
    per-position chunk counts (:func:`plan_positions`)."""
    cin, H, W = x.shape
    bits, window, chunks = plan_positions(cfg, geom, plan, fraction, H, W)
    setup = tile_setup(cfg, geom, height=H, width=W, plan=1, bits=list(plan),
                       fraction=fraction_code(fraction))
    r0, r1, c0, c1 = window
    kept = x[:, r0:r1, c0:c1].permute(1, 2, 0).reshape(-1, cin)      # AGU order, [n, Cin]
    pixels = pack_rows(tile_pixel_layout(cfg, geom), {"x": kept})
    expected = plan_conv2d(cfg, x.unsqueeze(0), layer.weight, layer.bias,
                           stride=geom.stride, padding=geom.padding, shift=layer.shift,
                           relu=layer.relu, bits=bits)[0]
    o = output_window(window, H, W, geom.kernel, geom.stride, geom.padding)
    cycles = tile_cycles(cfg, geom, H, W, window, chunks=chunks[o[0]:o[1], o[2]:o[3]])
    return TileImage(label or f"plan {tuple(plan)}", setup, pixels, geom.out_size(H),
                     geom.out_size(W), expected, cycles, window=tuple(window))


def bad_setup(cfg: AccelConfig, geom: ConvGeometry, label: str, **fields) -> TileImage:
    """A setup the tile must refuse (``error`` and ``done`` at the start edge, 1 cycle)."""
    setup = tile_setup(cfg, geom, **{"height": 1, "width": 1, "r1": 1, "c1": 1, **fields})
    return TileImage(label, setup, [], 0, 0, None, 1, error=True)


# -- co-simulation -----------------------------------------------------------------------------

def cached_tile_verilog(cfg: AccelConfig, geom: ConvGeometry, folder: str, module: str, make,
                        *key) -> tuple[list[Path], str]:
    """The Verilog of the tile ``make()`` as module ``module`` (written if missing) and the
    module name, under ``build/verilog/<config>/<folder>/<digest>/`` beside its
    ``geometry.json``; the digest covers the config, ``geom``, ``key`` and the generator's
    sources."""
    import hashlib

    from gen.verilog import component_entry, hdl_source_digest, write_if_changed

    from .run import BUILD_ROOT

    digest = hashlib.sha256(json.dumps([cfg.digest, geom.to_dict(), *key,
                                        hdl_source_digest()]).encode()).hexdigest()[:12]
    out = BUILD_ROOT / "verilog" / cfg.name / folder / digest
    path = out / f"{module}.v"
    if not path.exists():
        text, _ = component_entry(make(), module)
        write_if_changed(path, text)
        write_if_changed(out / "geometry.json", json.dumps(geom.to_dict(), indent=2) + "\n")
    return [path], module


def tile_sources(cfg: AccelConfig, geom: ConvGeometry) -> tuple[list[Path], str]:
    """The Verilog of ``ConvTile(cfg, geom)`` (written if changed) and its module name, under
    ``build/verilog/<config>/tiles/<geometry digest>/``."""
    from hdl import ConvTile

    return cached_tile_verilog(cfg, geom, "tiles", "aqua_convtile", lambda: ConvTile(cfg, geom))


@dataclass
class TileRun:
    """One co-simulated sequence of images on one simulator, compared with the golden model."""
    sim: str
    config: str
    label: str
    images: list[TileImage]
    results: list[dict]
    passed: bool
    message: str
    cycles: int
    sim_wall_s: float
    wall_s: float
    seed: int
    rows: list[dict] = field(default_factory=list)   # per image: label, cycles RTL/golden
    waves: str | None = None                         # the FST, when run with waves

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.sim_wall_s if self.sim_wall_s else 0.0


def check_tile_run(cfg: AccelConfig, geom: ConvGeometry, images: list[TileImage],
                   results: list[dict]) -> tuple[list[str], list[dict]]:
    """Compare the bench's results with the golden expectations: for every image the error
    flag, the cycle count (``golden.crop.tile_cycles``), the pixels accepted, one ``done``
    pulse, and the output map bit for bit. Returns (problems, per-image rows)."""
    from hdl.layouts import tile_output_layout

    from .bits import unpack

    problems, rows = [], []
    if len(results) != len(images):
        return [f"the bench reported {len(results)} of {len(images)} images"], rows
    layout = tile_output_layout(cfg, geom)
    for img, res in zip(images, results):
        row = {"label": img.label, "window": img.window, "cycles_rtl": res["edges"],
               "cycles_golden": img.cycles, "error": bool(res["error"]), "outputs_equal": None}
        rows.append(row)
        where = f"image '{img.label}'"
        if bool(res["error"]) != img.error:
            problems.append(f"{where}: error flag {res['error']}, expected {int(img.error)}")
        if res["edges"] != img.cycles:
            problems.append(f"{where}: {res['edges']} cycles, golden.crop.tile_cycles "
                            f"says {img.cycles}")
        if res["sent"] != len(img.pixels) or res["done_pulses"] != 1 or res["busy_after_done"]:
            problems.append(f"{where}: {res['sent']} of {len(img.pixels)} pixels taken, "
                            f"{res['done_pulses']} done pulses, busy after done "
                            f"{res['busy_after_done']}")
        if img.expected is None:
            continue
        got = torch.tensor([[unpack(layout, w)[f"y[{o}]"] for o in range(geom.out_channels)]
                            for w in res["outputs"]], dtype=torch.int64)
        got = got.t().reshape(geom.out_channels, img.out_height, img.out_width)
        diff = (got != img.expected).nonzero()
        row["outputs_equal"] = len(diff) == 0
        if len(diff):
            o, r, c = diff[0].tolist()
            problems.append(f"{where}: {len(diff)} outputs differ; first: channel {o}, row "
                            f"{r}, col {c}: expected {int(img.expected[o, r, c])}, got "
                            f"{int(got[o, r, c])}")
    return problems, rows


def run_tile(cfg: AccelConfig, geom: ConvGeometry, layer, images: list[TileImage], sim: str,
             *, seed: int = 0, label: str = "tile", waves: bool = False) -> TileRun:
    """Co-simulate ``images`` back to back on ``ConvTile(cfg, geom)`` programmed with
    ``layer`` (``weight, bias, shift, relu``) under ``sim``, and compare with the golden
    model. A failing run is repeated with waves on and the waveform path put in the
    message."""
    from hdl.layouts import tile_read_layout

    from .run import _config_path, save_stimulus
    from .sim import run_bench

    t0 = time.perf_counter()
    sources, top = tile_sources(cfg, geom)
    read_layout = tile_read_layout(geom)
    reads: dict[tuple[int, int], list[int]] = {}
    docs = []
    for img in images:
        shape = (img.out_height, img.out_width)
        if shape not in reads:
            rr, cc = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]),
                                    indexing="ij")
            reads[shape] = pack_rows(read_layout, {"row": rr.reshape(-1),
                                                   "col": cc.reshape(-1)}) if rr.numel() else []
        docs.append({**img.to_json(), "reads": reads[shape]})
    stim = {"writes": tile_writes(cfg, geom, layer.weight),
            "layer": tile_layer(cfg, geom, layer.bias, layer.shift, layer.relu),
            "images": docs}
    stem = f"tile-{cfg.name}-{label}-{seed}"
    stim_path = save_stimulus(stim, stem, as_json=True)
    results_file = stim_path.with_suffix(f".{sim}{'.waves' if waves else ''}.results.json")
    params = {"config": str(_config_path(cfg)), "seed": seed, "stimulus": str(stim_path),
              "results_file": str(results_file)}

    def bench(with_waves):
        results_file.unlink(missing_ok=True)
        res = run_bench(sim=sim, sources=sources, toplevel=top, test_module="cosim.tb_convtile",
                        params=params, waves=with_waves)
        doc = json.loads(results_file.read_text()) if results_file.exists() else None
        return res, doc

    res, doc = bench(waves)
    problems = [] if doc else ["the bench wrote no results; log tail:\n"
                               + "\n".join(res.log.strip().splitlines()[-15:])]
    rows = []
    if doc:
        more, rows = check_tile_run(cfg, geom, images, doc["images"])
        problems += more
    passed = res.passed and not problems
    message = "; ".join(problems[:3])
    if not passed:
        message += f" (config {cfg.name}, seed {seed})"
        again = res if waves else bench(True)[0]
        message += f"; waveform: {again.waves}" if again.waves else "; no waveform written"
    return TileRun(sim=sim, config=cfg.name, label=label, images=images,
                   results=doc["images"] if doc else [], passed=passed, message=message,
                   cycles=doc["cycles"] if doc else 0,
                   sim_wall_s=doc["wall_s"] if doc else 0.0,
                   wall_s=time.perf_counter() - t0, seed=seed, rows=rows,
                   waves=str(res.waves) if waves and res.waves else None)


def demo_tile_layer(cfg: AccelConfig, index: int, image: int = 0):
    """Conv layer ``index`` of the shipped demo CNN quantized for ``cfg``
    (``golden.fixedpoint``), its geometry and its integer input for test image ``image``:
    ``(layer, geom, x [Cin, H, W])``."""
    from golden.cnn import load_democnn
    from golden.data import cluttered_digits
    from golden.fixedpoint import quant_layer, quantize_democnn

    net = quantize_democnn(cfg, load_democnn())
    convs = net.conv_layers
    if not 0 <= index < len(convs):
        raise ValueError(f"the demo CNN has conv layers 0..{len(convs) - 1}, not {index}")
    images, _ = cluttered_digits("test")
    layer = quant_layer(net, index, images[image:image + 1])
    return layer, tile_geometry(layer, *layer.x.shape[-2:]), layer.x[0]


def tile_geometry(layer, height: int, width: int) -> ConvGeometry:
    """The ``ConvTile`` geometry of conv ``layer`` (``weight [Cout, Cin, k, k]``, ``stride``,
    ``padding``) whose largest input map is ``height x width``."""
    cout, cin, k, _ = layer.weight.shape
    return ConvGeometry(cin, cout, k, stride=layer.stride, padding=layer.padding,
                        height=int(height), width=int(width))


def demo_layers_for(cfg: AccelConfig) -> list[int]:
    """The demo CNN's conv layers whose im2col rows fit one crossbar of ``cfg`` (the layers a
    ``ConvTile`` of ``cfg`` can compute)."""
    from golden.cnn import CONV_SPECS
    return [i for i, s in enumerate(CONV_SPECS) if Mapping(cfg, s.geometry).row_tiles == 1]


def crop_sweep(cfg: AccelConfig, index: int, sim: str, *, crops=range(16),
               fraction: float = 0.25, image: int = 0, seed: int = 0,
               waves: bool = False) -> TileRun:
    """Demo conv layer ``index`` on test image ``image`` through the RTL ``ConvTile`` under
    each crop vector in ``crops`` (the tile derives the window from the vector and
    ``fraction``), back to back in one simulation; compared with the golden model."""
    from golden.crop import CROP_VECTORS

    layer, geom, x = demo_tile_layer(cfg, index, image)
    images = [tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[c], fraction=fraction,
                         label=f"crop {c:2d} {''.join('TBLR'[i] if b else '-' for i, b in enumerate(CROP_VECTORS[c]))}")
              for c in crops]
    return run_tile(cfg, geom, layer, images, sim, seed=seed, label=f"layer{index}",
                    waves=waves)


def tile_cosim_row(run: TileRun, index: int):
    """A :class:`cosim.run.CosimRun` row for the ``aqua cosim`` table: cycles simulated,
    values compared (every output of every image plus each image's cycle count and flags)."""
    from .run import CosimRun

    compared = sum(img.expected.numel() if img.expected is not None else 0
                   for img in run.images) + 3 * len(run.images)
    return CosimRun(block=f"convtile L{index}", sim=run.sim, config=run.config,
                    cycles=run.cycles, compared=compared, vectors=len(run.images),
                    passed=run.passed, wall_s=run.wall_s, sim_wall_s=run.sim_wall_s,
                    seed=run.seed, message=run.message)
