"""The user's own model and images for ``aqua crop-study``.

**Model** (``--model``): ``zoo:<name>`` (:mod:`golden.zoo`, built with the images' channels
and classes; ``zoo:tinyresnet`` on 1-channel, 10-class images is the trained one),
``torchvision:<name>`` (the same re-implementations of torchvision's models; with
``--weights``, a state dict in torchvision's key names, built with its channels and classes),
``democnn``, an ONNX file (``PATH.onnx``, :mod:`golden.onnx_import`), a TorchScript file
(``torch.jit.save``), or ``module:factory`` (an importable callable returning an
``nn.Module``) with ``--weights`` (a state dict).

**Images** (``--images``): a folder with one subfolder per class (sorted names are the classes
0, 1, ...; every file whose name ends in an image suffix, :data:`IMAGE_SUFFIXES`, must be an
image Pillow reads; other files, such as a README, are skipped with a note), or an ``.npz`` with
``x``
(``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``; uint8 is divided by 255, floats are taken
as [0, 1]) and ``y`` (``[N]`` integer labels). Preprocessing is explicit: optional
``--grayscale``, resizing to ``--size`` (bilinear, antialiased), then ``(x - mean) / std`` per
channel (``--mean``, ``--std``; default 0 and 1). The predictors see the [0, 1] image before
normalisation. The images are split deterministically (a permutation with a fixed seed): the
first half is the test set, the second the predictors' training set.

**What the study runs.** An ``nn.Module`` (``zoo:``, ``torchvision:``, ``democnn``, an ONNX
file, ``module:factory``) is
lowered (:func:`golden.graph.lower`), quantized to the configuration on the training split of
the images (normalised; :func:`golden.qnet.quantize_graph`) and runs through the golden
fixed-point crop study (:func:`aqua.crop_study.model_subject`): per-layer energy in pJ with
the integer activations; the float graph's top-1 is reported beside. A graph the crossbar path
cannot take is refused with one line (``UnsupportedGraphError``, ``QuantError``). In float run

* an ``nn.Module`` with ``--float`` (``module:factory`` only): hooks on every ``Conv2d``: the
  crop applies from
  ``--from-layer`` on exactly as in the golden study (input outside the scaled window zero,
  outputs outside the computed window zero), and energy is ``golden.energy_model`` for each
  ``Conv2d`` and ``Linear`` (a 1x1 conv on a 1x1 map), found in call order on a probe pass,
  without activations (so the DAC energy is the model's upper bound);
* a TorchScript model (never lowered: its graph is not translated) cannot be hooked
  (TorchScript ignores Python hooks): only the image is cropped (``--from-layer 0``) and
  "energy" is the share of input pixels kept, so the learned 0th layer's pJ cannot be added
  to it (it is charged, in pJ, for every other subject).

**One cropping rule for every format**: a crop zeroes the cropped pixels of the tensor the
model receives, *after* ``--mean``/``--std`` -- a cropped pixel is the mean colour, the
value a crossbar that skips those rows sees. The hooks zero the first ``Conv2d``'s input (the
model's input, when that layer reads it directly); a TorchScript model gets the normalised image
with the cropped pixels zeroed. So the same network gives the same logits under every crop
in either format (``docs/arithmetic.md``, "Cropping a user's model's input").

Every mistake is a :class:`~aqua.cli.UsageError` with one line.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aqua.crop_study import Subject
from arch.config import ConfigError
from arch.geometry import ConvGeometry
from golden import study as S
from golden.crop import kept_window

__all__ = ["load_user_model", "load_images", "user_subject", "user_study_inputs",
           "fixed_point_subject", "SPLIT_SEED", "CALIBRATION_MAX"]

SPLIT_SEED = 0
#: file name suffixes (any case) read from an image folder; other files are skipped
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}


def _error(msg: str):
    from aqua.cli import UsageError
    return UsageError(msg)


def _short(exc: BaseException, limit: int = 400) -> str:
    """``exc`` on one line: its type and every line of its message (torch puts the useful part,
    which state-dict keys mismatch or what shape a layer wanted, on the later lines), joined by
    "; " and cut to ``limit`` characters."""
    text = f"{exc.__class__.__name__}:"
    for ln in str(exc).splitlines():
        ln = " ".join(ln.split())
        if ln:
            text += (" " if text.endswith((":", ".", ";", ",")) else "; ") + ln
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def load_user_model(spec: str, weights: str | None) -> tuple[nn.Module, bool]:
    """``(model in eval mode, is_torchscript)`` from ``--model`` / ``--weights``."""
    path = Path(spec)
    if ":" in spec and not path.exists():
        mod_name, _, fn_name = spec.partition(":")
        try:
            factory = getattr(_import_from_cwd(mod_name), fn_name)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            hint = ("; a module is looked up on PYTHONPATH and in the current folder "
                    f"({os.getcwd()})") if isinstance(exc, ImportError) else ""
            raise _error(f"--model {spec}: cannot import {fn_name} from {mod_name} "
                         f"({_short(exc)}){hint}") from None
        except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
            raise _error(f"--model {spec}: importing {mod_name} failed ({_short(exc)})") from None
        try:
            model = factory()
        except Exception as exc:  # a user's factory may raise anything
            raise _error(f"--model {spec}: the factory failed ({_short(exc)})") from None
        if not isinstance(model, nn.Module):
            raise _error(f"--model {spec}: the factory returned {type(model).__name__}, "
                         f"not a torch.nn.Module")
        if weights is None:
            raise _error(f"--model {spec} needs --weights (a state dict)")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise _error(f"--weights {weights}: no such file") from None
        except Exception as exc:  # torch raises several kinds for a corrupt or foreign file
            raise _error(f"--weights {weights}: not a state dict of {spec} "
                         f"({_short(exc)})") from None
        return model.eval(), False
    if weights is not None:
        raise _error("--weights goes with --model module:factory, not a TorchScript file")
    if not path.is_file():
        raise _error(f"--model {spec}: no such file (a TorchScript file or module:factory)")
    try:
        with warnings.catch_warnings():       # torch 2.13 deprecates TorchScript; still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch.jit.load raises RuntimeError and others
        raise _error(f"--model {spec}: not a TorchScript model ({_short(exc)})") from None
    return model.eval(), True


def _import_from_cwd(mod_name: str):
    """``importlib.import_module(mod_name)`` with the current folder on ``sys.path`` (where
    the ``aqua`` console script, unlike ``python -m``, does not look)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(mod_name)
    finally:
        if added:
            sys.path.remove(cwd)


