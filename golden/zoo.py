"""A small model zoo: torchvision's resnet18, vgg11_bn and mobilenet_v2, and a trained tiny ResNet.

torchvision cannot be imported beside the CPU torch build of this project, so its three
architectures are re-implemented here layer for layer (same modules, same shapes, same forward;
``torchvision.models.resnet18()`` etc. with ``weights=None``), with random weights drawn from a
fixed seed (:func:`build`). ``in_channels`` (3 in torchvision) and ``num_classes`` are
parameters; the input size is free (all three end with an adaptive average pool).

:class:`TinyResNet` is a second trained model that is not shaped like the demo CNN: a stem,
a max pool, a basic residual block, a down-sampling residual block with a 1x1 projection
shortcut, and a MobileNetV2-style inverted residual block (1x1 expand, 3x3 depthwise, 1x1
project, ReLU6), every conv followed by batch normalisation. It is trained on
:mod:`golden.data`'s cluttered digits by :func:`train_tinyresnet` (one thread, fixed seed) and
shipped as ``aqua/data/tinyresnet.pt``. Every crossbar layer's input is a ReLU output (ReLU
after each residual add), so that unsigned-input configurations lose nothing to saturation.

Models are named ``zoo:<name>`` on the command line (:func:`build` takes the name with or
without the prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from golden.cnn import save_state_dict, train_on_digits

__all__ = ["ZOO", "build", "BasicBlock", "ResNet18", "VGG11BN", "InvertedResidual",
           "MobileNetV2", "TinyResNet", "train_tinyresnet", "load_tinyresnet",
           "save_tinyresnet", "TINYRESNET_SHIPPED", "TINY_SEED", "TINY_EPOCHS"]

REPO_ROOT = Path(__file__).resolve().parent.parent
TINYRESNET_SHIPPED = REPO_ROOT / "aqua" / "data" / "tinyresnet.pt"
TINY_SEED = 0
TINY_EPOCHS = 12


# -- torchvision resnet18 ----------------------------------------------------------------------

class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` (expansion 1)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision ``resnet18``: 7x7/2 stem, 3x3/2 max pool, four stages of two
    :class:`BasicBlock` (64, 128, 256, 512 channels), adaptive average pool, ``fc``."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, 2)
        self.layer3 = self._make_layer(256, 2, 2)
        self.layer4 = self._make_layer(512, 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# -- torchvision vgg11_bn --------------------------------------------------------------------

_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11BN(nn.Module):
    """torchvision ``vgg11_bn``: eight 3x3 conv + BN + ReLU, five 2x2 max pools, adaptive
    average pool to 7x7, classifier 25088 -> 4096 -> 4096 -> ``num_classes`` with dropout."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in _VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# -- torchvision mobilenet_v2 ----------------------------------------------------------------

def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: bool = True) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with ReLU6 (no activation if ``act`` is false)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2,
                                         groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (if ``expand_ratio`` > 1), 3x3 depthwise, 1x1 linear
    projection; a residual add when the stride is 1 and the widths match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(inp, hidden, 1))
        layers += [_conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision ``mobilenet_v2`` (width 1.0): 32-channel 3x3/2 stem, 17 inverted residual
    blocks, 1x1 conv to 1280, global average pool, dropout, ``Linear(1280, num_classes)``."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        c = _make_divisible(32)
        last = _make_divisible(1280)
        features: list[nn.Module] = [_conv_bn_act(in_channels, c, 3, 2)]
        for t, ch, n, s in self.SETTINGS:
            out = _make_divisible(ch)
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        features.append(_conv_bn_act(c, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


# -- the trained tiny ResNet -----------------------------------------------------------------

class TinyResNet(nn.Module):
    """A 1x32x32 -> 10 classifier with residual adds, batch norm and a depthwise block::

        stem   conv 1->16 3x3, BN, ReLU          32x32
        pool   max 2x2                           16x16
        block1 basic residual 16->16             16x16
        block2 basic residual 16->32, stride 2   8x8   (1x1 stride-2 projection shortcut)
        block3 inverted residual 32->64->32      8x8   (1x1, depthwise 3x3, 1x1; ReLU6)
        head   global average pool, linear 32->10
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.block1 = BasicBlock(16, 16)
        self.block2 = BasicBlock(16, 32, 2, nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False),
                                                          nn.BatchNorm2d(32)))
        self.expand = _conv_bn_act(32, 64, 1)
        self.dw = _conv_bn_act(64, 64, 3, 1, groups=64)
        self.project = nn.Sequential(nn.Conv2d(64, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.block2(self.block1(self.pool(self.stem(x))))
        x = torch.relu(x + self.project(self.dw(self.expand(x))))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@dataclass(frozen=True)
class TinyTrainResult:
    model: TinyResNet
    test_accuracy: float
    seconds: float
    steps: int


def train_tinyresnet(*, epochs: int = TINY_EPOCHS, seed: int = TINY_SEED, batch: int = 64,
                     lr: float = 4e-3, max_steps: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> TinyTrainResult:
    """Train :class:`TinyResNet` deterministically on the CPU with one thread.

    Every epoch draws a fresh rendering of the training digits
    (``cluttered_digits("train", seed=2000 + 1000 * seed + epoch)``); AdamW (weight decay
    5e-4), cosine learning-rate decay, cross-entropy with label smoothing 0.1.
    """
    r = train_on_digits(TinyResNet, epochs=epochs, seed=seed, batch=batch, lr=lr,
                        max_steps=max_steps, data_seed=2000, progress=progress)
    return TinyTrainResult(r.model, r.test_accuracy, r.seconds, r.steps)


def save_tinyresnet(model: TinyResNet, path: str | Path) -> Path:
    """Write ``model``'s state dict to ``path`` (atomically, creating folders)."""
    return save_state_dict(model, path)


def load_tinyresnet(path: str | Path | None = None) -> TinyResNet:
    """The trained :class:`TinyResNet` (default: the shipped weights), in eval mode."""
    path = Path(TINYRESNET_SHIPPED if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file {path}")
    model = TinyResNet()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch raises several kinds for a corrupt or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:100]
        raise ValueError(f"{path}: not a saved tiny ResNet ({first})") from None
    return model.eval()


ZOO: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "vgg11_bn": VGG11BN,
    "mobilenet_v2": MobileNetV2,
    "tinyresnet": TinyResNet,
}


def build(name: str, *, num_classes: int | None = None, in_channels: int | None = None,
          seed: int = 0) -> nn.Module:
    """A zoo model in eval mode: ``zoo:tinyresnet`` is the trained one (shipped weights); the
    others have random weights drawn with ``torch.manual_seed(seed)`` (their BN running stats
    are the defaults, mean 0 and variance 1).

    Raises
    ------
    ValueError
        For a name not in :data:`ZOO`.
    """
    key = name.removeprefix("zoo:")
    if key not in ZOO:
        raise ValueError(f"unknown zoo model '{name}'; known: "
                         f"{', '.join('zoo:' + k for k in ZOO)}")
    if key == "tinyresnet" and num_classes in (None, 10) and in_channels in (None, 1):
        return load_tinyresnet()
    kwargs = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = ZOO[key](**kwargs)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
