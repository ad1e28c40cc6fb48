"""Loading and validating accelerator configurations."""

import pytest

from arch.config import AccelConfig, ConfigError, config_names, load_config


def write(tmp_path, text):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


SMALL = (load_config("small").to_dict())


def toml_of(doc):
    lines = []
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {value!r}".replace("'", '"'))
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            for k, v in value.items():
                v = str(v).lower() if isinstance(v, bool) else repr(v).replace("'", '"')
                lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


def variant(section, key, value):
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SMALL.items()}
    doc[section][key] = value
    return doc


def test_shipped_configs_load():
    assert {"isaac", "small"} <= set(config_names())
    for name in config_names():
        cfg = load_config(name)
        assert cfg.name == name
        assert AccelConfig.from_dict(cfg.to_dict()) == cfg


def test_isaac_derived_widths():
    cfg = load_config("isaac")
    assert (cfg.rows, cfg.cols, cfg.slices, cfg.outputs) == (128, 128, 8, 16)
    # flipped columns: at most 128 * 3 / 2 = 192 -> the 8-bit ADC is lossless
    assert (cfg.max_read, cfg.read_bits, cfg.adc_bits) == (192, 8, 8)
    assert cfg.input_cycles == 16 and cfg.adc_steps == 16
    assert cfg.latency == 16 * (1 + 16) + 1


def test_toml_round_trip(tmp_path):
    p = write(tmp_path, toml_of(SMALL))
    assert load_config(p) == load_config("small").replace(name="small")


@pytest.mark.parametrize("section,key,value,message", [
    ("weights", "bits", 7, r"'weights.bits' must be a multiple of crossbar.cell_bits = 2 "
                           r"\(weights are sliced into cells\), not 7"),
    ("adc", "bits", 4, r"'adc.bits' = 4 is too narrow for adc.mode = 'lossless'.*largest column "
                       r"read is 24 \(with flipped-column encoding\), which needs 5 bits"),
    ("adc", "mode", "round", r"'adc.mode' must be one of 'lossless', 'clip', 'drop_lsb', "
                             r"not 'round'"),
    ("crossbar", "rows", 0, r"'crossbar.rows' must be a positive integer, not 0"),
    ("crossbar", "rows_per_cycle", 3, r"'crossbar.rows_per_cycle' must divide crossbar.rows "
                                      r"= 16, not 3"),
    ("adc", "columns_per_cycle", 5, r"'adc.columns_per_cycle' must divide crossbar.cols = 16"),
    ("output", "shift_min", 30, r"'output.shift_min' = 30 must not exceed output.shift_max = 20"),
    ("crossbar", "rows", "16", r"'crossbar.rows' must be an integer, not '16'"),
    ("crossbar", "rows", True, r"'crossbar.rows' must be an integer, not True"),
    ("weights", "flip", 1, r"'weights.flip' must be a bool, not 1"),
    ("inputs", "dac_bits", 3, r"'inputs.dac_bits' must divide inputs.bits = 8, not 3"),
])
def test_bad_values_are_refused_with_key_value_and_rule(tmp_path, section, key, value, message):
    p = write(tmp_path, toml_of(variant(section, key, value)))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(p)
    assert str(p) in str(info.value)


def test_unknown_keys_are_refused(tmp_path):
    doc = variant("adc", "bitz", 5)
    with pytest.raises(ConfigError, match=r"unknown key 'adc.bitz'; allowed keys in \[adc\] "
                                          r"are: bits, columns_per_cycle, mode"):
        load_config(write(tmp_path, toml_of(doc)))
    with pytest.raises(ConfigError, match=r"unknown key 'dac'"):
        load_config(write(tmp_path, toml_of({**SMALL, "dac": {"bits": 1}})))


def test_missing_key_and_bad_toml(tmp_path):
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SMALL.items()}
    del doc["adc"]["bits"]
    with pytest.raises(ConfigError, match=r"missing required key 'adc.bits'"):
        load_config(write(tmp_path, toml_of(doc)))
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_config(write(tmp_path, "[crossbar\nrows = 1"))
    with pytest.raises(ConfigError, match=r"no configuration 'nope': give a shipped name"):
        load_config("nope")


def test_digest_changes_with_any_parameter():
    a = load_config("small")
    assert a.digest == load_config("small").digest
    assert a.digest != a.replace(rows_per_cycle=8).digest


ISAAC = load_config("isaac").to_dict()       # acc_bits = 42


@pytest.mark.parametrize("key,value,message", [
    ("shift_max", 42, r"'output.shift_max' must lie in \(-42, 42\) \(the accumulator is 42 bits "
                      r"wide\), not 42"),
    ("shift_min", -42, r"'output.shift_min' must lie in \(-42, 42\)"),
    ("shift_min", -21, r"the accumulator \(42 bits\) shifted left by up to 21 must fit in 62 "
                       r"bits"),
])
def test_shift_range_rules_of_the_document(tmp_path, key, value, message):
    """docs/arithmetic.md, "The shift range": (-acc_bits, acc_bits) and acc_bits - shift_min
    <= 62; the edges themselves are accepted."""
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in ISAAC.items()}
    doc["output"][key] = value
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, toml_of(doc)))
    cfg = load_config("isaac")
    assert cfg.acc_bits == 42
    assert cfg.replace(shift_min=-20, shift_max=41).shift_min == -20


def test_widths_of_an_all_zero_column():
    """read_bits = bits(max_read) = 1 when no column can read above 0 (docs: "Widths")."""
    cfg = AccelConfig(name="z", rows=1, cols=1, cell_bits=1, weight_bits=1, input_bits=1,
                      adc_bits=1, adc_columns_per_cycle=1, output_bits=2, shift_min=0,
                      shift_max=0, flip=True)
    assert (cfg.max_read, cfg.read_bits, cfg.insum_bits, cfg.shift_bits) == (0, 1, 1, 2)


def test_ima_crossbars_default_explicit_and_digest(tmp_path):
    """``[ima] crossbars``: default 8 (ISAAC's) for files without it, written by ``to_dict``
    only when it differs, so the digests of older configurations stay what they were."""
    small = load_config("small")
    assert small.ima_crossbars == load_config("isaac").ima_crossbars == 8
    assert "ima" not in small.to_dict()
    four = AccelConfig.from_dict(variant_doc := {**SMALL, "ima": {"crossbars": 4}})
    assert four.ima_crossbars == 4 and four.to_dict()["ima"] == {"crossbars": 4}
    assert AccelConfig.from_dict(four.to_dict()) == four and four.digest != small.digest
    assert load_config(write(tmp_path, toml_of(variant_doc))).ima_crossbars == 4
    with pytest.raises(ConfigError, match="'ima.crossbars' must be a positive integer, not 0"):
        AccelConfig.from_dict({**SMALL, "ima": {"crossbars": 0}})
    with pytest.raises(ConfigError, match="unknown key 'ima.tiles'"):
        AccelConfig.from_dict({**SMALL, "ima": {"tiles": 2}})