def _read_folder(root: Path, size: int | None, grayscale: bool):
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise _error(f"--images {root}: no class subfolders (expected one folder per class)")
    xs, ys = [], []
    skipped = 0
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.is_dir():
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise _error(f"--images: cannot read {f} as an image ({_short(exc)})") from None
            # each image on its own: with --size, images of different sizes are welcome
            xs.append(_preprocess(torch.from_numpy(a).permute(2, 0, 1)[None], size,
                                  grayscale)[0])
            ys.append(label)
    if skipped:
        import sys
        print(f"note: --images {root}: skipped {skipped} file{'s' if skipped > 1 else ''} "
              f"without an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})",
              file=sys.stderr)
    if not xs:
        raise _error(f"--images {root}: the class folders hold no images")
    if len({x.shape for x in xs}) > 1:
        sizes = sorted({f"{x.shape[-2]}x{x.shape[-1]}" for x in xs})
        raise _error(f"--images {root}: images differ in size ({', '.join(sizes[:4])}"
                     f"{', ...' if len(sizes) > 4 else ''}); give --size to resize them")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64), classes


def _preprocess(x: torch.Tensor, size: int | None, grayscale: bool) -> torch.Tensor:
    """``--grayscale``, then ``--size`` (bilinear, antialiased) on ``x [N, C, H, W]``."""
    if grayscale:
        x = x.mean(1, keepdim=True)
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0, 1)
    return x


