"""A head with a parameter of its own (learned_sigma, a discretised head with a learned scale,
the criterion GaussianNLL("learned")) warns once when training leaves that parameter out of the
optimiser, and is silent otherwise: head in the optimiser (by hand, or in our trainer), eval
mode, no_grad, a frozen head; the check survives deep copies, pickling and torch.compile."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.distributions import Distribution

from sigmavae.likelihoods import GaussianNLL, SigmaNotOptimisedWarning, create
from sigmavae.likelihoods import _optimiser_check as check_module

STEPS = 4  # the check's horizon in these tests (the default is 50)
HEADS = [("learned_sigma", {}, "log-sigma"),
         ("discretized_gaussian", {"scale": "learned"}, "log-scale")]


def _head(name: str, options: dict) -> nn.Module:
    head = create(name, **options)
    head.optimiser_check.steps = STEPS
    return head


def _train(head: nn.Module, with_head: bool, steps: int = 2 * STEPS,
           optimiser: Callable = torch.optim.Adam,
           step: Callable | None = None) -> list[warnings.WarningMessage]:
    """``steps`` training steps of a linear decoder and ``head``; the optimiser holds the decoder
    and, if ``with_head``, the head. Returns the SigmaNotOptimisedWarnings raised."""
    torch.manual_seed(0)
    decoder = nn.Linear(3, 2 * 4)
    params = list(decoder.parameters()) + (list(head.parameters()) if with_head else [])
    opt = optimiser(params, lr=1e-2)

    def loss_fn(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -head(decoder(z).view(-1, 2, 4), target=x).log_prob(x).mean()

    loss_step = step(loss_fn) if step is not None else loss_fn
    discrete = head.data_kind == "intensity"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            z = torch.randn(5, 3)
            x = torch.randint(0, 256, (5, 2, 4)) if discrete else torch.rand(5, 2, 4)
            opt.zero_grad()
            loss_step(z, x).backward()
            opt.step()
    return [w for w in caught if issubclass(w.category, SigmaNotOptimisedWarning)]


@pytest.mark.parametrize(("name", "options", "what"), HEADS, ids=[h[0] for h in HEADS])
def test_warns_once_when_the_head_is_left_out_of_the_optimiser(name, options, what):
    head = _head(name, options)
    before = head.sigma.clone()
    caught = _train(head, with_head=False)
    assert len(caught) == 1  # once, though training goes on past the check
    message = str(caught[0].message)
    assert "\n" not in message
    assert message.startswith(f"{name}: its {what} received gradients for {STEPS} steps but "
                              "never changed: add the head's parameters to your optimiser")
    assert "Adam(list(model.parameters()) + list(head.parameters()))" in message
    torch.testing.assert_close(head.sigma, before)  # it really was never stepped


@pytest.mark.parametrize(("name", "options", "what"), HEADS, ids=[h[0] for h in HEADS])
@pytest.mark.parametrize("optimiser", [torch.optim.Adam, torch.optim.SGD], ids=["adam", "sgd"])
def test_silent_when_the_head_is_in_the_optimiser(name, options, what, optimiser):
    head = _head(name, options)
    before = head.sigma.clone()
    assert _train(head, with_head=True, optimiser=optimiser) == []
    assert not torch.equal(head.sigma, before)
    assert head.optimiser_check.finished  # checked once, then the hook returns at once


def test_silent_in_eval_mode_under_no_grad_and_when_frozen():
    head = _head("learned_sigma", {})
    head.eval()  # gradients may still flow (e.g. a saliency map): not training, not counted
    assert _train(head, with_head=False) == []
    assert head.optimiser_check.arrivals == 0
    head.train()
    with torch.no_grad():
        for _ in range(2 * STEPS):
            x = torch.rand(5, 2)
            head(torch.randn(5, 2), target=x).log_prob(x)
    assert head.optimiser_check.arrivals == 0
    frozen = _head("learned_sigma", {}).requires_grad_(False)
    assert _train(frozen, with_head=False) == []


def test_the_learned_criterion_warns_too_naming_itself():
    """GaussianNLL("learned") is a criterion with a parameter, easy to leave out."""
    for with_crit, expected in ((False, 1), (True, 0)):
        crit = GaussianNLL("learned")
        crit.optimiser_check.steps = STEPS
        decoder = nn.Linear(3, 4)
        params = list(decoder.parameters()) + (list(crit.parameters()) if with_crit else [])
        opt = torch.optim.Adam(params, lr=1e-2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2 * STEPS):
                opt.zero_grad()
                crit(decoder(torch.randn(5, 3)), torch.randn(5, 4))[0].mean().backward()
                opt.step()
        ours = [str(w.message) for w in caught if w.category is SigmaNotOptimisedWarning]
        assert len(ours) == expected
        if ours:
            assert ours[0].startswith("GaussianNLL: its log-sigma received gradients")
            assert "list(criterion.parameters())" in ours[0]
    assert not hasattr(GaussianNLL(), "optimiser_check")  # optimal sigma: nothing to step


def test_gradient_accumulation_within_the_horizon_is_not_reported():
    """Two backward passes per optimiser step: the value changes before the check compares."""
    head = _head("learned_sigma", {})
    decoder = nn.Linear(3, 4)
    opt = torch.optim.Adam(list(decoder.parameters()) + list(head.parameters()), lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SigmaNotOptimisedWarning)
        for i in range(2 * STEPS):
            x = torch.rand(5, 4)
            (-head(decoder(torch.randn(5, 3)), target=x).log_prob(x).mean()).backward()
            if i % 2 == 1:
                opt.step()
                opt.zero_grad()
    assert head.optimiser_check.finished


def test_the_check_survives_deep_copies_and_pickling():
    original = _head("learned_sigma", {})
    # our own bytes, in memory (multiprocessing and DDP spawn pickle modules like this)
    for head in (copy.deepcopy(original), pickle.loads(pickle.dumps(original))):
        assert len(_train(head, with_head=False)) == 1
    assert original.optimiser_check.arrivals == 0  # the copies' gradients are their own
    assert set(original.state_dict()) == {"raw_log_sigma"}  # no new state in checkpoints


def test_a_parameter_replaced_by_assign_loading_is_watched_again():
    head = _head("learned_sigma", {})
    head.load_state_dict({"raw_log_sigma": torch.tensor(-1.0)}, assign=True)
    assert len(_train(head, with_head=False)) == 1


def test_the_check_works_under_torch_compile():
    torch._dynamo.reset()
    # Dynamo's first use switches torch.distributions' validation off for the whole process
    # (torch._dynamo.eval_frame.TorchPatcher); keep it on for the tests that run after this one.
    validating = Distribution._validate_args
    try:
        head = _head("learned_sigma", {})
        caught = _train(head, with_head=False,
                        step=lambda f: torch.compile(f, backend="aot_eager", fullgraph=True))
        assert len(caught) == 1
        head = _head("learned_sigma", {})
        compiled = _train(head, with_head=True,
                          step=lambda f: torch.compile(f, backend="aot_eager", fullgraph=True))
        assert compiled == [] and head.optimiser_check.finished
    finally:
        Distribution.set_default_validate_args(validating)


@pytest.mark.slow
def test_our_trainer_is_never_told(tmp_path, monkeypatch):
    """The trainer optimises model.parameters(), the head among them: silent even with the
    check's horizon inside the run."""
    from sigmavae.training import TrainConfig, Trainer

    monkeypatch.setattr(check_module, "DEFAULT_CHECK_STEPS", 2)
    config = TrainConfig(data="frey", likelihood="learned_sigma", train_subset=64,
                         val_subset=16, batch_size=32, epochs=1, latent_dim=2, seed=0,
                         model_options={"channels": [4, 8, 8]}, out=str(tmp_path / "run"),
                         progress=False, speed_hint=False, num_samples=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SigmaNotOptimisedWarning)
        trainer = Trainer(config)
        trainer.fit()
    assert trainer.model.head.optimiser_check.finished
    assert trainer.model.head.optimiser_check.steps == 2
