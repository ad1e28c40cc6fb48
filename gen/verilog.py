"""Verilog for every block of :data:`hdl.BLOCKS`, and a JSON manifest describing it.

``generate(cfg)`` writes ``build/verilog/<config>-<digest>/aqua_<block>.v`` (one module
``aqua_<block>`` each, submodules included) and ``manifest.json``: the configuration and its
digest, the generator version, and per block the module name, file, SHA-256, latency, and every
Verilog port with its direction, width and -- for structured payloads -- the bit offset and
width of every field.

Output is a pure function of the configuration and the tool versions: byte-identical across runs.
Files are written atomically (temporary file + ``os.replace``) and only when their content
changed, so the modification time of an unchanged file is kept (simulators rebuild by file time).
Verilog is emitted without ``src`` attributes: they would hold absolute paths of this checkout.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
import time
from pathlib import Path

import amaranth
from amaranth.back import verilog
from amaranth.hdl import Const, Shape, ShapeCastable, ValueCastable
from amaranth.hdl import _ir
from amaranth.lib import data, enum, stream, wiring

from arch.config import AccelConfig
from hdl import BLOCKS
from hdl.layouts import (input_layout, layer_config_layout, obs_layout, output_layout,
                         weight_write_layout)

__all__ = ["generate", "default_out_dir", "module_name", "component_entry", "block_entry", "describe_shape", "port_table",
           "write_if_changed", "generator_version", "hdl_source_digest", "BUILD_DIR", "MANIFEST", "SYNTH_FILE"]

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "verilog"
MANIFEST = "manifest.json"
SYNTH_FILE = "synth.json"
MANIFEST_VERSION = 1

#: Named payload layouts of ``hdl/layouts.py``, described in the manifest.
LAYOUTS = {
    "weight_write": weight_write_layout,
    "input": input_layout,
    "output": output_layout,
    "layer_config": layer_config_layout,
    "obs": obs_layout,
}


def default_out_dir(cfg: AccelConfig) -> Path:
    """``build/verilog/<config name>-<config digest>`` in this checkout: keyed by content too,
    so that two configurations of the same name (a copy with one value changed) never share,
    or overwrite, one folder."""
    return BUILD_DIR / f"{cfg.name}-{cfg.digest}"


def module_name(block: str) -> str:
    return f"aqua_{block}"


@functools.lru_cache(maxsize=1)
def hdl_source_digest() -> str:
    """12 hex digits of SHA-256 over the Python sources the RTL is elaborated from (the ``arch``
    and ``hdl`` packages) and the Amaranth version: part of the key of every cached Verilog
    file of a component (tiles, IMA tiles, predictor), so that a change of the generator's code
    writes a new file rather than reusing a stale one."""
    import arch
    import hdl

    h = hashlib.sha256(amaranth.__version__.encode())
    for pkg in (arch, hdl):
        root = Path(pkg.__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root.parent).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def generator_version() -> dict:
    try:
        own = importlib.metadata.version("aqua-hw")
    except importlib.metadata.PackageNotFoundError:     # pragma: no cover - not installed
        own = "0+unknown"
    return {"name": "aqua-hw", "version": own, "amaranth": amaranth.__version__}


# -- describing shapes and ports ---------------------------------------------------------------

def describe_shape(shape) -> dict:
    """A JSON description of a port or field shape: width and signedness, and for layouts the
    offset of every field (struct) or the stride of the elements (array), recursively."""
    if isinstance(shape, data.StructLayout):
        return {"kind": "struct", "width": shape.size, "signed": False,
                "fields": {name: {"offset": field.offset, **describe_shape(field.shape)}
                           for name, field in shape}}
    if isinstance(shape, data.ArrayLayout):
        elem = describe_shape(shape.elem_shape)
        return {"kind": "array", "width": shape.size, "signed": False, "length": shape.length,
                "stride": elem["width"], "element": elem}
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        cast = Shape.cast(shape)
        return {"kind": "enum", "width": cast.width, "signed": cast.signed,
                "members": {member.name: member.value for member in shape}}
    if isinstance(shape, ShapeCastable):    # pragma: no cover - other layouts are not used
        raise TypeError(f"cannot describe shape {shape!r}")
    cast = Shape.cast(shape)
    return {"kind": "int", "width": cast.width, "signed": cast.signed}


def _port_map(component: wiring.Component) -> tuple[dict, list[dict], list[dict]]:
    """``verilog.convert`` ports, manifest port entries and constant members, all from the
    component's signature (flattened, Verilog names joined by ``__``).

    Members that are constants (``ready`` of an ``always_ready`` stream) are not ports: they
    are listed with their value instead."""
    convert_ports, entries, constants = {}, [], []
    for path, member, value in component.signature.flatten(component):
        name = "__".join(map(str, path))
        direction = "input" if member.flow == wiring.In else "output"
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            constants.append({"name": name, "direction": direction, "path": list(path),
                              "value": value.value, "width": len(value)})
            continue
        convert_ports[name] = (value, _ir.PortDirection.Input if direction == "input"
                               else _ir.PortDirection.Output)
        entry = {"name": name, "direction": direction, "width": len(value),
                 "signed": value.shape().signed, "path": list(path)}
        described = describe_shape(member.shape)
        if described["kind"] != "int":
            entry["layout"] = described
        entries.append(entry)
    return convert_ports, entries, constants


def _streams(component: wiring.Component) -> dict:
    """Stream members: which Verilog ports carry valid, ready and payload (``None`` where the
    stream is always valid / always ready)."""
    streams = {}
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            sig = member.signature
            streams[name] = {
                "direction": "input" if member.flow == wiring.In else "output",
                "payload": f"{name}__payload",
                "valid": None if sig.always_valid else f"{name}__valid",
                "ready": None if sig.always_ready else f"{name}__ready",
            }
    return streams


_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\\?\S+)\s*;", re.M)


def _verilog_ports(text: str, module: str) -> dict[str, tuple[str, int]]:
    """Ports declared by ``module`` in the generated Verilog: name -> (direction, width)."""
    start = text.index(f"module {module}(")
    body = text[start:text.index("endmodule", start)]
    return {m[3]: (m[1], int(m[2]) + 1 if m[2] is not None else 1)
            for m in _PORT_RE.finditer(body)}


def port_table(component: wiring.Component, text: str, module: str) -> list[dict]:
    """Manifest port entries, checked against the ports declared in the Verilog ``text``; the
    clock and reset that Amaranth adds for the ``sync`` domain come last."""
    _, entries, _ = _port_map(component)
    declared = _verilog_ports(text, module)
    for entry in entries:
        if declared.get(entry["name"]) != (entry["direction"], entry["width"]):
            raise RuntimeError(f"{module}: port {entry['name']} is "
                               f"{declared.get(entry['name'])} in the Verilog, "
                               f"expected {(entry['direction'], entry['width'])}")
    extra = sorted(set(declared) - {entry["name"] for entry in entries})
    if not set(extra) <= {"clk", "rst"}:
        raise RuntimeError(f"{module}: unexpected Verilog ports {extra}")
    clocking = [{"name": name, "direction": "input", "width": 1, "signed": False,
                 "path": [], "role": "clock" if name == "clk" else "reset (synchronous)"}
                for name in ("clk", "rst") if name in extra]
    return entries + clocking


# -- writing --------------------------------------------------------------------------------

def write_if_changed(path: Path, content: str | bytes) -> bool:
    """Write ``content`` to ``path`` atomically, unless the file already holds exactly it.

    Returns whether the file was written."""
    blob = content.encode() if isinstance(content, str) else content
    path = Path(path)
    try:
        if path.read_bytes() == blob:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def dump_json(doc) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _check_blocks(blocks) -> list[str]:
    if blocks is None:
        return list(BLOCKS)
    if isinstance(blocks, str):
        blocks = [blocks]
    names = list(blocks)
    unknown = [b for b in names if b not in BLOCKS]
    if unknown or not names:
        raise ValueError(f"blocks must be names from {', '.join(BLOCKS)}, not {names!r}")
    return [b for b in BLOCKS if b in names]          # canonical order, no duplicates


def block_entry(cfg: AccelConfig, block: str) -> tuple[str, dict]:
    """Build block ``block`` for ``cfg``: its Verilog text and its manifest entry."""
    return component_entry(BLOCKS[block](cfg), module_name(block))


def component_entry(component: wiring.Component, module: str) -> tuple[str, dict]:
    """Verilog module ``module`` of ``component`` and its manifest entry."""
    convert_ports, _, constants = _port_map(component)
    text = verilog.convert(component, name=module, ports=convert_ports, emit_src=False)
    entry = {
        "module": module,
        "file": f"{module}.v",
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "latency": getattr(component, "latency", None),
        "ports": port_table(component, text, module),
        "constants": constants,
        "streams": _streams(component),
    }
    memories = getattr(component, "memories", None)
    if memories:
        entry["memories"] = memories
    return text, entry


def _reusable_entries(out: Path, manifest: dict, names: list[str]) -> dict:
    """Entries of the manifest already in ``out`` for blocks not generated now, if it was made
    for the same configuration by the same generator and their files are unchanged, so that
    generating a subset of the blocks does not drop the others from the manifest."""
    old = _load_json(out / MANIFEST)
    if not old or any(old.get(k) != manifest[k] for k in ("manifest_version", "generator",
                                                           "config")):
        return {}
    kept = {}
    for block, entry in old.get("blocks", {}).items():
        if block in names or block not in BLOCKS:
            continue
        try:
            blob = (out / entry["file"]).read_bytes()
        except (FileNotFoundError, KeyError, TypeError):
            continue
        if hashlib.sha256(blob).hexdigest() == entry.get("sha256"):
            kept[block] = entry
    return kept


def generate(cfg: AccelConfig, out_dir: str | Path | None = None, blocks=None, *,
             timings: dict | None = None) -> dict:
    """Write the Verilog of ``blocks`` (default: all of :data:`hdl.BLOCKS`) and the manifest.

    Parameters
    ----------
    cfg : AccelConfig
        The configuration to build.
    out_dir : path, optional
        Directory receiving ``aqua_<block>.v``, ``manifest.json`` (and later ``synth.json``);
        default ``build/verilog/<cfg.name>-<cfg.digest>``.
    blocks : iterable of str, optional
        Names from :data:`hdl.BLOCKS`.
    timings : dict, optional
        If given, receives the seconds spent per block (elaboration and Verilog conversion).

    Returns
    -------
    dict
        The manifest (as written to ``manifest.json``). Synthesis results already in
        ``synth.json`` for an identical Verilog file (same SHA-256) are carried over, and so
        are the entries of blocks not generated now if the existing manifest is for the same
        configuration and generator and their files are unchanged.

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~arch.config.AccelConfig`.
    ValueError
        If ``blocks`` names an unknown block.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"cfg must be an AccelConfig (see arch.config.load_config), "
                        f"not {cfg!r}")
    names = _check_blocks(blocks)
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    previous = (_load_json(out / SYNTH_FILE) or {}).get("blocks", {})

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": generator_version(),
        "config": {"name": cfg.name, "digest": cfg.digest, "values": cfg.to_dict()},
        "latency": cfg.latency,
        "layouts": {name: describe_shape(fn(cfg)) for name, fn in LAYOUTS.items()},
        "blocks": {},
    }
    kept = _reusable_entries(out, manifest, names)
    for block in BLOCKS:
        if block in kept:
            manifest["blocks"][block] = kept[block]
            continue
        if block not in names:
            continue
        start = time.perf_counter()
        text, entry = block_entry(cfg, block)
        if timings is not None:
            timings[block] = time.perf_counter() - start
        write_if_changed(out / entry["file"], text)
        synth = previous.get(block)
        if synth and synth.get("sha256") == entry["sha256"]:
            entry["synth"] = {k: synth[k] for k in ("cells", "cell_types") if k in synth}
        manifest["blocks"][block] = entry
    write_if_changed(out / MANIFEST, dump_json(manifest))
    return manifest
