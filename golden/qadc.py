"""ADC-aware quantization of a lowered network (:mod:`golden.qnet`), and its report:
accuracy against ADC bits.

Why a lossy ADC breaks the plain quantization (``docs/quantize.md``, "Lossy ADCs"): a column
read of one input chunk is ``sum_r x_t[r] * c[r, s]`` with 1-bit chunks and ``b``-bit cells, a
small number, and ``drop_lsb`` rounds it to a multiple of ``2**k``. The rounding error of the
top weight slice is weighted by ``2**(p_t + (S-1)*b)``: with 8-bit weights in 2-bit cells and
``k = 2`` one rounding step is ``4 * 64 = 256`` weight units, the whole weight range, in every
chunk of every column. The error does not shrink when the weights do (the biased encoding
fills the top slice of every weight, ``u = w + 128``); it is independent of the weights'
scale, so only larger weights (more signal per read), a correction of its mean, and the
output format can be chosen against it. ``clip`` instead saturates the largest reads.

The search (:func:`adc_aware`): the crossbar layers are visited in topological order, the
earlier ones at their chosen formats (greedy). For each layer the candidates are
``w_off`` weight fraction bits above the no-saturation choice (:data:`W_OFFSETS`; the largest
weights saturate, the others grow by ``2**w_off``), each with three corrections of the ADC's
error ``e = golden acc - exact acc`` (``golden.layer.matvec_acc`` against the exact int64
product), measured on the calibration images as they arrive at the layer through the
already-quantized layers: none; the **bias** minus the mean of ``e`` per output (at the
accumulator's scale, rounded half to even, saturated to ``bias_bits``); the **weights and the
bias**: every weight of output ``o`` minus the rounded slope of ``e`` against the output's
input sum ``sum_k x[k]`` (a constant added to an output's weights adds that constant times the
input sum, which is how a drop_lsb ADC's error grows with the input: half an LSB of every
non-empty read), then the bias minus the mean of what is left. Then, for the best of these,
``out_off`` output fraction bits (:data:`OUT_OFFSETS`). The candidate whose output (after
its fused activation, dequantized) is closest to the float network's on the calibration
images (mean squared error) wins; ties go to the earlier candidate, so a lossless
configuration keeps the plain formats unless another is strictly better. Everything is integer and goes through the
configuration's own ADC (:mod:`golden.layer`): nothing of the arithmetic changes, only the
numbers programmed into it (``docs/arithmetic.md`` sections 1-7).

:func:`adc_sweep` derives configurations from a base one (:func:`adc_config`: same tile, ADC
``mode`` and ``bits`` replaced) from the lossless width down to ``min_bits`` and reports float,
naive (plain :func:`golden.qnet.quantize_graph`) and ADC-aware top-1 per model, with a verdict
whether the configuration holds the network's accuracy within ``bound``, and per lossy point
the per-layer ADC error against the exact accumulator (:func:`layer_errors`) of both.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from arch.config import AccelConfig, ConfigError
from golden import layer as _layer
from golden.fixedpoint import round_half_even
from golden.graph import Graph, run_float
from golden.qnet import (NodeTweak, QGraph, QNode, QuantError, _run_node, calibrate,
                         crossbar_input, quant_inputs, quant_top1, quantize_graph, float_top1)

__all__ = ["W_OFFSETS", "OUT_OFFSETS", "LayerChoice", "AdcAwareResult", "adc_aware",
           "crossbar_acc", "adc_error", "layer_errors", "adc_config", "SweepRow",
           "SweepReport", "adc_sweep", "DEFAULT_MIN_BITS"]

W_OFFSETS = (0, 1, 2)        #: weight fraction bits tried above the no-saturation choice
OUT_OFFSETS = (0, 1)         #: output fraction bits tried above it
DEFAULT_MIN_BITS = 3         #: the sweep's narrowest ADC
DIAGNOSIS_IMAGES = 8         #: calibration images of the sweep's per-layer ADC error figures


# -- the crossbar sums, golden and exact ---------------------------------------------------------

def _rows(cfg: AccelConfig, q: QNode, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(rows [P, K], wmat [K, Cout/g])`` of every conv group (one for linear), the rows as
    the crossbar is driven (offset included)."""
    x = crossbar_input(cfg, q, x)
    if q.op == "linear":
        return [(x + q.input_offset, q.weight.t())]
    a = q.attrs
    cout, cin_g, kh, kw = q.weight.shape
    g = a["groups"]
    cout_g = cout // g
    ftype = torch.float32 if cfg.input_bits <= 24 else torch.float64
    out = []
    for gi in range(g):
        xs = x[:, gi * cin_g:(gi + 1) * cin_g].to(ftype)
        p = F.unfold(xs, (kh, kw), dilation=a["dilation"], padding=a["padding"],
                     stride=a["stride"])
        p = p.transpose(1, 2).reshape(-1, cin_g * kh * kw).to(torch.int64) + q.input_offset
        out.append((p, q.weight[gi * cout_g:(gi + 1) * cout_g].reshape(cout_g, -1).t()))
    return out


