"""TrainState: the checkpoint's versioned layout. The trainer writes the current format; files of
the first releases' format (v1, ``image_shape``) still evaluate and resume; other formats and
unknown entries are refused with one line naming them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from lightning_fabric.plugins import Precision
from torch import nn

from sigmavae.data import InMemoryBatches
from sigmavae.run.state import FORMAT, FORMAT_V1, RESUME_KEYS, LoopState, Resumable, restore
from sigmavae.training import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainState,
    load_checkpoint,
    load_trained,
    save_checkpoint,
)


def _config(tmp_path: Path, name: str, epochs: int) -> TrainConfig:
    return TrainConfig(data="frey", train_subset=128, val_subset=32, batch_size=64, epochs=epochs,
                       latent_dim=4, seed=2, out=str(tmp_path / name), progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run's last.ckpt (the current format)."""
    folder = tmp_path_factory.mktemp("trained")
    Trainer(_config(folder, "run", epochs=1)).fit()
    return folder / "run" / "checkpoints" / "last.ckpt"


def _as_v1(state: dict) -> dict:
    """The same checkpoint in the first releases' layout (what trainer.py's RESUME_KEYS were)."""
    old = {k: v for k, v in state.items() if k != "data_shape"}
    return {**old, "format": FORMAT_V1, "image_shape": state["data_shape"]}


def test_the_trainer_writes_the_current_format(trained):
    raw = load_checkpoint(trained)
    assert raw["format"] == FORMAT and raw["data_shape"] == [1, 28, 20]
    assert set(RESUME_KEYS) <= set(raw) and "image_shape" not in raw
    state = TrainState.load(trained)
    assert state.missing_for_resume() == [] and state.loop["step"] == 2
    assert state.to_dict().keys() == raw.keys()


def test_a_v1_checkpoint_evaluates_and_resumes_like_the_current_one(trained, tmp_path):
    v1 = tmp_path / "v1" / "checkpoints" / "last.ckpt"
    save_checkpoint(_as_v1(load_checkpoint(trained)), v1)
    model, config = load_trained(v1)
    reference, _ = load_trained(trained)
    assert config == _config(trained.parents[2], "run", epochs=1)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    state = TrainState.load(v1)
    assert state.data_shape == [1, 28, 20] and state.format == FORMAT  # read into the v2 layout
    # resuming from the v1 file continues exactly as from the file the trainer wrote
    now = Trainer(_config(tmp_path, "from-v2", epochs=2)).fit(resume=trained)
    old = Trainer(_config(tmp_path, "v1", epochs=2)).fit(resume=v1)
    for key in ("train_loss", "val_nll", "val_kl", "sigma", "step"):
        assert old[key] == now[key], key


@pytest.mark.parametrize("version", ["sigmavae-checkpoint-v0", "sigmavae-checkpoint-v3", 2])
def test_another_format_is_refused_naming_it(trained, tmp_path, version):
    path = tmp_path / "other.ckpt"
    save_checkpoint({**load_checkpoint(trained), "format": version}, path)
    for load in (load_trained, TrainState.load):
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message
        assert f"format {version!r}" in message
        assert FORMAT in message and FORMAT_V1 in message  # what this version reads
    with pytest.raises(CheckpointError, match=re.escape(f"format {version!r}")):
        Trainer(_config(tmp_path, "resume", epochs=2)).fit(resume=path)
    assert not (tmp_path / "resume").exists()  # refused before anything is written


def test_a_checkpoint_without_format_is_refused(trained, tmp_path):
    path = tmp_path / "unversioned.ckpt"
    save_checkpoint({k: v for k, v in load_checkpoint(trained).items() if k != "format"}, path)
    with pytest.raises(CheckpointError, match="has no 'format' entry; this sigmavae reads"):
        load_trained(path)


@pytest.mark.parametrize("extra", [{"ema": {"w": torch.zeros(2)}}, {"image_shape": [1, 28, 20]}],
                         ids=["unknown-entry", "v1-entry-in-v2"])
