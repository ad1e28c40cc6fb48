"""An independent, deliberately naive reading of ``docs/arithmetic.md`` in plain Python integers.

It shares no code with ``golden/``: every step is written out per element, per cycle, exactly as
the contract's prose says. The golden model's vectorised functions are held to it.
"""


def stored_cells(cfg, w_rows):
    """w_rows: list (rows) of lists (outputs) of ints -> (cells[r][o][s] as stored, flags[o][s])."""
    R, O, S, b, M = cfg.rows, cfg.outputs, cfg.slices, cfg.cell_bits, cfg.cell_max
    bias = 2 ** (cfg.weight_bits - 1) if cfg.weight_encoding == "biased" else 0
    raw = [[[((w_rows[r][o] + bias) // 2 ** (s * b)) % 2 ** b for s in range(S)]
             for o in range(O)] for r in range(R)]
    flags = [[False] * S for _ in range(O)]
    if cfg.flip:
        for o in range(O):
            for s in range(S):
                flags[o][s] = 2 * sum(raw[r][o][s] for r in range(R)) > R * M
    cells = [[[M - raw[r][o][s] if flags[o][s] else raw[r][o][s] for s in range(S)]
              for o in range(O)] for r in range(R)]
    return cells, flags


def chunks_of(cfg, x):
    """(level, position, sign) of every chunk of input x."""
    xu = x % 2 ** cfg.input_bits
    out = []
    if cfg.input_signed:
        mag = cfg.input_bits - 1
        for t in range(mag // cfg.dac_bits):
            out.append(((xu >> (t * cfg.dac_bits)) % 2 ** cfg.dac_bits, t * cfg.dac_bits, 1))
        out.append(((xu >> mag) & 1, mag, -1))
    else:
        for t in range(cfg.input_bits // cfg.dac_bits):
            out.append(((xu >> (t * cfg.dac_bits)) % 2 ** cfg.dac_bits, t * cfg.dac_bits, 1))
    return out


def adc(cfg, read):
    """(code, reconstructed value)."""
    A = cfg.adc_bits
    if cfg.adc_mode == "lossless":
        assert read < 2 ** A
        return read, read
    if cfg.adc_mode == "clip":
        code = min(read, 2 ** A - 1)
        return code, code
    k = max(0, cfg.max_read.bit_length() - A)
    if k == 0:
        code = min(read, 2 ** A - 1)
    else:
        q, rem = divmod(read, 2 ** k)
        code = min(q + (1 if 2 * rem >= 2 ** k else 0), 2 ** A - 1)
    return code, code * 2 ** k


def output_stage(cfg, v, shift, relu):
    if shift > 0:
        q, rem = divmod(v, 2 ** shift)           # floor division: q = floor(v / 2^sh)
        v = q + (1 if 2 * rem >= 2 ** shift else 0)
    elif shift < 0:
        v = v * 2 ** (-shift)
    if relu:
        v = max(v, 0)
    lo, hi = -2 ** (cfg.output_bits - 1), 2 ** (cfg.output_bits - 1) - 1
    return min(max(v, lo), hi)


def simulate_vector(cfg, w_rows, x, bias, shift, relu):
    """Section 8, edge by edge, for one input vector. Returns (states, out) where states[k] is a
    dict of the obs fields after edge k (with ``held``, ``held_insum`` when overlapping)."""
    if cfg.pipeline_overlap:
        return simulate_vector_overlapped(cfg, w_rows, x, bias, shift, relu)
    R, C, O, S, N, P = (cfg.rows, cfg.cols, cfg.outputs, cfg.slices,
                        cfg.adc_columns_per_cycle, cfg.rows_per_cycle)
    cells, flags = stored_cells(cfg, w_rows)
    levels = [chunks_of(cfg, xr) for xr in x]           # levels[r][t] = (level, pos, sign)
    T = len(levels[0])
    st = dict(phase=1, chunk=0, step=0, col_sum=[0] * C, insum=0, adc_valid=0,
              adc_code=[0] * N, acc=[0] * O, xsum=0)
    states = [dict(st, col_sum=list(st["col_sum"]), adc_code=list(st["adc_code"]),
                   acc=list(st["acc"]))]

    def snap(phase, chunk, step):
        st.update(phase=phase, chunk=chunk, step=step)
        states.append(dict(st, col_sum=list(st["col_sum"]), adc_code=list(st["adc_code"]),
                           acc=list(st["acc"])))

    for t in range(T):
        for i in range(R // P):
            rows = range(i * P, (i + 1) * P)
            for j in range(C):
                o, s = divmod(j, S)
                part = sum(levels[r][t][0] * cells[r][o][s] for r in rows)
                st["col_sum"][j] = (0 if i == 0 else st["col_sum"][j]) + part
            st["insum"] = (0 if i == 0 else st["insum"]) + sum(levels[r][t][0] for r in rows)
            st["adc_valid"] = 0
            if i < R // P - 1:
                snap(1, t, i + 1)
            else:
                snap(2, t, 0)
        _, pos, sign = levels[0][t]
        for g in range(C // N):
            for n in range(N):
                j = g * N + n
                o, s = divmod(j, S)
                code, rec = adc(cfg, st["col_sum"][j])
                st["adc_code"][n] = code
                y = cfg.cell_max * st["insum"] - rec if flags[o][s] else rec
                st["acc"][o] += sign * y * 2 ** (pos + s * cfg.cell_bits)
            if g == 0:
                st["xsum"] += sign * st["insum"] * 2 ** pos
            st["adc_valid"] = 1
            if g < C // N - 1:
                snap(2, t, g + 1)
            elif t < T - 1:
                snap(1, t + 1, 0)
            else:
                snap(3, 0, 0)
    wbias = 2 ** (cfg.weight_bits - 1) if cfg.weight_encoding == "biased" else 0
    out = [output_stage(cfg, st["acc"][o] - wbias * st["xsum"] + bias[o], shift, relu)
           for o in range(O)]
    st["adc_valid"] = 0
    snap(4, 0, 0)
    return states, out


def simulate_vector_overlapped(cfg, w_rows, x, bias, shift, relu):
    """Section 8's overlapped schedule (``[pipeline] overlap``), edge by edge: each edge is
    simulated as a set of register writes computed from the values before the edge, then
    applied together (the registers of one edge all sample the old state)."""
    R, C, O, S, N, P = (cfg.rows, cfg.cols, cfg.outputs, cfg.slices,
                        cfg.adc_columns_per_cycle, cfg.rows_per_cycle)
    X, G = R // P, C // N
    D = max(X, G)
    cells, flags = stored_cells(cfg, w_rows)
    levels = [chunks_of(cfg, xr) for xr in x]
    T = len(levels[0])
    st = dict(phase=1, chunk=0, step=0, col_sum=[0] * C, insum=0, adc_valid=0,
              adc_code=[0] * N, acc=[0] * O, xsum=0, held=[0] * C, held_insum=0)
    copy = lambda: {k: list(v) if isinstance(v, list) else v for k, v in st.items()}  # noqa
    states = [copy()]

    # edges after the handshake: (phase, chunk, step) describing it, crossbar (t, i), ADC (t, g)
    plan = [((1, 0, i), (0, i), None) for i in range(X)]
    for s in range(1, T):
        for k in range(D):
            xb = (s, k - (D - X)) if k >= D - X else None
            ad = (s - 1, k) if k < G else None
            plan.append(((5, s - 1, k), xb, ad))
    plan += [((2, T - 1, g), None, (T - 1, g)) for g in range(G)]
    plan.append(((3, 0, 0), None, None))

    for e, (_, xb, ad) in enumerate(plan):
        old = copy()
        if xb is not None:
            t, i = xb
            rows = range(i * P, (i + 1) * P)
            for j in range(C):
                o, s = divmod(j, S)
                part = sum(levels[r][t][0] * cells[r][o][s] for r in rows)
                st["col_sum"][j] = (0 if i == 0 else old["col_sum"][j]) + part
            st["insum"] = (0 if i == 0 else old["insum"]) + sum(levels[r][t][0] for r in rows)
            if i == X - 1:                    # the sample-and-hold takes the full sums
                st["held"] = list(st["col_sum"])
                st["held_insum"] = st["insum"]
        if ad is not None:
            t, g = ad
            _, pos, sign = levels[0][t]
            for n in range(N):
                j = g * N + n
                o, s = divmod(j, S)
                code, rec = adc(cfg, old["held"][j])
                st["adc_code"][n] = code
                y = cfg.cell_max * old["held_insum"] - rec if flags[o][s] else rec
                st["acc"][o] += sign * y * 2 ** (pos + s * cfg.cell_bits)
            if g == 0:
                st["xsum"] += sign * old["held_insum"] * 2 ** pos
        st["adc_valid"] = 1 if ad is not None else 0
        nxt = plan[e + 1][0] if e + 1 < len(plan) else (4, 0, 0)
        st["phase"], st["chunk"], st["step"] = nxt
        states.append(copy())
    wbias = 2 ** (cfg.weight_bits - 1) if cfg.weight_encoding == "biased" else 0
    out = [output_stage(cfg, st["acc"][o] - wbias * st["xsum"] + bias[o], shift, relu)
           for o in range(O)]
    return states, out


def tile_sums(cfg, w_rows, x):
    """Sections 1-6 for one crossbar, without the cycle trace: ``acc[o] - weight_bias * xsum``
    for every output ``o``. ``w_rows[r][o]`` and ``x[r]`` are Python ints (``R`` rows)."""
    R, O, S, b, M = cfg.rows, cfg.outputs, cfg.slices, cfg.cell_bits, cfg.cell_max
    cells, flags = stored_cells(cfg, w_rows)
    levels = [chunks_of(cfg, xr) for xr in x]
    acc, xsum = [0] * O, 0
    for t in range(len(levels[0])):
        _, pos, sign = levels[0][t]
        insum = sum(levels[r][t][0] for r in range(R))
        xsum += sign * insum * 2 ** pos
        for o in range(O):
            for s in range(S):
                read = sum(levels[r][t][0] * cells[r][o][s] for r in range(R))
                _, rec = adc(cfg, read)
                y = M * insum - rec if flags[o][s] else rec
                acc[o] += sign * y * 2 ** (pos + s * b)
    wbias = 2 ** (cfg.weight_bits - 1) if cfg.weight_encoding == "biased" else 0
    return [acc[o] - wbias * xsum for o in range(O)]


def layer_outputs(cfg, x, w, bias, shift, relu):
    """Section 6 "Layers larger than a crossbar" and section 7, in Python integers (exact for
    any number of row tiles). ``x`` is a list of ``K`` ints, ``w`` ``K`` lists of ``N`` ints,
    ``bias`` ``N`` ints. Returns ``(v, out)``: the exact sums and the ``N`` outputs."""
    K, N = len(x), len(w[0])
    R, O = cfg.rows, cfg.outputs
    total = [0] * N
    for k0 in range(0, K, R):                 # row tiles: R consecutive rows, zero padded
        xs = [x[r] if r < K else 0 for r in range(k0, k0 + R)]
        for o0 in range(0, N, O):             # output groups: O consecutive outputs
            # padding is weight w = 0 (stored as weight_bias), not stored cell 0
            w_rows = [[w[r][o] if r < K and o < N else 0 for o in range(o0, o0 + O)]
                      for r in range(k0, k0 + R)]
            for o, part in enumerate(tile_sums(cfg, w_rows, xs)):
                if o0 + o < N:
                    total[o0 + o] += part
    v = [total[n] + bias[n] for n in range(N)]   # the bias once, to the sum
    return v, [output_stage(cfg, vn, shift, relu) for vn in v]
