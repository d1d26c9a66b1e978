"""The worked examples under ``examples/`` run, with small settings, and mean what they print.

Each example is imported from its file (``examples/`` is not a package) and its ``main()`` run
for a few steps; the checks are properties that would fail if the example were wrong: padding
that changes the world model's loss, a bound that disagrees with its closed form, a sigma that
never moved, a Trainer that did not step.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.distributions import Normal

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run the examples' small networks on one thread: threads only add synchronisation to
    matrices this small (and a busy CI machine makes OpenMP's waits expensive)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as the module ``sigmavae_example_<name>``."""
    module_name = f"sigmavae_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


# -- 1. the world model --------------------------------------------------------------------------
def test_world_model_runs_and_reports_a_finite_bound_per_episode(capsys):
    wm = load("world_model")
    result = wm.main(steps=6, batch=4, width=8, log_every=100)
    out = capsys.readouterr().out
    assert result.test_bound.shape == (4,) and torch.isfinite(result.test_bound).all()
    assert ((result.test_lengths >= 5) & (result.test_lengths <= 12)).all()
    # The running sigmas start at 1 and moved to the training batches' masked RMSE.
    assert 0 < result.image_sigma < 0.5 and 0 < result.vector_sigma < 1
    for words in ("nats/episode", "sigma vector obs", "sigma image", "effective beta"):
        assert words in out


def _episodes_and_model(wm: ModuleType):
    torch.manual_seed(0)
    model = wm.WorldModel(width=8)
    vector_head, image_head = wm.make_heads()
    episodes = wm.make_episodes(3, min_len=3, max_len=6, pad=0.0,
                                generator=torch.Generator().manual_seed(1))
    assert not episodes.mask.all(), "the batch must have padded steps"
    return model, vector_head, image_head, episodes


def _bound_and_grads(wm, model, heads, episodes):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # the same posterior noise for every variant
    bound = wm.negative_elbo(model, *heads, episodes)
    bound.total.mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return bound, grads


def test_world_model_padded_steps_contribute_nothing():
    """Garbage or NaN in the padding, or more padded steps, change neither the per-episode
    bound nor a single gradient."""
    wm = load("world_model")
    model, vh, ih, ep = _episodes_and_model(wm)
    heads = (vh, ih)
    base, base_grads = _bound_and_grads(wm, model, heads, ep)
    assert torch.isfinite(base.total).all()

    pad = ~ep.mask
    garbage = wm.Episodes(
        obs=torch.where(pad[..., None], torch.full_like(ep.obs, float("nan")), ep.obs),
        frames=torch.where(pad[..., None, None, None], torch.rand_like(ep.frames) * 7 - 3,
                           ep.frames),
        actions=torch.where(pad[..., None], torch.randn_like(ep.actions) * 5, ep.actions),
        mask=ep.mask)
    b = ep.mask.shape[0]
    extra = 4  # four more padded steps, holding garbage
    longer = wm.Episodes(
        obs=torch.cat([ep.obs, torch.randn(b, extra, wm.OBS_DIM) * 9], 1),
        frames=torch.cat([ep.frames, torch.rand(b, extra, 1, wm.SIZE, wm.SIZE)], 1),
        actions=torch.cat([ep.actions, torch.randn(b, extra, wm.ACTION_DIM)], 1),
        mask=torch.cat([ep.mask, torch.zeros(b, extra, dtype=torch.bool)], 1))
    for variant in (garbage, longer):
        bound, grads = _bound_and_grads(wm, model, heads, variant)
        for part in ("vector", "image", "kl"):
            torch.testing.assert_close(getattr(bound, part), getattr(base, part))
        for g, g0 in zip(grads, base_grads, strict=True):
            assert torch.isfinite(g).all()
            torch.testing.assert_close(g, g0)

    # Not vacuous: the model does produce a KL and predictions at the padded steps.
    torch.manual_seed(123)
    with torch.no_grad():
        rollout = model(longer)
    assert float(rollout.kl[~longer.mask].abs().sum()) > 0


