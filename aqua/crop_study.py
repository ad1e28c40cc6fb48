"""The AQuA crop study end to end: oracle, predictors, energy, the table beside the paper.

:func:`run_study` takes a :class:`Subject` (the network under study: the golden quantized demo
CNN, :func:`democnn_subject`; any other model lowered and quantized to a
:class:`golden.qnet.QGraph`, :func:`graph_subject`; or a user's float model,
:mod:`aqua.userdata`) and two image sets:

* *training images*, split in two: the first two thirds fit the learned 0th layer, the last
  third calibrates every predictor's threshold (``golden.predictors.calibrate``); the per-crop
  energy the predictors rank crops by is the mean over all of them;
* *test images*, on which everything reported is measured.

The result is one JSON-able dict (with every method's crop per test image in ``choices``);
:func:`table_rows`, :func:`write_plots` present it. :func:`rtl_first_layer` runs the first conv
layer of some test images under a predictor's crops through the RTL ``ConvTile``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from golden import predictors as P
from golden import study as S

__all__ = ["PAPER", "RTL_METHOD", "Subject", "democnn_subject", "graph_subject",
           "model_subject", "run_study", "run_precision", "precision_rows",
           "table_rows",
           "write_plots", "render_plots", "rtl_images", "rtl_first_layer"]

#: The seed papers' figures (ImageNet, ISAAC): share of images that tolerate some crop at
#: unchanged top-1, and computational energy saved at unchanged top-1 / top-5.
PAPER = {"tolerate_top1": 0.75, "tolerate_top5": None, "saved_top1": 0.335, "saved_top5": 0.420}
#: Accuracy budgets the predictors' thresholds are calibrated to: unchanged, and at most one
#: percentage point lost on the calibration images.
BUDGETS = (0.0, 0.01)


@dataclass
class Subject:
    """A network under study: ``forward(images) -> (logits [16, B, classes], inputs)``,
    ``energy(inputs) -> pJ [16, B, layers]``; ``energy_unit`` is "pJ" or, when the geometry
    is unknown, "kept input share"."""
    name: str
    classes: int
    forward: Callable
    energy: Callable
    plan: list
    geoms: list
    description: str
    energy_unit: str = "pJ"
    predictor_energy: Callable | None = None
    net: object = None          #: the golden QuantNet, for the demo CNN
    layer_names: list | None = None     #: crossbar layer names (reported per layer when set)
    rtl_skip: str | None = None         #: why the RTL step does not run this subject
    float_eval: Callable | None = None  #: ``(images, labels) -> float top-1`` (graph subjects)
    #: ``low -> (plans, forward, energy, input_bits)``: the per-region precision study's
    #: passes over the 81 plans of levels (Bx, low, 0) (golden fixed-point subjects only)
    precision: Callable | None = None


def _precision(cfg, table, net, geoms, fraction, from_layer, groups=None, norm=None,
               offsets=None):
    """The :attr:`Subject.precision` of a golden fixed-point network."""
    from golden import precision as PR
    from golden import precision_study as PS

    windows = PS.plan_windows(geoms, fraction, from_layer)
    norm = norm if norm is not None else (lambda x: x)

    def make(low):
        plans = PR.plan_vectors(cfg, low)
        return (plans,
                lambda x: PS.plans_forward(net, norm(x), plans, windows, with_inputs=True),
                lambda inputs: PS.plan_energy(cfg, table, geoms, plans, windows, inputs,
                                              groups, offsets),
                cfg.input_bits)
    return make


def democnn_subject(cfg, table, model, fraction, from_layer: int = 0,
                    size: tuple[int, int] = (32, 32)) -> Subject:
    """The demo CNN quantized to ``cfg``, run through the golden model."""
    from golden.fixedpoint import quantize_democnn

    net = quantize_democnn(cfg, model)
    geoms = S.democnn_geometry(net, *size)
    plan = S.crop_plan(geoms, fraction, from_layer)
    return Subject(
        name="democnn", classes=net.layers[-1].weight.shape[0],
        forward=lambda x: S.crop_forward(net, x, plan, with_inputs=True),
        energy=lambda inputs: S.crop_energy(cfg, table, geoms, plan, inputs),
        plan=plan, geoms=geoms,
        description=f"demo CNN, golden fixed-point model on config '{cfg.name}'",
        predictor_energy=lambda z: _democnn_predictor_energy(cfg, table, z, size), net=net,
        precision=_precision(cfg, table, net, geoms, fraction, from_layer))


def graph_subject(cfg, table, qg, fraction, from_layer: int = 0, *, name: str,
                  normalize: Callable | None = None) -> Subject:
    """A lowered, quantized network (:class:`golden.qnet.QGraph`) through the golden
    fixed-point crop study (``golden.study.crop_forward`` on the graph): the crop on the
    input of crossbar layer ``from_layer`` (the image, for ``0``), per-layer energy of every
    crossbar layer (grouped convs: every group on its own crossbars), the learned 0th layer's
    own energy charged. ``normalize`` maps the [0, 1] images the predictors see to the
    network's input (the crop zeroes the normalised, quantized input:
    ``docs/arithmetic.md``, "Cropping a user's model's input").

    Raises
    ------
    golden.graph.UnsupportedGraphError
        For a layer the energy model cannot take (``golden.study.graph_geometry``).
    ValueError
        If ``from_layer`` is not a spatial crossbar layer.
    """
    geoms, groups, names = S.graph_geometry(qg)
    offsets = S.input_offsets(qg)
    plan = S.crop_plan(geoms, fraction, from_layer)
    norm = normalize if normalize is not None else (lambda x: x)
    size = tuple(qg.nodes[0].shape[-2:])
    return Subject(
        name=name, classes=int(qg[qg.output].shape[-1]),
        forward=lambda x: S.crop_forward(qg, norm(x), plan, with_inputs=True),
        energy=lambda inputs: S.crop_energy(cfg, table, geoms, plan, inputs, groups, offsets),
        plan=plan, geoms=geoms,
        description=f"{name}, golden fixed-point model of its {len(geoms)} crossbar layers "
                    f"on config '{cfg.name}'",
        predictor_energy=lambda z: _predictor_energy(cfg, table, z, size),
        layer_names=names,
        rtl_skip=f"the RTL step co-simulates the demo CNN's conv0; {name} is checked against "
                 f"the golden fixed-point model only",
        precision=_precision(cfg, table, qg, geoms, fraction, from_layer, groups, norm,
                             offsets))


def model_subject(cfg, table, model, calibration, fraction, from_layer: int = 0, *,
                  name: str, normalize: Callable | None = None) -> Subject:
    """:func:`graph_subject` of ``model`` (an ``nn.Module``) lowered
    (:func:`golden.graph.lower`) and quantized to ``cfg`` on the ``calibration`` images
    ([0, 1], normalised by ``normalize`` as the study's inputs are); its ``float_eval`` is the
    float graph's top-1.

    Raises
    ------
    golden.graph.UnsupportedGraphError, golden.fixedpoint.QuantError
        (both ``ValueError``) for a model the crossbar path cannot take; ``ValueError`` for a
        bad ``from_layer``.
    """
    from golden.graph import lower
    from golden.qnet import float_top1, quantize_graph

    norm = normalize if normalize is not None else (lambda x: x)
    cal = norm(calibration)
    qg = quantize_graph(cfg, lower(model, cal[:1]), cal)
    sub = graph_subject(cfg, table, qg, fraction, from_layer, name=name, normalize=normalize)
    sub.float_eval = lambda x, y: float_top1(qg.graph, norm(x), y)
    return sub


def _predictor_energy(cfg, table, zeroth: P.ZerothLayer, size) -> float:
    """pJ per image of the learned 0th layer on the crossbar (its kernels and classifier,
    uncropped, DAC drives at the energy model's default without activations)."""
    geoms = zeroth.geometry(*size)
    return float(S.crop_energy(cfg, table, geoms, [[None] * len(geoms)]).sum())


def _democnn_predictor_energy(cfg, table, zeroth: P.ZerothLayer, size):
    """The learned 0th layer's cost on the demo CNN: measured in RTL when a measurement of
    ``cfg`` and ``table`` is stored (``cosim.predtile.load_predictor_energy``, written by
    ``python -m cosim.predtile``): a :class:`MeasuredPredictor`; else
    :func:`_predictor_energy`'s analytic crossbar figure."""
    from cosim.predtile import load_predictor_energy

    m = load_predictor_energy(cfg, table, size)
    if m is None:
        return _predictor_energy(cfg, table, zeroth, size)
    return MeasuredPredictor(m["load_pj"], m["row_pj"], m["path"])


@dataclass(frozen=True)
class MeasuredPredictor:
    """The RTL predictor's measured pJ per image: ``load_pj + row_pj * rows``, ``rows`` the
    classifier rows it evaluates before choosing (``golden.predictor_hw.predictor_cycles``):
    the chosen crop's place in the cost order plus one, all ``R`` rows for crop 0."""
    load_pj: float
    row_pj: float
    source: str

    def __call__(self, choice: torch.Tensor, tau: float, cost: torch.Tensor) -> torch.Tensor:
        from golden.predictor_hw import crop_order, logit_threshold

        order = crop_order(cost) if logit_threshold(tau) != float("inf") else []
        R = len(order)
        place = {c: i for i, c in enumerate(order)}
        rows = torch.tensor([min(place.get(int(c), R) + 1, R) for c in choice],
                            dtype=torch.float64)
        return self.load_pj + self.row_pj * rows


def _own(own, choice, tau, cost):
    """A predictor's own pJ for ``choice [N]``: a constant, or per image when measured."""
    return own(choice, tau, cost) if callable(own) else own


def _ranks_tol(arr: S.StudyArrays, ks):
    ranks = S.true_ranks(arr.logits, arr.labels)
    return ranks, {k: S.tolerated(ranks, k) for k in ks}


def run_study(subject: Subject, train: tuple, test: tuple, *, fraction: float,
              progress: Callable[[int], None] | None = None, batch: int = 32) -> dict:
    """Everything the crop study reports, as a JSON-able dict (see the module docstring).
    Wall-clock measurements are all under its ``timing`` key: everything else is a function of
    the inputs, so two runs compare byte for byte outside it."""
    ks = (1, 5) if subject.classes > 5 else (1,)
    xtr, ytr = train
    xte, yte = test
    arr_te = S.run_crops(subject.forward, subject.energy, xte, yte, batch=batch,
                         progress=progress)
    arr_tr = S.run_crops(subject.forward, subject.energy, xtr, ytr, batch=batch,
                         progress=progress)
    ranks, tol = _ranks_tol(arr_te, ks)
    ranks_tr, tol_tr = _ranks_tol(arr_tr, ks)
    energy = arr_te.total_energy
    cost = arr_tr.total_energy.mean(0)
    n_fit = (2 * len(ytr)) // 3
    cal = slice(n_fit, None)

    res = {"subject": subject.description, "classes": subject.classes, "fraction": fraction,
           "energy_unit": subject.energy_unit, "test_images": len(yte),
           "train_images": len(ytr), "fit_images": n_fit, "calibration_images": len(ytr) - n_fit,
           "timing": {"images_per_second":
                      (len(yte) + len(ytr)) / (arr_te.seconds + arr_tr.seconds),
                      "seconds": {"test": arr_te.seconds, "train": arr_tr.seconds}},
           "crops_per_pass": S.NCROPS, "ks": list(ks), "paper": PAPER,
           "energy_per_crop": energy.mean(0).tolist(),
           "energy_per_layer_uncropped": arr_te.energy[:, 0].mean(0).tolist(),
           **({"layers": list(subject.layer_names)} if subject.layer_names else {}),
           "uncropped": S.summarize_choice(torch.zeros(len(yte), dtype=torch.long), ranks,
                                           energy),
           "fixed_crops": [S.summarize_choice(torch.full((len(yte),), c), ranks, energy)
                           for c in range(S.NCROPS)],
           "methods": {}, "curves": {}, "choices": {}}
    if subject.float_eval is not None:
        res["float_top1"] = subject.float_eval(xte, yte)
    hist = {}
    for k in ks:
        tolerant = tol[k][:, 1:].any(1) & (ranks[:, 0] < k)
        res[f"tolerate_top{k}"] = float(tol[k][:, 1:].any(1).float().mean())
        res[f"tolerate_top{k}_correct"] = float(tolerant.float().mean())
        choice = S.oracle_choice(tol[k], energy)
        res["methods"][f"oracle/top{k}"] = S.summarize_choice(choice, ranks, energy)
        res["choices"][f"oracle/top{k}"] = choice.tolist()
        if subject.layer_names:
            res.setdefault("energy_per_layer_oracle", {})[f"top{k}"] = \
                arr_te.energy[torch.arange(len(yte)), choice].mean(0).tolist()
        hist[f"oracle/top{k}"] = torch.bincount(choice, minlength=S.NCROPS).tolist()

    risks = {}
    for m in P.METRICS:
        risks[m] = (P.metric_risk(xtr[cal], m, fraction), P.metric_risk(xte, m, fraction), 0.0)
    zeroths = {k: P.train_zeroth(xtr[:n_fit], tol_tr[k][:n_fit]) for k in ks}
    for k, z in zeroths.items():
        own = subject.predictor_energy(z) if subject.predictor_energy else 0.0
        risks[f"learned/top{k}"] = (z.risk(xtr[cal]), z.risk(xte), own)
    res["learned_energy_per_image"] = {f"top{k}": risks[f"learned/top{k}"][2] for k in ks}
    measured = {k: o for k, (_, _, o) in risks.items() if callable(o)}
    res["learned_energy_source"] = (
        f"measured in RTL ({next(iter(measured.values())).source})" if measured
        else "analytic (its kernels and classifier on the crossbars)")

    for name, (r_cal, r_te, own) in risks.items():
        for k in ks:
            if name.startswith("learned/") and name != f"learned/top{k}":
                continue
            for budget in BUDGETS:
                tau = P.calibrate(r_cal, ranks_tr[cal], cost, k, budget)
                choice = P.choose(r_te, cost, tau)
                summary = S.summarize_choice(choice, ranks, energy, _own(own, choice, tau, cost))
                if callable(own) and not budget:
                    res["learned_energy_per_image"][name.split("/")[1]] = float(
                        _own(own, choice, tau, cost).mean())
                summary.update(threshold=tau, budget=budget)
                key = name if name.startswith("learned/") else f"{name}/top{k}"
                key += f"@{100 * budget:g}pp" if budget else ""
                res["methods"][key] = summary
                res["choices"][key] = choice.tolist()
                if not budget:
                    hist[key] = torch.bincount(choice, minlength=S.NCROPS).tolist()
        res["curves"][name.split("/")[0]] = [
            S.summarize_choice(ch, ranks, energy, _own(own, ch, t, cost))
            for t in P.sweep(r_te, cost) for ch in [P.choose(r_te, cost, t)]]
    res["histogram"] = hist
    return res


def run_precision(subject: Subject, train: tuple, test: tuple, *, fraction: float, low: int,
                  progress: Callable[[int], None] | None = None, batch: int = 32) -> dict:
    """Per-region precision beside cropping (``docs/arithmetic.md``, "Per-region precision"):
    every image under the 81 plans of levels ``(Bx, low, 0)``; per set of plans -- ``crops``
    (the 16 crop plans) and ``plans`` (all 81) -- the oracle (cheapest tolerated plan) and the
    predictors (``golden.precision_study.precision_risk`` of each importance metric; the
    learned 0th layer with one output per plan of the set, its own energy charged), each
    calibrated as in :func:`run_study` on the last third of ``train``. A JSON-able dict."""
    from golden import precision as PR
    from golden import precision_study as PS

    plans, forward, energy_fn, bx = subject.precision(low)
    ks = (1, 5) if subject.classes > 5 else (1,)
    (xtr, ytr), (xte, yte) = train, test
    arr_te = S.run_crops(forward, energy_fn, xte, yte, batch=batch, progress=progress)
    arr_tr = S.run_crops(forward, energy_fn, xtr, ytr, batch=batch, progress=progress)
    ranks, tol = _ranks_tol(arr_te, ks)
    ranks_tr, tol_tr = _ranks_tol(arr_tr, ks)
    energy, cost = arr_te.total_energy, arr_tr.total_energy.mean(0)
    n_fit = (2 * len(ytr)) // 3
    cal = slice(n_fit, None)
    sets = {"crops": torch.tensor([PR.crop_plan_index(c) for c in range(S.NCROPS)]),
            "plans": torch.arange(len(plans))}
    maps = {m: (P.importance_maps(xtr[cal], m), P.importance_maps(xte, m)) for m in P.METRICS}
    res = {"low": low, "input_bits": bx, "plans": [list(p) for p in plans],
           "test_images": len(yte), "train_images": len(ytr), "fit_images": n_fit,
           "seconds": arr_te.seconds + arr_tr.seconds,
           "energy_per_plan": energy.mean(0).tolist(),
           "uncropped": S.summarize_choice(torch.zeros(len(yte), dtype=torch.long), ranks,
                                           energy),
           "fixed_plans": [{key: v for key, v in S.summarize_choice(
               torch.full((len(yte),), c), ranks, energy).items()
               if key in ("top1", "top5", "energy_saved")} for c in range(len(plans))],
           "methods": {}, "choices": {}, "learned_energy_per_image": {}}
    for set_name, idx in sets.items():
        e, r, rtr, c = energy[:, idx], ranks[:, idx], ranks_tr[:, idx], cost[idx]
        sub = [plans[int(i)] for i in idx]
        out = res["methods"][set_name] = {}
        chosen = res["choices"][set_name] = {}
        for k in ks:
            ch = S.oracle_choice(tol[k][:, idx], e)
            out[f"oracle/top{k}"] = S.summarize_choice(ch, r, e)
            chosen[f"oracle/top{k}"] = idx[ch].tolist()
        risks = {m: (PS.precision_risk(mc, sub, fraction, bx),
                     PS.precision_risk(mt, sub, fraction, bx), 0.0)
                 for m, (mc, mt) in maps.items()}
        for k in ks:
            z = P.train_zeroth(xtr[:n_fit], tol_tr[k][:n_fit][:, idx])
            own = subject.predictor_energy(z) if subject.predictor_energy else 0.0
            risks[f"learned/top{k}"] = (z.risk(xtr[cal]), z.risk(xte), own)
            if not callable(own):
                res["learned_energy_per_image"][f"{set_name}/top{k}"] = own
        for name, (r_cal, r_te, own) in risks.items():
            for k in ks:
                if name.startswith("learned/") and name != f"learned/top{k}":
                    continue
                for budget in BUDGETS:
                    tau = P.calibrate(r_cal, rtr[cal], c, k, budget)
                    ch = P.choose(r_te, c, tau)
                    # a measured predictor's cost is per image: its classifier rows up to
                    # the choice (for the 81 plans: the measured cost per row, extrapolated)
                    summary = S.summarize_choice(ch, r, e, _own(own, ch, tau, c))
                    if callable(own) and not budget:
                        res["learned_energy_per_image"][f"{set_name}/{name.split('/')[1]}"] = \
                            float(_own(own, ch, tau, c).mean())
                    summary.update(threshold=tau, budget=budget)
                    key = name if name.startswith("learned/") else f"{name}/top{k}"
                    key += f"@{100 * budget:g}pp" if budget else ""
                    out[key] = summary
                    chosen[key] = idx[ch].tolist()
    return res


def precision_rows(prec: dict) -> list[tuple[str, str, str, str]]:
    """``(method, paper, crops only, precision plans)`` rows: energy saved and accuracy of
    each method over the 16 crop plans and over all plans."""
    rows = []
    crops, plans = prec["methods"]["crops"], prec["methods"]["plans"]
    base = prec["uncropped"]

    def cell(m, k):
        acc, acc0 = m[f"top{k}"], base[f"top{k}"]
        return (f"{_pct(m['energy_saved'])} (top-{k} {100 * acc:.1f}%, "
                f"{100 * (acc - acc0):+.1f} pp)")

    for key in plans:
        name, kk = key.split("/")
        kk, _, budget = kk.partition("@")
        k = int(kk[3:])
        what = f"top-{k} kept" if not budget else f"top-{k} within {budget[:-2]} pp"
        rows.append((f"{name}, {what}",
                     _pct(PAPER.get(f"saved_top{k}")) if name == "oracle" and not budget
                     else "-",
                     cell(crops[key], k) if key in crops else "-", cell(plans[key], k)))
    return rows


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def table_rows(res: dict) -> list[tuple[str, str, str]]:
    """``(metric, paper, measured)`` rows of the comparison table."""
    rows = []
    base = res["uncropped"]
    for k in res["ks"]:
        rows.append((f"images that tolerate some crop (top-{k} kept)",
                     _pct(PAPER.get(f"tolerate_top{k}")),
                     f"{_pct(res[f'tolerate_top{k}'])} ({_pct(res[f'tolerate_top{k}_correct'])}"
                     f" correct and kept correct)"))
    for k in res["ks"]:
        paper = _pct(PAPER.get(f"saved_top{k}"))
        for key, m in res["methods"].items():
            name, kk = key.split("/")
            kk, _, budget = kk.partition("@")
            if kk != f"top{k}":
                continue
            acc, acc0 = m[f"top{k}"], base[f"top{k}"]
            what = f"top-{k} kept" if not budget else f"top-{k} within {budget[:-2]} pp"
            rows.append((f"energy saved, {what}: {name}",
                         paper if name == "oracle" else "-",
                         f"{_pct(m['energy_saved'])} (top-{k} {100 * acc0:.1f} -> "
                         f"{100 * acc:.1f}%, lost {100 * (acc0 - acc):+.1f} pp)"))
    return rows


def write_plots(res: dict, out_dir) -> list:
    """Write :func:`render_plots` into ``out_dir``, each file atomically; returns the paths."""
    from pathlib import Path

    from aqua._cmdutil import atomic_write

    return [atomic_write(Path(out_dir) / name, png) for name, png in render_plots(res).items()]


def render_plots(res: dict) -> dict[str, bytes]:
    """``crop_histogram.png`` (chosen crops per method) and ``accuracy_energy.png`` (top-1
    accuracy against energy for every predictor's threshold sweep, the oracle and the 16 fixed
    crops), and with a precision study ``precision_energy.png`` (:func:`_precision_plot`):
    file name -> PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from golden.crop import CROP_VECTORS

    def png(fig) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=120, format="png")
        plt.close(fig)
        return buf.getvalue()

    plots = {}
    fig, ax = plt.subplots(figsize=(11, 4.5))
    hist = res["histogram"]
    width = 0.8 / len(hist)
    for i, (name, counts) in enumerate(hist.items()):
        ax.bar([c + (i - len(hist) / 2) * width for c in range(S.NCROPS)], counts, width,
               label=name)
    ax.set_xticks(range(S.NCROPS))
    ax.set_xticklabels(["".join(map(str, v)) for v in CROP_VECTORS], rotation=90)
    ax.set_xlabel("crop vector [top, bottom, left, right]")
    ax.set_ylabel("test images")
    ax.set_title(f"Chosen crops (fraction {res['fraction']})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))    # beside the bars
    fig.tight_layout()
    plots["crop_histogram.png"] = png(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    rel = lambda m: 1 - m["energy_saved"]                                       # noqa: E731
    for name, curve in res["curves"].items():
        ax.plot([rel(m) for m in curve], [100 * m["top1"] for m in curve], ".-", label=name)
    fixed = res["fixed_crops"]
    ax.scatter([rel(m) for m in fixed], [100 * m["top1"] for m in fixed], marker="x",
               color="grey", label="one crop for all images")
    for key, m in res["methods"].items():
        if key.startswith("oracle"):
            ax.scatter([rel(m)], [100 * m["top1"]], marker="*", s=150, label=key)
    # a ratio, no unit: 1 is the uncropped network
    what = "energy" if res["energy_unit"] == "pJ" else res["energy_unit"]
    ax.set_xlabel(f"{what} per image relative to uncropped (uncropped = 1)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy versus energy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    plots["accuracy_energy.png"] = png(fig)
    prec = res.get("precision", {})
    if "fixed_plans" in prec:
        plots["precision_energy.png"] = png(_precision_plot(plt, prec))
    return plots


def _precision_plot(plt, prec: dict):
    """Top-1 against energy: every precision plan applied to all images (crop plans marked),
    and the oracle and predictors (top-1 kept) over the crop plans and over all plans."""
    from golden.precision import crop_plan_index

    crops = {crop_plan_index(c) for c in range(S.NCROPS)}
    fig, ax = plt.subplots(figsize=(7, 5))
    fixed = prec["fixed_plans"]
    for is_crop, mark, label in ((False, ".", "one plan for all images"),
                                 (True, "x", "one crop for all images")):
        pts = [m for i, m in enumerate(fixed) if (i in crops) == is_crop]
        ax.scatter([1 - m["energy_saved"] for m in pts], [100 * m["top1"] for m in pts],
                   marker=mark, color="grey" if is_crop else "tab:blue", label=label)
    for set_name, mark in (("crops", "s"), ("plans", "*")):
        for key, m in prec["methods"][set_name].items():
            if key.endswith("/top1"):
                ax.scatter([1 - m["energy_saved"]], [100 * m["top1"]], marker=mark, s=90,
                           label=f"{key.split('/')[0]} ({set_name})")
    ax.set_xlabel("energy per image relative to the full network (= 1)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Per-region precision (levels {prec['input_bits']}, {prec['low']}, 0 bits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


#: The predictor whose crops the RTL step co-simulates: the learned 0th layer calibrated to
#: top-1 within 1 pp (on the demo CNN it crops a fifth of the test images at unchanged test
#: top-1; calibrated to strictly unchanged top-1 it crops none).
RTL_METHOD = "learned/top1@1pp"


def rtl_images(choice, n: int) -> list[int]:
    """``n`` test images for the RTL step: the first ones the predictor crops (``choice [N]``,
    crop 0 = uncropped), then, if it crops fewer than ``n``, the first uncropped ones; in
    test-set order."""
    cropped = [i for i, c in enumerate(choice) if c]
    kept = [i for i, c in enumerate(choice) if not c]
    return sorted((cropped + kept)[:n])


def rtl_first_layer(cfg, subject: Subject, images, crops, fraction, sim: str, *,
                    labels=None, seed: int = 0) -> dict:
    """The first conv layer of ``images [B, C, H, W]`` under ``crops`` (one per image) through
    the RTL ``ConvTile`` of ``cfg``, back to back in one co-simulation under ``sim``, compared
    with the study's golden output (``golden.study.first_layer_cases``: the same quantized
    layer, integer input and kept window the study ran). When the window is the one the crop
    vector and ``fraction`` give, the tile derives it itself (``mode = 1``), else it gets the
    window (``mode = 0``). Returns a JSON-able dict: per image the crop, window, RTL and golden
    (``golden.crop.tile_cycles``) cycles, the uncropped cycles and whether the output map is
    bit-exact; ``passed`` and ``message``. ``skipped`` (and nothing else) says why a layer
    that does not fit one crossbar is not run.
    """
    from cosim.tile import run_tile, tile_geometry, tile_image
    from golden.crop import CROP_VECTORS, fraction_code, kept_window, tile_cycles

    cases = S.first_layer_cases(subject.net, images, crops, subject.plan)
    layer = cases[0]["layer"]
    H, W = cases[0]["x"].shape[-2:]
    geom = tile_geometry(layer, H, W)
    if geom.rows > cfg.rows:
        return {"skipped": f"conv0's {geom.rows} im2col rows do not fit one {cfg.rows}-row "
                           f"crossbar of '{cfg.name}'"}
    labels = list(range(len(cases))) if labels is None else labels
    tiles = []
    for i, case in zip(labels, cases):
        vec = CROP_VECTORS[case["crop"]]
        try:
            fraction_code(fraction)            # raises if the tile's code cannot hold it
            own = tuple(kept_window(vec, fraction, H, W)) == tuple(case["window"])
        except ValueError:
            own = False
        how = dict(crop=vec, fraction=fraction) if own else dict(window=case["window"])
        img = tile_image(cfg, geom, case["x"][0], layer, label=f"test image {i}", **how)
        img.expected = case["golden"][0]       # the study's own golden output
        tiles.append((img, "crop vector" if own else "window"))
    run = run_tile(cfg, geom, layer, [t for t, _ in tiles], sim, seed=seed, label="crop-study")
    full = tile_cycles(cfg, geom, H, W, (0, H, 0, W))
    rows = []
    for i, case, (img, how), r in zip(labels, cases, tiles, run.rows or [{}] * len(tiles)):
        rows.append({"image": int(i), "crop": case["crop"],
                     "vector": "".join(map(str, CROP_VECTORS[case["crop"]])),
                     "window": list(case["window"]), "tile_window_from": how,
                     "cycles_rtl": r.get("cycles_rtl"), "cycles_golden": img.cycles,
                     "cycles_uncropped": full,
                     "cycles_saved": None if r.get("cycles_rtl") is None
                     else 1 - r["cycles_rtl"] / full,
                     "bit_exact": bool(r.get("outputs_equal"))})
    return {"sim": sim, "config": cfg.name, "layer": 0, "images": rows, "passed": run.passed,
            "message": run.message, "cycles": run.cycles, "sim_wall_s": run.sim_wall_s,
            "wall_s": run.wall_s}     # the two timings go under the study's "timing" key
