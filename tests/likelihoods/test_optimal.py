"""Optimal sigma: the analytic MSE is the NLL minimiser; running averages; eval mode; state."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy import optimize

from sigmavae.likelihoods import LikelihoodInputError, OptimalSigmaGaussian, create


def _batch(seed=0, b=8, shape=(3, 6, 5)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *shape, generator=g, dtype=torch.float64)
    mean = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, mean


def _head(name, **kw):
    return create(name, mean_activation="identity", min_log_sigma=None, **kw).double()


def test_shared_sigma_is_the_numerical_minimiser_of_the_nll():
    x, mean = _batch()
    head = _head("optimal_sigma")
    dist = head(mean, target=x)
    sigma_analytic = float(dist.sigma)
    assert math.isclose(sigma_analytic**2, float(((x - mean) ** 2).mean()), rel_tol=1e-12)

    def nll(log_sigma: float) -> float:
        fixed = create("fixed_sigma", sigma=math.exp(log_sigma), mean_activation="identity")
        return float(-fixed.double()(mean).log_prob(x).sum())

    res = optimize.minimize_scalar(nll, bounds=(-10, 2), method="bounded",
                                   options={"xatol": 1e-10})
    assert math.isclose(math.exp(res.x), sigma_analytic, rel_tol=1e-6)
    # and the head's NLL equals the NLL at that minimiser
    assert math.isclose(float(-dist.log_prob(x).sum()), res.fun, rel_tol=1e-9)


def test_per_image_sigma_minimises_each_image_nll():
    x, mean = _batch()
    dist = _head("optimal_sigma_per_image")(mean, target=x)
    per_image = ((x - mean) ** 2).flatten(1).mean(1).sqrt()
    torch.testing.assert_close(dist.sigma.flatten(), per_image)
    for i in range(3):
        def nll(ls, i=i):
            return float(-torch.distributions.Normal(mean[i], math.exp(ls)).log_prob(x[i]).sum())
        res = optimize.minimize_scalar(nll, bounds=(-10, 2), method="bounded",
                                       options={"xatol": 1e-10})
        assert math.isclose(math.exp(res.x), float(per_image[i]), rel_tol=1e-6)


def test_per_dim_sigma_is_the_batch_mse_of_each_dimension():
    x, mean = _batch(b=16)
    dist = _head("optimal_sigma_per_dim")(mean, target=x)
    torch.testing.assert_close(dist.sigma, ((x - mean) ** 2).mean(0).sqrt())
    assert dist.sigma.shape == x.shape[1:]


def test_gradient_through_sigma_vanishes_at_the_optimum():
    """Envelope theorem: d NLL/d mean with sigma = MSE(mean) equals d NLL/d mean at fixed sigma."""
    x, mean = _batch()
    mean = mean.clone().requires_grad_(True)
    head = _head("optimal_sigma")
    (g_opt,) = torch.autograd.grad(-head(mean, target=x).log_prob(x).sum(), mean)
    sigma = float(((x - mean.detach()) ** 2).mean().sqrt())
    fixed = create("fixed_sigma", sigma=sigma, mean_activation="identity").double()
    (g_fixed,) = torch.autograd.grad(-fixed(mean).log_prob(x).sum(), mean)
    torch.testing.assert_close(g_opt, g_fixed, rtol=1e-6, atol=1e-12)  # fixed head: f32 buffer


def test_running_average_and_eval_mode():
    head = _head("optimal_sigma", decay=0.5)
    variances = []
    for seed in range(3):
        x, mean = _batch(seed)
        head(mean, target=x)
        variances.append(float(((x - mean) ** 2).mean()))
    expected = variances[0]
    for v in variances[1:]:
        expected = 0.5 * expected + 0.5 * v
    assert math.isclose(float(head.running_var), expected, rel_tol=1e-12)
    assert int(head.num_batches_tracked) == 3
    head.eval()
    x, mean = _batch(10)
    dist = head(mean, target=x)
    assert math.isclose(float(dist.sigma), math.sqrt(expected), rel_tol=1e-12)
    # eval mode does not touch the running estimate and needs no target
    head(mean)
    assert int(head.num_batches_tracked) == 3


@pytest.mark.parametrize("name", ["optimal_sigma", "optimal_sigma_per_image",
                                  "optimal_sigma_per_dim"])
def test_a_batch_scored_again_inside_running_frozen_is_counted_once(name):
    head = _head(name, decay=0.5)
    x0, m0 = _batch(0)
    head(m0, target=x0)
    x1, m1 = _batch(1)
    once = head(m1, target=x1)
    expected = head.running_var.clone()
    with head.running_frozen() as same:
        assert same is head
        with head.running_frozen():  # nested: still frozen after the inner block
            pass
        again = head(m1, target=x1)
    # the same batch sigma as the step's own call, and the running estimate untouched
    torch.testing.assert_close(again.sigma, once.sigma, rtol=0, atol=0)
    torch.testing.assert_close(head.running_var, expected, rtol=0, atol=0)
    assert int(head.num_batches_tracked) == 2 and head.running_updates
    head(m1, target=x1)  # outside the block the batch counts again
    assert int(head.num_batches_tracked) == 3
    assert not torch.equal(head.running_var, expected)


def test_running_frozen_reaches_a_discretised_heads_optimal_scale():
    head = create("discretized_logistic", scale="optimal").double()
    x = torch.randint(0, 256, (4, 3, 5, 5)).double()
    params = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    head(params, target=x)
    tracked = int(head.optimal.num_batches_tracked)
    with head.running_frozen():
        head(params, target=x)
    assert int(head.optimal.num_batches_tracked) == tracked
    with create("learned_sigma").running_frozen():  # no running estimate: nothing to freeze
        pass


def test_the_criterion_freezes_its_running_sigma_too():
    from sigmavae.likelihoods import GaussianNLL

    crit = GaussianNLL(decay=0.5)
    x, mean = _batch(0)
    crit(mean, x)
    before = crit.optimal.running_var.clone()
    with crit.running_frozen():
        crit(mean + 0.3, x)
    torch.testing.assert_close(crit.optimal.running_var, before, rtol=0, atol=0)
    crit(mean + 0.3, x)
    assert not torch.equal(crit.optimal.running_var, before)
    with GaussianNLL("learned").running_frozen():
        pass


def test_train_sigma_running_uses_previous_estimate():
    head = _head("optimal_sigma", decay=0.0, train_sigma="running")
    x0, m0 = _batch(0)
    first = head(m0, target=x0)  # no running estimate yet: falls back to the batch
    assert math.isclose(float(first.sigma) ** 2, float(((x0 - m0) ** 2).mean()), rel_tol=1e-12)
    x1, m1 = _batch(1)
    second = head(m1, target=x1)
    assert math.isclose(float(second.sigma) ** 2, float(((x0 - m0) ** 2).mean()), rel_tol=1e-12)
    assert math.isclose(float(head.running_var), float(((x1 - m1) ** 2).mean()), rel_tol=1e-12)


def test_training_mode_needs_target_and_eval_needs_history():
    head = create("optimal_sigma")
    params = torch.zeros(2, 1, 3, 3)
    with pytest.raises(LikelihoodInputError, match="target=x"):
        head(params)
    head.eval()
    with pytest.raises(LikelihoodInputError, match="no running estimate"):
        head(params)


def test_per_image_is_flagged_as_not_a_valid_bound():
    assert create("optimal_sigma").valid_bound
    head = create("optimal_sigma_per_image")
    assert not head.valid_bound
    assert "not a bound" in head.invalid_bound_reason


def _residuals_with_rmse(rmse: float, shape=(64, 3, 8, 8), seed=0):
    """Data in [0, 1] and means whose batch RMSE is exactly ``rmse``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, x + noise * (rmse / noise.pow(2).mean().sqrt())


