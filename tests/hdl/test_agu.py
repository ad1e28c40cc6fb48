# amaranth: UnusedElaboratable=no
"""RegionCropAGU: the address stream of every crop vector equals golden.crop.agu_sequence, one
address per clock, with and without back-pressure; the measured cycle count is agu_cycles;
invalid configurations end in error/done without hanging; parameters are validated."""

import random

import pytest
from amaranth.sim import Simulator

from golden.crop import CROP_VECTORS, agu_cycles, agu_sequence, kept_window, scale_window
from hdl import BLOCKS, RegionCropAGU

from ._util import config, seed_for, to_py

K, S, P = 3, 1, 1   # kernel, stride, padding of the demo's layer 0 (the sequence ignores them)


def setup_of(H, W, window):
    r0, r1, c0, c1 = window
    return {"height": H, "width": W, "r0": r0, "r1": r1, "c0": c0, "c1": c1}


class Runner:
    """Drives runs on ``dut`` inside one simulation (no reset between runs)."""

    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx

    async def run(self, setup, ready=lambda: True, limit=5000):
        """Start a run and return (addresses, edges from the start edge to the edge raising
        ``done``, both included, error)."""
        dut, ctx = self.dut, self.ctx
        ctx.set(dut.setup, setup)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        edges, got = 1, []
        while not ctx.get(dut.done):
            assert edges < limit, f"no done after {limit} edges: {setup}"
            valid = ctx.get(dut.addr.valid)
            assert valid == ctx.get(dut.busy)
            rdy = int(ready())
            ctx.set(dut.addr.ready, rdy)
            payload = to_py(ctx.get(dut.addr.payload))
            await ctx.tick()
            edges += 1
            if valid and rdy:
                got.append(payload)
        assert not ctx.get(dut.busy) and not ctx.get(dut.addr.valid)
        error = ctx.get(dut.error)
        ctx.set(dut.addr.ready, 0)
        return got, edges, error


def golden(H, W, window):
    return [{"row": e.row, "col": e.col, "linear": e.linear, "first": int(e.first),
             "last": int(e.last)} for e in agu_sequence(H, W, K, S, P, window)]


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# (H, W, fractions): the demo's 32x32 layer-0 map and smaller, odd and degenerate sizes
SHAPES = [(32, 32, (0.25,)), (7, 5, (0.1, 0.25, 0.4)), (1, 1, (0.25,)), (2, 9, (0.3,)),
          (16, 16, (0.125,))]


def test_all_crops_always_ready_cycles():
    """Every crop vector on every shape, back to back without reset; each run's cycle count
    is measured and equals agu_cycles."""
    dut = RegionCropAGU(config("small"))
    measured = {}

    async def bench(ctx):
        runner = Runner(dut, ctx)
        for H, W, fracs in SHAPES:
            for f in fracs:
                for crop in range(16):
                    win = kept_window(crop, f, H, W)
                    got, edges, error = await runner.run(setup_of(H, W, win))
                    assert not error
                    assert got == golden(H, W, win), (H, W, f, CROP_VECTORS[crop])
                    assert edges == agu_cycles(H, W, K, S, P, win), (H, W, f, crop)
                    measured[(H, W, f, crop)] = edges

    simulate(dut, bench)
    # the demo layer 0 at fraction 0.25: 1025 uncropped, 8 rows/cols fewer per cropped side
    for crop, (t, b, left, r) in enumerate(CROP_VECTORS):
        assert measured[(32, 32, 0.25, crop)] == (32 - 8 * (t + b)) * (32 - 8 * (left + r)) + 1


def test_back_pressure_and_scaled_windows():
    """Random ready: the same sequence, one address per ready clock, none while not ready.
    Windows of later (smaller) layers come from scale_window."""
    name = "test_back_pressure_and_scaled_windows"
    rng = random.Random(seed_for(name))
    dut = RegionCropAGU(config("small"), max_height=20, max_width=13)

    async def bench(ctx):
        runner = Runner(dut, ctx)
        for crop in range(16):
            H, W = rng.randint(1, 20), rng.randint(1, 13)
            win = kept_window(crop, rng.choice([0.1, 0.25, 0.45]), H, W)
            H2, W2 = rng.randint(1, H), rng.randint(1, W)
            for h, w, wn in ((H, W, win), (H2, W2, scale_window(win, H, W, H2, W2))):
                p = rng.choice([0.3, 0.7, 0.95])
                ready_count = [0]

                def ready():
                    r = rng.random() < p
                    ready_count[0] += r
                    return r
                got, edges, error = await runner.run(setup_of(h, w, wn), ready)
                assert not error
                assert got == golden(h, w, wn), f"seed {seed_for(name)}, crop {crop}"
                # valid throughout the run: every ready clock transferred an address, and
                # the run took one edge per clock the consumer stalled on top of agu_cycles
                assert ready_count[0] == len(got)
                assert edges >= agu_cycles(h, w, K, S, P, wn)

    simulate(dut, bench)


