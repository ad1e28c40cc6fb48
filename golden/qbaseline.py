"""The torch.ao baseline of the quantization search: PyTorch's eager-mode static post-training
int8 quantization (``torch.ao.quantization``, the ``x86`` qconfig: per-channel int8 weights,
uint8 activations with affine, *non*-power-of-two scales, fbgemm kernels), or, if that cannot
run, a clearly labelled per-channel int8 fake-quant emulation (:func:`torch_ao_int8`).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from golden.fixedpoint import saturate
from golden.qlayers import calibration_ranges, describe

__all__ = ["torch_ao_int8"]


class _AoNet(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub
        import copy
        self.quant = QuantStub()
        self.convs = nn.ModuleList(copy.deepcopy(c) for c in model.convs)
        self.relus = nn.ModuleList(nn.ReLU() for _ in model.convs)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = copy.deepcopy(model.fc)
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        for c, r in zip(self.convs, self.relus):
            x = r(c(x))
        x = self.pool(x).flatten(1)
        return self.dequant(self.fc(x))


def torch_ao_int8(model: nn.Module, calib: torch.Tensor, images: torch.Tensor,
                  heldout: torch.Tensor | None = None) -> dict:
    """PyTorch eager-mode static PTQ (x86/fbgemm qconfig, conv+ReLU fused) of ``model``;
    returns ``{"method", "logits", "heldout_logits", "warnings"}``. If torch.ao fails, a
    per-channel int8 weight / per-tensor uint8 activation fake-quant emulation is used
    instead and ``method`` says so, with the exception text."""
    from torch.ao import quantization as tq

    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
            torch.backends.quantized.engine = engine
            net = _AoNet(model).eval()
            net.qconfig = tq.get_default_qconfig(engine)
            tq.fuse_modules(net, [[f"convs.{i}", f"relus.{i}"] for i in range(len(net.convs))],
                            inplace=True)
            tq.prepare(net, inplace=True)
            with torch.no_grad():
                net(calib)
            tq.convert(net, inplace=True)
            with torch.no_grad():
                logits = net(images)
                held = net(heldout) if heldout is not None else None
        caught = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
                         for w in rec})
        return {"method": f"torch.ao.quantization eager static PTQ ({engine} qconfig, "
                          f"per-channel int8 weights, uint8 activations, int32 bias)",
                "logits": logits, "heldout_logits": held, "warnings": caught}
    except Exception as exc:  # noqa: BLE001 - reported, then the emulation stands in
        err = f"{type(exc).__name__}: {exc}"
    return {"method": f"EMULATION (torch.ao failed: {err}): per-channel int8 fake quant",
            "logits": _int8_emulation(model, calib, images),
            "heldout_logits": None if heldout is None else
            _int8_emulation(model, calib, heldout), "warnings": caught}


def _int8_emulation(model, calib, images):
    """Per-channel symmetric int8 weights, per-tensor affine uint8 activations (min/max)."""
    layers = describe(model)
    ranges = calibration_ranges(layers, calib)
    with torch.no_grad():
        x = images
        for L, r in zip(layers, ranges):
            if L.pool_before:
                x = x.mean(dim=(2, 3))
            lo, hi = min(r["x"][0], 0.0), max(r["x"][1], 0.0)
            s = max(hi - lo, 1e-12) / 255
            zp = torch.round(torch.tensor(-lo / s))
            x = (saturate(torch.round(x / s) + zp, 0, 255) - zp) * s
            wmax = L.weight.abs().flatten(1).amax(1).clamp(min=1e-12)
            ws = (wmax / 127).view(-1, *([1] * (L.weight.dim() - 1)))
            w = saturate(torch.round(L.weight / ws), -127, 127) * ws
            x = F.conv2d(x, w, L.bias, stride=L.stride, padding=L.padding) \
                if L.kind == "conv" else F.linear(x, w, L.bias)
            if L.relu:
                x = torch.relu(x)
    return x