def crossbar_acc(cfg: AccelConfig, q: QNode, x: torch.Tensor, *,
                 exact: bool = False) -> torch.Tensor:
    """``sum over tiles (acc - weight_bias * xsum)`` of crossbar layer ``q`` on its integer
    input ``x`` (before the bias), int64 ``[positions, Cout]``: through ``cfg``'s ADC
    (:func:`golden.layer.matvec_acc`) or, with ``exact``, the exact int64 product (what a
    lossless ADC gives)."""
    outs = []
    for rows, wmat in _rows(cfg, q, x):
        if exact:
            outs.append(rows @ wmat)
        else:
            outs.append(_layer.matvec_acc(_layer.program(cfg, wmat), rows))
    return torch.cat(outs, dim=1)


def adc_error(cfg: AccelConfig, q: QNode, x: torch.Tensor) -> torch.Tensor:
    """The ADC's error of layer ``q`` on ``x``, golden minus exact accumulator, float64
    ``[positions, Cout]`` (zero on a lossless configuration)."""
    return (crossbar_acc(cfg, q, x) - crossbar_acc(cfg, q, x, exact=True)).to(torch.float64)


def layer_errors(qg: QGraph, images: torch.Tensor) -> list[dict]:
    """Per crossbar layer, on ``images``: the ADC's error against the exact accumulator (its
    mean and standard deviation) beside the exact accumulator's standard deviation, in
    accumulator LSBs, and ``snr`` = exact std / error rms. Each layer is fed its inputs from
    the quantized network itself (errors of earlier layers included), so this is the
    diagnosis of where a lossy ADC loses the signal."""
    env = _forward(qg, images)
    out = []
    for q in qg.crossbar_nodes:
        x = env[q.inputs[0]]
        ex = crossbar_acc(qg.cfg, q, x, exact=True).to(torch.float64)
        err = crossbar_acc(qg.cfg, q, x).to(torch.float64) - ex
        rms = float(err.pow(2).mean().sqrt())
        sig = float(ex.std()) if ex.numel() > 1 else 0.0
        out.append({"layer": q.name, "describe": q.describe, "signal_std": sig,
                    "error_mean": float(err.mean()), "error_std": float(err.std())
                    if err.numel() > 1 else 0.0, "error_rms": rms,
                    "snr": sig / rms if rms else math.inf})
    return out


def _forward(qg: QGraph, images: torch.Tensor, env: dict | None = None,
             stop: str | None = None) -> dict[str, torch.Tensor]:
    """Every node's integer output in order (those already in ``env`` kept), up to and
    excluding ``stop``."""
    env = {} if env is None else env
    for q in qg.nodes:
        if q.name == stop:
            break
        if q.name in env:
            continue
        if q.op == "input":
            env[q.name] = quant_inputs(qg, images)
        else:
            env[q.name] = _run_node(qg, q, [env[i] for i in q.inputs],
                                    [qg[i].frac for i in q.inputs])
    return env


# -- the search ----------------------------------------------------------------------------------

def _xsum(cfg: AccelConfig, q: QNode, x: torch.Tensor) -> torch.Tensor:
    """``sum_k x[k]`` of every output's own rows (its conv group's), offset excluded, float64
    ``[positions, Cout]``."""
    outs = []
    for rows, wmat in _rows(cfg, q, x):
        s = (rows - q.input_offset).sum(1, keepdim=True).to(torch.float64)
        outs.append(s.expand(-1, wmat.shape[1]))
    return torch.cat(outs, dim=1)


