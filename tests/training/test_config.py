"""TrainConfig: YAML loading, unknown keys and wrong types give specific errors."""

from __future__ import annotations

import pytest

from sigmavae.training import ConfigError, TrainConfig


def test_yaml_roundtrip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: mnist\nepochs: 3\nlr: 1\nlikelihood: fixed_sigma\n"
                    "likelihood_options: {beta: 0.01}\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.data == "mnist" and cfg.epochs == 3 and cfg.lr == 1.0
    assert cfg.likelihood_options == {"beta": 0.01}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochz: 3\n", r"unknown key\(s\) \['epochz'\]"),
        ("epochs: three\n", "epochs must be an integer"),
        ("epochs: 2.5\n", "epochs must be an integer"),
        ("lr: fast\n", "lr must be a number"),
        ("progress: 1\n", "progress must be true or false"),
        ("likelihood_options: 3\n", "likelihood_options must be a mapping"),
        ("batch_size: 0\n", "batch_size must be >= 1"),
        ("precision: fp8\n", r"precision must be one of \['32-true', 'bf16-mixed'"),
        ("- a\n- b\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_yaml(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        TrainConfig.from_yaml(path)
