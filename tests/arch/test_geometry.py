"""arch.geometry: the one layer geometry and its crossbar mapping, on hand-computable cases."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F

import arch.geometry
from arch.config import ConfigError, load_config
from arch.geometry import IM2COL_ORDER, ConvGeometry, Mapping, conv_out_size


def test_doctests():
    assert doctest.testmod(arch.geometry).failed == 0


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 32])
@pytest.mark.parametrize("kernel, stride, padding", [(1, 1, 0), (3, 1, 1), (3, 2, 1), (2, 2, 0),
                                                     (3, 3, 0), (5, 2, 2)])
def test_conv_out_size_is_torch(size, kernel, stride, padding):
    if size + 2 * padding < kernel:
        assert conv_out_size(size, kernel, stride, padding) == 0
        return
    y = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel),
                 stride=stride, padding=padding)
    assert conv_out_size(size, kernel, stride, padding) == y.shape[-1]


def test_geometry_fields_and_derived_sizes():
    g = ConvGeometry(16, 32, kernel=3, stride=2, padding=1, height=16, width=12)
    assert (g.rows, g.taps) == (144, 9)
    assert (g.out_height, g.out_width, g.positions) == (8, 6, 48)
    assert g.out_size(7) == 4
    assert g.with_size(32, 32).out_height == 16
    assert g.with_size(32, 32).in_channels == 16
    assert g.to_dict() == dict(in_channels=16, out_channels=32, kernel=3, stride=2, padding=1,
                               height=16, width=12)
    fc = ConvGeometry.linear(32, 10)
    assert (fc.rows, fc.kernel, fc.height, fc.width, fc.positions) == (32, 1, 1, 1, 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=0, out_channels=4), r"^conv geometry: in_channels must be an integer "
                                          r">= 1, not 0$"),
    (dict(in_channels=1, out_channels=4, kernel=0), r"^conv geometry: kernel must be an "
                                                    r"integer >= 1, not 0$"),
    (dict(in_channels=1, out_channels=True), r"^conv geometry: out_channels must be an "
                                             r"integer >= 1, not True$"),
    (dict(in_channels=1, out_channels=4, stride=1.0), r"^conv geometry: stride must be an "
                                                      r"integer >= 1, not 1.0$"),
    (dict(in_channels=1, out_channels=4, padding=-1), r"^conv geometry: padding must be an "
                                                      r"integer >= 0, not -1$"),
    (dict(in_channels=1, out_channels=4, kernel=3, padding=3, height=8, width=8),
     r"^conv geometry: padding 3 must be smaller than the kernel 3$"),
    (dict(in_channels=1, out_channels=4, height=4097),
     r"^conv geometry: maps larger than 4096 on a side are not supported$"),
    (dict(in_channels=1, out_channels=4, kernel=5, height=8, width=3),
     r"^conv geometry: the 5x5 kernel does not fit a 8x3 map with padding 0$"),
])
def test_geometry_validation_messages(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConvGeometry(**kwargs)


def test_mapping_counts_by_hand():
    small = load_config("small")                 # 16 rows, 4 outputs per crossbar
    assert (small.rows, small.outputs) == (16, 4)
    m = Mapping(small, ConvGeometry(16, 10, kernel=3, padding=1, height=16, width=16))
    # 16*3*3 = 144 im2col rows on 16-row crossbars: 9 row tiles; 10 outputs in groups of 4: 3
    assert (m.row_tiles, m.groups, m.crossbars) == (9, 3, 27)
    assert (m.padded_rows, m.padded_outputs) == (144, 12)
    assert m.im2col_order == IM2COL_ORDER == ("in_channel", "kernel_row", "kernel_col")
    one = Mapping(small, ConvGeometry(1, 8, kernel=3, padding=1, height=32, width=32))
    assert (one.row_tiles, one.groups, one.crossbars, one.padded_rows) == (1, 2, 2, 16)
    assert one.check_one_row_tile() is one
    fc = Mapping(small, ConvGeometry.linear(17, 4))
    assert (fc.row_tiles, fc.groups, fc.padded_rows, fc.padded_outputs) == (2, 1, 32, 4)


def test_check_one_row_tile_message():
    small = load_config("small")
    with pytest.raises(ConfigError, match=r"^conv geometry 2x3x3 needs 18 crossbar rows; small "
                                          r"has 16 \(a ConvTile maps a layer onto one row "
                                          r"tile\)$"):
        Mapping(small, ConvGeometry(2, 4, 3, height=8, width=8)).check_one_row_tile()


def test_mapping_is_the_im2col_of_unfold():
    """Row ``r`` of the padded matrix is ``unfold``'s row ``r``: channel, kernel row, column."""
    g = ConvGeometry(2, 3, kernel=2, height=3, width=3)
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)
    cols = F.unfold(x, g.kernel)                          # [1, rows, positions]
    assert cols.shape[1:] == (g.rows, g.positions)
    c, ky, kx = 1, 0, 1                                   # row c*k*k + ky*k + kx
    assert torch.equal(cols[0, c * 4 + ky * 2 + kx], x[0, c, ky:ky + 2, kx:kx + 2].flatten())