def _corrections(cfg, build, name, w_off, qw, x):
    """The corrections tried for one weight offset: none; the bias alone (minus the mean
    error); the weights and the bias (every weight of output ``o`` minus the rounded slope of
    the error against ``sum_k x[k]``, which that shift of the weights cancels, then the bias
    minus the mean of what is left). Each is ``(weight_delta, bias_delta)``."""
    err = adc_error(cfg, qw, x)
    if not bool(err.any()):
        return [(None, None)]
    out = [(None, None), (None, -round_half_even(err.mean(0)).to(torch.int64))]
    xs = _xsum(cfg, qw, x)
    xc = xs - xs.mean(0)
    var = xc.pow(2).mean(0)
    slope = torch.where(var > 0, (xc * (err - err.mean(0))).mean(0) / var.clamp_min(1e-30),
                        torch.zeros_like(var))
    wd = -round_half_even(slope).to(torch.int64)
    if bool(wd.any()):
        q2 = build({name: NodeTweak(w_off=w_off, weight_delta=wd)})[name]
        # what is left against the intended product: the ADC's error of the new weights plus
        # the exact change of the product, sum_k (w' - w) x = (w' - w) . xsum per output
        dw = (q2.weight - qw.weight).flatten(1).to(torch.float64)
        left = adc_error(cfg, q2, x) + _row_dot(cfg, qw, x, dw)
        out.append((wd, -round_half_even(left.mean(0)).to(torch.int64)))
    return out


def _row_dot(cfg, q, x, dw):
    """``sum_k dw[o, k] * x[k]`` per position and output (offset excluded), float64."""
    outs = []
    col = 0
    for rows, wmat in _rows(cfg, q, x):
        n = wmat.shape[1]
        outs.append((rows - q.input_offset).to(torch.float64) @ dw[col:col + n].t())
        col += n
    return torch.cat(outs, dim=1)

@dataclass(frozen=True)
class LayerChoice:
    """The format the search chose for one crossbar layer, and its output error (mean squared,
    against float, in the float network's units) before (plain formats) and after."""
    name: str
    w_off: int
    out_off: int
    bias_corrected: bool
    weights_corrected: bool
    w_frac: int
    out_frac: int
    shift: int
    plain_mse: float
    mse: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class AdcAwareResult:
    """What :func:`adc_aware` returns: the quantized graph and the per-layer choices."""
    qgraph: QGraph
    choices: tuple[LayerChoice, ...]
    seconds: float