@pytest.mark.parametrize("rmse", [0.055, 0.0185, 0.01])
@pytest.mark.parametrize("name", ["optimal_sigma", "optimal_sigma_per_dim",
                                  "optimal_sigma_per_image"])
def test_default_sigma_is_the_exact_mle(name, rmse):
    """No soft clip by default: sigma is sqrt(MSE) (the old default clipped log sigma at -6, so
    sigma was 4.5% / 13% / 25% too large at 0.055 / 0.0185 / 0.01)."""
    x, mean = _residuals_with_rmse(rmse)
    head = create(name, mean_activation="identity").double()
    dist = head(mean, target=x)
    axes = {"optimal_sigma": None, "optimal_sigma_per_dim": 0,
            "optimal_sigma_per_image": (1, 2, 3)}[name]
    squared = (x - mean).pow(2)
    mse = squared.mean() if axes is None else squared.mean(axes, keepdim=name.endswith("image"))
    torch.testing.assert_close(dist.sigma.reshape(mse.shape), mse.sqrt(), rtol=1e-12, atol=0)
    if name == "optimal_sigma":
        assert math.isclose(float(dist.sigma), rmse, rel_tol=1e-12)
        assert math.isclose(float(dist.effective_beta), 2 * rmse**2, rel_tol=1e-12)
        assert math.isclose(float(head.sigma), rmse, rel_tol=1e-12)  # the running estimate


