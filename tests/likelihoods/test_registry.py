"""The head registry: the shared Registry helper, names written once (in the decorator)."""

from __future__ import annotations

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.likelihoods import ImageLikelihood, LikelihoodHead
from sigmavae.likelihoods.registry import HEADS
from sigmavae.options import OptionError


def test_every_builtin_head_is_registered_under_its_own_name():
    assert "optimal_sigma" in likelihoods.names() and "categorical" in likelihoods.names()
    for name in likelihoods.names():
        head = likelihoods.create(name, **({"sigma": 0.1} if name == "fixed_sigma" else {}))
        assert head.name == name
        assert likelihoods.summary(name) == HEADS.summary(name) and "\n" not in head.name


def test_unknown_names_and_options_fail_with_one_line_naming_the_choices():
    with pytest.raises(OptionError, match="unknown likelihood 'nosuch'; choose one of: "
                                          "bernoulli, bitwise_categorical"):
        likelihoods.create("nosuch")
    with pytest.raises(OptionError, match="unknown likelihood 'nosuch'"):
        likelihoods.summary("nosuch")
    with pytest.raises(OptionError, match=r"likelihood 'student_t': unknown option nosuch; its "
                                          r"options are: df, min_df"):
        likelihoods.create("student_t", nosuch=1)


def test_a_head_registered_by_decorator_gets_its_name_and_works_everywhere():
    @likelihoods.register("toy_laplace", "Laplace per pixel, fixed scale (a test head)")
    class ToyLaplace(LikelihoodHead):
        data_kind = "unit"

        def __init__(self, scale: float = 0.1, validate_args: bool | None = None) -> None:
            super().__init__(validate_args=validate_args)
            self.scale = scale

        def params_per_channel(self) -> int:
            return 1

        def distribution(self, params, target):
            base = torch.distributions.Laplace(torch.sigmoid(params), self.scale,
                                               validate_args=False)
            return ImageLikelihood(base, "unit", validate_args=self.validate_args)

    try:
        assert ToyLaplace.name == "toy_laplace" and "toy_laplace" in likelihoods.names()
        head = likelihoods.create("toy_laplace", scale=0.2)
        assert isinstance(head, ToyLaplace) and head.scale == 0.2
        x = torch.rand(2, 1, 3, 3)
        dist = head(torch.zeros(2, 1, 3, 3), target=x)
        assert dist.log_prob(x).shape == (2,)
        assert dist.bin_log_mass(dist.intensities(x)).shape == x.shape  # from its cdf
        with pytest.raises(OptionError, match="option scale must be a number"):
            likelihoods.create("toy_laplace", scale="wide")
        with pytest.raises(ValueError, match="registered twice"):
            likelihoods.register("toy_laplace", "again")(lambda: None)
    finally:
        HEADS.unregister("toy_laplace")
    assert "toy_laplace" not in likelihoods.names()


def test_scalar_sigma_is_the_sigma_as_a_float_and_refuses_a_head_without_one():
    head = likelihoods.create("fixed_sigma", sigma=0.25)
    assert head.scalar_sigma() == pytest.approx(0.25) and isinstance(head.scalar_sigma(), float)
    with pytest.raises(ValueError, match="bernoulli: this head has no sigma"):
        likelihoods.create("bernoulli").scalar_sigma()


def test_every_option_of_every_head_says_what_it_means():
    """`sigmavae likelihoods NAME` reads each option's meaning from the head's docstring
    (`Args:`): a new option without one fails here."""
    from sigmavae.likelihoods.registry import INTERNAL_OPTIONS
    from sigmavae.options import describe_options

    undocumented = [f"{name}.{option.name}" for name in likelihoods.names()
                    for option in describe_options(HEADS.get(name), INTERNAL_OPTIONS)
                    if not option.text]
    assert undocumented == []


def test_describe_lists_a_heads_options_with_type_default_and_meaning():
    text = likelihoods.describe("optimal_sigma_per_dim")
    assert text.startswith("optimal_sigma_per_dim: Gaussian, analytic sigma per data dimension")
    assert "  shared_dims (a list of integers; default ())\n" in text
    assert "  decay (a number; default 0.9)\n      running-average decay" in text
    assert "``" not in text and ":data:" not in text  # docstring markup read as plain text
    # an option fixed by the registered name is not offered
    assert "shared_dims" not in likelihoods.describe("optimal_sigma")
    assert "scope" not in likelihoods.describe("optimal_sigma_per_dim").split("\n", 1)[1]
    assert likelihoods.describe("bernoulli").endswith("options: none")
    with pytest.raises(OptionError, match="unknown likelihood 'nosuch'; choose one of"):
        likelihoods.describe("nosuch")