def adc_aware(cfg: AccelConfig, graph: Graph, calibration: torch.Tensor, *,
              ranges: dict | None = None, w_offsets: Sequence[int] = W_OFFSETS,
              out_offsets: Sequence[int] = OUT_OFFSETS, input_offset: bool = True,
              progress: Callable[[int, int], None] | None = None) -> AdcAwareResult:
    """Quantize ``graph`` to ``cfg`` choosing every crossbar layer's weight and output
    fraction bits and bias correction against ``cfg``'s ADC (module docstring).

    ``calibration`` sets the ranges (as :func:`golden.qnet.quantize_graph`) and is the set
    the errors are measured on; ``progress(done, total)`` after every layer.

    Raises
    ------
    QuantError
        As :func:`golden.qnet.quantize_graph`.
    """
    start = time.perf_counter()
    if ranges is None:
        ranges = calibrate(graph, calibration)
    with torch.no_grad():
        ref = run_float(graph, calibration.to(torch.float32), record=True)
    tweaks: dict[str, NodeTweak] = {}

    def build(extra=None):
        t = dict(tweaks)
        if extra:
            t.update(extra)
        return quantize_graph(cfg, graph, None, ranges=ranges, tweaks=t,
                              input_offset=input_offset)

    qg = build()
    env: dict[str, torch.Tensor] = {}
    names = [q.name for q in qg.crossbar_nodes]
    choices = []
    for done, name in enumerate(names, 1):
        env = _forward(qg, calibration, env, stop=name)
        q0 = qg[name]
        x = env[q0.inputs[0]]
        fin = qg[q0.inputs[0]].frac
        target = ref[name].to(torch.float64)
        best = None          # (mse, order, tweak, qnode, output)
        plain_mse = None
        order = 0
        seen = set()
        def trial(tw):
            nonlocal best, plain_mse, order
            try:
                cand = build({name: tw})
            except QuantError:
                return
            qn = cand[name]
            y = _run_node(cand, qn, [x], [fin])
            mse = float((y.to(torch.float64) * math.ldexp(1.0, -qn.frac)
                         - target).pow(2).mean())
            if plain_mse is None:
                plain_mse = mse
            if best is None or mse < best[0]:
                best = (mse, order, tw, qn, y)
            order += 1

        # stage 1: weight scale and corrections at the plain output format; stage 2: the
        # output format of the best of them
        first = out_offsets[0] if out_offsets else 0
        for w_off in w_offsets:
            qw = build({name: NodeTweak(w_off=w_off)})[name]
            if (qw.w_frac, qw.shift) in seen:
                continue     # the shift range undid the offset: the same weights again
            seen.add((qw.w_frac, qw.shift))
            for wd, d in _corrections(cfg, build, name, w_off, qw, x):
                trial(NodeTweak(w_off=w_off, out_off=first, bias_delta=d, weight_delta=wd))
        stage1 = best[2]
        for out_off in out_offsets[1:]:
            trial(NodeTweak(w_off=stage1.w_off, out_off=out_off, bias_delta=stage1.bias_delta,
                            weight_delta=stage1.weight_delta))
        mse, _, tw, qn, y = best
        tweaks[name] = tw
        qg = build()
        env[name] = y
        choices.append(LayerChoice(name, tw.w_off, tw.out_off, tw.bias_delta is not None,
                                   tw.weight_delta is not None, qn.w_frac, qn.frac, qn.shift,
                                   plain_mse, mse))
        if progress is not None:
            progress(done, len(names))
    return AdcAwareResult(qg, tuple(choices), time.perf_counter() - start)


# -- accuracy against ADC bits -------------------------------------------------------------------

def adc_config(base: AccelConfig, mode: str, bits: int) -> AccelConfig:
    """``base`` with its ADC replaced: ``mode`` (``lossless``, ``clip``, ``drop_lsb``) and
    ``bits``; named ``<base>-<mode><bits>``.

    Raises
    ------
    ConfigError
        If the result is not a valid configuration (e.g. a lossless ADC too narrow).
    """
    return base.replace(adc_mode=mode, adc_bits=bits, name=f"{base.name}-{mode}{bits}",
                        description=f"{base.name} with a {bits}-bit {mode} ADC")


@dataclass(frozen=True)
class SweepRow:
    """One (model, ADC) point of the sweep."""
    model: str
    config: str
    mode: str
    adc_bits: int
    adc_drop: int
    float_top1: float
    naive_top1: float
    aware_top1: float
    holds: bool
    choices: tuple[LayerChoice, ...] = ()
    errors: dict = field(default_factory=dict)

    def verdict(self, base: str, bound: float) -> str:
        what = "a lossless" if self.mode == "lossless" else f"a {self.adc_bits}-bit {self.mode}"
        head = (f"{self.model} on {base} with {what} ADC: top-1 {100 * self.aware_top1:.1f} % "
                f"ADC-aware ({100 * self.naive_top1:.1f} % naive) vs "
                f"{100 * self.float_top1:.1f} % float")
        if self.holds:
            return f"{head} -- holds the accuracy (<= {100 * bound:g} pp)"
        return (f"{head} -- this config cannot hold the network's accuracy "
                f"(> {100 * bound:g} pp)")

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "choices"}
        d["layers"] = [c.to_dict() for c in self.choices]
        return d