@pytest.mark.parametrize("name", ["optimal_sigma", "optimal_sigma_per_dim",
                                  "optimal_sigma_per_image"])
def test_default_gradient_through_sigma_vanishes_for_every_scope(name):
    """At the exact MLE d NLL / d sigma = 0, so the gradient with respect to the means is the
    same whether sigma is differentiated through or held fixed (the envelope theorem)."""
    x, mean = _residuals_with_rmse(0.02, shape=(8, 2, 4, 4))
    head = create(name, mean_activation="identity").double()
    p = mean.clone().requires_grad_(True)
    dist = head(p, target=x)
    (grad_through,) = torch.autograd.grad(-dist.log_prob(x).sum(), p)
    q = mean.clone().requires_grad_(True)
    fixed = torch.distributions.Normal(q, dist.sigma.detach().expand_as(q))
    (grad_fixed,) = torch.autograd.grad(-fixed.log_prob(x).sum(), q)
    torch.testing.assert_close(grad_through, grad_fixed, rtol=1e-9, atol=1e-9)
    # With the public code's soft clip the gradient through sigma does not vanish.
    clipped = create(name, mean_activation="identity", min_log_sigma="public_code").double()
    r = mean.clone().requires_grad_(True)
    (grad_clipped,) = torch.autograd.grad(-clipped(r, target=x).log_prob(x).sum(), r)
    assert not torch.allclose(grad_clipped, grad_fixed, rtol=1e-3)


def test_public_code_option_soft_clips_log_sigma_at_minus_six():
    from sigmavae.likelihoods import PUBLIC_CODE_MIN_LOG_SIGMA, softclip

    assert PUBLIC_CODE_MIN_LOG_SIGMA == -6.0
    x, mean = _residuals_with_rmse(0.01)
    head = create("optimal_sigma", mean_activation="identity", min_log_sigma="public_code")
    sigma = float(head.double()(mean, target=x).sigma)
    expected = float(softclip(torch.tensor(math.log(0.01), dtype=torch.float64), -6.0).exp())
    assert math.isclose(sigma, expected, rel_tol=1e-12)
    assert 1.2 < sigma / 0.01 < 1.3  # the clip's bias at sigma = 0.01: about 25%
    same = create("optimal_sigma", mean_activation="identity", min_log_sigma=-6)
    assert math.isclose(float(same.double()(mean, target=x).sigma), expected, rel_tol=1e-12)


def test_hard_floor_for_a_perfect_reconstruction():
    from sigmavae.likelihoods import QUANTIZATION_SIGMA

    assert math.isclose(QUANTIZATION_SIGMA, 1 / (255 * math.sqrt(12)), rel_tol=1e-12)
    head = create("optimal_sigma", mean_activation="identity")
    x = torch.rand(4, 1, 3, 3)
    dist = head(x.clone(), target=x)
    assert math.isclose(float(dist.sigma), QUANTIZATION_SIGMA, rel_tol=1e-6)
    assert torch.isfinite(dist.log_prob(x)).all()
    per_image = create("optimal_sigma_per_image", mean_activation="identity")
    mean = x.clone()
    mean[1:] += 0.05  # image 0 perfect, the others not
    d = per_image(mean, target=x)
    assert math.isclose(float(d.sigma[0]), QUANTIZATION_SIGMA, rel_tol=1e-6)
    assert torch.isfinite(d.log_prob(x)).all() and torch.isfinite(per_image.running_var)
    floored = create("optimal_sigma", mean_activation="identity", min_sigma=1e-4)
    assert math.isclose(float(floored(x.clone(), target=x).sigma), 1e-4, rel_tol=1e-6)


