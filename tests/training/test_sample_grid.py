"""Sample grids of prior samples: decoder means, or one draw from p(x|z) at each."""

from __future__ import annotations

import torch
from torchvision.utils import make_grid

from sigmavae import likelihoods
from sigmavae.models.conv import build_conv_vae
from sigmavae.training.visuals import sample_grid


def _model(head: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_conv_vae((1, 8, 8), likelihoods.create(head), latent_dim=2,
                          channels=(4, 4, 4)).eval()


def test_a_grid_of_draws_shows_the_heads_samples_at_the_grids_prior_latents():
    """The draws are the categorical head's own samples (intensities / 255) at the latents of
    the means grid, their noise seeded with the grid's seed; the global stream is untouched."""
    model = _model("categorical")
    before = torch.get_rng_state()
    draws = sample_grid(model, n=4, seed=3, draw=True)
    assert torch.equal(torch.get_rng_state(), before)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        params = model.generate(z)
        torch.manual_seed(3)
        expected = model.head(params).sample().float() / 255
    torch.testing.assert_close(draws, make_grid(expected, nrow=2, padding=1), rtol=0,
                               atol=1e-7)
    means = sample_grid(model, n=4, seed=3)
    with torch.no_grad():
        mean_images = model.head.predict_mean(params).float() / 255
    torch.testing.assert_close(means, make_grid(mean_images, nrow=2, padding=1), rtol=0,
                               atol=1e-6)
    assert not torch.equal(draws, means)
    torch.testing.assert_close(draws, sample_grid(model, n=4, seed=3, draw=True))  # seeded
