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

    folder = Path(__file__).resolve().parents[2] / "src" / "sigmavae" / "configs"
    configs = sorted(folder.glob("*.yaml"))
    assert configs
    for path in configs:
        TrainConfig.from_yaml(path)


def test_every_field_is_declared_once_with_its_help():
    """The dataclass is the one source: each field has a type, a default and a help text, and
    the YAML keys, the flags and the checks are all made from it."""
    import dataclasses

    from sigmavae.run.config import settings

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [s.name for s in settings()] == fields
    for setting in settings():
        assert setting.help and setting.kind in (bool, int, float, str, dict), setting
        assert setting.default_value() == getattr(TrainConfig(), setting.name)
    assert next(s for s in settings() if s.name == "likelihood").names()[0] == "bernoulli"
    assert next(s for s in settings() if s.name == "precision").names() == [
        "32-true", "bf16-mixed", "16-mixed", "64-true", "auto"]


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": "3"}, "config: epochs must be an integer, got '3'"),
    ({"epochs": True}, "config: epochs must be an integer, got True"),
    ({"lr": "fast"}, "config: lr must be a number, got 'fast'"),
    ({"lr": 0}, "config: lr must be > 0, got 0"),
    ({"seed": 2**32}, "config: seed must be in 0..2^32-1, got 4294967296"),
    ({"latent_dim": 0}, "config: latent_dim must be >= 1 or null, got 0"),
    ({"grad_clip": -1.0}, "config: grad_clip must be > 0 or null, got -1.0"),
    ({"data_root": 3}, "config: data_root must be a string or null, got 3"),
    ({"model_options": [1]}, "config: model_options must be a mapping, got [1]"),
    ({"accelerator": "tpu"}, "config: accelerator must be one of ['auto', 'cpu', 'cuda', "),
    ({"precision": "8-bit"}, "config: precision must be one of ['32-true', 'bf16-mixed', "
                             "'16-mixed', '64-true', 'auto']"),
    ({"compile_mode": "fast"},
     "config: compile_mode must be one of ['default', 'reduce-overhead', 'max-autotune']"),
    ({"data": "nosuch"},
     "config: data must be one of ['bair', 'celeba', 'cifar10', 'folder', 'frey'"),
    ({"model": "nosuch"},
     "config: unknown model 'nosuch'; choose one of: conv, hierarchical, svg"),
])
def test_the_constructor_checks_types_and_ranges(values, message):
    """``TrainConfig(**kw)`` checks what ``from_dict`` checks (one ConfigError line)."""
    with pytest.raises(ConfigError) as info:
        TrainConfig(**values)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_values_are_normalised():
    from pathlib import Path

    cfg = TrainConfig(lr=1, beta=0, out=Path("runs") / "x", data_root=Path("d"))
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and isinstance(cfg.beta, float)
    assert cfg.out == str(Path("runs") / "x") and cfg.data_root == "d"
    assert cfg.replace(epochs=2).epochs == 2 and cfg.replace(epochs=2).lr == 1.0
    with pytest.raises(ConfigError, match=r"c\.yaml: epochs must be >= 1, got 0"):
        TrainConfig.from_dict({"epochs": 0}, source="c.yaml")


def test_data_options_are_checked_with_the_config():
    with pytest.raises(ConfigError, match=r"^config: unknown option\(s\) colour for data set "):
        TrainConfig(data_options={"colour": 1})
    with pytest.raises(ConfigError, match=r"^config: image_size must be a positive integer"):
        TrainConfig(data_options={"image_size": 0})
    assert TrainConfig(data_options={"image_size": 16}).data_options == {"image_size": 16}


def test_original_objective_builds_svgs_fixed_sigma_head_and_refuses_others() -> None:
    from sigmavae.run.build import build_vae

    cfg = TrainConfig(objective="original")
    assert cfg.likelihood == "fixed_sigma" and cfg.kl_weight == 1e-4
    assert TrainConfig().kl_weight == 1.0 and TrainConfig(beta=0.5).kl_weight == 0.5
    model = build_vae(cfg, (1, 28, 28))
    # 2 sigma^2 = beta C H W: SVG's SSE / (C H W) + beta KL is beta x this head's -ELBO
    assert float(model.head.sigma) == pytest.approx((1e-4 * 784 / 2) ** 0.5)
    assert TrainConfig.from_dict(cfg.to_dict()).likelihood == "fixed_sigma"  # round trip
    with pytest.raises(ConfigError, match="objective original fixes the likelihood itself"):
        TrainConfig(objective="original", likelihood="bernoulli")
    with pytest.raises(ConfigError, match="objective must be"):
        TrainConfig(objective="mse")