def test_world_model_bound_is_the_masked_gaussian_density():
    """The per-episode bound against an independent closed form: Normal densities with the
    heads' sigmas (the masked RMSEs), summed over the real steps, plus the masked KL."""
    wm = load("world_model")
    model, vh, ih, ep = _episodes_and_model(wm)
    torch.manual_seed(7)
    bound = wm.negative_elbo(model, vh, ih, ep)
    torch.manual_seed(7)
    out = model(ep)
    steps = ep.mask
    vec_mean, img_mean = out.vector, torch.sigmoid(out.image)
    v_err = (vec_mean - ep.obs)[steps]
    i_err = (img_mean - ep.frames)[steps]
    v_sigma, i_sigma = v_err.pow(2).mean().sqrt(), i_err.pow(2).mean().sqrt()
    v_nll = -(Normal(vec_mean, v_sigma).log_prob(ep.obs) * steps[..., None]).flatten(1).sum(1)
    i_nll = -(Normal(img_mean, i_sigma).log_prob(ep.frames)
              * steps[..., None, None, None]).flatten(1).sum(1)
    kl = (out.kl * steps).sum(1)
    torch.testing.assert_close(bound.vector.detach(), v_nll.detach(), rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(bound.image.detach(), i_nll.detach(), rtol=1e-4, atol=1e-1)
    torch.testing.assert_close(bound.kl.detach(), kl.detach())


# -- 2. the [-1, 1] autoencoder ------------------------------------------------------------------
def test_minus_one_one_autoencoder(capsys):
    ae = load("minus_one_one_autoencoder")
    result = ae.main(steps=40, batch=32, width=16, log_every=100)
    out = capsys.readouterr().out
    assert result.data_min < -0.5 and result.data_max > 0.5  # the data really are in [-1, 1]
    assert math.isfinite(result.bound_signed) and math.isfinite(result.bits_per_dim)
    dims = 28 * 20
    assert result.bound_unit == pytest.approx(result.bound_signed - dims * math.log(2))
    # Bins of width 2/255 much narrower than sigma: the discretised 8-bit bound is the density
    # on the [0, 1] scale plus D log 255 (no data in the open edge bins of Frey).
    approx_bits = (result.bound_unit + dims * math.log(255)) / (dims * math.log(2))
    assert result.bits_per_dim == pytest.approx(approx_bits, abs=0.05)
    assert result.sigma < result.first_sigma < 1.0  # calibrated as it trains
    assert "[-1, 1]" in out and "bits/dim" in out


# -- 3. an MSE VAE and its one-line conversion ---------------------------------------------------
def _closed_form_bound(mse: float, kl: float, sigma: float, dims: int = 560) -> float:
    """``-ELBO`` of a Gaussian decoder with a fixed sigma from the mean squared error."""
    return dims * (mse / (2 * sigma**2) + math.log(sigma) + 0.5 * math.log(2 * math.pi)) + kl


def test_convert_mse_vae(capsys):
    cv = load("convert_mse_vae")
    b = cv.main(steps=150, batch=100, log_every=1000)
    out = capsys.readouterr().out
    assert all(math.isfinite(v) for v in (b.implied, b.mse_refit, b.converted))
    assert b.implied_sigma == pytest.approx(math.sqrt(1.0 / 2))  # sqrt(beta / 2), beta = 1
    # What each printed bound is: the closed form from the test MSE and KL it reports.
    assert b.implied == pytest.approx(_closed_form_bound(b.mse_test_mse, b.mse_kl,
                                                         b.implied_sigma), rel=1e-4, abs=0.05)
    assert b.converted == pytest.approx(_closed_form_bound(b.converted_test_mse,
                                                           b.converted_kl, b.converted_sigma),
                                        rel=1e-4, abs=0.05)
    # Far tighter than what the MSE VAE's own sigma implies, and better than refitting it.
    assert b.converted < b.mse_refit < b.implied
    assert f"{b.implied:.1f}" in out and f"{b.converted:.1f}" in out


# -- 4. the LightningModule ----------------------------------------------------------------------
def test_lightning_module_trains_the_head_with_the_trainer(tmp_path, capsys):
    lm = load("lightning_module")
    result = lm.main(steps=20, batch=100, root=tmp_path)
    out = capsys.readouterr().out
    assert result.global_step == 20  # Lightning's own loop took the steps
    assert result.initial_sigma == pytest.approx(1.0)
    assert result.sigma < 0.9  # the head's log-sigma was in the optimiser
    assert math.isfinite(result.val_bound)
    assert "ran 20 steps" in out