@pytest.mark.parametrize(("data_range", "floor"), [
    ("unit", 1 / (255 * math.sqrt(12))), ("signed", 2 / (255 * math.sqrt(12))), ("real", 1e-6)])
def test_min_sigma_defaults_to_the_rounding_noise_of_the_declared_data(data_range, floor):
    """``min_sigma=None`` (the default) resolves by ``data_range``; a number is kept as given,
    whatever the range (a config written with an explicit value loads unchanged)."""
    for head in (create("optimal_sigma", data_range=data_range),
                 create("optimal_sigma", data_range=data_range, min_sigma=None)):
        assert math.isclose(head.min_sigma, floor, rel_tol=1e-12)
        assert type(head.min_sigma) is float
        x = torch.zeros(2, 3, dtype=torch.float64) if data_range != "unit" else None
        if x is not None:  # a perfect reconstruction sits on the floor
            assert math.isclose(float(head.double()(x.clone(), target=x).sigma), floor,
                                rel_tol=1e-9)
    explicit = create("optimal_sigma", data_range=data_range, min_sigma=1 / (255 * math.sqrt(12)))
    assert explicit.min_sigma == 1 / (255 * math.sqrt(12))
    assert create("optimal_sigma", data_range=data_range, min_sigma=2).min_sigma == 2.0
    assert "min_sigma" not in "".join(create("optimal_sigma").state_dict())  # not checkpointed


def test_the_discretized_optimal_scale_keeps_its_floor():
    head = create("discretized_gaussian", scale="optimal")
    assert head.optimal.min_sigma == 1 / (255 * math.sqrt(12))


@pytest.mark.parametrize("name", ["optimal_sigma", "optimal_sigma_per_dim"])
def test_state_dict_roundtrip(name):
    head = create(name)
    x = torch.rand(4, 3, 5, 5)
    head(torch.randn(4, 3, 5, 5), target=x)
    buf = io.BytesIO()
    torch.save(head.state_dict(), buf)
    buf.seek(0)
    other = create(name)
    other.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(other.running_var, head.running_var)
    assert int(other.num_batches_tracked) == 1
    other.eval()
    p = torch.randn(2, 3, 5, 5)
    head.eval()
    torch.testing.assert_close(other(p).log_prob(x[:2]), head(p).log_prob(x[:2]))


def test_bad_options():
    with pytest.raises(ValueError, match="scope"):
        OptimalSigmaGaussian(scope="pixel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decay"):
        create("optimal_sigma", decay=1.0)
    with pytest.raises(ValueError, match="min_log_sigma must be a finite number, 'public_code'"):
        OptimalSigmaGaussian(min_log_sigma="paper")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="option min_log_sigma must be a number or 'public_code'"):
        create("optimal_sigma", min_log_sigma="paper")
    for bad in (0, -1e-3, float("inf")):
        with pytest.raises(ValueError, match="min_sigma must be a positive number"):
            create("optimal_sigma", min_sigma=bad)
    with pytest.raises(ValueError, match="option min_sigma must be a number or None, got 'small'"):
        create("optimal_sigma", min_sigma="small")


def test_gradcheck_optimal_heads():
    x = torch.rand(3, 2, 3, 3, dtype=torch.float64)
    for name in ("optimal_sigma", "optimal_sigma_per_image", "optimal_sigma_per_dim"):
        head = create(name).double()
        p = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda q, h=head: h(q, target=x).log_prob(x), (p,))


def test_effective_beta_is_two_sigma_squared():
    x, mean = _batch()
    head = _head("optimal_sigma")
    dist = head(mean, target=x)
    np.testing.assert_allclose(float(dist.effective_beta), 2 * float(dist.sigma) ** 2)
    np.testing.assert_allclose(float(head.effective_beta), 2 * float(head.sigma) ** 2)