def test_unknown_entries_are_refused(trained, tmp_path, extra):
    path = tmp_path / "extra.ckpt"
    save_checkpoint({**load_checkpoint(trained), **extra}, path)
    with pytest.raises(CheckpointError) as info:
        load_trained(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"unknown entry {sorted(extra)} in a {FORMAT!r} checkpoint" in message


def test_a_v1_checkpoint_with_a_v2_entry_is_refused(trained, tmp_path):
    path = tmp_path / "mixed.ckpt"
    state = _as_v1(load_checkpoint(trained))
    save_checkpoint({**state, "data_shape": [1, 28, 20]}, path)
    with pytest.raises(CheckpointError, match=r"unknown entry \['data_shape'\] in a "
                                              f"'{FORMAT_V1}' checkpoint"):
        load_trained(path)


def test_an_evaluation_only_checkpoint_loads_but_does_not_resume(trained, tmp_path):
    full = TrainState.load(trained)
    path = TrainState(model=full.model, config=full.config, data_shape=full.data_shape).save(
        tmp_path / "eval.ckpt")
    assert set(load_checkpoint(path)) == {"format", "model", "config", "data_shape"}
    load_trained(path)
    with pytest.raises(CheckpointError, match=r"it has no optimizer, batches, loop, rng .*start a "
                                              "new run instead"):
        Trainer(_config(tmp_path, "resume", epochs=2)).fit(resume=path)


def test_data_shape_must_be_positive_integers(trained, tmp_path):
    path = tmp_path / "bad-shape.ckpt"
    save_checkpoint({**load_checkpoint(trained), "data_shape": [1, 0, 20]}, path)
    with pytest.raises(CheckpointError, match=r"'data_shape' must be positive integers .*got "
                                              r"\[1, 0, 20\]"):
        load_trained(path)


def _live(seed: int, data_shape: tuple[int, ...] = (1, 2, 2), width: int = 4,
          config_seed: int | None = None) -> Resumable:
    """A small live run: a linear model, Adam after a step, batches part-way, generators
    (``seed`` sets their state; the config's seed is ``config_seed``, default ``seed``)."""
    torch.manual_seed(seed)
    model = nn.Linear(4, width)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    batches = InMemoryBatches(torch.zeros(8, *data_shape, dtype=torch.uint8), 2, seed=0)
    for _, _ in zip(range(seed), batches, strict=False):  # ``seed`` batches into the epoch
        pass
    noise = torch.Generator().manual_seed(seed)
    config = TrainConfig(seed=seed if config_seed is None else config_seed)
    return Resumable(config=config, data_shape=data_shape, model=model,
                     optimizer=optimizer, batches=batches, precision=Precision(), noise=noise,
                     device=torch.device("cpu"))


def test_capture_then_restore_gives_the_same_run_back(tmp_path):
    run = _live(seed=1)
    loop = LoopState()
    loop.step, loop.epoch, loop.skipped = 5, 1, 2
    loop.add(torch.tensor(3.0), torch.ones(2), torch.zeros(2))
    path = TrainState.capture(run, loop).save(tmp_path / "last.ckpt")
    expected = (torch.randn(3), torch.randn(3, generator=run.noise))  # what comes next
    # the same config, other weights, optimiser, position and generators
    other = _live(seed=2, config_seed=1)
    restored = restore(path, other)
    assert restored.state_dict()["step"] == 5 and restored.skipped == 2
    assert torch.equal(restored.window, loop.window)
    for key, value in run.model.state_dict().items():
        assert torch.equal(other.model.state_dict()[key], value), key
    assert other.batches.state_dict() == run.batches.state_dict()
    assert other.batches.position == 1
    ours, theirs = run.optimizer.state_dict()["state"], other.optimizer.state_dict()["state"]
    assert all(torch.equal(ours[i][k], theirs[i][k]) for i in ours for k in ours[i])
    assert torch.equal(torch.randn(3), expected[0])  # torch's generator, as at the capture
    assert torch.equal(torch.randn(3, generator=other.noise), expected[1])
    saved = TrainState.load(path)
    assert saved.config == TrainConfig(seed=1).to_dict() and saved.data_shape == [1, 2, 2]


def test_restore_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    path = TrainState.capture(_live(seed=1), LoopState()).save(tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"it is for examples of shape \[1, 2, 2\], the "
                                              r"data has \[1, 4, 1\]"):
        restore(path, _live(seed=1, data_shape=(1, 4, 1)))
    with pytest.raises(CheckpointError, match=r"it does not fit this run's config \(Error\(s\) "
                                              "in loading state_dict.*; resume with the config"):
        restore(path, _live(seed=1, width=5))
    with pytest.raises(CheckpointError, match=r"with seed 2 \(the run's: 1\): fixed for a run"):
        restore(path, _live(seed=1, config_seed=2))  # another run's config (its batch order)
    bare = TrainState.load(path)
    eval_only = TrainState(model=bare.model, config=bare.config, data_shape=bare.data_shape)
    with pytest.raises(CheckpointError, match="it has no optimizer, batches, loop, rng "):
        restore(eval_only.save(tmp_path / "eval.ckpt"), _live(seed=1))
