"""Run the co-simulation benches: stimulus, Verilog, simulators, and a results table.

Used by ``aqua cosim`` / ``make cosim`` and by the pytest suite, so both run exactly the same
thing. A failing run is repeated with waveforms on and the FST path is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from arch.config import AccelConfig
from arch.geometry import ConvGeometry, Mapping

from .sim import BUILD_ROOT, BenchResult, run_bench

__all__ = ["random_jobs", "cnn_jobs", "CosimRun", "run_datapath", "verilog_sources",
           "assemble_outputs"]


def _extremes_first(t: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Overwrite the first rows with all-minimum, all-maximum and alternating patterns."""
    rows = t.shape[0]
    if rows > 0:
        t[0] = lo
    if rows > 1:
        t[1] = hi
    if rows > 2:
        t[2, 0::2], t[2, 1::2] = lo, hi
    return t


def random_jobs(cfg: AccelConfig, vectors: int, seed: int, jobs: int = 4) -> list[dict]:
    """Random weights and inputs over the full value ranges (extremes included), split into
    ``jobs`` with their own weights, bias, shift and ReLU."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    per_job = [vectors // jobs + (1 if j < vectors % jobs else 0) for j in range(jobs)]
    bias_hi = cfg.bias_range[1]
    for j, n in enumerate(per_job):
        if n == 0:
            continue
        x = torch.randint(cfg.input_min, cfg.input_max + 1, (n, cfg.rows), generator=gen)
        w = torch.randint(cfg.weight_min, cfg.weight_max + 1, (cfg.rows, cfg.outputs),
                          generator=gen)
        _extremes_first(x, cfg.input_min, cfg.input_max)
        if j == 1:
            w.fill_(cfg.weight_max)
        elif j == 2:
            w.fill_(cfg.weight_min)
        # bias: moderate in most jobs, full range in the last
        span = bias_hi if j == jobs - 1 else min(bias_hi, 1 << (cfg.input_bits + cfg.weight_bits) // 2)
        bias = torch.randint(-span - 1, span + 1, (cfg.outputs,), generator=gen).clamp(-bias_hi - 1,
                                                                                    bias_hi)
        shift = int(torch.randint(cfg.shift_min, cfg.shift_max + 1, (1,), generator=gen))
        out.append({"x": x, "w": w, "bias": bias, "shift": shift, "relu": bool(j % 2)})
    return out


def cnn_jobs(cfg: AccelConfig, layer, *, max_vectors: int | None = None) -> list[dict]:
    """Jobs that compute a real conv layer (``golden.fixedpoint.QuantLayer`` with its inputs
    ``x`` set) on crossbars: its im2col patches, one job per (row tile, output group), in the
    order row tile 0 group 0, group 1, ..., row tile 1 group 0, ...

    When the layer fits the crossbar's rows (``Cin*kh*kw <= rows``) there is one row tile and
    each job's outputs are final outputs of the layer (bias, FlexPoint shift, ReLU included).
    Otherwise each job computes one row tile's partial sums (the bias on row tile 0 only, the
    layer's shift, no ReLU): the work and events of the layer's crossbars, whose outputs are
    added outside the Datapath (``docs/arithmetic.md`` section 6)."""
    import torch.nn.functional as F

    cout, cin, kh, kw = layer.weight.shape
    mapping = Mapping(cfg, ConvGeometry(cin, cout, kh, layer.stride, layer.padding,
                                        *layer.x.shape[-2:]))
    K, tiles, groups = mapping.geometry.rows, mapping.row_tiles, mapping.groups
    x = layer.x
    patches = F.unfold(x.double(), (kh, kw), padding=layer.padding, stride=layer.stride)
    patches = patches.transpose(1, 2).reshape(-1, K).to(torch.int64)
    if max_vectors is not None:
        patches = patches[:max_vectors]
    xs = torch.zeros(patches.shape[0], mapping.padded_rows, dtype=torch.int64)
    xs[:, :K] = patches
    wmat = torch.zeros(mapping.padded_rows, cout, dtype=torch.int64)
    wmat[:K] = layer.weight.reshape(cout, K).t()                  # [K, Cout], zero padded
    jobs = []
    for t in range(tiles):
        rows = slice(t * cfg.rows, (t + 1) * cfg.rows)
        for g in range(groups):
            cols = range(g * cfg.outputs, min(cout, (g + 1) * cfg.outputs))
            w = torch.zeros(cfg.rows, cfg.outputs, dtype=torch.int64)
            w[:, :len(cols)] = wmat[rows, cols.start:cols.stop]
            bias = torch.zeros(cfg.outputs, dtype=torch.int64)
            if t == 0:
                bias[:len(cols)] = layer.bias[cols.start:cols.stop]
            jobs.append({"x": xs[:, rows].contiguous(), "w": w, "bias": bias,
                         "shift": layer.shift, "relu": bool(layer.relu) and tiles == 1,
                         "outputs": len(cols), "tile": t})
    return jobs


def assemble_outputs(cfg: AccelConfig, jobs: list[dict], received: list[int]) -> torch.Tensor:
    """The output payloads of ``jobs`` (in order) as ``[vectors, Cout]`` (outputs of
    :func:`cnn_jobs` side by side)."""
    from cosim.bits import unpack
    from hdl.layouts import output_layout

    layout = output_layout(cfg)
    cols, at = [], 0
    for job in jobs:
        n = job["x"].shape[0]
        rows = [unpack(layout, v) for v in received[at:at + n]]
        cols.append(torch.tensor([[r[f"y[{o}]"] for o in range(job.get("outputs", cfg.outputs))]
                                  for r in rows], dtype=torch.int64))
        at += n
    return torch.cat(cols, dim=1)


def verilog_sources(cfg: AccelConfig, block: str) -> tuple[list[Path], str]:
    """Generate (if changed) the Verilog of ``block`` and return (files, toplevel name)."""
    from gen.verilog import default_out_dir, generate
    manifest = generate(cfg, default_out_dir(cfg), blocks=[block])
    entry = manifest["blocks"][block]
    return [default_out_dir(cfg) / entry["file"]], entry["module"]


@dataclass
class CosimRun:
    """One row of the results table."""
    block: str
    sim: str
    config: str
    cycles: int
    compared: int
    vectors: int
    passed: bool
    wall_s: float
    sim_wall_s: float
    seed: int
    message: str = ""
    waves: Path | None = None
    stats: dict = field(default_factory=dict)
    outputs: list[int] | None = None       # packed output payloads, in order

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.sim_wall_s if self.sim_wall_s else 0.0


def run_datapath(cfg: AccelConfig, sim: str, *, jobs: list[dict], seed: int,
                 bubble: float = 0.2, backpressure: float = 0.2, label: str = "random",
                 rerun_with_waves: bool = True, inject_cycle: int = -1,
                 waves: bool = False, trace: str = "fst") -> CosimRun:
    """Co-simulate the Datapath on ``jobs`` under ``sim`` and compare every cycle.

    With ``waves`` the run itself records a waveform (``trace``: ``"fst"``, or ``"saif"`` under
    Verilator), whose path is ``run.waves``."""
    t0 = time.perf_counter()
    sources, top = verilog_sources(cfg, "datapath")
    stim = save_stimulus(jobs, f"{cfg.name}-{cfg.digest}-{label}-{seed}")
    params = {"config": str(_config_path(cfg)), "seed": seed, "stimulus": str(stim),
              "bubble": bubble, "backpressure": backpressure, "inject_cycle": inject_cycle,
              "outputs_file": str(stim.with_suffix(f".{sim}{'.' + trace if waves else ''}"
                                                   f".out.pt"))}
    run, res = run_checked("datapath", cfg, sim, sources, top, "cosim.tb_datapath", params,
                           seed=seed, t0=t0, rerun_with_waves=rerun_with_waves, waves=waves,
                           trace=trace)
    out_file = Path(params["outputs_file"])
    if res.passed and out_file.exists():
        run.outputs = torch.load(out_file, weights_only=True)
    return run


def save_stimulus(obj, stem: str, *, as_json: bool = False) -> Path:
    """``torch.save`` ``obj`` (or, ``as_json``, write it as JSON) under
    ``build/cosim/stimulus/``, named by its content hash (so parallel workers never overwrite
    each other's stimulus), atomically."""
    import hashlib
    import io
    import json
    import os

    if as_json:
        blob = json.dumps(obj).encode()
    else:
        buf = io.BytesIO()
        torch.save(obj, buf)
        blob = buf.getvalue()
    suffix = ".json" if as_json else ".pt"
    path = BUILD_ROOT / "cosim" / "stimulus" / \
        f"{stem}-{hashlib.sha256(blob).hexdigest()[:12]}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
    return path


def run_checked(block: str, cfg: AccelConfig, sim: str, sources, top: str, test_module: str,
                params: dict, *, seed: int, t0: float,
                rerun_with_waves: bool = True, waves: bool = False,
                trace: str = "fst") -> tuple["CosimRun", BenchResult]:
    """Run one bench and make its results row; a failing run is repeated with waveforms on
    (unless it had them already) and the FST path is added to the message."""
    res = run_bench(sim=sim, sources=sources, toplevel=top, test_module=test_module,
                    params=params, waves=waves, trace=trace)
    run = _row(block, cfg, sim, res, seed, time.perf_counter() - t0)
    run.waves = res.waves
    if waves and not res.passed:
        run.message += f"; waveform: {res.waves}"
    elif not res.passed and rerun_with_waves:
        again = run_bench(sim=sim, sources=sources, toplevel=top, test_module=test_module,
                          params=params, waves=True)
        run.waves = again.waves
        run.message += f"; waveform: {again.waves}" if again.waves else "; no waveform written"
    return run, res


def _config_path(cfg: AccelConfig) -> Path:
    """A TOML file holding exactly ``cfg`` (the bench process loads it)."""
    path = BUILD_ROOT / "configs" / f"{cfg.name}-{cfg.digest}.toml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f'name = "{cfg.name}"']
        for section, values in cfg.to_dict().items():
            if isinstance(values, dict):
                lines.append(f"[{section}]")
                for k, v in values.items():
                    lines.append(f"{k} = " + (str(v).lower() if isinstance(v, bool)
                                              else f'"{v}"' if isinstance(v, str) else str(v)))
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
    return path


def _row(block, cfg, sim, res: BenchResult, seed, wall) -> CosimRun:
    st = res.stats
    msg = ""
    if not res.passed:
        mm = st.get("mismatch")
        if mm:
            msg = (f"cycle {mm['cycle']}: {mm['signal']} expected {mm['expected']}, "
                   f"got {mm['actual']} (config {cfg.name}, seed {seed})")
        else:
            tail = "\n".join(res.log.strip().splitlines()[-15:])
            msg = f"bench failed without a mismatch record (seed {seed}); log tail:\n{tail}"
    return CosimRun(block=block, sim=sim, config=cfg.name, cycles=st.get("cycles", 0),
                    compared=st.get("compared", 0), vectors=st.get("vectors", 0),
                    passed=res.passed, wall_s=wall, sim_wall_s=st.get("wall_s", 0.0),
                    seed=seed, message=msg, stats=st)


def first_layer_in_rtl(cfg: AccelConfig, sim: str, *, images: int = 1, seed: int = 0,
                       layer=None):
    """The demo CNN's first conv layer on ``images`` test images, in RTL under ``sim`` (or
    ``layer``, any conv ``QuantLayer`` with its inputs, e.g. another model's first layer from
    ``golden.netreport.first_conv_layer``).

    Returns ``(run, rtl, golden)``: the :class:`CosimRun` and the output feature maps from the
    RTL and from ``golden.layer.conv2d`` as ``[positions, Cout]`` tensors."""
    from golden.layer import conv2d

    label = f"cnn-layer0-{images}"
    if layer is None:
        from golden.cnn import load_democnn
        from golden.data import cluttered_digits
        from golden.fixedpoint import quant_layer, quantize_democnn

        net = quantize_democnn(cfg, load_democnn())
        x, _ = cluttered_digits("test")
        layer = quant_layer(net, 0, x[:images])
    else:
        label = f"model-layer{layer.index}-{layer.x.shape[0]}"
    jobs = cnn_jobs(cfg, layer)
    run = run_datapath(cfg, sim, jobs=jobs, seed=seed, label=label)
    gold = conv2d(cfg, layer.x, layer.weight, layer.bias, stride=layer.stride,
                  padding=layer.padding, shift=layer.shift, relu=layer.relu)
    gold = gold.permute(0, 2, 3, 1).reshape(-1, gold.shape[1])
    rtl = assemble_outputs(cfg, jobs, run.outputs) if run.passed else None
    return run, rtl, gold
