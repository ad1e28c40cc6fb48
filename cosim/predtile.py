"""Host side of the crop predictor in RTL (``hdl.predictor.Predictor``,
``hdl.predtile.PredTile``): its parameters from the golden integer predictor
(``golden.predictor_hw``), the shipped study's predictor, and what a host sends and expects.
"""

from __future__ import annotations

import json
from functools import lru_cache
import torch

from arch.config import CONFIG_DIR
from golden.predictor_hw import INT_KERNELS, PredictorParams, quantize_zeroth

__all__ = ["predictor_kwargs", "build_predictor", "study_zeroth", "study_params",
           "ZEROTH_FIXTURE", "pixel_words"]

#: the learned 0th layers of the crop study on ``small`` (demo CNN, fraction 0.25), their
#: calibrated thresholds and per-crop energy (``configs/predictor/zeroth_small.json``)
ZEROTH_FIXTURE = CONFIG_DIR / "predictor" / "zeroth_small.json"


def predictor_kwargs(params: PredictorParams) -> dict:
    """The ``Predictor`` constructor's arguments for ``params`` (the same integers)."""
    return dict(height=params.height, width=params.width, channels=params.channels,
                pixel_bits=params.pixel_bits, kernels=INT_KERNELS.tolist(),
                order=list(params.order), weights=params.weight.tolist(),
                biases=params.bias.tolist(), weight_bits=params.weight_bits)


def build_predictor(params: PredictorParams):
    """``hdl.predictor.Predictor`` of ``params``."""
    from hdl.predictor import Predictor
    return Predictor(**predictor_kwargs(params))


@lru_cache(maxsize=None)
def _fixture() -> dict:
    return json.loads(ZEROTH_FIXTURE.read_text())


def study_zeroth(k: int = 1):
    """``(ZerothLayer, {budget: tau}, cost [16])`` of the stored study on ``small``."""
    from golden.predictors import ZerothLayer

    doc = _fixture()
    z = doc["zeroth"][f"top{k}"]
    zl = ZerothLayer(*(torch.tensor(z[n], dtype=torch.float32)
                       for n in ("weight", "bias", "mean", "std")))
    return zl, {float(b): t for b, t in z["tau"].items()}, torch.tensor(doc["cost"],
                                                                         dtype=torch.float64)


def study_params(cfg, input_frac: int, *, k: int = 1, budget: float = 0.01,
                 size: tuple[int, int] = (32, 32), channels: int = 1) -> PredictorParams:
    """The integer predictor of the stored study's ``learned/top{k}`` at ``budget``
    (``aqua.crop_study.RTL_METHOD`` by default) for ``cfg``'s unsigned input pixels."""
    zl, taus, cost = study_zeroth(k)
    return quantize_zeroth(zl, taus[budget], cost, height=size[0], width=size[1],
                           channels=channels, pixel_bits=cfg.input_bits, pixel_frac=input_frac)


def pixel_words(x: torch.Tensor) -> list[list[int]]:
    """``x [C, H, W]`` as row-major pixels, each a list of its channels."""
    return x.permute(1, 2, 0).reshape(-1, x.shape[0]).tolist()


def build_predtile(cfg, geom, params: PredictorParams):
    """``hdl.predtile.PredTile(cfg, geom)`` with the predictor of ``params``."""
    from hdl.predtile import PredTile

    kw = predictor_kwargs(params)
    if (params.height, params.width, params.channels) != (geom.height, geom.width,
                                                          geom.in_channels):
        raise ValueError(f"the predictor is for {params.channels}x{params.height}x"
                         f"{params.width} images, the tile's layer for {geom.in_channels}x"
                         f"{geom.height}x{geom.width}")
    return PredTile(cfg, geom, **{k: kw[k] for k in ("kernels", "order", "weights", "biases",
                                                     "weight_bits")})


def predtile_expect(cfg, geom, params: PredictorParams, x: torch.Tensor, layer, fraction,
                    label: str = "") -> dict:
    """What ``PredTile`` must do with image ``x [C, H, W]``: the golden integer predictor's
    crop and row, the tile image under that crop (``cosim.tile.tile_image``: kept pixels,
    expected output map, ``tile_cycles``) and the total cycles (predictor + tile)."""
    from golden.crop import CROP_VECTORS
    from golden.predictor_hw import predict_int, predictor_cycles

    from .tile import tile_image

    crop, det = predict_int(params, x[None], details=True)
    crop, pos = int(crop[0]), int(det["position"][0])
    img = tile_image(cfg, geom, x, layer, crop=CROP_VECTORS[crop], fraction=fraction,
                     label=label or f"crop {crop}")
    pc = predictor_cycles(params, pos)
    return {"crop": crop, "position": pos, "tile": img, "predictor_cycles": pc,
            "cycles": pc + img.cycles}
