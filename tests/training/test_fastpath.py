"""``--precision auto``: the choice per device, the trained run, and the start-of-run line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.models import build_conv_vae
from sigmavae.training import TrainConfig, Trainer, fastpath
from sigmavae.training.fastpath import FastPath, fast_path, measure_speedup, resolve_precision


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
    return path


@pytest.mark.parametrize(("flags", "native"), [("avx2 fma", False), ("avx2 avx512_bf16", True),
                                                ("avx2 amx_tile amx_bf16", True)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert fastpath.native_cpu_bf16(_cpuinfo(tmp_path, flags)) is native
    assert fastpath.native_cpu_bf16(tmp_path / "missing") is False


def test_cpu_info_reads_the_model_name_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n")
    assert fastpath.cpu_info(path) == ("Test CPU 9000", frozenset({"fpu", "avx2"}))
    assert fastpath.cpu_info(tmp_path / "missing") == (None, frozenset())


def test_auto_resolves_per_device(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: False)
    assert fast_path(cpu) is None
    assert resolve_precision("auto", False, cpu) == ("32-true", False)
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: True)
    assert resolve_precision("auto", False, cpu) == ("bf16-mixed", True)
    # an explicit precision is used as given, whatever the hardware
    assert resolve_precision("32-true", False, cpu) == ("32-true", False)
    assert resolve_precision("bf16-mixed", False, cpu) == ("bf16-mixed", False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert fast_path(torch.device("cuda")) == FastPath("bf16-mixed", False, "a CUDA GPU with bf16")


def _config(tmp_path: Path, precision: str, **kw) -> TrainConfig:
    values = {"data": "frey", "train_subset": 128, "val_subset": 64, "batch_size": 64,
              "epochs": 1, "out": str(tmp_path / precision), "progress": False,
              "accelerator": "cpu", "precision": precision, **kw}
    return TrainConfig(**values)


def test_auto_trains_with_the_chosen_precision_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: True)  # as on an AMX CPU
    trainer = Trainer(_config(tmp_path, "auto"))
    final = trainer.fit()
    assert (trainer.precision, trainer.channels_last) == ("bf16-mixed", True)
    assert trainer.fabric.strategy.precision.precision == "bf16-mixed"
    assert math.isfinite(final["val_neg_elbo"])
    out = capsys.readouterr().out
    assert ("precision auto: bf16-mixed + channels_last (this CPU computes bf16 in hardware"
            in out)


def test_auto_is_float32_without_a_faster_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: False)
    trainer = Trainer(_config(tmp_path, "auto"))
    trainer.fit()
    assert trainer.fabric.strategy.precision.precision == "32-true"
    assert "precision auto: 32-true (float32 is fastest on this cpu)" in capsys.readouterr().out


@pytest.mark.parametrize(("factor", "printed"), [(2.04, True), (1.01, False)])
def test_a_float32_run_says_when_auto_would_be_faster(tmp_path, monkeypatch, capsys, factor,
                                                      printed):
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: True)
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    timed = []

    def fake_speedup(model, images, path, device):
        timed.append((tuple(images.shape), path.label))
        return factor

    monkeypatch.setattr("sigmavae.training.speed_hints.measure_speedup", fake_speedup)
    Trainer(_config(tmp_path, "32-true", speed_hint=True)).fit()  # as sigmavae train asks
    assert timed == [((64, 1, 28, 20), "bf16-mixed + channels_last")]  # one training batch
    line = ("note: --precision auto (bf16-mixed + channels_last) ran a training step of this "
            "model 2.0x as fast as 32-true on this machine")
    out = capsys.readouterr().out
    assert (line in out) is printed
    assert ("timed on a copy at the start" in out) is printed
    # a second run of the same model and batch shape reuses the measurement
    Trainer(_config(tmp_path, "32-true", speed_hint=True, out=str(tmp_path / "again"))).fit()
    assert len(timed) == 1
    out = capsys.readouterr().out
    assert (line in out) is printed
    assert ("timed on an earlier start; remembered in "
            f"{tmp_path / 'cache' / 'speed_hints.json'}" in out) is printed


def test_no_speed_hint_without_a_faster_path_or_unless_asked(tmp_path, monkeypatch):
    """No timing (and nothing written to the cache) without a faster path, when switched off,
    and in library use by default (speed_hint null: only sigmavae train turns it on)."""
    calls = []
    monkeypatch.setattr("sigmavae.training.speed_hints.measure_speedup",
                        lambda *a: calls.append(a) or 3.0)
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: False)
    Trainer(_config(tmp_path, "32-true", speed_hint=True)).fit()
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: True)
    Trainer(_config(tmp_path, "32-true", speed_hint=False, out=str(tmp_path / "off"))).fit()
    assert TrainConfig().speed_hint is None
    Trainer(_config(tmp_path, "32-true", out=str(tmp_path / "library"))).fit()
    assert calls == [] and not (tmp_path / "cache").exists()
    assert TrainConfig().with_command_defaults().speed_hint is True


def test_measure_speedup_times_a_copy_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build_conv_vae((3, 16, 16), likelihoods.create("optimal_sigma"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    factor = measure_speedup(model, images, FastPath("bf16-mixed", True, "test"),
                             torch.device("cpu"), steps=2)
    assert math.isfinite(factor) and factor > 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
        assert value.is_contiguous()  # the copy, not the model, went channels_last
    assert all(p.grad is None for p in model.parameters())


def test_the_start_up_timing_leaves_the_run_unchanged(tmp_path, monkeypatch):
    """A run that times auto at its start (a real probe, on a copy) trains exactly as one that
    does not: the probe draws from its own generator and touches neither model nor RNG."""
    monkeypatch.setattr(fastpath, "native_cpu_bf16", lambda: True)
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    timed = Trainer(_config(tmp_path, "32-true", speed_hint=True,
                            out=str(tmp_path / "timed"))).fit()
    assert (tmp_path / "cache" / "speed_hints.json").is_file()
    plain = Trainer(_config(tmp_path, "32-true", speed_hint=False,
                            out=str(tmp_path / "plain"))).fit()
    for key in ("train_loss", "val_neg_elbo", "sigma", "step"):
        assert timed[key] == plain[key], key
