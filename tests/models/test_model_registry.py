"""The model registry as `sigmavae models [NAME]` shows it: every option of every model says
what it means, with its type and default."""

from __future__ import annotations

import pytest

from sigmavae.models import MODELS, describe_model, model_names
from sigmavae.models.registry import INTERNAL_PARAMETERS
from sigmavae.options import OptionError, describe_options


def test_every_option_of_every_model_says_what_it_means():
    undocumented = [f"{name}.{option.name}" for name in model_names()
                    for option in describe_options(MODELS.get(name), INTERNAL_PARAMETERS)
                    if not option.text]
    assert undocumented == []


def test_describe_model_reads_a_builders_options_and_the_class_it_builds():
    text = describe_model("svg")
    assert text.startswith("svg: SVG-LP video prediction")
    assert "  z_dim (an integer; default 64)\n      size of z_t, per predicted frame." in text
    # the builder passes skip_from on to SVGLP, whose docstring describes it
    assert "  skip_from ('last_context' or 'code' or 'previous'; default 'last_context')" in text
    assert "head" not in text.split("\n", 1)[1].split()  # the caller's, not an option
    assert "  channels (a list of 3 values; default (32, 64, 128))" in describe_model("conv")
    with pytest.raises(OptionError, match="unknown model 'nosuch'; choose one of: conv,"):
        describe_model("nosuch")
