"""Resuming from the run folder: its saved config, what a resume may change, finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigmavae.run import CHANGEABLE_ON_RESUME, ResumeConfigError, SavedRun, TrainConfig
from sigmavae.run.config import settings
from sigmavae.run.resume import fixed_changes


def _saved(folder: Path, **values) -> SavedRun:
    """A run folder holding only its config.json (a run killed before its first checkpoint)."""
    config = TrainConfig(data="frey", train_subset=64, batch_size=32, lr=2e-3, epochs=3,
                         out=str(folder), **values)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    return SavedRun.find("auto", folder)


def test_the_saved_config_is_found_from_the_folder_alone(tmp_path):
    saved = _saved(tmp_path / "run")
    assert saved.checkpoint is None and saved.folder == tmp_path / "run"
    assert saved.config is not None and saved.config.lr == 2e-3 and saved.config.batch_size == 32
    config, line = saved.continued({})
    assert config == saved.config
    assert line == f"resuming {tmp_path / 'run'} with its saved config ({tmp_path / 'run'}" \
                   "/config.json)"
    assert SavedRun.find("auto", tmp_path / "empty").config is None  # nothing to continue


def test_changeable_keys_are_taken_and_said(tmp_path):
    saved = _saved(tmp_path / "run")
    config, line = saved.continued({"epochs": 5, "log_every_n_steps": 1, "lr": 0.002,
                                    "out": str(tmp_path / "run")})  # equal values are fine
    assert (config.epochs, config.log_every_n_steps, config.lr) == (5, 1, 2e-3)
    assert line.endswith("; changed: epochs 3 -> 5, log_every_n_steps 10 -> 1")


def test_fixed_keys_are_refused_naming_each(tmp_path):
    saved = _saved(tmp_path / "run")
    with pytest.raises(ResumeConfigError) as info:
        saved.continued({"lr": 1e-3, "batch_size": 64, "epochs": 5,
                         "likelihood_options": {"train_sigma": "running"}})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(  # in the config's order
        f"cannot resume {tmp_path / 'run'} with likelihood_options {{'train_sigma': 'running'}} "
        "(the run's: {}), batch_size 64 (the run's: 32), lr 0.001 (the run's: 0.002): fixed for "
        "a run")
    assert "a resume may change only accelerator, channels_last," in message
    assert "epochs" not in message.split("fixed for a run")[0]  # a changeable one is no reason


def test_every_key_is_fixed_unless_listed():
    """A key added to TrainConfig later is fixed on resume until someone lists it as safe."""
    names = {s.name for s in settings()}
    assert names >= CHANGEABLE_ON_RESUME  # every listed key is a config key
    fixed = names - CHANGEABLE_ON_RESUME
    assert {"data", "data_options", "train_subset", "val_subset", "model", "latent_dim",
            "model_options", "likelihood", "likelihood_options", "objective", "beta",
            "batch_size", "drop_last", "lr", "grad_clip", "seed", "devices", "num_nodes",
            "precision"} == fixed


def test_an_older_checkpoints_config_lacking_keys_takes_their_defaults():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("objective", "beta")}
    assert fixed_changes(old, TrainConfig()) == []
    assert fixed_changes(old, TrainConfig(beta=0.5)) == ["beta 0.5 (the run's: null)"]


def test_finished_only_with_every_epoch_and_the_final_metrics(tmp_path):
    config = TrainConfig(out=str(tmp_path), epochs=3)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    done = SavedRun(tmp_path, ckpt, config, epochs_done=3, step=30)
    assert done.finished(3) is None  # no final.json yet: the trainer writes it on resume
    (tmp_path / "final.json").write_text("{}")
    assert done.finished(3) == (f"run {tmp_path} is finished: 3 of 3 epochs; nothing to do — "
                                "raise --epochs to continue")
    assert done.finished(4) is None
    assert "3 epochs done, more than --epochs 2" in done.finished(2)
    assert SavedRun(tmp_path, None, config).finished(3) is None
