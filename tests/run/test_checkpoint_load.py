"""Odd and corrupt checkpoint files (what ``sigmavae eval CKPT`` and ``sigmavae sample CKPT``
load): each gives CheckpointError or ConfigError with one line naming the file and the fault."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sigmavae.training import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    build_vae,
    load_checkpoint,
    load_trained,
    save_checkpoint,
)

SHAPE = (1, 28, 20)
CONFIG = TrainConfig(latent_dim=4)


@pytest.fixture(scope="module")
def good_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the trainer writes, for an untrained model; the writers below change one thing."""
    model = build_vae(CONFIG, SHAPE)
    state = {"format": "sigmavae-checkpoint-v1", "model": model.state_dict(),
             "config": CONFIG.to_dict(), "image_shape": list(SHAPE)}
    path = save_checkpoint(state, tmp_path_factory.mktemp("good") / "good.ckpt")
    loaded, config = load_trained(path)  # the untouched checkpoint is fine
    assert config == CONFIG and loaded.data_shape == SHAPE and not loaded.training
    return state


def _checkpoint(**changes: Any) -> Callable[[Path, dict], None]:
    """A writer of the good checkpoint with entries replaced (``None``: removed)."""
    def write(path: Path, good: dict) -> None:
        state = {**good, **changes}
        save_checkpoint({k: v for k, v in state.items() if v is not None}, path)
    return write


def _config(**changes: Any) -> Callable[[Path, dict], None]:
    def write(path: Path, good: dict) -> None:
        config = {**good["config"], **changes}
        save_checkpoint({**good, "config": {k: v for k, v in config.items() if v is not None}},
                        path)
    return write


def _weights(edit: Callable[[dict], dict]) -> Callable[[Path, dict], None]:
    def write(path: Path, good: dict) -> None:
        save_checkpoint({**good, "model": edit(dict(good["model"]))}, path)
    return write


def _truncated(keep: int | None) -> Callable[[Path, dict], None]:
    def write(path: Path, good: dict) -> None:
        save_checkpoint(good, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 if keep is None else keep])
    return write


def _text(path: Path, good: dict) -> None:
    path.write_text("data: frey\nlikelihood: optimal_sigma\n")


def _random(path: Path, good: dict) -> None:
    path.write_bytes(bytes([7]) + os.urandom(4096))


def _plain_pickle(path: Path, good: dict) -> None:
    with path.open("wb") as f:
        pickle.dump({"model": 1}, f, protocol=4)


class _Unsafe:
    pass


def _unsafe_object(path: Path, good: dict) -> None:
    with path.open("wb") as f:
        pickle.dump({"model": _Unsafe()}, f, protocol=4)


def _torch_save(obj: Any) -> Callable[[Path, dict], None]:
    return lambda path, good: torch.save(obj, path)


def _bare_state_dict(path: Path, good: dict) -> None:
    torch.save(good["model"], path)


def _directory(path: Path, good: dict) -> None:
    path.mkdir()


def _rename_entry(weights: dict) -> dict:
    weights["foo.weight"] = weights.pop("decoder.out.weight")
    return weights


def _other_latent(path: Path, good: dict) -> None:
    model = build_vae(CONFIG.replace(latent_dim=6), SHAPE)
    save_checkpoint({**good, "model": model.state_dict()}, path)


