"""The test -ELBO with a decoder sigma fitted on held-out data: against the same network with a
fixed-sigma head set to that sigma, and the fitted sigma against its neighbours."""

from __future__ import annotations

import copy
import json

import pytest

from sigmavae.cli import main
from sigmavae.likelihoods.gaussian import FixedSigmaGaussian
from sigmavae.metrics import EvalContext, MetricUnavailable, evaluate_elbo
from sigmavae.metrics import refit_sigma as refit_metric


def _with_sigma(model, sigma: float):
    other = copy.deepcopy(model)
    other.head = FixedSigmaGaussian(sigma=sigma, validate_args=False)
    return other


@pytest.fixture(scope="module")
def held_out():
    from sigmavae.data import load_dataset

    return load_dataset("frey", "val").images[:40]


def test_the_rescored_bound_is_the_network_with_a_fixed_sigma_there(frey_model,
                                                                    frey_test_images,
                                                                    held_out):
    ctx = EvalContext(frey_model, frey_test_images, batch_size=7, seed=3,
                      held_out=lambda: held_out)
    result = refit_metric.run(ctx)
    sigma = result["sigma_refit"]
    reference = evaluate_elbo(_with_sigma(frey_model, sigma), frey_test_images, batch_size=7,
                              seed=3)
    assert result["neg_elbo_nats_per_image"] == pytest.approx(reference.neg_elbo, rel=1e-6)
    trained = evaluate_elbo(frey_model, frey_test_images, batch_size=7, seed=3)
    assert result["trained_neg_elbo_nats_per_image"] == pytest.approx(trained.neg_elbo,
                                                                      rel=1e-6)
    assert result["sigma_trained"] == pytest.approx(float(frey_model.head.sigma), rel=1e-6)
    assert result["change_nats_per_image"] == pytest.approx(reference.neg_elbo
                                                            - trained.neg_elbo, rel=1e-5)


def test_the_fitted_sigma_maximises_the_held_out_likelihood(frey_model, frey_test_images,
                                                            held_out):
    ctx = EvalContext(frey_model, frey_test_images, seed=3, held_out=lambda: held_out)
    sigma = refit_metric.run(ctx)["sigma_refit"]
    bounds = [evaluate_elbo(_with_sigma(frey_model, s), held_out, seed=3).neg_elbo
              for s in (sigma / 1.02, sigma, sigma * 1.02)]
    assert bounds[1] < bounds[0] and bounds[1] < bounds[2]


def test_heads_without_one_shared_sigma_and_missing_held_out_data_say_why(frey_model,
                                                                          frey_test_images):
    with pytest.raises(MetricUnavailable, match="held-out"):
        refit_metric.run(EvalContext(frey_model, frey_test_images))
    from sigmavae.likelihoods import create

    for name, why in (("bernoulli", "sigma is not one value"),
                      ("categorical", "not a density on x/255")):
        other = copy.deepcopy(frey_model)
        other.head = create(name)
        with pytest.raises(MetricUnavailable, match=why):
            refit_metric.squared_errors(other, frey_test_images, 8, 0, None)


def test_eval_cli_fits_on_the_runs_validation_split(frey_run, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(frey_run / "checkpoints" / "last.ckpt"), "--metrics",
                 "elbo,refit_sigma", "--limit", "16", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["metrics"]["refit_sigma"]
    assert result["available"] and result["held_out_examples"] == 32  # the run's val_subset
    assert result["sigma_refit"] > 0
    assert "sigma fitted on held-out data" in out.with_suffix(".md").read_text()
