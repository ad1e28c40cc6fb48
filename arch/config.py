"""The one accelerator configuration read by ``hdl``, ``golden`` and ``cosim``.

A configuration is a TOML file in ``configs/`` (or anywhere, given by path). It is loaded into
:class:`AccelConfig`, a frozen dataclass, and validated once at load time. Every width and count
that the RTL, the golden model and the testbenches use is a property of this class, so there is
exactly one place where, for example, the width of a column sum is decided.

The arithmetic that these numbers describe is specified in ``docs/arithmetic.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .ranges import int_range

__all__ = ["AccelConfig", "ConfigError", "load_config", "config_names", "CONFIG_DIR",
           "ADC_MODES", "WEIGHT_ENCODINGS", "read_named_toml"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

ADC_MODES = ("lossless", "clip", "drop_lsb")
WEIGHT_ENCODINGS = ("biased", "unsigned")


class ConfigError(ValueError):
    """A configuration that cannot be built. The message names the key, the value and what is
    allowed; the command-line tool prints it and exits non-zero."""


# (section, key) -> (field name, type, default). ``None`` as default means required.
_SCHEMA: dict[str, dict[str, tuple[str, type, object]]] = {
    "crossbar": {
        "rows":            ("rows", int, None),
        "cols":            ("cols", int, None),
        "cell_bits":       ("cell_bits", int, None),
        "rows_per_cycle":  ("rows_per_cycle", int, 0),   # 0: all rows in one cycle
    },
    "weights": {
        "bits":            ("weight_bits", int, None),
        "encoding":        ("weight_encoding", str, "biased"),
        "flip":            ("flip", bool, True),
    },
    "inputs": {
        "bits":            ("input_bits", int, None),
        "signed":          ("input_signed", bool, False),
        "dac_bits":        ("dac_bits", int, 1),
    },
    "adc": {
        "bits":            ("adc_bits", int, None),
        "mode":            ("adc_mode", str, "lossless"),
        "columns_per_cycle": ("adc_columns_per_cycle", int, None),
    },
    "output": {
        "bits":            ("output_bits", int, None),
        "shift_min":       ("shift_min", int, None),
        "shift_max":       ("shift_max", int, None),
    },
    "pipeline": {
        # ISAAC's schedule: the crossbar read of chunk t+1 overlaps the ADC of chunk t, which
        # converts a sample-and-hold copy of the column sums (docs/arithmetic.md section 8)
        "overlap":         ("pipeline_overlap", bool, False),
    },
    "ima": {
        "crossbars":       ("ima_crossbars", int, 8),     # ISAAC: 8 crossbars per IMA
    },
}
#: sections that :meth:`AccelConfig.to_dict` writes only when a value differs from its default
#: (so a configuration without them keeps its dictionary, digest and build folders)
_OPTIONAL_SECTIONS = ("pipeline", "ima")
_TOP_KEYS = {"name": str, "description": str}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _bits(n: int) -> int:
    """``bits(n) = max(1, bitlength(n))`` of ``docs/arithmetic.md``: the width of an unsigned
    register holding ``0 .. n``; never 0 (a column whose largest read is 0 has a 1-bit sum)."""
    return max(int(n).bit_length(), 1)


@dataclass(frozen=True)
class AccelConfig:
    """An ISAAC-style crossbar tile: array geometry, data widths, converters and output format.

    Parameters are plain integers, booleans and strings; everything else is derived. Construct
    with :func:`load_config` or :meth:`from_dict` so that the values are validated.
    """

    name: str
    rows: int
    cols: int
    cell_bits: int
    weight_bits: int
    input_bits: int
    adc_bits: int
    adc_columns_per_cycle: int
    output_bits: int
    shift_min: int
    shift_max: int
    rows_per_cycle: int = 0
    weight_encoding: str = "biased"
    flip: bool = True
    input_signed: bool = False
    dac_bits: int = 1
    adc_mode: str = "lossless"
    pipeline_overlap: bool = False
    ima_crossbars: int = 8
    description: str = ""

    def __post_init__(self):
        if self.rows_per_cycle == 0:
            object.__setattr__(self, "rows_per_cycle", self.rows)
        self._validate()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "<dict>") -> "AccelConfig":
        """Build from the nested TOML structure, refusing unknown keys and wrong types."""
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: a configuration is a table of sections, "
                              f"not {type(doc).__name__}")
        kwargs: dict[str, object] = {}
        for key, value in doc.items():
            if key in _TOP_KEYS:
                if not isinstance(value, _TOP_KEYS[key]):
                    raise ConfigError(f"{source}: key '{key}' must be a string, not {value!r}")
                kwargs[key] = value
            elif key in _SCHEMA:
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: '{key}' must be a table ([{key}]), "
                                      f"not {value!r}")
                for sub, subvalue in value.items():
                    if sub not in _SCHEMA[key]:
                        allowed = ", ".join(sorted(_SCHEMA[key]))
                        raise ConfigError(f"{source}: unknown key '{key}.{sub}'; "
                                          f"allowed keys in [{key}] are: {allowed}")
                    field, typ, _ = _SCHEMA[key][sub]
                    # bool is a subclass of int: refuse true/false where a number is expected.
                    if typ is int and (isinstance(subvalue, bool) or not isinstance(subvalue, int)):
                        raise ConfigError(f"{source}: '{key}.{sub}' must be an integer, "
                                          f"not {subvalue!r}")
                    if typ is not int and not isinstance(subvalue, typ):
                        raise ConfigError(f"{source}: '{key}.{sub}' must be a "
                                          f"{typ.__name__}, not {subvalue!r}")
                    kwargs[field] = subvalue
            else:
                allowed = ", ".join(sorted([*_TOP_KEYS, *_SCHEMA]))
                raise ConfigError(f"{source}: unknown key '{key}'; allowed top-level keys "
                                  f"are: {allowed}")
        for section, keys in _SCHEMA.items():
            for sub, (field, _, default) in keys.items():
                if field not in kwargs:
                    if default is None:
                        raise ConfigError(f"{source}: missing required key '{section}.{sub}'")
                    kwargs[field] = default
        kwargs.setdefault("name", Path(source).stem if source != "<dict>" else "custom")
        if not _NAME.fullmatch(kwargs["name"]) or ".." in kwargs["name"]:
            # the name names build folders and files: never a path, never outside build/
            raise ConfigError(f"{source}: 'name' must be a plain identifier (letters, digits, "
                              f"'_', '.', '-'; not starting with '.' or '-', no '..'), "
                              f"not {kwargs['name'][:60]!r}")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict:
        """The nested TOML structure (round-trips through :meth:`from_dict`)."""
        doc: dict = {"name": self.name}
        if self.description:
            doc["description"] = self.description
        for section, keys in _SCHEMA.items():
            values = {sub: getattr(self, field) for sub, (field, _, _) in keys.items()}
            if section in _OPTIONAL_SECTIONS and all(
                    values[sub] == default for sub, (_, _, default) in keys.items()):
                continue
            doc[section] = values
        return doc

    @property
    def digest(self) -> str:
        """A short hash of every parameter: names build directories and caches."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def replace(self, **changes) -> "AccelConfig":
        return dataclasses.replace(self, **changes)

    # -- validation ----------------------------------------------------------------------

    def _validate(self):
        def positive(key, value, *, power_of_two=False, maximum=None):
            if value < 1:
                raise ConfigError(f"'{key}' must be a positive integer, not {value}")
            if power_of_two and value & (value - 1):
                raise ConfigError(f"'{key}' must be a power of two, not {value}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"'{key}' must be at most {maximum}, not {value}")

        positive("crossbar.rows", self.rows, maximum=4096)
        positive("crossbar.cols", self.cols, maximum=4096)
        positive("crossbar.cell_bits", self.cell_bits, maximum=8)
        positive("crossbar.rows_per_cycle", self.rows_per_cycle)
        positive("weights.bits", self.weight_bits, maximum=32)
        positive("inputs.bits", self.input_bits, maximum=32)
        positive("inputs.dac_bits", self.dac_bits, maximum=8)
        positive("adc.bits", self.adc_bits, maximum=24)
        positive("adc.columns_per_cycle", self.adc_columns_per_cycle)
        positive("output.bits", self.output_bits, maximum=32)
        positive("ima.crossbars", self.ima_crossbars, maximum=4096)
        if self.rows % self.rows_per_cycle:
            raise ConfigError(f"'crossbar.rows_per_cycle' must divide crossbar.rows = "
                              f"{self.rows}, not {self.rows_per_cycle}")
        if self.weight_bits % self.cell_bits:
            raise ConfigError(f"'weights.bits' must be a multiple of crossbar.cell_bits = "
                              f"{self.cell_bits} (weights are sliced into cells), "
                              f"not {self.weight_bits}")
        if self.cols % self.slices:
            raise ConfigError(f"'crossbar.cols' must be a multiple of the {self.slices} cells "
                              f"one weight occupies (weights.bits / crossbar.cell_bits), "
                              f"not {self.cols}")
        if self.cols % self.adc_columns_per_cycle:
            raise ConfigError(f"'adc.columns_per_cycle' must divide crossbar.cols = "
                              f"{self.cols}, not {self.adc_columns_per_cycle}")
        if self.weight_encoding not in WEIGHT_ENCODINGS:
            raise ConfigError(f"'weights.encoding' must be one of "
                              f"{', '.join(map(repr, WEIGHT_ENCODINGS))}, "
                              f"not {self.weight_encoding!r}")
        if self.adc_mode not in ADC_MODES:
            raise ConfigError(f"'adc.mode' must be one of {', '.join(map(repr, ADC_MODES))}, "
                              f"not {self.adc_mode!r}")
        magnitude_bits = self.input_bits - 1 if self.input_signed else self.input_bits
        if self.input_signed and self.input_bits < 2:
            raise ConfigError(f"'inputs.bits' must be at least 2 for signed inputs, "
                              f"not {self.input_bits}")
        if magnitude_bits % self.dac_bits:
            what = "inputs.bits - 1 (the sign bit is streamed alone)" if self.input_signed \
                else "inputs.bits"
            raise ConfigError(f"'inputs.dac_bits' must divide {what} = {magnitude_bits}, "
                              f"not {self.dac_bits}")
        if self.adc_mode == "lossless" and self.adc_bits < self.read_bits:
            how = "with" if self.flip else "without"
            raise ConfigError(
                f"'adc.bits' = {self.adc_bits} is too narrow for adc.mode = 'lossless': the "
                f"largest column read is {self.max_read} ({how} flipped-column encoding), "
                f"which needs {self.read_bits} bits; allowed: adc.bits >= {self.read_bits}, "
                f"or adc.mode = 'clip' / 'drop_lsb'")
        if self.shift_min > self.shift_max:
            raise ConfigError(f"'output.shift_min' = {self.shift_min} must not exceed "
                              f"output.shift_max = {self.shift_max}")
        limit = self.acc_bits
        for key, value in (("output.shift_min", self.shift_min),
                           ("output.shift_max", self.shift_max)):
            if not -limit < value < limit:
                raise ConfigError(f"'{key}' must lie in (-{limit}, {limit}) (the accumulator "
                                  f"is {limit} bits wide), not {value}")
        if self.acc_bits + max(0, -self.shift_min) > 62:
            raise ConfigError(
                f"the accumulator ({self.acc_bits} bits) shifted left by up to "
                f"{max(0, -self.shift_min)} must fit in 62 bits for the int64 golden model; "
                f"reduce weights.bits, inputs.bits, crossbar.rows or raise output.shift_min")

    # -- derived quantities (the one source of truth for every width) --------------------

    @property
    def slices(self) -> int:
        """Cells (columns) one weight occupies: ``weight_bits / cell_bits``."""
        return self.weight_bits // self.cell_bits

    @property
    def outputs(self) -> int:
        """Output neurons one crossbar computes: ``cols / slices`` column groups."""
        return self.cols // self.slices

    @property
    def cell_max(self) -> int:
        """Largest cell value M = 2**cell_bits - 1."""
        return (1 << self.cell_bits) - 1

    @property
    def weight_bias(self) -> int:
        """The offset added to a signed weight before it is stored (0 if unsigned)."""
        return -self.weight_min

    @property
    def weight_signed(self) -> bool:
        """Whether weights are signed (the biased encoding) or unsigned."""
        return self.weight_encoding == "biased"

    @property
    def weight_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of a weight: signed ``weight_bits`` if biased, else unsigned."""
        return int_range(self.weight_bits, self.weight_signed)

    @property
    def weight_min(self) -> int:
        return self.weight_range[0]

    @property
    def weight_max(self) -> int:
        return self.weight_range[1]

    @property
    def input_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of an input activation (``inputs.bits``, ``inputs.signed``)."""
        return int_range(self.input_bits, self.input_signed)

    @property
    def input_min(self) -> int:
        return self.input_range[0]

    @property
    def input_max(self) -> int:
        return self.input_range[1]

    @property
    def input_cycles(self) -> int:
        """Crossbar cycles per input vector T: magnitude bits in DAC-sized chunks, plus one
        cycle for the sign bit of signed inputs."""
        if self.input_signed:
            return (self.input_bits - 1) // self.dac_bits + 1
        return self.input_bits // self.dac_bits

    def chunk_position(self, t: int) -> int:
        """Bit position (left shift) of input chunk ``t``."""
        if self.input_signed and t == self.input_cycles - 1:
            return self.input_bits - 1
        return t * self.dac_bits

    def chunk_width(self, t: int) -> int:
        """Bits the DAC drives in chunk ``t`` (1 for the sign bit of signed inputs)."""
        if self.input_signed and t == self.input_cycles - 1:
            return 1
        return self.dac_bits

    def chunk_negative(self, t: int) -> bool:
        """Whether chunk ``t`` carries a negative weight (the sign bit of signed inputs)."""
        return self.input_signed and t == self.input_cycles - 1

    @property
    def dac_max(self) -> int:
        return (1 << self.dac_bits) - 1

    @property
    def max_read(self) -> int:
        """Largest value a column can present to the ADC in one cycle."""
        if self.flip:
            return (self.rows * self.cell_max // 2) * self.dac_max
        return self.rows * self.cell_max * self.dac_max

    @property
    def read_bits(self) -> int:
        """Width of the column sum (the ADC's analog input range, in bits)."""
        return _bits(self.max_read)

    @property
    def adc_drop(self) -> int:
        """LSBs removed by ``drop_lsb`` (0 in the other modes)."""
        if self.adc_mode != "drop_lsb":
            return 0
        return max(0, self.read_bits - self.adc_bits)

    @property
    def adc_code_max(self) -> int:
        return (1 << self.adc_bits) - 1

    @property
    def insum_bits(self) -> int:
        """Width of Σ_r x_t[r], the per-cycle sum of DAC levels (flip recovery, bias)."""
        return _bits(self.rows * self.dac_max)

    @property
    def product_bits(self) -> int:
        """Signed width that holds any exact Σ_r x·w of one crossbar."""
        mag_x = max(abs(self.input_min), self.input_max)
        mag_w = max(abs(self.weight_min), self.weight_max)
        return _bits(self.rows * mag_x * mag_w) + 1

    @property
    def bias_bits(self) -> int:
        """Signed width of a bias (same scale as the accumulator)."""
        return self.product_bits

    @property
    def bias_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of a bias: signed ``bias_bits``. The one bias range."""
        return int_range(self.bias_bits, signed=True)

    @property
    def acc_bits(self) -> int:
        """Signed width of the output accumulators: the unsigned Σ x_u·w_u of the stored
        encoding, its correction and the bias, with one guard bit for ADC rounding."""
        unsigned_sum = self.rows * ((1 << self.input_bits) - 1) * ((1 << self.weight_bits) - 1)
        return _bits(unsigned_sum) + 3

    def sum_bits(self, row_tiles: int = 1) -> int:
        """Signed width of a layer's sum ``v`` (bias included) over ``row_tiles`` row tiles:
        ``acc_bits + bitlength(row_tiles)`` (``docs/arithmetic.md``, "Widths")."""
        return self.acc_bits + int(row_tiles).bit_length()

    @property
    def max_row_tiles(self) -> int:
        """Most row tiles a layer may span: its ``sum_bits`` must not exceed 64 (the golden
        model computes ``v`` in int64), so ``2**(64 - acc_bits) - 1``."""
        return (1 << (64 - self.acc_bits)) - 1

    @property
    def shift_bits(self) -> int:
        """Signed width of the run-time FlexPoint shift register."""
        return _bits(max(abs(self.shift_min), abs(self.shift_max))) + 1

    @property
    def acc_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of the signed ``acc_bits`` accumulator."""
        return int_range(self.acc_bits, signed=True)

    @property
    def output_range(self) -> tuple[int, int]:
        """``(lo, hi)`` of an output: signed ``output_bits``."""
        return int_range(self.output_bits, signed=True)

    @property
    def output_min(self) -> int:
        return self.output_range[0]

    @property
    def output_max(self) -> int:
        return self.output_range[1]

    # -- timing contract (docs/arithmetic.md, "Timing") ----------------------------------

    @property
    def xbar_steps(self) -> int:
        """Clocks to form the column sums of one input chunk: rows / rows_per_cycle."""
        return self.rows // self.rows_per_cycle

    @property
    def adc_steps(self) -> int:
        """Clocks to convert all columns of one input chunk: cols / adc.columns_per_cycle."""
        return self.cols // self.adc_columns_per_cycle

    @property
    def steps_per_chunk(self) -> int:
        return self.xbar_steps + self.adc_steps

    @property
    def stage_steps(self) -> int:
        """Clocks of one stage of the overlapped schedule (``[pipeline] overlap``): the ADC of
        chunk ``t`` beside the crossbar read of chunk ``t + 1``, ``max(xbar_steps,
        adc_steps)``."""
        return max(self.xbar_steps, self.adc_steps)

    @property
    def latency(self) -> int:
        """Clocks from the input handshake to the output being valid: ``T*(X + G) + 1``, or
        with ``[pipeline] overlap`` ``X + (T - 1)*max(X, G) + G + 1`` (the crossbar read of
        chunk 0, ``T - 1`` overlapped stages, the ADC of the last chunk, the final step)."""
        T, X, G = self.input_cycles, self.xbar_steps, self.adc_steps
        if self.pipeline_overlap:
            return X + (T - 1) * self.stage_steps + G + 1
        return T * self.steps_per_chunk + 1


def config_names() -> list[str]:
    """Names of the configurations shipped in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def read_named_toml(name_or_path: str | Path, folder: Path, what: str,
                    error: type[Exception]) -> tuple[Path, dict]:
    """Find ``name_or_path`` (a shipped name in ``folder`` or a path) and parse its TOML;
    raise ``error`` with one clear message when it is missing or not valid TOML."""
    path = Path(name_or_path)
    try:
        if path.is_dir():
            raise error(f"{what} '{name_or_path}' is a directory; give a shipped name or the "
                        f"path of a .toml file")
        if path.suffix != ".toml" and not path.exists():
            path = folder / f"{name_or_path}.toml"
        found = path.is_file()
    except (OSError, ValueError) as exc:       # a NUL byte, a name too long for the system
        if isinstance(exc, error):
            raise
        found = False
    if not found:
        names = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
        raise error(f"no {what} '{name_or_path}': give a shipped name "
                    f"({names}) or the path of a .toml file")
    try:
        return path, tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def load_config(name_or_path: str | Path = "small") -> AccelConfig:
    """Load a shipped configuration by name, or any TOML file by path.

    Raises
    ------
    ConfigError
        With one message naming the file, key, value and what is allowed.
    """
    path, doc = read_named_toml(name_or_path, CONFIG_DIR, "configuration", ConfigError)
    doc.setdefault("name", path.stem)
    return AccelConfig.from_dict(doc, source=str(path))
