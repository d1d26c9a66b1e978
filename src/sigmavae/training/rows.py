"""The metric rows of a run: the columns of ``steps.csv`` and ``epochs.csv``, and the rows the
trainer builds for them (also what ``on_log_step`` / ``on_train_epoch_end`` get and what
``fit`` returns), in nats per example; a number that is not a bound is :data:`NOT_A_BOUND`,
with the head's reason in a note column.

The training sums come in as the loop keeps them (:class:`~sigmavae.run.state.LoopState`:
``[sum loss, sum nll, sum kl, count]``), already summed over the processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..dataset_elbo import NOT_A_BOUND, ELBOReport
from ..likelihoods import LikelihoodHead

#: Columns of ``steps.csv`` and ``epochs.csv``, in order (nats per example; notes are text).
STEP_COLUMNS = [
    "step", "train_loss", "train_nll", "train_kl", "skipped_steps", "sigma", "effective_beta",
    "train_neg_elbo", "train_bound_note",
]
EPOCH_COLUMNS = [
    "epoch", "step", "train_loss", "train_neg_elbo", "train_nll", "train_kl", "val_neg_elbo",
    "val_nll", "val_kl", "val_bits_per_dim", "sigma", "effective_beta", "skipped_steps",
    "seconds", "val_seconds", "train_bound_note", "val_bound_note",
]


@dataclass(frozen=True)
class BoundNotes:
    """What the head says of a run's train and val -ELBO: whether each is a bound (``*_reason``
    is the head's reason where it is not) and, for a valid train bound, its bias note
    (optimal sigma fits sigma to the batch itself: optimistic)."""

    train_valid: bool
    train_reason: str | None
    train_bias: str | None
    val_valid: bool
    val_reason: str | None

    @classmethod
    def of(cls, head: LikelihoodHead, train_images: torch.Tensor,
           val_images: torch.Tensor) -> BoundNotes:
        return cls(*head.bound_validity(train_images), head.train_bound_bias,
                   *head.bound_validity(val_images))

    @property
    def train_note(self) -> str | None:
        """The ``train_bound_note`` column: the bias note, or why it is no bound."""
        return self.train_bias if self.train_valid else f"not a bound: {self.train_reason}"

    @property
    def val_note(self) -> str | None:
        """The ``val_bound_note`` column: ``None``, or why it is no bound."""
        return None if self.val_valid else f"not a bound: {self.val_reason}"

    def train_columns(self, nll: float, kl: float) -> dict[str, Any]:
        return {"train_neg_elbo": nll + kl if self.train_valid else NOT_A_BOUND,
                "train_bound_note": self.train_note}


def sigma_columns(head: LikelihoodHead) -> dict[str, float | None]:
    """The head's current ``sigma`` and ``effective_beta`` (``None`` where it has none)."""
    sigma, beta = head.sigma, head.effective_beta
    return {"sigma": None if sigma is None else float(sigma),
            "effective_beta": None if beta is None else float(beta)}


def _means(sums: torch.Tensor) -> tuple[float, float, float]:
    """Loss, nll and kl per example of ``[sum loss, sum nll, sum kl, count]``."""
    n = max(float(sums[3]), 1.0)
    return float(sums[0]) / n, float(sums[1]) / n, float(sums[2]) / n


def step_row(step: int, skipped: int, sums: torch.Tensor, head: LikelihoodHead,
             bounds: BoundNotes) -> dict[str, Any]:
    """The ``steps.csv`` row at ``step``: the means of the log window's ``sums``."""
    loss, nll, kl = _means(sums)
    row: dict[str, Any] = {"step": step, "train_loss": loss, "train_nll": nll, "train_kl": kl,
                           "skipped_steps": skipped, **sigma_columns(head)}
    row.update(bounds.train_columns(nll, kl))
    return row


def epoch_row(epoch: int, step: int, skipped: int, sums: torch.Tensor, report: ELBOReport,
              head: LikelihoodHead, bounds: BoundNotes, *, seconds: float,
              val_seconds: float) -> dict[str, Any]:
    """The ``epochs.csv`` row of ``epoch`` (counted from 1): the means of the epoch's training
    ``sums``, the validation ``report``; wall seconds of the epoch's steps and validation, and
    of the validation alone."""
    loss, nll, kl = _means(sums)
    valid = report.valid_bound
    row: dict[str, Any] = {
        "epoch": epoch, "step": step, "train_loss": loss, "train_nll": nll, "train_kl": kl,
        "val_nll": report.nll if valid else NOT_A_BOUND, "val_kl": report.kl,
        "val_neg_elbo": report.neg_elbo if valid else NOT_A_BOUND,
        "val_bits_per_dim": report.bits_per_dim if valid else NOT_A_BOUND,
        "skipped_steps": skipped, "seconds": round(seconds, 3),
        "val_seconds": round(val_seconds, 3), **sigma_columns(head),
        "val_bound_note": bounds.val_note,
    }
    row.update(bounds.train_columns(nll, kl))
    return row
