"""The speed hint's measurements: timed once per machine, model and batch shape, remembered."""

from __future__ import annotations

import json

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.models import build_conv_vae
from sigmavae.training import speed_hints
from sigmavae.training.fastpath import FastPath

PATH = FastPath("bf16-mixed", True, "test")
CPU = torch.device("cpu")


@pytest.fixture
def timings(monkeypatch):
    """Replace the timing with a counter: each call returns 1.5 + the number of earlier calls."""
    calls: list[tuple[int, ...]] = []

    def fake(model, images, path, device):
        calls.append(tuple(images.shape))
        return 1.5 + len(calls) - 1

    monkeypatch.setattr(speed_hints, "measure_speedup", fake)
    return calls


def _model(head: str = "optimal_sigma"):
    return build_conv_vae((3, 16, 16), likelihoods.create(head))


def _images(n: int = 8):
    return torch.zeros(n, 3, 16, 16, dtype=torch.uint8)


def test_a_factor_is_timed_once_and_then_read_back(tmp_path, timings):
    store = tmp_path / "hints.json"
    first = speed_hints.speedup(_model(), _images(), PATH, CPU, store)
    again = speed_hints.speedup(_model(), _images(), PATH, CPU, store)
    assert (first.factor, first.measured_now) == (1.5, True)
    assert (again.factor, again.measured_now) == (1.5, False)
    assert timings == [(8, 3, 16, 16)]
    (entry,) = json.loads(store.read_text()).values()
    assert entry["factor"] == 1.5 and entry["path"] == "bf16-mixed + channels_last"
    assert "threads" in entry["device"]


def test_another_model_batch_shape_or_path_is_timed_anew(tmp_path, timings):
    store = tmp_path / "hints.json"
    speed_hints.speedup(_model(), _images(), PATH, CPU, store)
    assert speed_hints.speedup(_model("categorical"), _images(), PATH, CPU, store).measured_now
    assert speed_hints.speedup(_model(), _images(16), PATH, CPU, store).measured_now
    other = FastPath("bf16-mixed", False, "test")
    assert speed_hints.speedup(_model(), _images(), other, CPU, store).measured_now
    assert len(timings) == 4 and len(json.loads(store.read_text())) == 4
    # weights do not enter the key: a differently initialised model of the same kind reuses it
    torch.manual_seed(123)
    assert not speed_hints.speedup(_model(), _images(), PATH, CPU, store).measured_now


def test_a_corrupt_store_is_timed_again_and_replaced(tmp_path, timings):
    store = tmp_path / "hints.json"
    store.write_text("{not json")
    assert speed_hints.speedup(_model(), _images(), PATH, CPU, store).measured_now
    assert len(json.loads(store.read_text())) == 1
    store.write_text("[1, 2]")  # valid JSON, not an object
    assert speed_hints.speedup(_model(), _images(), PATH, CPU, store).measured_now


def test_an_unwritable_store_still_gives_the_factor(tmp_path, timings):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = blocker / "hints.json"  # its folder is a file: nothing can be written there
    result = speed_hints.speedup(_model(), _images(), PATH, CPU, store)
    assert (result.factor, result.measured_now) == (1.5, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_the_default_store_follows_the_cache_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path))
    assert speed_hints.hints_path() == tmp_path / "speed_hints.json"
