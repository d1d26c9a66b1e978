"""The Trainer with models it did not build: a user's own ``nn.Module`` (no subclass of our VAE)
that follows the model protocol of :mod:`sigmavae.objective`, on images, and a toy sequence model
on uint8 clips ``(N, T, C, H, W)``: trained, checkpointed, resumed, reloaded and evaluated."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn
from torch.distributions import Independent, Normal

from sigmavae import likelihoods
from sigmavae.data import load_dataset
from sigmavae.metrics.elbo import evaluate_elbo
from sigmavae.metrics.iwae import iwae_per_image
from sigmavae.objective import ModelOutput
from sigmavae.training import TrainConfig, Trainer, load_checkpoint, load_trained


class TinyVAE(nn.Module):
    """A user's model: linear encoder and decoder, Gaussian posterior, any head, any data
    shape; sequences ``(T, C, H, W)`` are decoded to per-frame parameters ``(B, T, P, H, W)``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int = 3,
                 likelihood: str = "optimal_sigma") -> None:
        super().__init__()
        self.head = likelihoods.create(likelihood)
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        *frames, c, h, w = self.data_shape
        self._param_shape = (*frames, self.head.param_channels(c), h, w)
        self.encoder = nn.Linear(math.prod(self.data_shape), 2 * latent_dim)
        self.decoder = nn.Linear(latent_dim, math.prod(self._param_shape))

    def posterior(self, x: torch.Tensor) -> Independent:
        mu, log_var = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return Independent(Normal(mu, (0.5 * log_var).exp()), 1)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        q = self.posterior(x)
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        noise = torch.randn_like(mu) if noise is None else noise.to(mu)
        z = mu + sigma * noise
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * sigma.log()).sum(1)
        prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        return ModelOutput(params=self.generate(z), kl=kl,
                           log_prior_ratio=prior.log_prob(z) - q.log_prob(z), z=z, posterior=q)

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        return self.decoder(noise).view(noise.shape[0], *self._param_shape)


def _config(tmp_path: Path, name: str, **kw: Any) -> TrainConfig:
    values = {"batch_size": 32, "epochs": 2, "seed": 1, "log_every_n_steps": 2,
              "out": str(tmp_path / name), "progress": False, "num_samples": 4, **kw}
    return TrainConfig(**values)


def _frey() -> tuple[torch.Tensor, torch.Tensor]:
    train, val = load_dataset("frey", "train"), load_dataset("frey", "val")
    return train.images[:128], val.images[:32]


def test_a_user_model_is_trained_evaluated_and_reloaded(tmp_path):
    train, val = _frey()
    torch.manual_seed(1)  # the config's seed: the trainer seeds before it builds a model
    model = TinyVAE((1, 28, 20))
    final = Trainer(_config(tmp_path, "run"), train, val, model=model).fit()
    out = tmp_path / "run"
    assert final["step"] == 8 and math.isfinite(final["val_neg_elbo"])
    for sub in ("samples/epoch_0002.png", "reconstructions/epoch_0002.png", "curves.png",
                "final.json", "steps.csv", "epochs.csv"):
        assert (out / sub).is_file(), sub
    with (out / "epochs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["val_neg_elbo"]) < float(rows[0]["val_neg_elbo"])  # it learns
    # reloaded into the user's class (the registries do not know it), then evaluated
    reloaded, _ = load_trained(out / "checkpoints" / "last.ckpt", model=TinyVAE)
    assert isinstance(reloaded, TinyVAE) and not reloaded.training
    elbo = evaluate_elbo(reloaded, val, seed=3)
    assert elbo.neg_elbo == pytest.approx(json.loads((out / "final.json").read_text())
                                          ["val_report"]["neg_elbo"], rel=0.05)
    bounds = iwae_per_image(reloaded, val[:8], samples=16, ks=[1, 16], seed=0)
    assert all(torch.isfinite(b).all() and b.shape == (8,) for b in bounds.values())
    # a factory (called with the data shape after seeding) trains the same model
    again = Trainer(_config(tmp_path, "factory"), train, val, model=TinyVAE).fit()
    assert again["val_neg_elbo"] == final["val_neg_elbo"]


def test_a_model_for_other_data_is_refused(tmp_path):
    train, val = _frey()
    with pytest.raises(ValueError, match=r"data_shape is \(1, 28, 28\), the data's examples are "
                                         r"\(1, 28, 20\)"):
        Trainer(_config(tmp_path, "run"), train, val, model=TinyVAE((1, 28, 28))).fit()


def _clips(n: int, seed: int) -> torch.Tensor:
    """uint8 clips ``(n, T=3, C=1, H=6, W=5)``: a bright bar moving one pixel a frame."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 40, (n, 3, 1, 6, 5), generator=g, dtype=torch.uint8)
    start = torch.randint(0, 3, (n,), generator=g)
    for i in range(n):
        for t in range(3):
            clips[i, t, 0, :, int(start[i]) + t] = 220
    return clips


def test_sequences_pass_through_the_same_trainer(tmp_path):
    train, val = _clips(96, 0), _clips(16, 1)
    config = _config(tmp_path, "seq", epochs=2)
    final = Trainer(config, train, val, model=TinyVAE).fit()  # a factory of the data shape
    out = Path(config.out)
    assert final["step"] == 6 and math.isfinite(final["val_neg_elbo"])
    assert final["val_report"]["data_dims"] == 3 * 6 * 5  # bits/dim over every frame
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["data_shape"] == [3, 1, 6, 5]
    # grids: one sequence a row, its frames side by side (padding 1 pixel)
    with Image.open(out / "samples" / "epoch_0002.png") as grid:
        assert grid.size == (3 * (5 + 1) + 1, 4 * (6 + 1) + 1)  # 4 samples of 3 frames
    with Image.open(out / "reconstructions" / "epoch_0002.png") as grid:
        assert grid.size == (3 * (5 + 1) + 1, 2 * 8 * (6 + 1) + 1)  # 8 clips + reconstructions
    # exact resume works for sequences too
    Trainer(_config(tmp_path, "split", epochs=1), train, val, model=TinyVAE).fit()
    resumed = Trainer(_config(tmp_path, "split", epochs=2), train, val, model=TinyVAE).fit(
        resume="auto")
    for key in ("train_loss", "val_nll", "val_kl", "sigma", "step"):
        assert resumed[key] == pytest.approx(final[key], rel=1e-6, abs=1e-6), key
