"""The decoder configurations the paper compares, as TrainConfig keys (one row of a table each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The beta grid of Table 1 (the paper tuned beta "from 100 to 0.0001" and prints these five).
SWEEP_BETAS = (0.001, 0.01, 0.1, 1.0, 10.0)
#: The beta the paper found best (Table 1); the decoders experiment uses it when no sweep ran.
PAPER_BEST_BETA = 0.01


@dataclass(frozen=True)
class HeadRow:
    """One decoder as a table row: ``row`` (the published row name), a label for people and
    the likelihood keys of its training config."""

    row: str
    label: str
    likelihood: str
    options: dict[str, Any]

    def train_keys(self) -> dict[str, Any]:
        return {"likelihood": self.likelihood, "likelihood_options": dict(self.options)}


def beta_row(beta: float) -> HeadRow:
    """The unit-variance beta-VAE with KL weight ``beta``: by the paper's Eq. 4 the Gaussian
    ELBO with the constant ``sigma = sqrt(beta / 2)``, trained with KL weight 1 (so its bound is
    a valid ELBO)."""
    return HeadRow(f"beta_vae_{beta:g}", f"beta-VAE, beta = {beta:g}", "fixed_sigma",
                   {"beta": float(beta)})


LEARNED = HeadRow("learned_sigma", "shared sigma-VAE (learned sigma)", "learned_sigma", {})
OPTIMAL = HeadRow("optimal_sigma", "optimal sigma-VAE", "optimal_sigma", {})
PER_IMAGE = HeadRow("optimal_sigma_per_image", "optimal sigma-VAE, per image",
                    "optimal_sigma_per_image", {})

#: Tables 2 and 3, in the paper's order (the beta-VAE row is added at the sweep's best beta).
DECODER_ROWS = (
    HeadRow("bernoulli", "Bernoulli", "bernoulli", {}),
    HeadRow("categorical", "categorical (256-way)", "categorical", {}),
    HeadRow("bitwise_categorical", "bitwise categorical", "bitwise_categorical", {}),
    HeadRow("logistic_mixture", "logistic mixture", "logistic_mixture", {}),
    HeadRow("gaussian", "Gaussian VAE (unit variance)", "gaussian", {}),
    HeadRow("per_pixel_sigma", "per-pixel sigma-VAE", "per_pixel_sigma", {}),
    HeadRow("student_t", "Student-t VAE", "student_t", {}),
    LEARNED,
    OPTIMAL,
    PER_IMAGE,
)

#: The heads whose runs cost several times a Gaussian head's (the 256-way categorical's
#: 768-channel output layer; the logistic mixture's 10 components per pixel): where time is
#: short their seeds are reduced first, never their training length.
HEAVY_HEADS = frozenset({"categorical", "logistic_mixture"})

#: Table 4 (discretised data); ``row`` is the published row name.
DISCRETIZED_ROWS = (
    HeadRow("categorical", "categorical (256-way)", "categorical", {}),
    HeadRow("gaussian", "Gaussian VAE (unit variance)", "gaussian", {}),
    HeadRow("sigma_vae", "Gaussian sigma-VAE (optimal sigma)", "optimal_sigma", {}),
    HeadRow("discretized_gaussian", "discretised Gaussian sigma-VAE", "discretized_gaussian",
            {"scale": "optimal"}),
    HeadRow("discretized_logistic", "discretised logistic sigma-VAE", "discretized_logistic",
            {"scale": "optimal"}),
)


def is_continuous(likelihood: str, options: dict[str, Any]) -> bool:
    """Whether the head models ``x / 255`` with a density (else 8-bit intensities)."""
    from ..likelihoods import create

    return create(likelihood, **options).data_kind == "unit"