@dataclass(frozen=True)
class SweepReport:
    """What :func:`adc_sweep` returns."""
    base: str
    bound: float
    images: int
    calibration_images: int
    search_images: int
    rows: tuple[SweepRow, ...]
    seconds: float

    def table(self) -> str:
        lines = [f"{'model':<16} {'ADC':<14} {'drop':>4} {'float':>7} {'naive':>7} "
                 f"{'aware':>7}  verdict"]
        for r in self.rows:
            adc = f"{r.mode} {r.adc_bits}b"
            lines.append(f"{r.model[:16]:<16} {adc:<14} {r.adc_drop:>4} "
                         f"{100 * r.float_top1:>6.1f}% {100 * r.naive_top1:>6.1f}% "
                         f"{100 * r.aware_top1:>6.1f}%  "
                         f"{'holds' if r.holds else 'CANNOT HOLD'}")
        lines.append(f"top-1 on {self.images} test images; ranges from "
                     f"{self.calibration_images} calibration images, the ADC-aware search "
                     f"on the first {self.search_images}; bound {100 * self.bound:g} pp")
        lines += [r.verdict(self.base, self.bound) for r in self.rows if not r.holds]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"base": self.base, "bound": self.bound, "images": self.images,
                "calibration_images": self.calibration_images,
                "search_images": self.search_images, "seconds": self.seconds,
                "rows": [r.to_dict() for r in self.rows]}


def adc_sweep(models: Sequence, base: AccelConfig, images: torch.Tensor,
              labels: torch.Tensor, calibration: torch.Tensor, *,
              modes: Sequence[str] = ("drop_lsb", "clip"), min_bits: int = DEFAULT_MIN_BITS,
              bound: float = 0.01, search_images: int = 64,
              say: Callable[[str], None] | None = None) -> SweepReport:
    """Float, naive and ADC-aware top-1 of every model on ``base``
    with a lossless ADC and with each of ``modes`` from ``base.read_bits - 1`` bits down to
    ``min_bits``. The ranges come from ``calibration``; the search measures its errors on the
    first ``search_images`` of them. A row holds when the ADC-aware top-1 is within
    ``bound`` of float. A model is a ``(name, Graph)`` pair or a spec for
    :func:`golden.graph.load_model` (``democnn``, ``zoo:<name>``, ``module:factory``), lowered
    here on ``calibration[:1]``.

    Raises
    ------
    ValueError
        If ``min_bits`` is not in ``[1, base.read_bits]``, a mode is unknown, or a model
        cannot be loaded or lowered (``golden.graph.UnsupportedGraphError``).
    """
    start = time.perf_counter()
    if not 1 <= min_bits <= base.read_bits:
        raise ValueError(f"the narrowest ADC must have 1 to {base.read_bits} bits (the "
                         f"lossless width of '{base.name}'), not {min_bits}")
    points = [("lossless", base.read_bits)]
    for mode in modes:
        if mode not in ("clip", "drop_lsb"):
            raise ValueError(f"a lossy ADC mode is 'clip' or 'drop_lsb', not {mode!r}")
        points += [(mode, b) for b in range(base.read_bits - 1, min_bits - 1, -1)]
    search_cal = calibration[:search_images]
    pairs = []
    for m in models:
        if isinstance(m, tuple):
            pairs.append(m)
        else:
            from golden.graph import load_model, lower
            try:
                pairs.append((str(m), lower(load_model(m), calibration[:1])))
            except (ImportError, OSError) as exc:
                raise ValueError(f"model {m}: {str(exc).splitlines()[0]}") from None
    rows = []
    for mname, graph in pairs:
        ranges = calibrate(graph, calibration)
        ft = float_top1(graph, images, labels)
        for mode, bits in points:
            try:
                cfg = adc_config(base, mode, bits)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            naive = quantize_graph(cfg, graph, None, ranges=ranges)
            nt = quant_top1(naive, images, labels)
            if mode == "lossless":
                at, choices, errors = nt, (), {}
            else:
                res = adc_aware(cfg, graph, search_cal, ranges=ranges)
                at, choices = quant_top1(res.qgraph, images, labels), res.choices
                diag = search_cal[:DIAGNOSIS_IMAGES]
                errors = {"naive": layer_errors(naive, diag),
                          "aware": layer_errors(res.qgraph, diag)}
            row = SweepRow(mname, cfg.name, mode, bits, cfg.adc_drop, ft, nt, at,
                           at >= ft - bound - 1e-12, choices, errors)
            rows.append(row)
            if say is not None:
                say(f"{mname} {mode} {bits}-bit: float {100 * ft:.1f} %, naive "
                    f"{100 * nt:.1f} %, ADC-aware {100 * at:.1f} %")
    return SweepReport(base.name, bound, len(labels), len(calibration), len(search_cal),
                       tuple(rows), time.perf_counter() - start)
