"""Mixed precision: bf16/fp16 autocast with the likelihood in float32, fp16 loss scaling, resume.

bf16 runs on the CPU and, where a GPU is present, on CUDA. fp16 training ("16-mixed", with its
loss scaler) is CUDA-only: Fabric turns 16-mixed into bf16-mixed on a CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sigmavae import likelihoods, objective
from sigmavae.models import build_conv_vae
from sigmavae.training import TrainConfig, Trainer, load_checkpoint, load_trained

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
#: (device, Fabric precision) pairs that train as named.
PRECISIONS = [("cpu", "bf16-mixed"), pytest.param("cuda", "bf16-mixed", marks=NEEDS_CUDA),
              pytest.param("cuda", "16-mixed", marks=NEEDS_CUDA)]


def _config(tmp_path: Path, name: str, device: str, precision: str, **kw) -> TrainConfig:
    values = {"data": "frey", "train_subset": 320, "val_subset": 64, "batch_size": 64,
              "out": str(tmp_path / name), "progress": False, "seed": 5,
              "accelerator": device, "precision": precision, **kw}
    return TrainConfig(**values)


def _start_loss_scale_at(monkeypatch: pytest.MonkeyPatch, scale: float) -> None:
    """Make the loss scaler that Fabric creates for 16-mixed start at ``scale``."""
    original = torch.amp.GradScaler.__init__

    def with_scale(self, *args, **kwargs):
        kwargs["init_scale"] = scale
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "__init__", with_scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_likelihood_is_float32_under_autocast(device, dtype):
    model = build_conv_vae((3, 16, 16), likelihoods.create("optimal_sigma")).to(device)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, device=device)
    with torch.autocast(device, dtype=dtype):
        terms = objective.elbo_terms(model, images)  # the trainer's loss
        decoder_out = model.decoder(terms.z)
    assert decoder_out.dtype == dtype  # the network did run in low precision
    assert terms.likelihood.mean.dtype == torch.float32
    for value in (terms.nll, terms.kl, terms.loss):
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
    # The float32 likelihood of the autocast decoder output equals the head applied by hand.
    head_nll = -model.head(decoder_out.float(), target=images.float() / 255).log_prob(
        images.float() / 255)
    torch.testing.assert_close(terms.nll, head_nll, rtol=1e-5, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(("device", "precision"), PRECISIONS)
def test_mixed_precision_trains_and_resumes_exactly(tmp_path, device, precision):
    # bf16 is emulated (slow) on CPUs without bf16 instructions: keep the CPU run small.
    small = {"train_subset": 96, "val_subset": 32, "batch_size": 32} if device == "cpu" else {}
    straight = Trainer(_config(tmp_path, "straight", device, precision, epochs=2, **small)).fit()
    Trainer(_config(tmp_path, "split", device, precision, epochs=1, **small)).fit()
    resumed = Trainer(_config(tmp_path, "split", device, precision, epochs=2, **small)).fit(
        resume="auto")
    assert math.isfinite(straight["val_neg_elbo"])
    for key in ("train_loss", "val_nll", "val_kl", "sigma", "step", "skipped_steps"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6, abs=1e-6), key
    ckpt = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")
    if precision == "16-mixed":  # the loss scale is part of the state to resume
        assert ckpt["precision"]["scale"] == load_checkpoint(
            tmp_path / "straight" / "checkpoints" / "last.ckpt")["precision"]["scale"]
    model, _ = load_trained(tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float32 master weights


@NEEDS_CUDA
def test_fp16_overflow_lowers_the_loss_scale_and_training_goes_on(tmp_path, monkeypatch):
    # Start from a loss scale so large that the first fp16 gradients overflow: the trainer must
    # let the scaler back off (as its own step would) instead of skipping until it gives up.
    init = 2.0**22
    _start_loss_scale_at(monkeypatch, init)
    cfg = _config(tmp_path, "fp16", "cuda", "16-mixed", epochs=6, max_nonfinite_steps=30)
    final = Trainer(cfg).fit()
    scale = load_checkpoint(tmp_path / "fp16" / "checkpoints" / "last.ckpt")["precision"]["scale"]
    assert final["skipped_steps"] >= 1  # the overflow happened ...
    assert scale == init / 2 ** final["skipped_steps"]  # ... and each one halved the scale
    assert final["step"] - final["skipped_steps"] >= 5  # then real updates followed
    assert math.isfinite(final["train_loss"]) and math.isfinite(final["val_neg_elbo"])


@NEEDS_CUDA
def test_gradient_clipping_sees_unscaled_fp16_gradients(tmp_path, monkeypatch):
    # With 16-mixed the loss (and so every gradient) is multiplied by the loss scale; the norm
    # the trainer clips must be the true one: record what clip_grad_norm_ returns.
    norms: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(*args, **kwargs):
        norm = original(*args, **kwargs)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    # A loss scale of 64 rather than 65536, so that the first fp16 steps do not overflow (the
    # scaler would first halve it a few times) and are comparable with the float32 run.
    _start_loss_scale_at(monkeypatch, 64.0)
    Trainer(_config(tmp_path, "a", "cuda", "16-mixed", epochs=2, grad_clip=1e9)).fit()
    scaled, norms[:] = list(norms), []
    Trainer(_config(tmp_path, "b", "cuda", "32-true", epochs=2, grad_clip=1e9)).fit()
    pairs = [(a, b) for a, b in zip(scaled, norms, strict=True) if math.isfinite(a)]
    assert pairs, scaled
    # The same gradient up to fp16 rounding (or an Adam step apart, if an fp16 step before it
    # overflowed); a norm of the scaled gradients would be 64 (16 after two overflows) times
    # larger.
    fp16_norm, fp32_norm = pairs[0]
    assert 0.5 < fp16_norm / fp32_norm < 2.0, (fp16_norm, fp32_norm)
