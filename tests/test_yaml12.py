"""YAML 1.2 core-schema scalars (sigmavae.yaml12) in config files and in KEY=VALUE options."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import yaml

import sigmavae.training
from sigmavae import yaml12
from sigmavae.cli import main
from sigmavae.run import ConfigError
from sigmavae.training import TrainConfig


@pytest.mark.parametrize(("text", "value"), [
    ("1e-3", 0.001), ("2E-3", 0.002), ("-1.5e+2", -150.0), (".5", 0.5), ("+.5", 0.5),
    ("1.", 1.0), ("1e3", 1000.0), ("-1e-3", -0.001), ("0.001", 0.001),
    ("1.0e-05", 1e-05),  # how PyYAML's dumper writes small floats: read back the same
])
def test_floats_as_yaml_1_2_writes_them(text, value):
    parsed = yaml12.load(text)
    assert type(parsed) is float and parsed == value


@pytest.mark.parametrize(("text", "value"), [
    ("12", 12), ("-3", -3), ("+7", 7), ("0", 0),
    ("012", 12),  # decimal in 1.2 (YAML 1.1: octal 10)
    ("0o17", 15), ("0x1F", 31),
])
def test_integers(text, value):
    parsed = yaml12.load(text)
    assert type(parsed) is int and parsed == value


@pytest.mark.parametrize("text", [
    "e3", "1e", "1e-", ".e3", "1_000",  # 1_000 is YAML 1.1 only: a string, not 1000
    "yes", "no", "on", "off", "y",       # 1.1 booleans: strings in 1.2 (the "Norway problem")
    "1:30",                              # 1.1 base 60 (= 90): a string
    "2024-01-01",                        # no implicit timestamps
    "0b101", "inf", "nan", "abc",
])
def test_strings_stay_strings(text):
    assert yaml12.load(text) == text


def test_special_values():
    assert yaml12.load(".inf") == math.inf and yaml12.load("-.inf") == -math.inf
    assert math.isnan(yaml12.load(".NaN"))
    assert [yaml12.load(t) for t in ("true", "False", "TRUE")] == [True, False, True]
    assert [yaml12.load(t) for t in ("null", "~", "", "Null")] == [None] * 4
    assert yaml12.load("a: &base {x: 1}\nb: {<<: *base, y: 2e-3}") == {
        "a": {"x": 1}, "b": {"x": 1, "y": 0.002}}  # merge keys still work


def test_pyyaml_itself_is_untouched():
    """The 1.2 rules live on sigmavae's own loader: PyYAML's safe loader keeps its 1.1 table."""
    assert yaml.safe_load("a: 2e-3\nb: yes") == {"a": "2e-3", "b": True}


def test_config_file_numbers(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 2e-3\ngrad_clip: 1E+1\nlikelihood: fixed_sigma\n"
                    "likelihood_options: {beta: 1e-3}\n")
    config = TrainConfig.from_yaml(path)
    assert (config.lr, config.grad_clip) == (0.002, 10.0)
    assert config.likelihood_options == {"beta": 0.001}


def test_config_file_names_a_value_that_is_a_string_in_yaml_1_2(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 1_000\n")
    with pytest.raises(ConfigError, match=r"run.yaml: epochs must be an integer.*'1_000'"):
        TrainConfig.from_yaml(path)


class _Recorder:
    """Stands in for the Trainer: records the config ``sigmavae train`` made, trains nothing."""

    configs: ClassVar[list[TrainConfig]] = []

    def __init__(self, config: TrainConfig, *args, **kwargs):
        self.configs.append(config)

    def fit(self, *args, **kwargs) -> dict:
        return {}


def test_key_value_options_and_a_packaged_config(monkeypatch):
    """``--likelihood-option beta=1e-3`` reaches the config as a number (every ``KEY=VALUE``
    flag is read by the same ``yaml12.load``), on top of a packaged config given by name."""
    monkeypatch.setattr(sigmavae.training, "Trainer", _Recorder)
    _Recorder.configs.clear()
    assert main(["train", "--config", "quick-cpu", "--likelihood", "fixed_sigma",
                 "--likelihood-option", "beta=1e-3"]) == 0
    (config,) = _Recorder.configs
    assert config.likelihood_options == {"beta": 0.001}
    assert (config.data, config.train_subset, config.epochs) == ("frey", 640, 3)  # quick-cpu's


def test_a_negative_exponent_is_a_number_the_check_can_read(capsys):
    """``beta=-1e-3`` is a number (so the head's own check answers), ``beta=1e`` a string."""
    assert main(["train", "--likelihood", "fixed_sigma", "--likelihood-option", "beta=-1e-3"]) == 2
    assert "-0.001" in capsys.readouterr().err
    assert main(["train", "--likelihood", "fixed_sigma", "--likelihood-option", "beta=1e"]) == 2
    assert "'1e'" in capsys.readouterr().err


def test_metric_flags_read_exponents():
    """``sigmavae eval`` flags are parsed by their declared type, which reads ``1e-3`` too."""
    from sigmavae.metrics import metric_options

    options = metric_options()
    assert options["active_threshold"].parse("1e-3") == 0.001
    assert options["calibration_levels"].parse("5e-1,9E-1") == (0.5, 0.9)