BUILD_ERRORS = (CheckpointError, ConfigError)
#: (id, writer, error class(es), regex the message must match after "<the path>").
CASES = [
    ("directory", _directory, CheckpointError, "is a directory, not a checkpoint file"),
    ("empty", lambda p, g: p.write_bytes(b""), CheckpointError, r"is empty \(0 bytes\)"),
    ("truncated-zip", _truncated(None), CheckpointError,
     "is corrupt or truncated: .*failed finding central directory$"),
    ("first-10-bytes", _truncated(10), CheckpointError,
     "is corrupt or truncated: .*not a ZIP archive$"),
    ("random-bytes", _random, CheckpointError, "is not a PyTorch checkpoint file"),
    ("text-file", _text, CheckpointError, "is a text file .*'data: frey'.*not a PyTorch"),
    ("plain-pickle", _plain_pickle, CheckpointError,
     "is not a PyTorch checkpoint: a plain Python pickle"),
    ("unsafe-object-in-a-plain-pickle", _unsafe_object, CheckpointError,
     r"^: it contains objects other than tensors.*\(\S*_Unsafe\)"),
    ("bare-tensor", _torch_save(torch.zeros(3)), CheckpointError,
     "is not a sigmavae checkpoint: the PyTorch file holds a Tensor"),
    ("list", _torch_save([1, 2]), CheckpointError, "holds a list, not a dict"),
    ("dict-without-model", _torch_save({"step": 3}), CheckpointError,
     r"no 'model' entry \(its keys: step\)$"),
    ("bare-state-dict", _bare_state_dict, CheckpointError,
     r"no 'model' entry .*\(a bare state dict\?"),
    ("model-not-a-state-dict", _checkpoint(model=torch.zeros(3)), CheckpointError,
     "its 'model' entry is a Tensor, not a state dict"),
    ("no-config", _checkpoint(config=None), CheckpointError, "has no 'config' entry"),
    ("no-image-shape", _checkpoint(image_shape=None), CheckpointError,
     "has no 'image_shape' entry"),
    ("config-not-a-mapping", _checkpoint(config=["conv"]), CheckpointError,
     "'config' is a list, not a mapping"),
    ("config-missing-keys", _checkpoint(config={"epochs": 3}), CheckpointError,
     "config lacks data, model, latent_dim, likelihood, likelihood_options"),
    ("config-missing-likelihood", _config(likelihood=None), CheckpointError,
     "config lacks likelihood"),
    # names and options: ConfigError where TrainConfig checks them, else CheckpointError when
    # the model is rebuilt
    ("unknown-likelihood", _config(likelihood="no_such_head"), BUILD_ERRORS,
     "unknown likelihood 'no_such_head'; choose one of: .*fixed_sigma"),
    ("unknown-model", _config(model="no_such_net"), BUILD_ERRORS, "unknown model 'no_such_net'"),
    ("bad-likelihood-option", _config(likelihood_options={"zzz": 1}), BUILD_ERRORS,
     "likelihood 'optimal_sigma': .*zzz"),
    # (unknown config keys and values of the wrong type already named the file: ConfigError)
    ("config-bad-value", _config(epochs=0), ConfigError, r"\(config\): epochs must be >= 1"),
    ("image-shape-of-two", _checkpoint(image_shape=[28, 20]), CheckpointError,
     r"'image_shape' must be 3 positive integers .*got \[28, 20\]"),
    ("missing-weights", _weights(lambda w: {k: v for k, v in w.items() if "decoder" not in k}),
     CheckpointError, "weights do not fit the model .*: missing: decoder.from_latent.weight"),
    ("unexpected-weights", _weights(lambda w: {**w, "extra.weight": torch.zeros(2)}),
     CheckpointError, "weights do not fit .*: unexpected: extra.weight$"),
    ("renamed-weight", _weights(_rename_entry), CheckpointError,
     "missing: decoder.out.weight; unexpected: foo.weight$"),
    ("wrong-shapes", _other_latent, CheckpointError,
     r"wrong shape: encoder.to_latent.weight \(checkpoint \[12, \d+\], model \[8, \d+\]\)"),
]


@pytest.mark.parametrize(("writer", "error", "expected"),
                         [pytest.param(w, e, x, id=i) for i, w, e, x in CASES])
def test_bad_checkpoint_file_gives_one_clear_line(tmp_path, good_state, writer, error, expected):
    path = tmp_path / "bad.ckpt"
    writer(path, good_state)
    with pytest.raises(error) as info:
        load_trained(path)
    assert type(info.value) in (error if isinstance(error, tuple) else (error,))
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message
    assert str(path) in message, message
    assert "miniz" not in message and "Traceback" not in message  # torch's internals stay out
    assert re.search(expected, message.split(str(path), 1)[1]), message


@pytest.mark.parametrize(("writer", "expected"), [
    (_text, "is a text file"), (_random, "is not a PyTorch checkpoint file"),
    (_directory, "is a directory"), (lambda p, g: p.write_bytes(b""), "is empty"),
])
def test_load_checkpoint_names_what_the_file_is(tmp_path, good_state, writer, expected):
    """What the trainer's --resume sees (it calls load_checkpoint directly)."""
    path = tmp_path / "x.ckpt"
    writer(path, good_state)
    with pytest.raises(CheckpointError, match=f"^checkpoint {re.escape(str(path))} {expected}"):
        load_checkpoint(path)
