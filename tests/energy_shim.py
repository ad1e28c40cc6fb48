"""A stand-in for ``golden.energy_model`` (issue 5) with its agreed API, used by the tests of the
crop study only while that module has not landed: per-vector event counts as in
:mod:`golden.events` for the computed output positions, priced with the energy table.
Installed by ``tests/conftest.py`` only when ``golden.energy_model`` cannot be imported."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aqua.energy import EVENT_MAP
from golden.arith import input_chunks
from golden.crop import crop_activations, output_window
from golden.layer import tile_counts


@dataclass
class LayerEnergy:
    events: dict
    by_event: dict
    by_block: dict
    total_pj: object


def conv_layer_energy(cfg, table, *, in_channels, out_channels, height, width, kernel, stride,
                      padding, window=None, x=None, calibration=None) -> LayerEnergy:
    ho = (height + 2 * padding - kernel) // stride + 1
    wo = (width + 2 * padding - kernel) // stride + 1
    if window is None:
        r0, r1, c0, c1 = 0, ho, 0, wo
    else:
        r0, r1, c0, c1 = output_window(window, height, width, kernel, stride, padding)
    positions = max(0, r1 - r0) * max(0, c1 - c0)
    K = in_channels * kernel * kernel
    tiles, groups = tile_counts(cfg, K, out_channels)
    V, T = positions * tiles * groups, cfg.input_cycles
    ev = {"row_activations": V * T * cfg.rows, "sample_holds": V * T * cfg.cols,
          "adc_conversions": V * T * cfg.cols, "shift_adds": V * T * cfg.cols}
    if x is None:
        drives = torch.tensor(float(V * T * cfg.rows))
    else:
        xc = x if window is None else crop_activations(x, window)
        p = F.unfold(xc.to(torch.float64), kernel, padding=padding, stride=stride)
        p = p.view(x.shape[0], K, ho, wo)[:, :, r0:r1, c0:c1]
        p = p.permute(0, 2, 3, 1).reshape(x.shape[0], -1, K).to(torch.int64)
        lv = input_chunks(cfg, p.reshape(-1, K)).view(x.shape[0], -1, T, K)
        drives = (lv != 0).sum(dim=(1, 2, 3)).to(torch.float64) * groups
    ev["dac_drives"] = drives
    by_event = {name: ev[count] * table.events[name].pj for name, (count, _) in EVENT_MAP.items()}
    by_block = {}
    for name, (_, block) in EVENT_MAP.items():
        by_block[block] = by_block.get(block, 0.0) + by_event[name]
    total = sum(by_event.values())
    if x is None:
        total = float(total)
    return LayerEnergy(ev, by_event, by_block, total)