def _read_npz(path: Path):
    from aqua.cli import UsageError

    try:
        with open(path, "rb") as fh:          # ours to close, whatever np.load raises
            d = np.load(fh)
            if not isinstance(d, np.lib.npyio.NpzFile):      # a bare .npy saved as .npz
                raise _error(f"--images {path}: not an .npz archive (a single array, not x "
                             f"and y)")
            with d:
                if "x" not in d or "y" not in d:
                    raise _error(f"--images {path}: the .npz needs arrays 'x' and 'y', "
                                 f"has {sorted(d.files)}")
                x, y = d["x"], d["y"]
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many kinds for a bad file
        raise _error(f"--images {path}: not a readable .npz ({_short(exc)})") from None
    for name, a in (("x", x), ("y", y)):
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer)
                                   or np.issubdtype(a.dtype, np.floating)):
            raise _error(f"--images {path}: {name} must hold numbers, not {a.dtype} values")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise _error(f"--images {path}: x must be [N, H, W], [N, H, W, C] or [N, C, H, W] and "
                     f"y [N], not {list(x.shape)} and {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise _error(f"--images {path}: y must hold integer labels >= 0")
    xf = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    return torch.from_numpy(xf), torch.from_numpy(y.astype(np.int64)), None


def load_images(spec: str, *, size: int | None = None, grayscale: bool = False):
    """``(x [N, C, H, W] in [0, 1], y [N], class names or None)`` from ``--images``."""
    path = Path(spec)
    if path.is_dir():
        return _read_folder(path, size, grayscale)
    if path.suffix == ".npz" and path.is_file():
        x, y, names = _read_npz(path)
    elif not path.exists():
        raise _error(f"--images {spec}: no such file or folder")
    else:
        raise _error(f"--images {spec}: expected a folder with one subfolder per class or an "
                     f".npz file")
    if min(x.shape[-2:], default=1) == 0 and len(x):
        raise _error(f"--images {spec}: images of size {x.shape[-2]}x{x.shape[-1]}")
    return _preprocess(x, size, grayscale), y, names


def _normalizer(mean, std, channels):
    def per_channel(v, default, name):
        v = [default] if v is None else list(v)
        if len(v) not in (1, channels):
            want = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
            raise _error(f"--{name} needs {want} for {channels}-channel images, not {len(v)}")
        if not all(np.isfinite(v)):
            raise _error(f"--{name} values must be finite numbers, not {v}")
        if name == "std" and any(s <= 0 for s in v):
            raise _error("--std values must be positive")
        return torch.tensor(v * (channels if len(v) == 1 else 1)).view(1, -1, 1, 1)
    m, s = per_channel(mean, 0.0, "mean"), per_channel(std, 1.0, "std")
    return lambda x: (x - m) / s


def _probe(model: nn.Module, x: torch.Tensor):
    """Conv2d and Linear calls of one forward pass, in order: ``[(module, ConvGeometry)]``."""
    calls = []

    def hook(mod, inp, _out):
        t = inp[0]
        if isinstance(mod, nn.Conv2d):
            if mod.groups != 1 or mod.kernel_size[0] != mod.kernel_size[1] or \
                    len(set(mod.stride)) > 1 or not isinstance(mod.padding, tuple) or \
                    len(set(mod.padding)) > 1 or mod.dilation != (1, 1):
                raise _error(f"unsupported Conv2d {mod}: the crossbar model needs square "
                             f"kernels, equal strides and padding, no groups or dilation")
            try:
                g = ConvGeometry(mod.in_channels, mod.out_channels, mod.kernel_size[0],
                                 mod.stride[0], mod.padding[0], t.shape[-2], t.shape[-1])
            except ConfigError as exc:
                raise _error(f"unsupported Conv2d {mod}: {exc}") from None
        else:
            g = ConvGeometry.linear(mod.in_features, mod.out_features)
        if any(m is mod for m, _ in calls):
            raise _error("a Conv2d or Linear module is called twice in one forward pass; "
                         "the crop study needs each layer once")
        calls.append((mod, g))

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hs:
            h.remove()
    return calls, out


def _mask(windows, H, W, B):
    return S.window_masks(windows, H, W).repeat_interleave(B, 0)[:, None].float()


def user_subject(model, scripted: bool, cfg, table, sample, normalize, *, fraction,
                 from_layer: int, classes: int) -> Subject:
    """The :class:`~aqua.crop_study.Subject` of a float user model (module docstring)."""
    C = S.NCROPS
    H, W = sample.shape[-2:]
    if scripted:
        if from_layer != 0:
            raise _error("a TorchScript model can only be cropped at its input "
                         "(--from-layer 0): TorchScript ignores the hooks a later crop needs")
        wins = [kept_window(c, fraction, H, W) for c in range(C)]
        share = torch.tensor([(w[1] - w[0]) * (w[3] - w[2]) / (H * W) for w in wins],
                             dtype=torch.float64)

        def forward(x):
            # the one rule (module docstring): crop after normalisation, as the hooks do
            B = len(x)
            xx = normalize(x.repeat(C, 1, 1, 1)) * _mask(wins, H, W, B)
            with torch.no_grad():
                return model(xx).view(C, B, -1), B
        return Subject("user-torchscript", classes, forward,
                       lambda B: share.view(C, 1, 1).expand(C, B, 1).clone(), plan=[],
                       geoms=[], energy_unit="kept input share",
                       description="user TorchScript model in float, image crop only")

    calls, _ = _probe(model, normalize(sample))
    geoms = [g for _, g in calls]
    try:
        plan = S.crop_plan(geoms, fraction, from_layer)
    except ValueError as exc:
        raise _error(f"--from-layer: {exc}") from None
    per_crop = S.crop_energy(cfg, table, geoms, plan)                      # [C, 1, layers]
    state = {}

    def pre(mod, inp):
        i, B = state["index"][id(mod)], state["B"]
        wins = [plan[c][i] for c in range(C)]
        if all(w is None for w in wins):
            return None
        g = geoms[i]
        return (inp[0] * _mask(wins, g.height, g.width, B),)

    def post(mod, _inp, out):
        i, B = state["index"][id(mod)], state["B"]
        g = geoms[i]
        if all(plan[c][i] is None for c in range(C)):
            return None
        ow = [None if plan[c][i] is None else
              S.output_window(plan[c][i], g.height, g.width, g.kernel, g.stride, g.padding)
              for c in range(C)]
        return out * _mask(ow, g.out_height, g.out_width, B)

    state["index"] = {id(m): i for i, (m, _) in enumerate(calls)}
    for m, g in calls:
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)

    def forward(x):
        state["B"] = len(x)
        with torch.no_grad():
            return model(normalize(x.repeat(C, 1, 1, 1))).view(C, len(x), -1), len(x)

    from aqua.crop_study import _predictor_energy

    return Subject("user-module", classes, forward,
                   lambda B: per_crop.expand(C, B, -1).clone(), plan=plan, geoms=geoms,
                   description=f"user model in float with crop hooks; energy of its "
                               f"{len(geoms)} crossbar layers on config '{cfg.name}' "
                               f"(no activations: DAC upper bound)",
                   predictor_energy=lambda z: _predictor_energy(cfg, table, z, (H, W)))


