"""torch.compile: every head's training step traces into one graph, and a compiled step computes
what the eager step computes (loss, gradients, the optimal-sigma running average)."""

from __future__ import annotations

import copy

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.models import build_conv_vae, build_model
from sigmavae.objective import elbo_terms

SHAPE = (3, 28, 28)


#: Heads by name, and the per-channel optimal sigma (per_dim shared over the image's H and W).
NAMES = [*likelihoods.names(), "optimal_sigma_per_channel"]


def _model(name: str) -> torch.nn.Module:
    options = {"beta": 0.01} if name == "fixed_sigma" else {}
    if name == "optimal_sigma_per_channel":
        name, options = "optimal_sigma_per_dim", {"shared_dims": (-2, -1)}
    model = build_conv_vae(SHAPE, likelihoods.create(name, **options))
    model.head.validate_args = False  # what the trainer does: uint8 batches are valid as built
    return model


@pytest.mark.parametrize("name", NAMES)
def test_training_step_has_no_graph_breaks(name: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _model(name)
    batch = torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8)
    noise = torch.randn(4, model.latent_dim)
    explained = torch._dynamo.explain(
        lambda b, n: elbo_terms(model, b, beta=1.0, noise=n).loss)(batch, noise)
    reasons = [r.reason.splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize("name", ["optimal_sigma", "optimal_sigma_per_dim",
                                  "optimal_sigma_per_channel"])
def test_compiled_steps_match_eager(name: str) -> None:
    """Three Adam steps, eager vs compiled (aot_eager: Dynamo + AOTAutograd, no C++ build), give
    the same losses, parameters and running variance; a non-finite batch is skipped by both."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = _model(name)
    compiled_module = copy.deepcopy(eager)
    # the whole objective (network, head, running average) in one compiled graph
    compiled = torch.compile(lambda b, n: elbo_terms(compiled_module, b, beta=1.0, noise=n).loss,
                             backend="aot_eager", fullgraph=True)
    steps = (lambda b, n: elbo_terms(eager, b, beta=1.0, noise=n).loss, compiled)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (eager, compiled_module)]
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        batch = torch.randint(0, 256, (8, *SHAPE), dtype=torch.uint8, generator=gen)
        noise = torch.randn(8, eager.latent_dim, generator=gen)
        losses = []
        for step, opt in zip(steps, opts, strict=True):
            opt.zero_grad()
            loss = step(batch, noise)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-4)
    for p_eager, p_compiled in zip(eager.parameters(), compiled_module.parameters(), strict=True):
        torch.testing.assert_close(p_compiled, p_eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_module.head.running_var, eager.head.running_var)
    assert int(compiled_module.head.num_batches_tracked) == int(eager.head.num_batches_tracked) == 3

    # A non-finite variance leaves the running average and the count alone in both.
    before = compiled_module.head.running_var.clone()
    bad = torch.full_like(before, float("nan"))
    for module in (eager, compiled_module):
        module.head._update_running(bad)
    torch.testing.assert_close(compiled_module.head.running_var, before)
    assert int(compiled_module.head.num_batches_tracked) == 3


def test_hierarchical_training_step_has_no_graph_breaks() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model("hierarchical", SHAPE, likelihoods.create("optimal_sigma"), width=8,
                        latent_dim=2)
    model.head.validate_args = False
    batch = torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8)
    noise = torch.randn(4, model.latent_dim)
    explained = torch._dynamo.explain(
        lambda b, n: elbo_terms(model, b, beta=1.0, noise=n).loss)(batch, noise)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
