"""A head with its own parameter says so when no optimiser steps it.

``learned_sigma`` (and the discretised heads with ``scale="learned"``, and the criterion
``GaussianNLL("learned")``) keep their log-sigma as an ``nn.Parameter`` of the *head*. A user
who builds the optimiser from the decoder's parameters alone trains a model whose sigma silently
stays at its initial value, i.e. a beta-VAE with a beta nobody chose. :func:`watch` guards
against that without costing the training step anything:

* a post-accumulate-grad hook on the parameter counts the backward passes that reach it while
  the head is in training mode (no forward-side state, so ``torch.compile`` traces the head
  unchanged, and eval mode or ``torch.no_grad`` never counts);
* the first such pass keeps a copy of the value; at the ``steps``-th the value is compared with
  it once (one device sync in the whole run). If the parameter received a non-zero gradient but
  never changed, :class:`SigmaNotOptimisedWarning` is raised once; either way the check is then
  finished and the hook returns at once from then on.

The state is plain data on the head (:class:`OptimiserCheck`), so it pickles and deep-copies with
it; the hook holds only a weak reference to the head, pickles as an inert no-op, and the head
re-arms it after unpickling or copying (:func:`watch` is idempotent per parameter object).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["DEFAULT_CHECK_STEPS", "OptimiserCheck", "SigmaNotOptimisedWarning", "watch"]

#: Backward passes after which an unchanged parameter is reported. Far more than any gradient
#: accumulation (the optimiser has stepped at least ``steps / accumulation - 1`` times by then),
#: and still within the first minute of a run.
DEFAULT_CHECK_STEPS = 50


class SigmaNotOptimisedWarning(UserWarning):
    """A head's own parameter (its learned log-sigma) received gradients but never changed:
    the head's parameters are missing from the optimiser."""


@dataclasses.dataclass
class OptimiserCheck:
    """The state of the check for one parameter of one head (plain data: it travels with the
    head through ``pickle`` and ``copy.deepcopy``; never part of the ``state_dict``).

    Attributes:
        parameter: the attribute name of the watched ``nn.Parameter`` on the head.
        what: how the message names it, e.g. ``"log-sigma"``.
        holder: how the message names the module, ``"head"`` or ``"criterion"``.
        steps: backward passes (training mode) after which an unchanged value is reported.
        arrivals: backward passes counted so far.
        start: the value when the first gradient arrived (detached copy), or ``None``.
        finished: whether the check has made its one comparison (or was switched off).
    """

    parameter: str
    what: str
    holder: str = "head"
    # read when the head is built, so a program (or a test) may change the module's default
    steps: int = dataclasses.field(default_factory=lambda: DEFAULT_CHECK_STEPS)
    arrivals: int = 0
    start: torch.Tensor | None = None
    finished: bool = False
    #: ``id`` of the parameter object the hook is registered on (re-armed when it changes).
    armed_on: int | None = dataclasses.field(default=None, repr=False)

    def observe(self, head_name: str, param: torch.Tensor) -> None:
        """One backward pass reached ``param`` (the head in training mode): count it, and at the
        ``steps``-th compare the value with the first one's."""
        if self.finished:
            return
        if self.start is None:
            self.start = param.detach().clone()
        self.arrivals += 1
        if self.arrivals < self.steps:
            return
        self.finished = True
        start, self.start = self.start, None
        value = param.detach()
        # A head moved or cast since the first step has changed representation: call that moved.
        unchanged = (value.dtype == start.dtype and value.device == start.device
                     and torch.equal(value, start))
        pushed = param.grad is not None and bool(param.grad.ne(0).any())
        if unchanged and pushed:
            warnings.warn(
                f"{head_name}: its {self.what} received gradients for {self.arrivals} steps but "
                f"never changed: add the {self.holder}'s parameters to your optimiser, e.g. "
                f"Adam(list(model.parameters()) + list({self.holder}.parameters())) (or freeze "
                f"it on purpose with {self.holder}.requires_grad_(False))",
                SigmaNotOptimisedWarning, stacklevel=_user_stacklevel(),
            )


#: Modules whose frames lie between the user's ``loss.backward()`` and the hook.
_INTERNAL = ("torch", "lightning", "lightning_fabric", "pytorch_lightning", __package__ or "")


def _user_stacklevel() -> int:
    """The ``stacklevel`` that makes the warning point at the user's code (their backward call)
    rather than at autograd: the first frame above the caller outside torch, Lightning and this
    package (``1`` is the function calling ``warnings.warn``)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if not any(name == m or name.startswith(m + ".") for m in _INTERNAL):
            break
        frame, level = frame.f_back, level + 1
    return level


def _inert_hook() -> Callable[[torch.Tensor], None]:
    """What a pickled hook becomes: a no-op (the unpickled head re-arms a live one)."""
    return _noop


def _noop(param: torch.Tensor) -> None:
    return None


class _GradientArrival:
    """The post-accumulate-grad hook: tells the head's check that a gradient arrived, while the
    head is alive and training. A weak reference, so the parameter does not keep the head."""

    def __init__(self, head: nn.Module, check: str) -> None:
        self.head = weakref.ref(head)
        self.check = check

    def __call__(self, param: torch.Tensor) -> None:
        head = self.head()
        if head is None or not head.training:
            return
        check = getattr(head, self.check, None)
        if isinstance(check, OptimiserCheck):
            check.observe(str(getattr(head, "name", type(head).__name__)), param)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _inert_hook, ()


def watch(head: nn.Module, check_attr: str) -> None:
    """Arm the check stored on ``head`` as ``check_attr`` (an :class:`OptimiserCheck`): register
    the hook on the parameter it names, unless it is already registered on that very object or
    the check is finished. Call it from ``__init__``, after unpickling/copying, and (outside
    ``torch.compile``) from the forward pass, which catches a parameter replaced by
    ``load_state_dict(assign=True)``."""
    check = getattr(head, check_attr)
    param = getattr(head, check.parameter)
    if (check.finished or check.armed_on == id(param) or not isinstance(param, nn.Parameter)
            or not param.requires_grad):  # a frozen parameter: nothing to check
        return
    param.register_post_accumulate_grad_hook(_GradientArrival(head, check_attr))
    check.armed_on = id(param)


def rearm(head: nn.Module, check_attr: str) -> None:
    """After ``__setstate__`` (``pickle``, ``copy.deepcopy``): the parameter object is new and
    carries no live hook (deep copies drop hooks, unpickled ones are inert), so arm it again."""
    check = getattr(head, check_attr, None)
    if isinstance(check, OptimiserCheck):
        check.armed_on = None
        watch(head, check_attr)


def forward_watch(head: nn.Module, check_attr: str) -> None:
    """:func:`watch` from a forward pass: skipped while ``torch.compile`` traces (the hook set up
    eagerly keeps working under compilation; nothing here must enter the graph)."""
    if not torch.compiler.is_compiling():
        watch(head, check_attr)