BAD = [
    ("zero height", {"height": 0, "width": 4, "r0": 0, "r1": 0, "c0": 0, "c1": 4}),
    ("zero width", {"height": 4, "width": 0, "r0": 0, "r1": 4, "c0": 0, "c1": 0}),
    ("height over max", {"height": 9, "width": 4, "r0": 0, "r1": 9, "c0": 0, "c1": 4}),
    ("width over max", {"height": 4, "width": 7, "r0": 0, "r1": 4, "c0": 0, "c1": 7}),
    ("empty rows", {"height": 4, "width": 4, "r0": 2, "r1": 2, "c0": 0, "c1": 4}),
    ("empty cols", {"height": 4, "width": 4, "r0": 0, "r1": 4, "c0": 3, "c1": 3}),
    ("reversed rows", {"height": 4, "width": 4, "r0": 3, "r1": 1, "c0": 0, "c1": 4}),
    ("rows outside", {"height": 4, "width": 4, "r0": 1, "r1": 5, "c0": 0, "c1": 4}),
    ("cols outside", {"height": 4, "width": 5, "r0": 0, "r1": 4, "c0": 2, "c1": 6}),
    ("all ones", {"height": 15, "width": 7, "r0": 15, "r1": 15, "c0": 7, "c1": 7}),
]


def test_errors_end_the_run_and_recover():
    dut = RegionCropAGU(config("small"), max_height=8, max_width=6)

    async def bench(ctx):
        runner = Runner(dut, ctx)
        good = setup_of(8, 6, kept_window(0b1001, 0.25, 8, 6))
        for what, setup in BAD:
            got, edges, error = await runner.run(setup)
            assert (got, edges, error) == ([], 1, 1), what
            assert not ctx.get(dut.addr.valid)
            await ctx.tick()        # done is a one-clock strobe; error is held
            assert not ctx.get(dut.done) and ctx.get(dut.error), what
            got, edges, error = await runner.run(good)   # no reset needed
            assert not error and got == golden(8, 6, kept_window(0b1001, 0.25, 8, 6)), what
        # the full map and a single position are legal
        for win in [(0, 8, 0, 6), (7, 8, 5, 6)]:
            got, edges, error = await runner.run(setup_of(8, 6, win))
            assert not error and got == golden(8, 6, win) and edges == len(got) + 1

    simulate(dut, bench)


def test_start_while_busy_is_ignored_and_restart_at_done():
    dut = RegionCropAGU(config("small"), max_height=8, max_width=8)
    win_a, win_b = (1, 4, 2, 5), (0, 2, 0, 8)

    async def bench(ctx):
        ctx.set(dut.setup, setup_of(8, 8, win_a))
        ctx.set(dut.start, 1)
        ctx.set(dut.addr.ready, 1)
        await ctx.tick()
        # latency: the first address is valid one clock after the start edge
        assert ctx.get(dut.addr.valid) and dut.latency == 1
        ctx.set(dut.setup, setup_of(8, 8, win_b))      # start held high, other setup: ignored
        got = []
        while not ctx.get(dut.done):
            if ctx.get(dut.addr.valid):
                got.append(to_py(ctx.get(dut.addr.payload)))
            await ctx.tick()
        assert got == golden(8, 8, win_a)
        # start still high in the done clock: the next image starts at once
        await ctx.tick()
        assert ctx.get(dut.busy) and not ctx.get(dut.done)
        ctx.set(dut.start, 0)
        got = []
        while not ctx.get(dut.done):
            if ctx.get(dut.addr.valid):
                got.append(to_py(ctx.get(dut.addr.payload)))
            await ctx.tick()
        assert got == golden(8, 8, win_b)

    simulate(dut, bench)


def test_registered_in_blocks_with_default_sizes():
    dut = BLOCKS["agu"](config("small"))
    assert isinstance(dut, RegionCropAGU)
    assert (dut.max_height, dut.max_width) == (32, 32)
    lay = dut.signature.members["addr"].signature.members["payload"].shape
    assert {name: f.width for name, f in lay} == {"row": 5, "col": 5, "linear": 10,
                                                  "first": 1, "last": 1}


@pytest.mark.parametrize("bad", ["small", None, {}])
def test_rejects_non_config(bad):
    with pytest.raises(TypeError, match=r"^cfg must be an AccelConfig \(see "
                                        r"arch.config.load_config\), not "):
        RegionCropAGU(bad)


@pytest.mark.parametrize("kw, exc, msg", [
    ({"max_height": 0}, ValueError, r"^max_height must be an integer in \[1, 4096\], not 0$"),
    ({"max_width": 4097}, ValueError,
     r"^max_width must be an integer in \[1, 4096\], not 4097$"),
    ({"max_height": 2.0}, TypeError, r"^max_height must be an integer, not 2.0$"),
    ({"max_width": True}, TypeError, r"^max_width must be an integer, not True$"),
])
def test_parameter_errors(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        RegionCropAGU(config("small"), **kw)


def test_read_only_properties():
    dut = RegionCropAGU(config("small"))
    for name in ("cfg", "max_height", "max_width", "latency"):
        with pytest.raises(AttributeError):
            setattr(dut, name, 1)
