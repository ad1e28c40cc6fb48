"""Crop predictors: choose one of the 16 crops per image without running the network.

Every predictor gives each crop a *risk* ``[N, 16]`` (crop 0 always 0) and the choice is the
cheapest crop, by a fixed per-crop energy (the mean over a calibration set), whose risk is at
most a threshold ``tau`` (:func:`choose`). ``tau`` is calibrated on held-out training images:
the largest value at which top-k accuracy there is no lower than uncropped
(:func:`calibrate`).

* **Region importance metrics** (scikit-image): a per-pixel importance map, and the risk of a
  crop is the share of the image's importance it removes:

  - ``entropy``: local Shannon entropy, ``skimage.filters.rank.entropy`` over a disk of radius
    3 on the image as 8 bits;
  - ``gradient``: intensity gradient magnitude, ``skimage.filters.sobel``;
  - ``corners``: points of interest, Harris corner peaks (``corner_harris`` +
    ``corner_peaks``, min_distance 2), each weighted by its response.

  Their cost is not counted: they run off the crossbar.
* **Learned 0th layer** (:class:`ZerothLayer`): four fixed 3x3 gradient kernels (Sobel x and y,
  two diagonals) at stride 2 on the image, absolute values average-pooled to a 4x4 grid (64
  features), and a linear classifier over the 16 crops that predicts, per crop, whether the
  image tolerates it (16 logistic outputs, trained deterministically). Risk = 1 - probability.
  Its own cost is counted: the kernels as a 1->4 3x3 stride-2 conv on the crossbar and the
  classifier as a 64->16 1x1 conv, through the same energy model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from arch.geometry import ConvGeometry

from .crop import kept_window
from .study import NCROPS, window_masks

__all__ = ["METRICS", "importance_maps", "removed_share", "metric_risk", "choose",
           "calibrate", "sweep", "ZerothLayer", "train_zeroth", "crop_masks"]

METRICS = ("entropy", "gradient", "corners")


def _gray(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` float images in [0, 1] as ``[N, H, W]`` float64 (channel mean)."""
    return images.detach().to(torch.float64).mean(1).clamp(0, 1).numpy()


