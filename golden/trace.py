"""Cycle-level trace of the ``Datapath``: the value of every observed register after every clock
edge, for a batch of input vectors, following ``docs/arithmetic.md`` section 8.

Edge 0 is the input handshake; edges ``1 .. latency`` are the crossbar steps, ADC steps and the
final step -- one after the other, or with ``[pipeline] overlap`` the crossbar read of chunk
``t + 1`` beside the ADC of chunk ``t`` (which converts the sample-and-hold's copy). The trace
is built with tensor operations: the schedule (which edge does what) is a short list computed
once from the config, and each register's value is gathered from the cumulative sums of its
updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arch.config import AccelConfig
from arch.contract import (PHASE_ADC, PHASE_FINAL, PHASE_IDLE, PHASE_OUT, PHASE_XBAR,
                           PHASE_XBAR_ADC)

from .arith import (adc_convert, adc_reconstruct, check_range, chunk_positions, chunk_signs,
                    encode_weights, finalize, flip_recover, input_chunks)

__all__ = ["Schedule", "schedule", "DatapathTrace", "datapath_trace", "stream_cycles",
           "first_chunk_edges", "vector_trace",
           "PHASE_IDLE", "PHASE_XBAR", "PHASE_ADC", "PHASE_FINAL", "PHASE_OUT", "PHASE_XBAR_ADC"]

# The controller's phase codes, as plain ints: arch.contract's, from which the RTL's
# hdl.layouts.Phase is built (re-exported here for the testbenches).


@dataclass(frozen=True)
class Schedule:
    """What each edge ``0 .. latency`` of one vector does, and the controller state after it.

    ``kind[k]`` is 0 for the handshake, 1 for a crossbar step, 2 for an ADC step, 3 for the
    final step and, with ``[pipeline] overlap``, 4 for an edge that does both a crossbar and an
    ADC step; ``t[k]`` and ``step[k]`` index the chunk and the step within its phase as the
    controller's ``chunk`` and ``step`` describe the edge. ``xbar[k]`` is the crossbar update
    the edge makes, ``t*X + i`` for step ``i`` of chunk ``t`` (-1: none), ``adc[k]`` the ADC
    update ``t*G + g`` (-1: none), and ``hold[k]`` the chunk whose full column sums the
    sample-and-hold takes at the edge (-1: none; only with ``overlap``).
    ``phase``, ``chunk``, ``counter`` are the ``obs`` fields after edge ``k``.
    """
    kind: torch.Tensor
    t: torch.Tensor
    step: torch.Tensor
    phase: torch.Tensor
    chunk: torch.Tensor
    counter: torch.Tensor
    xbar: torch.Tensor
    adc: torch.Tensor
    hold: torch.Tensor

    def __len__(self):
        return len(self.kind)


def schedule(cfg: AccelConfig) -> Schedule:
    """The static schedule of section 8 (its length is ``cfg.latency + 1``): sequential, or
    overlapped with ``cfg.pipeline_overlap``."""
    T, X, G = cfg.input_cycles, cfg.xbar_steps, cfg.adc_steps
    # per edge: (phase, chunk, step) that describe it, crossbar (t, i) or None, ADC (t, g) or None
    edges = [((PHASE_IDLE, 0, 0), None, None)]
    if not cfg.pipeline_overlap:
        for t in range(T):
            edges += [((PHASE_XBAR, t, i), (t, i), None) for i in range(X)]
            edges += [((PHASE_ADC, t, g), None, (t, g)) for g in range(G)]
    else:
        # prologue: the crossbar reads chunk 0; stage s (1 .. T-1), D = max(X, G) edges: the
        # ADC converts chunk s-1 at steps k < G while the crossbar reads chunk s at the last X
        # steps (k >= D - X), so that its last step -- which loads the sample-and-hold --
        # is never before the ADC's last read of the held chunk; epilogue: the ADC of chunk T-1.
        D = cfg.stage_steps
        edges += [((PHASE_XBAR, 0, i), (0, i), None) for i in range(X)]
        for s in range(1, T):
            edges += [((PHASE_XBAR_ADC, s - 1, k), (s, k - (D - X)) if k >= D - X else None,
                       (s - 1, k) if k < G else None) for k in range(D)]
        edges += [((PHASE_ADC, T - 1, g), None, (T - 1, g)) for g in range(G)]
    edges.append(((PHASE_FINAL, 0, 0), None, None))
    kind, t_, step, xbar, adc, hold = [0], [0], [0], [-1], [-1], [-1]
    for (ph, c, k), xb, ad in edges[1:]:
        kind.append(3 if ph == PHASE_FINAL else 4 if xb and ad else 1 if xb else 2)
        t_.append(c), step.append(k)
        xbar.append(xb[0] * X + xb[1] if xb else -1)
        adc.append(ad[0] * G + ad[1] if ad else -1)
        hold.append(xb[0] if cfg.pipeline_overlap and xb and xb[1] == X - 1 else -1)
    # The state after an edge is the description of the edge that follows it.
    phase = [d[0] for d, _, _ in edges[1:]] + [PHASE_OUT]
    chunk = t_[1:] + [0]
    counter = step[1:] + [0]
    assert len(kind) == cfg.latency + 1
    as_t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return Schedule(as_t(kind), as_t(t_), as_t(step), as_t(phase), as_t(chunk), as_t(counter),
                    as_t(xbar), as_t(adc), as_t(hold))


def stream_cycles(cfg: AccelConfig, vectors: int) -> int:
    """Clocks for ``vectors`` vectors with an always-valid producer and always-ready consumer,
    from the first handshake edge to the last output handshake edge inclusive."""
    return vectors * (cfg.latency + 1)


@dataclass
class DatapathTrace:
    """Per vector ``v`` and edge ``k``: the ``obs`` fields after edge ``k`` (``[V, L+1, ...]``),
    and the output vector ``out [V, outputs]`` that is valid after edge ``L``."""
    phase: torch.Tensor
    chunk: torch.Tensor
    step: torch.Tensor
    col_sum: torch.Tensor
    insum: torch.Tensor
    adc_valid: torch.Tensor
    adc_code: torch.Tensor
    acc: torch.Tensor
    xsum: torch.Tensor
    out: torch.Tensor
    held: torch.Tensor | None = None          # [pipeline] overlap: the sample-and-hold bank
    held_insum: torch.Tensor | None = None

    FIELDS = ("phase", "chunk", "step", "col_sum", "insum", "adc_valid", "adc_code", "acc",
              "xsum")
    #: the fields of the overlapped schedule's ``obs`` (``hdl.layouts.obs_layout``)
    HELD_FIELDS = ("held", "held_insum")

    @property
    def fields(self) -> tuple[str, ...]:
        """The ``obs`` fields this trace holds: :attr:`FIELDS`, plus :attr:`HELD_FIELDS` for
        a configuration with ``[pipeline] overlap``."""
        return self.FIELDS + (self.HELD_FIELDS if self.held is not None else ())

    @property
    def vectors(self) -> int:
        return self.out.shape[0]

    @property
    def edges(self) -> int:
        return self.phase.shape[1]


def _hold(updates: torch.Tensor, written: list[int]) -> torch.Tensor:
    """Index map ``[edges]`` selecting, for each edge, the last update at or before it.

    ``written[k]`` is the update number made at edge ``k`` (-1 if the register holds)."""
    idx, cur = [], 0
    for w in written:
        if w >= 0:
            cur = w
        idx.append(cur)
    return torch.tensor(idx, dtype=torch.int64)


def datapath_trace(cfg: AccelConfig, w: torch.Tensor, x: torch.Tensor,
                   bias: torch.Tensor | None = None, *, shift: int = 0,
                   relu: bool = False) -> DatapathTrace:
    """Trace ``x [V, rows]`` through one crossbar programmed with ``w [rows, outputs]``."""
    if x.dim() != 2 or x.shape[1] != cfg.rows:
        raise ValueError(f"inputs must be [vectors, {cfg.rows}], not {list(x.shape)}")
    V, R, C, O, S = x.shape[0], cfg.rows, cfg.cols, cfg.outputs, cfg.slices
    T, X, G, N, P = (cfg.input_cycles, cfg.xbar_steps, cfg.adc_steps,
                     cfg.adc_columns_per_cycle, cfg.rows_per_cycle)
    bias = torch.zeros(O, dtype=torch.int64) if bias is None else bias.to(torch.int64)
    check_range("bias", bias, *cfg.bias_range)
    cells, flags = encode_weights(cfg, w)                      # [R, O, S], [O, S]
    cells = cells.reshape(R, C)
    flags = flags.reshape(C)
    sch = schedule(cfg)

    chunks = input_chunks(cfg, x)                               # [V, T, R]
    # Partial column sums per row group, accumulated over the X crossbar steps.
    part = torch.einsum("vtxp,xpc->vtxc", chunks.view(V, T, X, P), cells.view(X, P, C))
    col_states = part.cumsum(2).reshape(V, T * X, C)            # update n = t*X + i
    ins_states = chunks.view(V, T, X, P).sum(-1).cumsum(2).reshape(V, T * X)
    read = col_states.view(V, T, X, C)[:, :, -1]                # [V, T, C]
    insum = ins_states.view(V, T, X)[:, :, -1]                  # [V, T]

    code = adc_convert(cfg, read)                               # [V, T, C]
    y = flip_recover(cfg, adc_reconstruct(cfg, code), insum.unsqueeze(-1), flags)
    col = torch.arange(C)
    coef = chunk_signs(cfg).view(T, 1) << (chunk_positions(cfg).view(T, 1)
                                           + (col % S).view(1, C) * cfg.cell_bits)
    contrib = (y * coef).view(V, T, G, N)                       # per column, per ADC step
    owner = torch.nn.functional.one_hot((col // S).view(G, N), O)   # [G, N, O]
    step_add = (contrib.unsqueeze(-1) * owner).sum(3)           # [V, T, G, O]
    acc_states = step_add.reshape(V, T * G, O).cumsum(1)        # update n = t*G + g
    xs_add = chunk_signs(cfg) * (insum << chunk_positions(cfg))  # [V, T]
    xsum_states = xs_add.cumsum(1)                              # update n = t

    # Which update each edge shows, per register (update 0 of every register is the clear).
    zeros = lambda *shape: torch.zeros(V, 1, *shape, dtype=torch.int64)  # noqa: E731
    scalar0 = torch.zeros(V, 1, dtype=torch.int64)
    wr_col, wr_code, wr_xs, wr_held, valid = [], [], [], [], []
    for kind, xb, ad, hold in zip(sch.kind.tolist(), sch.xbar.tolist(), sch.adc.tolist(),
                                  sch.hold.tolist()):
        wr_col.append(0 if kind == 0 else 1 + xb if xb >= 0 else -1)
        wr_code.append(0 if kind == 0 else 1 + ad if ad >= 0 else -1)
        wr_xs.append(0 if kind == 0 else 1 + ad // G if ad >= 0 and ad % G == 0 else -1)
        wr_held.append(0 if kind == 0 else 1 + hold if hold >= 0 else -1)
        valid.append(1 if ad >= 0 else 0)

    col_sum = torch.cat([zeros(C), col_states], 1)[:, _hold(col_states, wr_col)]
    ins = torch.cat([scalar0, ins_states], 1)[:, _hold(ins_states, wr_col)]
    codes = torch.cat([zeros(N), code.reshape(V, T * G, N)], 1)[:, _hold(code, wr_code)]
    acc = torch.cat([zeros(O), acc_states], 1)[:, _hold(acc_states, wr_code)]
    xsum = torch.cat([scalar0, xsum_states], 1)[:, _hold(xsum_states, wr_xs)]

    v = acc_states[:, -1] - cfg.weight_bias * xsum_states[:, -1:] + bias
    out = finalize(cfg, v, shift=shift, relu_enable=relu)
    held = held_insum = None
    if cfg.pipeline_overlap:
        # the sample-and-hold takes chunk t's full sums at its last crossbar step (update t+1)
        held = torch.cat([zeros(C), read], 1)[:, _hold(read, wr_held)]
        held_insum = torch.cat([scalar0, insum], 1)[:, _hold(insum, wr_held)]
    expand = lambda s: s.unsqueeze(0).expand(V, -1)  # noqa: E731
    return DatapathTrace(
        phase=expand(sch.phase), chunk=expand(sch.chunk), step=expand(sch.counter),
        col_sum=col_sum, insum=ins,
        adc_valid=expand(torch.tensor(valid, dtype=torch.int64)),
        adc_code=codes, acc=acc, xsum=xsum, out=out, held=held, held_insum=held_insum)


def first_chunk_edges(cfg: AccelConfig, first_chunk: int) -> list[int]:
    """The edges of the full schedule that a vector with first chunk ``t0`` runs (section 8,
    per-region precision): edge 0, then those of chunks ``t0 .. T-1`` and the final edge;
    ``(T - t0) * (xbar_steps + adc_steps) + 2`` edges, its latency plus one."""
    t0 = int(first_chunk)
    if not 0 <= t0 < cfg.input_cycles:
        raise ValueError(f"first chunk must lie in [0, {cfg.input_cycles - 1}], not {t0}")
    if cfg.pipeline_overlap:
        # the overlapped schedule ignores the first chunk: every chunk is streamed (the
        # skipped ones would be 0, so the result is the same; no cycle is saved)
        return list(range(cfg.latency + 1))
    return [0, *range(1 + t0 * (cfg.xbar_steps + cfg.adc_steps), cfg.latency + 1)]


def vector_trace(cfg: AccelConfig, trace: DatapathTrace, v: int,
                 first_chunk: int = 0) -> dict[str, torch.Tensor]:
    """The ``obs`` fields after each edge (``[edges, ...]`` per field) of vector ``v`` of
    ``trace`` run with first chunk ``t0``, whose chunks ``t < t0`` are 0 in every row (inputs
    reduced to ``p`` bits with ``t0 <= floor((Bx - p)/d)``): the rows
    :func:`first_chunk_edges` of the full trace, with ``chunk = t0`` after edge 0. The skipped
    edges would only have added zeros (a zero chunk reads 0, ``ADC(0) = 0``), so every other
    register is the same; the edge-0 row is the cleared state of both schedules."""
    edges = torch.tensor(first_chunk_edges(cfg, first_chunk), dtype=torch.int64)
    out = {f: getattr(trace, f)[v, edges].clone() for f in DatapathTrace.FIELDS}
    out["chunk"][0] = 0 if cfg.pipeline_overlap else int(first_chunk)
    return out