def user_study_inputs(args, cfg, table):
    """``(subject, train, test)`` for ``aqua crop-study`` with ``--model``/``--images``."""
    if args.images is None:
        raise _error("--model module:factory, --weights and --classes go with --images "
                     "(your own images)")
    if args.model is None:
        raise _error("--images needs --model (your model for those images)")
    x, y, names = load_images(args.images, size=args.size, grayscale=args.grayscale)
    if _lowered_spec(args.model):
        model, scripted = _named_model(args, x, y, names), False
    else:
        model, scripted = load_user_model(args.model, args.weights)
    normalize = _normalizer(args.mean, args.std, x.shape[1])
    n_data = int(y.max()) + 1 if len(y) else 0
    try:
        with torch.no_grad():
            out = model(normalize(x[:2]))
    except Exception as exc:  # noqa: BLE001 - whatever a user's model raises on bad input
        raise _error(f"the model does not take the images [N, {x.shape[1]}, {x.shape[2]}, "
                     f"{x.shape[3]}] ({_short(exc)}); check --size, --grayscale") from None
    if out.dim() != 2:
        raise _error(f"the model must return logits [N, classes], not {list(out.shape)}")
    classes = out.shape[1]
    if args.classes is not None and args.classes != classes:
        raise _error(f"--classes {args.classes}, but the model outputs {classes} classes")
    if n_data > classes or (names is not None and len(names) != classes):
        have = len(names) if names is not None else n_data
        raise _error(f"the images have {have} classes, the model outputs {classes}")
    if len(y) < 6:
        raise _error(f"--images: {len(y)} images; the study needs at least 6 (half test, "
                     f"half to fit and calibrate the predictors)")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    te, tr = order[:len(y) // 2], order[len(y) // 2:]
    if scripted and not getattr(args, "float", False):
        # One answer per model: the same network as module:factory runs fixed point, so a
        # TorchScript file (whose graph is never lowered) is not silently run in float.
        raise _error(f"--model {args.model}: a TorchScript model cannot take the golden "
                     f"fixed-point path (its graph is not lowered); give it as module:factory, "
                     f"or run it in float with --float")
    if scripted or getattr(args, "float", False):
        if getattr(args, "float", False) and _lowered_spec(args.model):
            raise _error(f"--float goes with --model module:factory or a TorchScript file, not {args.model}")
        subject = user_subject(model, scripted, cfg, table, x[:1], normalize,
                               fraction=args.fraction, from_layer=args.from_layer,
                               classes=classes)
    else:
        subject = fixed_point_subject(model, cfg, table, x[tr][:CALIBRATION_MAX], normalize,
                                      spec=args.model, fraction=args.fraction,
                                      from_layer=args.from_layer)
    return subject, (x[tr], y[tr]), (x[te], y[te])


#: at most this many training images calibrate the fixed-point ranges
CALIBRATION_MAX = 256


def _lowered_spec(spec: str | None) -> bool:
    from aqua._cmdutil import named_model_spec
    return spec == "democnn" or named_model_spec(spec)


def _named_model(args, x, y, names) -> nn.Module:
    """``zoo:<name>`` or ``torchvision:<name>`` built for the images' channels and classes
    (``torchvision:<name>`` with ``--weights``: for the state dict's), ``democnn``, or an
    ONNX file."""
    from golden.graph import load_model

    torchvision = args.model.startswith("torchvision:")
    if args.weights is not None and not torchvision:
        raise _error(f"--weights goes with --model module:factory, not {args.model} "
                     f"(or with torchvision:<name>)")
    if args.model == "democnn":
        return load_model("democnn")
    kwargs = {}
    if args.model.startswith(("zoo:", "torchvision:")):
        classes = args.classes or (len(names) if names is not None else
                                   (int(y.max()) + 1 if len(y) else 1))
        kwargs = dict(num_classes=classes, in_channels=int(x.shape[1]))
        if torchvision:
            kwargs["weights"] = args.weights
    try:
        return load_model(args.model, **kwargs)
    except ValueError as exc:
        raise _error(f"--model: {exc}") from None


def fixed_point_subject(model, cfg, table, calibration, normalize, *, spec: str, fraction,
                        from_layer: int):
    """:func:`aqua.crop_study.model_subject` with its refusals as one-line usage errors."""
    from aqua.crop_study import model_subject
    from golden.fixedpoint import QuantError
    from golden.graph import UnsupportedGraphError

    name = spec if not spec or ":" not in spec or _lowered_spec(spec) else \
        f"user model {spec}"
    try:
        return model_subject(cfg, table, model, calibration, fraction, from_layer,
                             name=name, normalize=normalize)
    except (UnsupportedGraphError, QuantError) as exc:
        raise _error(f"--model {spec}: {exc}") from None
    except ValueError as exc:
        raise _error(f"--from-layer: {exc}") from None
