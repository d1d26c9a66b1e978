"""glibc malloc tuning: applied where the C library is glibc, validated, used by the trainer."""

from __future__ import annotations

import platform

import pytest

import sigmavae.training.trainer as trainer_module
from sigmavae.run.allocator import MAX_MMAP_THRESHOLD
from sigmavae.training import TrainConfig, Trainer, tune_cpu_allocator


def test_applies_on_glibc_and_is_a_no_op_elsewhere() -> None:
    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert tune_cpu_allocator() is is_glibc


@pytest.mark.parametrize("kwargs", [{"mmap_threshold": 0},
                                    {"mmap_threshold": MAX_MMAP_THRESHOLD + 1},
                                    {"trim_threshold": -1}])
def test_rejects_out_of_range_thresholds(kwargs) -> None:
    with pytest.raises(ValueError, match="threshold"):
        tune_cpu_allocator(**kwargs)


@pytest.mark.parametrize("enabled", [True, False])
def test_trainer_tunes_the_allocator_on_cpu_only_when_configured(tmp_path, monkeypatch,
                                                                  enabled) -> None:
    calls = []
    monkeypatch.setattr(trainer_module, "tune_cpu_allocator", lambda: calls.append(1) or True)
    cfg = TrainConfig(data="frey", train_subset=64, val_subset=32, batch_size=32, epochs=1,
                      out=str(tmp_path), progress=False, tune_malloc=enabled)
    Trainer(cfg).fit()
    assert calls == ([1] if enabled else [])