def test_mapping_checks_its_arguments():
    g = ConvGeometry.linear(4, 4)
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig, not 'small'$"):
        Mapping("small", g)
    with pytest.raises(TypeError, match=r"^geometry must be a ConvGeometry, not \(4, 4\)$"):
        Mapping(load_config("small"), (4, 4))


def test_ima_plan_lanes_span_chunks_passes():
    """``Mapping.ima``: ``kt <= N`` packs whole groups side by side; ``kt > N`` splits a group
    into ``chunks`` passes; every (row tile, group) is in exactly one (pass, slot)."""
    small, isaac = load_config("small"), load_config("isaac")
    assert small.ima_crossbars == isaac.ima_crossbars == 8
    cases = [  # cfg, geometry, N -> lanes, span, chunks, passes
        (small, ConvGeometry(1, 8, 3, padding=1, height=32, width=32), 8, (2, 1, 1, 1)),
        (small, ConvGeometry(8, 16, 3, 2, 1, 32, 32), 8, (1, 5, 1, 4)),
        (small, ConvGeometry(16, 16, 3, 1, 1, 16, 16), 8, (1, 8, 2, 8)),
        (small, ConvGeometry(16, 32, 3, 2, 1, 16, 16), 8, (1, 8, 2, 16)),
        (small, ConvGeometry(4, 40, 3, 1, 1, 8, 8), 8, (2, 3, 1, 5)),     # kt 3, g 10
        (small, ConvGeometry(16, 16, 3, 1, 1, 16, 16), 4, (1, 4, 3, 12)),
        (small, ConvGeometry(1, 40, 3, 1, 1, 8, 8), 4, (4, 1, 1, 3)),
        (isaac, ConvGeometry(64, 64, 3, 1, 1, 8, 8), 8, (1, 5, 1, 4)),
    ]
    for cfg, geom, n, want in cases:
        m = Mapping(cfg, geom)
        plan = m.ima(n)
        assert (plan.lanes, plan.span, plan.chunks, plan.passes) == want, geom
        assert m.passes(n) == plan.passes and plan.used_crossbars <= n
        seen = []
        for p in range(plan.passes):
            slots = plan.slots(p)
            assert [s.slot for s in slots] == list(range(plan.used_crossbars))
            assert plan.first(p) == (p % plan.chunks == 0)
            assert plan.last(p) == (p % plan.chunks == plan.chunks - 1)
            seen += [(s.row_tile, s.group) for s in slots if s.used]
            for s in slots:
                assert s.used == (s.row_tile < m.row_tiles and s.group < m.groups)
        assert sorted(seen) == [(k, j) for k in range(m.row_tiles) for j in range(m.groups)]
    assert Mapping(small, cases[0][1]).ima() == Mapping(small, cases[0][1]).ima(8)
    with pytest.raises(ValueError, match="crossbars must be a positive integer, not 0"):
        Mapping(small, cases[0][1]).ima(0)
    with pytest.raises(ValueError, match=r"pass must lie in \[0, 3\], not 4"):
        Mapping(small, cases[1][1]).ima().slots(4)
