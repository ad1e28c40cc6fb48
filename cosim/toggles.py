r"""Per-bit toggle counts of every signal of a co-simulated run, the same under both simulators.

Sources of switching activity:

* an FST file (Icarus through our dump module, Verilator with ``--trace-fst``), read with
  ``pywellen``: each signal's value changes are collapsed to the last value per time stamp (so
  delta-cycle glitches of one simulator do not count), turned into a bit matrix and XORed row to
  row with numpy. A bit toggles when it goes ``0 -> 1`` or ``1 -> 0``; ``x``/``z`` read as 0
  (Verilator's two-state model: Icarus starts undriven testbench inputs at ``x``, Verilator at
  0, and the first drive then counts the same under both). Names that occur twice in one file
  (yosys' escaped ``\levels[0]`` beside the bus ``levels``) are ambiguous and left out.
* a SAIF file (Verilator with ``--trace-saif``): the ``(TC n)`` toggle count of every bit.

Names are normalised so that the same net has the same key under both simulators: the top
scope (``aqua_datapath``) is dropped, Verilator's duplicate ``$rootio`` scope is skipped, the
backslash of escaped identifiers is removed and array members are written ``name[i]`` (Verilator
writes ``name.[i]``). Names starting with ``_`` are left out: Verilator does not trace them, and
the only ones yosys writes are a memory read port's data register (``_0_``), an alias of the
read-data net that is counted. A key is ``"crossbar.gated_row0"`` for a net of the ``crossbar`` instance,
``"phase"`` for one of the top module.

Every signal is attributed to a **block** (:func:`block_of`: the first instance of its path,
after the ``xbar<i>.`` of a Datapath inside a ``ConvTile``: ``crossbar``, ``adc``, ``shiftadd``;
``agu_in``/``agu_out`` are ``agu``; memory ports are ``memory``; every other net, the Datapath's
and the tile's own, is ``control``) and a **class**, read from the generated Verilog
(:func:`signal_classes`): ``register`` (assigned in an ``always @(posedge clk)`` block),
``clock`` (``clk``), ``input`` (an input port of a sub-module: an alias of the driving net in
the parent, left out of energy so that a net is counted once), ``memport`` (the address, data
and enable nets of a memory's read and write ports, found in the statements that access the
array; block ``memory``), ``comb`` (every other net, output ports included). Memory arrays
themselves are dumped by neither simulator (Icarus' ``$dumpvars`` skips arrays, Verilator
traces arrays of at most 32 words), so their bit cells have no toggles here: memory energy is
charged per access bit from the event counts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["normalise", "fst_toggles", "fst_cycle_toggles", "saif_toggles", "signal_classes", "Toggles",
           "block_of", "BLOCKS", "TILE_BLOCKS", "CLASSES", "toggle_run", "memory_ports"]

#: blocks of a Datapath run; a ConvTile run adds the AGUs and the memories
BLOCKS = ("crossbar", "adc", "shiftadd", "control")
TILE_BLOCKS = (*BLOCKS, "agu", "memory")
CLASSES = ("register", "comb", "clock", "input", "memport")
#: the classes whose toggles are charged per toggle (``clock`` is per register bit per cycle)
TOGGLING = ("register", "comb", "memport")
_DATAPATH_BLOCKS = ("crossbar", "adc", "shiftadd")


def normalise(full_name: str) -> str | None:
    """The simulator-independent key of a hierarchical name, or ``None`` for a duplicate scope
    (Verilator's ``$rootio``)."""
    parts = full_name.replace(".[", "[").split(".")
    if parts[0] in ("$rootio", "TOP"):
        return None
    parts = [p.strip().lstrip("\\").strip() for p in parts[1:]]   # drop the top scope
    return ".".join(parts)


def block_of(key: str, classes: dict[str, str] | None = None) -> str:
    """The block of the net ``key``: ``crossbar``/``adc``/``shiftadd`` for nets inside those
    instances (of the Datapath, or of ``xbar<i>`` in a ConvTile), ``agu`` inside ``agu_in`` /
    ``agu_out``, ``memory`` for memory instances and, given ``classes``, memory-port nets;
    else ``control`` (the Datapath's own nets and the tile's: gather, FSM, registers)."""
    if classes is not None and classify(key, classes) == "memport":
        return "memory"
    parts = key.split(".")
    if len(parts) > 1 and re.fullmatch(r"xbar\d+", parts[0]):
        parts = parts[1:]
    if len(parts) > 1:
        if parts[0] in _DATAPATH_BLOCKS:
            return parts[0]
        if parts[0] in ("agu_in", "agu_out"):
            return "agu"
        if parts[0] in ("fmap_mem", "out_mem"):
            return "memory"
    return "control"


def _bits_matrix(values: list, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (ints or strings of 0/1/x/z) as bit matrices ``[n, width]`` (LSB first):
    the value bits and a 'known' mask."""
    n = len(values)
    nbytes = (width + 7) // 8
    val = np.zeros((n, nbytes), dtype=np.uint8)
    known = np.ones((n, width), dtype=bool)
    strs = []
    for i, v in enumerate(values):
        if isinstance(v, int):
            val[i] = np.frombuffer(v.to_bytes(nbytes, "little"), dtype=np.uint8)
        else:
            strs.append(i)
    bits = np.unpackbits(val, axis=1, bitorder="little")[:, :width].astype(bool)
    for i in strs:                     # strings are MSB first, possibly shorter than width
        s = str(values[i]).lower().rjust(width, "0")[-width:][::-1]
        b = np.frombuffer(s.encode(), dtype=np.uint8)
        bits[i] = b == ord("1")
        known[i] = (b == ord("0")) | (b == ord("1"))
    return bits & known, known


def _flips(times: list[int], values: list, width: int,
           start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(times [n], flips [n, width])``: the bits that toggle at each change of a change list
    (last value per time stamp), counted from the state at time ``start``."""
    t = np.asarray(times, dtype=np.int64)
    last = np.ones(len(t), dtype=bool)
    last[:-1] = t[1:] != t[:-1]
    idx = np.nonzero(last)[0]
    before = int((t[idx] <= start).sum())
    if before > 1:
        idx = idx[before - 1:]
    if len(idx) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=bool)
    bits, _ = _bits_matrix([values[i] for i in idx], width)
    return t[idx[1:]], bits[1:] != bits[:-1]


def _toggle_counts(times: list[int], values: list, width: int, start: int = 0) -> np.ndarray:
    """Per-bit 0<->1 transitions of a change list (last value per time stamp), counted from
    the state at time ``start``."""
    return _flips(times, values, width, start)[1].sum(axis=0, dtype=np.int64)


def _stimulus_start(w) -> int:
    """The first falling edge of ``clk`` after ``rst`` is released: where the bench starts
    driving the inputs. Before it, undriven inputs are ``x`` under Icarus and 0 under
    Verilator, and the nets computed from them differ."""
    sig = {}
    for v in w.all_vars():
        key = normalise(v.full_name)
        if key in ("clk", "rst") and key not in sig:
            s = v.signal
            sig[key] = [s[i] for i in range(len(s))]
    if "clk" not in sig or "rst" not in sig:
        return 0
    released = next((t for t, v in sig["rst"] if v == 0 and t > 0), 0)
    return next((t for t, v in sig["clk"] if v == 0 and t >= released), released)


def _fst_flips(path: str | Path, from_reset: bool):
    """``(waveform, {key: (times, flips [n, width])})`` of every unambiguous variable of an
    FST/VCD file, counted from the stimulus start unless ``from_reset=False``."""
    import pywellen

    w = pywellen.Waveform(str(path))
    start = _stimulus_start(w) if from_reset else 0
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ambiguous = set()
    for v in w.all_vars():
        key = normalise(v.full_name)
        if key is None or key in ambiguous or key.rsplit(".", 1)[-1].startswith("_"):
            continue            # `_0_`: yosys' memory read register, hidden by Verilator
        if key in out:          # e.g. yosys' escaped `\levels[0]` beside the bus `levels`
            ambiguous.add(key)
            del out[key]
            continue
        sig = v.signal
        changes = [sig[i] for i in range(len(sig))]
        out[key] = _flips([c[0] for c in changes], [c[1] for c in changes], v.bitwidth or 1,
                          start)
    return w, out


def fst_toggles(path: str | Path, *, from_reset: bool = True) -> dict[str, np.ndarray]:
    """Per-bit toggle counts (LSB first) of every variable of an FST/VCD file, by key,
    counted from the stimulus start (:func:`_stimulus_start`) unless ``from_reset=False``."""
    _, flips = _fst_flips(path, from_reset)
    return {key: f.sum(axis=0, dtype=np.int64) for key, (_, f) in flips.items()}


def fst_cycle_toggles(path: str | Path, classes: dict[str, str], *, blocks=BLOCKS,
                      group=None) -> tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Toggles per clock cycle: ``(rising, {(group, class): counts [n]})``, where ``rising``
    are the ``n`` rising edges of ``clk`` and cycle ``i`` is ``[rising[i], rising[i+1])`` (the
    results of edge ``i`` and the inputs the bench drives for edge ``i+1``). Counted from the
    stimulus start, charged classes only (:data:`TOGGLING`, as
    :meth:`Toggles.by_block_class`); summed over cycles (plus the few toggles before the first
    edge) it equals those totals. ``group(key)`` names the group of a net (default its block,
    :func:`block_of`); ``blocks`` are the groups always present in the result."""
    w, flips = _fst_flips(path, True)
    group = group or (lambda key: block_of(key, classes))
    clk = _values(w, "clk")
    rising = np.asarray([t for (t, v), (_, u) in zip(clk[1:], clk) if str(v) == "1"
                         and str(u) != "1"], dtype=np.int64)
    n = len(rising)
    out = {(b, c): np.zeros(n, dtype=np.int64) for b in blocks for c in TOGGLING}
    for key, (times, f) in flips.items():
        c = classify(key, classes)
        if key.startswith("$auto$") or c not in TOGGLING or not len(times):
            continue
        cyc = np.searchsorted(rising, times, side="right") - 1
        keep = cyc >= 0
        g = (group(key), c)
        out.setdefault(g, np.zeros(n, dtype=np.int64))
        out[g] += np.bincount(cyc[keep], weights=f[keep].sum(axis=1),
                              minlength=n).astype(np.int64)
    return rising, out


def _values(w, key: str) -> list:
    """``[(time, value)]`` of the variable ``key`` of the waveform ``w``."""
    for v in w.all_vars():
        if normalise(v.full_name) == key:
            s = v.signal
            return [s[i] for i in range(len(s))]
    raise KeyError(key)


_SAIF_NET = re.compile(r"^\s*\((\S+)\s+\(T0 \d+\).*\(TC (\d+)\)")
_SAIF_INSTANCE = re.compile(r"^\s*\(INSTANCE\s+(\S+)")


def saif_toggles(path: str | Path) -> dict[str, np.ndarray]:
    """Per-bit toggle counts of a SAIF file (as Verilator writes it: one net per line), by
    key. Bits of a vector are the nets ``name\\[i\\]``."""
    scopes: list[tuple[str, int]] = []          # (instance, paren depth at which it opened)
    per_bit: dict[str, dict[int, int]] = defaultdict(dict)
    depth = 0
    with open(path) as f:
        for line in f:
            m = _SAIF_INSTANCE.match(line)
            if m:
                scopes.append((m.group(1), depth + 1))
            else:
                m = _SAIF_NET.match(line)
                if m:
                    name, tc = m.group(1).replace("\\", ""), int(m.group(2))
                    bit = 0
                    bm = re.match(r"(.*)\[(\d+)\]$", name)
                    if bm:
                        name, bit = bm.group(1), int(bm.group(2))
                    key = normalise(".".join([*(sc for sc, _ in scopes), name]))
                    if key is not None:
                        per_bit[key][bit] = tc
            depth += line.count("(") - line.count(")")
            while scopes and depth < scopes[-1][1]:
                scopes.pop()
    out = {}
    for key, bits in per_bit.items():
        arr = np.zeros(max(bits) + 1, dtype=np.int64)
        for b, tc in bits.items():
            arr[b] = tc
        out[key] = arr
    return out


def _verilog_modules(text: str):
    """``(instance path prefix, module body)`` of each module of the yosys Verilog."""
    for m in re.finditer(r"^module\s+(\\?\S+)\s*\(.*?^endmodule", text, re.S | re.M):
        name = m.group(1).lstrip("\\")
        parts = name.split(".")
        yield ".".join(parts[1:]), m.group(0)


_IDENT = re.compile(r"\\\S+|[A-Za-z_][\w$]*")


def _idents(expr: str) -> set[str]:
    """The net names of a Verilog expression (escaped identifiers lose their backslash)."""
    expr = re.sub(r"\d+'[hbdo][0-9a-fA-FxXzZ_]+", " ", expr)
    return {m.lstrip("\\") for m in _IDENT.findall(expr)}


def memory_ports(verilog: str | Path) -> dict[str, dict[str, dict[str, set[str]]]]:
    """``{memory: {"write"|"read": {"en"|"addr"|"data": {net, ...}}}}`` of every memory
    array (``reg [w] name [d];``) of the generated Verilog: the nets of the statements that
    write it (``if (en) mem[addr] <= data;``) and read it (``[if (en)] q <= mem[addr];`` and
    the net ``assign`` ed from ``q``). Keys are prefixed with their instance path."""
    text = _text(verilog)
    out: dict[str, dict] = {}
    for prefix, body in _verilog_modules(text):
        pre = f"{prefix}." if prefix else ""
        for mem in re.findall(r"^\s*reg\s+\[[^\]]*\]\s*(\\?\S+)\s*\[[^\]]*\]\s*;", body, re.M):
            m_ = re.escape(mem)
            ports = out.setdefault(pre + mem.lstrip("\\"), {})
            for en, addr, data in re.findall(
                    r"if \(([^)]*)\)\s*\n?\s*" + m_ + r"\[(.*?)\]\s*<=\s*([^;]*);", body):
                ports.setdefault("write", {"en": set(), "addr": set(), "data": set()})
                for part, expr in (("en", en), ("addr", addr), ("data", data)):
                    ports["write"][part] |= {pre + n for n in _idents(expr)}
            for en, q, addr in re.findall(r"(?:if \(([^)]*)\)\s*begin\s*)?(\\?\S+)\s*<=\s*"
                                          + m_ + r"\[(.*?)\];", body):
                ports.setdefault("read", {"en": set(), "addr": set(), "data": set()})
                rd = ports["read"]
                rd["en"] |= {pre + n for n in _idents(en)}
                rd["addr"] |= {pre + n for n in _idents(addr)}
                q = q.lstrip("\\")
                rd["data"].add(pre + q)
                for y in re.findall(r"assign\s+(\\?\S+)\s*=\s*\\?" + re.escape(q) + r"\s*;",
                                    body):
                    rd["data"].add(pre + y.lstrip("\\"))
    return out


def _text(verilog: str | Path) -> str:
    return Path(verilog).read_text() if isinstance(verilog, Path) or "\n" not in str(verilog) \
        else str(verilog)


def signal_classes(verilog: str | Path) -> dict[str, str]:
    """``key -> class`` for the registers, clocks, sub-module inputs and memory ports
    (:func:`memory_ports`) of the generated Verilog; every other key is ``comb`` (see
    :func:`classify`)."""
    text = _text(verilog)
    out: dict[str, str] = {}
    for prefix, body in _verilog_modules(text):
        pre = f"{prefix}." if prefix else ""
        # `q <= d;` (RTL), or `if (rst) q[3] <= 1'h0;` (yosys' gate netlists, bit by bit)
        for m in re.finditer(r"always @\(posedge \w+\)\s*\n\s*(?:if \([^)]*\)\s*)?"
                             r"(\\?[^\s\[]+)(?:\[\d+\])?\s*<=", body):
            out[pre + m.group(1).lstrip("\\")] = "register"
        if prefix:
            for m in re.finditer(r"^\s*input\s+(?:\[[^\]]*\]\s*)?(\\?\S+?)\s*;", body, re.M):
                out[pre + m.group(1).lstrip("\\")] = "input"
        out[pre + "clk"] = "clock"
    for ports in memory_ports(text).values():
        for port in ports.values():
            for nets in port.values():
                out.update(dict.fromkeys(nets - {"clk"}, "memport"))
    return out


def classify(key: str, classes: dict[str, str]) -> str:
    base = re.sub(r"\[\d+\]$", "", key)
    return classes.get(key) or classes.get(base) or "comb"


@dataclass
class Toggles:
    """Toggle counts of one run: ``bits[key]`` per bit, with block and class of each key;
    ``blocks``: :data:`BLOCKS` for a Datapath run, :data:`TILE_BLOCKS` for a ConvTile."""
    bits: dict[str, np.ndarray]
    classes: dict[str, str] = field(default_factory=dict)
    cycles: int = 0
    source: str = ""
    blocks: tuple[str, ...] = BLOCKS

    def total(self, key: str) -> int:
        return int(self.bits[key].sum())

    def cls(self, key: str) -> str:
        return classify(key, self.classes)

    def block(self, key: str) -> str:
        return block_of(key, self.classes)

    def register_bits(self) -> dict[str, int]:
        """``{block: register bits}`` (each is charged clock energy every cycle)."""
        out = dict.fromkeys(self.blocks, 0)
        for key, arr in self.bits.items():
            if self.cls(key) == "register":
                out[self.block(key)] += len(arr)
        return out

    def by_block_class(self, *, include_inputs: bool = False) -> dict[str, dict[str, int]]:
        """``{block: {class: toggles}}``; sub-module inputs (aliases of nets counted in the
        parent) are left out unless ``include_inputs``."""
        out = {b: {c: 0 for c in CLASSES} for b in self.blocks}
        for key, arr in self.bits.items():
            if key.startswith("$auto$"):     # yosys' one-shot initial trigger
                continue
            c = self.cls(key)
            if c == "input" and not include_inputs:
                continue
            out[self.block(key)][c] += int(arr.sum())
        return out


def toggle_run(cfg, sim: str, *, jobs: list[dict], seed: int, trace: str = "fst",
               bubble: float = 0.2, backpressure: float = 0.2, label: str = "toggles"):
    """Co-simulate the Datapath on ``jobs`` with waves on and return ``(Toggles, CosimRun)``.
    ``trace``: ``"fst"`` (both simulators) or ``"saif"`` (Verilator only)."""
    from .run import run_datapath, verilog_sources

    res = run_datapath(cfg, sim, jobs=jobs, seed=seed, bubble=bubble,
                       backpressure=backpressure, label=label, waves=True, trace=trace)
    if not res.passed:
        raise RuntimeError(f"{sim} toggle run failed against the golden model (seed {seed}): "
                           f"{res.message}")
    if res.waves is None:
        raise RuntimeError(f"{sim} wrote no {trace} file")
    sources, _ = verilog_sources(cfg, "datapath")
    bits = saif_toggles(res.waves) if trace == "saif" else fst_toggles(res.waves)
    return Toggles(bits, signal_classes(Path(sources[0])), res.stats.get("cycles", 0),
                   str(res.waves)), res
