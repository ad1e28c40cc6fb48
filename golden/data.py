"""Cluttered digits: a small, deterministic image data set that needs no download.

The 1797 hand-written digits bundled with scikit-learn (``sklearn.datasets.load_digits``, 8x8
pixels, values 0..16) are upscaled 2x (bilinear) to 16x16 and pasted on a 32x32 canvas:

* **position**: the digit's top-left corner is ``8 + d`` in each axis, with ``d`` a rounded
  normal offset of standard deviation :data:`CENTRE_SIGMA` pixels (clipped to the canvas) for
  most images and uniform over the whole canvas for a fraction :data:`OFF_CENTRE` of them, so
  most digits sit near the centre and some are far off it;
* **clutter**: :data:`FRAGMENTS` faint fragments (a random 4x4-pixel piece of another digit of
  the same split, upscaled to 8x8, at 25..45 % intensity) at uniform random places, combined
  with the digit by taking the pixel-wise maximum;
* **noise**: additive Gaussian noise of standard deviation :data:`NOISE`, then clipped to [0, 1].

The train/test split is fixed (:data:`SPLIT_SEED`) and independent of ``seed``: 1437 digits for
training, 360 for testing, stratified so every class keeps its share. ``seed`` only changes the
rendering (positions, clutter, noise), so a training loop can draw a fresh rendering each epoch.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["cluttered_digits", "CANVAS", "DIGIT", "CENTRE_SIGMA", "OFF_CENTRE", "FRAGMENTS",
           "NOISE", "SPLIT_SEED", "TEST_PER_CLASS", "split_indices"]

CANVAS = 32          #: side of the square canvas, pixels
DIGIT = 16           #: side of an upscaled digit, pixels
CENTRE_SIGMA = 2.5   #: standard deviation of the offset from the centre, pixels
OFF_CENTRE = 0.15    #: fraction of digits placed uniformly anywhere on the canvas
FRAGMENTS = 3        #: clutter fragments per image
NOISE = 0.03         #: standard deviation of the additive pixel noise
SPLIT_SEED = 20160618  #: seed of the fixed train/test split (never changes)
TEST_PER_CLASS = 36  #: test digits per class (10 classes: 360 test, 1437 train)

_SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits as float32 images in [0, 1], shape [1797, 8, 8], and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = d.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=2)
def split_indices(split: str) -> np.ndarray:
    """Indices into the bundled digits of the fixed ``"train"`` or ``"test"`` split.

    The split is stratified: the first :data:`TEST_PER_CLASS` digits of each class, in an order
    fixed by :data:`SPLIT_SEED`, are the test set. The result is sorted and read-only.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    _, labels = _digits()
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(len(labels))
    test = np.concatenate([order[labels[order] == c][:TEST_PER_CLASS] for c in range(10)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    idx = np.flatnonzero(is_test if split == "test" else ~is_test)
    idx.setflags(write=False)
    return idx


def _upscale2x(images: np.ndarray) -> np.ndarray:
    """Bilinear 2x upscaling of [N, h, w] images (torch ``interpolate``, half-pixel centres)."""
    t = torch.from_numpy(np.ascontiguousarray(images))[:, None]
    up = torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
    return up[:, 0].numpy()


def _paste_max(canvas: np.ndarray, patches: np.ndarray, top: np.ndarray, left: np.ndarray):
    """In place: ``canvas[n, top+i, left+j] = max(canvas[...], patches[n, i, j])`` for each n."""
    n, ph, pw = patches.shape
    rows = top[:, None, None] + np.arange(ph)[None, :, None]
    cols = left[:, None, None] + np.arange(pw)[None, None, :]
    ns = np.arange(n)[:, None, None]
    canvas[ns, rows, cols] = np.maximum(canvas[ns, rows, cols], patches)


def _digit_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Offsets [n, 2] (rows, cols) of the digit's corner from the centred corner position."""
    span = (CANVAS - DIGIT) // 2
    near = np.rint(rng.normal(0.0, CENTRE_SIGMA, size=(n, 2))).astype(np.int64)
    near = np.clip(near, -span, span)
    anywhere = rng.integers(-span, span + 1, size=(n, 2))
    off = rng.random(n) < OFF_CENTRE
    return np.where(off[:, None], anywhere, near)


def cluttered_digits(split: str = "train", seed: int = 0, *, copies: int | None = None,
                     return_offsets: bool = False):
    """Render the cluttered-digits images of one split.

    Parameters
    ----------
    split : {"train", "test"}
        Which fixed subset of the bundled digits to render (1437 or 360 digits).
    seed : int
        Seed of the rendering (positions, clutter, noise). Same arguments, same tensors.
    copies : int, optional
        Renderings of each digit, with independent positions and clutter. Default 2 for
        ``"train"``, 1 for ``"test"``.
    return_offsets : bool
        Also return the digits' offsets from the centre.

    Returns
    -------
    x : torch.Tensor
        float32 images in [0, 1], shape [N, 1, 32, 32], ``N = copies * digits``; copy ``k`` of
        digit ``i`` is at ``k * digits + i``.
    y : torch.Tensor
        int64 labels 0..9, shape [N].
    offsets : torch.Tensor
        Only with ``return_offsets``: int64 [N, 2], (row, column) offset in pixels of the
        digit's top-left corner from the centred position (8, 8); in [-8, 8].

    Raises
    ------
    ValueError
        For an unknown split or a ``copies`` below 1.
    """
    idx = split_indices(split)
    if copies is None:
        copies = 2 if split == "train" else 1
    if copies < 1:
        raise ValueError(f"copies must be a positive integer, not {copies}")
    images, labels = _digits()
    # Independent streams per split, so that train and test renderings never coincide.
    rng = np.random.default_rng([seed, _SPLITS.index(split)])
    src = np.tile(idx, copies)
    n = len(src)

    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    # Clutter first: fragments of other digits of the same split.
    frag_src = rng.choice(idx, size=(n, FRAGMENTS))
    frag_at = rng.integers(0, 8 - 4 + 1, size=(n, FRAGMENTS, 2))     # corner of a 4x4 piece
    frag_gain = rng.uniform(0.25, 0.45, size=(n, FRAGMENTS)).astype(np.float32)
    frag_pos = rng.integers(0, CANVAS - 8 + 1, size=(n, FRAGMENTS, 2))
    win = np.arange(4)
    for k in range(FRAGMENTS):
        rows = frag_at[:, k, 0, None, None] + win[None, :, None]
        cols = frag_at[:, k, 1, None, None] + win[None, None, :]
        pieces = images[frag_src[:, k, None, None], rows, cols]          # [n, 4, 4]
        pieces = _upscale2x(pieces) * frag_gain[:, k, None, None]
        _paste_max(canvas, pieces, frag_pos[:, k, 0], frag_pos[:, k, 1])

    offsets = _digit_offsets(rng, n)
    centre = (CANVAS - DIGIT) // 2
    _paste_max(canvas, _upscale2x(images[src]), centre + offsets[:, 0], centre + offsets[:, 1])

    canvas += rng.normal(0.0, NOISE, size=canvas.shape).astype(np.float32)
    np.clip(canvas, 0.0, 1.0, out=canvas)

    x = torch.from_numpy(canvas)[:, None]
    y = torch.from_numpy(labels[src].copy())
    if return_offsets:
        return x, y, torch.from_numpy(offsets)
    return x, y