def importance_maps(images: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-pixel importance ``[N, H, W]`` float64 (non-negative) of ``metric``."""
    from skimage.feature import corner_harris, corner_peaks
    from skimage.filters import sobel
    from skimage.filters.rank import entropy
    from skimage.morphology import disk

    g = _gray(images)
    out = np.zeros_like(g)
    for i, im in enumerate(g):
        if metric == "entropy":
            out[i] = entropy((im * 255).round().astype(np.uint8), disk(3))
        elif metric == "gradient":
            out[i] = sobel(im)
        elif metric == "corners":
            resp = corner_harris(im)
            pk = corner_peaks(resp, min_distance=2, threshold_rel=0.05)
            if len(pk):
                out[i, pk[:, 0], pk[:, 1]] = resp[pk[:, 0], pk[:, 1]]
        else:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    return torch.from_numpy(out)


def crop_masks(fraction, H: int, W: int) -> torch.Tensor:
    """Bool ``[16, H, W]``: the kept window of every crop on an ``H x W`` image."""
    return window_masks([kept_window(c, fraction, H, W) for c in range(NCROPS)], H, W)


def removed_share(maps: torch.Tensor, fraction) -> torch.Tensor:
    """``[N, 16]``: the share of each image's importance outside each crop's kept window (0 for
    an image with no importance at all)."""
    masks = crop_masks(fraction, *maps.shape[-2:]).to(maps.dtype)
    total = maps.sum((1, 2))
    kept = torch.einsum("nhw,chw->nc", maps, masks)
    return torch.where(total[:, None] > 0, 1 - kept / total.clamp_min(1e-300)[:, None],
                       torch.zeros_like(kept)).clamp_min(0)


def metric_risk(images: torch.Tensor, metric: str, fraction) -> torch.Tensor:
    """Risk ``[N, 16]`` of a region-importance metric: the importance each crop removes."""
    return removed_share(importance_maps(images, metric), fraction)


def choose(risk: torch.Tensor, cost: torch.Tensor, tau: float) -> torch.Tensor:
    """Per image the crop of least ``cost [16]`` with ``risk <= tau`` (crop 0 if none)."""
    c = torch.where(risk <= tau, cost[None].to(torch.float64).expand_as(risk),
                    torch.full(risk.shape, float("inf"), dtype=torch.float64))
    c[:, 0] = torch.minimum(c[:, 0], torch.as_tensor(float(cost[0]), dtype=torch.float64))
    return c.argmin(1)


def _thresholds(risk: torch.Tensor) -> torch.Tensor:
    vals = torch.unique(risk[:, 1:].flatten())
    return torch.cat([torch.tensor([-1.0], dtype=torch.float64), vals.to(torch.float64)])


def calibrate(risk: torch.Tensor, ranks: torch.Tensor, cost: torch.Tensor, k: int,
              budget: float = 0.0) -> float:
    """The largest threshold at which choosing by :func:`choose` keeps the top-k accuracy of
    the calibration images (``risk``, ``ranks`` ``[N, 16]``) at least the uncropped one less
    ``budget`` (a fraction, e.g. 0.01 for one percentage point); -1 (never crop) if none
    does."""
    base = int((ranks[:, 0] < k).sum()) - int(budget * len(ranks))
    best = -1.0
    idx = torch.arange(len(risk))
    for tau in _thresholds(risk):
        if int((ranks[idx, choose(risk, cost, float(tau))] < k).sum()) >= base:
            best = float(tau)
    return best


def sweep(risk: torch.Tensor, cost: torch.Tensor, points: int = 24) -> list[float]:
    """Thresholds spread over the risk quantiles, for an accuracy-versus-energy curve."""
    q = torch.linspace(0, 1, points, dtype=torch.float64)
    vals = torch.quantile(risk[:, 1:].flatten().to(torch.float64), q)
    return [-1.0] + sorted(set(float(v) for v in vals))


# -- the learned 0th layer ---------------------------------------------------------------

#: Fixed 3x3 gradient kernels (integers, so they fit a crossbar's weight range as they are).
KERNELS = torch.tensor([
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],        # Sobel x
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],        # Sobel y
    [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]],        # diagonal
    [[2, 1, 0], [1, 0, -1], [0, -1, -2]],        # anti-diagonal
], dtype=torch.float32)[:, None]
GRID = 4                #: features are pooled to GRID x GRID per kernel
ZEROTH_SEED = 0
ZEROTH_STEPS = 400


@dataclass(frozen=True, eq=False)
class ZerothLayer:
    """The learned 0th layer: :data:`KERNELS`, pooling, and ``weight [16, F]``, ``bias [16]``
    over standardised features (``mean``, ``std`` ``[F]``)."""
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @staticmethod
    def features(images: torch.Tensor) -> torch.Tensor:
        """``[N, 4 * GRID * GRID]``: mean absolute kernel response per grid cell."""
        x = images.to(torch.float32).mean(1, keepdim=True)
        r = F.conv2d(x, KERNELS, stride=2, padding=1).abs()
        return F.adaptive_avg_pool2d(r, GRID).flatten(1)

    def risk(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 16]``: 1 - predicted probability that the image tolerates each crop."""
        z = (self.features(images) - self.mean) / self.std
        r = 1 - torch.sigmoid(z @ self.weight.t() + self.bias)
        r[:, 0] = 0
        return r.to(torch.float64)

    def geometry(self, height: int, width: int) -> list[ConvGeometry]:
        """Its crossbar layers for the energy model: the kernels, then the classifier."""
        k = ConvGeometry(1, KERNELS.shape[0], kernel=3, stride=2, padding=1, height=height,
                         width=width)
        return [k, ConvGeometry.linear(self.weight.shape[1], self.weight.shape[0])]


def train_zeroth(images: torch.Tensor, tol: torch.Tensor, *, steps: int = ZEROTH_STEPS,
                 seed: int = ZEROTH_SEED, weight_decay: float = 1e-3) -> ZerothLayer:
    """Fit the classifier to ``tol [N, C]`` (the oracle's tolerated crops, ``C = 16``, or
    precision plans: one output per column), full batch, Adam, one thread: deterministic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        f = ZerothLayer.features(images)
        mean, std = f.mean(0), f.std(0).clamp_min(1e-6)
        z = (f - mean) / std
        lin = torch.nn.Linear(z.shape[1], tol.shape[1])
        opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=weight_decay)
        target = tol.to(torch.float32)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = F.binary_cross_entropy_with_logits(lin(z), target)
            loss.backward()
            opt.step()
        return ZerothLayer(lin.weight.detach().clone(), lin.bias.detach().clone(), mean, std)
    finally:
        torch.set_num_threads(threads)
