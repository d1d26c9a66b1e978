"""Fixtures for the evaluation-suite tests: an analytic linear-Gaussian VAE and a tiny trained
Frey Face model (trained once per session, in a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from sigmavae.likelihoods import FixedSigmaGaussian
from sigmavae.models import VAE
from sigmavae.training import TrainConfig, Trainer, load_trained


@dataclass
class LinearGaussian:
    """``z ~ N(0, I_L)``, ``x = W z + b + sigma * eps``: ``p(x) = N(b, W W^T + sigma^2 I)``.

    The VAE has the exact decoder and a deliberately imperfect linear encoder (shrunk mean,
    inflated diagonal variance), so ``KL(q(z|x) || p(z|x))`` is known and clearly positive.
    """

    model: VAE
    data: torch.Tensor  # (N, 1, D) floats
    W: torch.Tensor  # float64 (D, L)
    b: torch.Tensor  # (D,)
    sigma: float

    def log_px(self) -> torch.Tensor:
        """Analytic ``log p(x)`` of every data point, float64."""
        d = self.W.shape[0]
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(d, dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov)
        return dist.log_prob(self.data.double().flatten(1))

    def kl_to_true_posterior(self) -> torch.Tensor:
        """Analytic ``KL(q(z|x) || p(z|x))`` per data point (the ELBO gap), float64."""
        x = self.data.double().flatten(1)
        latent = self.W.shape[1]
        prec = torch.eye(latent, dtype=torch.float64) + self.W.T @ self.W / self.sigma**2
        post_cov = torch.linalg.inv(prec)
        post_mu = (x - self.b) @ self.W @ post_cov / self.sigma**2  # (N, L)
        with torch.no_grad():
            q = self.model.posterior(self.data)
        q_mu, q_var = q.base_dist.loc.double(), q.base_dist.scale.double() ** 2
        diff = post_mu - q_mu
        return 0.5 * ((prec.diagonal() * q_var).sum(1) + (diff @ prec * diff).sum(1)
                      - latent - q_var.log().sum(1) - torch.logdet(prec))


@pytest.fixture(scope="session")
def linear_gaussian() -> LinearGaussian:
    g = torch.Generator().manual_seed(0)
    d, latent, sigma = 6, 2, 0.05
    W = torch.randn(d, latent, generator=g, dtype=torch.float64) * 0.08
    b = torch.full((d,), 0.5, dtype=torch.float64)
    n = 200
    z = torch.randn(n, latent, generator=g, dtype=torch.float64)
    x = z @ W.T + b + sigma * torch.randn(n, d, generator=g, dtype=torch.float64)

    # the true posterior: cov = (I + W^T W / s^2)^-1, mean = cov W^T (x - b) / s^2
    post_cov = torch.linalg.inv(torch.eye(latent, dtype=torch.float64) + W.T @ W / sigma**2)
    gain = post_cov @ W.T / sigma**2  # (L, D)
    enc = nn.Linear(d, 2 * latent).double()
    dec = nn.Linear(latent, d).double()
    with torch.no_grad():
        enc.weight.zero_()
        enc.weight[:latent] = 0.8 * gain  # shrunk posterior mean
        enc.bias[:latent] = -(0.8 * gain @ b)
        enc.bias[latent:] = torch.log(1.5 * post_cov.diagonal())  # inflated diagonal variance
        dec.weight.copy_(W)
        dec.bias.copy_(b)
    encoder = nn.Sequential(nn.Flatten(), enc.float())
    decoder = nn.Sequential(dec.float(), nn.Unflatten(1, (1, d)))
    head = FixedSigmaGaussian(sigma=sigma, mean_activation="identity", validate_args=False)
    model = VAE(encoder, decoder, head, latent, (1, d)).eval()
    return LinearGaussian(model=model, data=x.float().view(n, 1, d), W=W, b=b, sigma=sigma)


@pytest.fixture(scope="session")
def frey_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny optimal-sigma conv VAE trained for 2 epochs on 256 Frey faces: its run folder."""
    out = tmp_path_factory.mktemp("frey-run")
    cfg = TrainConfig(data="frey", train_subset=256, val_subset=32, epochs=2, batch_size=64,
                      out=str(out), progress=False, accelerator="cpu", seed=1, num_samples=4)
    Trainer(cfg).fit()
    return out


@pytest.fixture(scope="session")
def frey_model(frey_run: Path) -> VAE:
    model, _ = load_trained(frey_run / "checkpoints" / "last.ckpt")
    return model


@pytest.fixture(scope="session")
def frey_test_images() -> torch.Tensor:
    from sigmavae.data import load_dataset

    return load_dataset("frey", "test").images[:24]



