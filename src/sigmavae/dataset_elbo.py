"""The ELBO over a data set: per-batch terms with seeded noise, sums that shard over processes,
per-example terms, and the report (nats per example, bits per dimension, the data scaling).

Below both the trainer (its validation) and :mod:`sigmavae.metrics` (the ``elbo`` metric and the
metrics that reuse its per-image terms): the objective of :mod:`sigmavae.objective`, summed over a
data set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from .objective import (
    ELBOTerms,
    Model,
    bits_per_dim,
    data_dims,
    elbo_terms,
    eval_mode,
    is_sequence,
    model_device,
)

#: What every output writes where a bound is expected but the number is not one.
NOT_A_BOUND = "n/a"


@dataclass
class ELBOReport:
    """Averages over the evaluated images (nats per image unless stated)."""

    num_images: int
    data_dims: int
    nll: float | None  # distortion, E[-log p(x|z)]; None where it is no log-likelihood
    kl: float  # rate, KL(q(z|x) || p(z))
    neg_elbo: float | None  # nll + kl, an upper bound on -log p(x); None where not a bound
    bits_per_dim: float | None  # neg_elbo / (D ln 2); None where not a bound
    sigma: float | None
    effective_beta: float | None
    valid_bound: bool
    invalid_reason: str | None
    data_scaling: str
    samples_per_image: int
    example: str = "image"  # what one example is: "image", or "sequence" for sequence models

    def as_dict(self) -> dict:
        """The fields, with ``"n/a"`` (and ``invalid_reason``) where a bound is not valid."""
        out = asdict(self)
        if not self.valid_bound:
            out.update(nll=NOT_A_BOUND, neg_elbo=NOT_A_BOUND, bits_per_dim=NOT_A_BOUND)
        return out

    def summary(self) -> str:
        """One human line with units and scaling; invalid bounds are never printed as numbers."""
        if not self.valid_bound:
            bound = f"-ELBO n/a (not a bound: {self.invalid_reason}; rate kl {self.kl:.2f})"
        else:
            bound = (f"-ELBO {self.neg_elbo:.2f} nats/{self.example} = "
                     f"{self.bits_per_dim:.4f} bits/dim "
                     f"(nll {self.nll:.2f} + kl {self.kl:.2f})")
        extra = ""
        if self.sigma is not None and self.effective_beta is not None:
            extra = f"; sigma {self.sigma:.4g}, effective beta {self.effective_beta:.4g}"
        return (f"{bound}{extra}; {self.num_images} {self.example}s x {self.data_dims} dims, "
                f"{self.data_scaling}")


def data_scaling(data_kind: str, data_range: str = "unit") -> str:
    """How the evaluated numbers scale the data, for a head's ``data_kind`` and, for
    continuous heads, its ``data_range`` (printed with every number)."""
    if data_kind != "unit":
        return "discrete mass on 8-bit intensities 0..255"
    if data_range == "signed":
        return "continuous density on 8-bit data as 2 x / 255 - 1 in [-1, 1]"
    if data_range == "real":
        return "continuous density on the data as given (8-bit images: / 255 in [0, 1])"
    return "continuous density on 8-bit data / 255 in [0, 1]"


def iter_elbo_terms(
    model: Model, images: torch.Tensor, batch_size: int, samples: int, seed: int,
    device: torch.device | str | None, index: torch.Tensor,
) -> Iterator[tuple[torch.Tensor, ELBOTerms]]:
    """Yield ``(idx, terms)`` (:func:`sigmavae.objective.elbo_terms`) per batch of
    ``images[index]`` and posterior sample, in eval mode.

    The noise of image ``i``, sample ``s`` is row ``(s, i)`` of one ``(samples, N, L)`` draw from a
    CPU generator seeded with ``seed``: the same whatever the batch size, device or sharding.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, images.shape[0], model.latent_dim, generator=generator)
    with eval_mode(model):
        for start in range(0, index.numel(), batch_size):
            idx = index[start:start + batch_size]
            batch = images[idx].to(device)
            for s in range(samples):
                yield idx, elbo_terms(model, batch, noise=noise[s, idx].to(device))


@torch.no_grad()
def elbo_sums(
    model: Model, images: torch.Tensor, batch_size: int = 256, samples: int = 1, seed: int = 0,
    device: torch.device | str | None = None, shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """``[sum nll, sum kl, count]`` (float64, on CPU) over ``images`` x ``samples``, eval mode.

    The posterior noise of image ``i``, sample ``s`` comes from one generator seeded with
    ``seed`` (drawn for all images, on the CPU), so the result is reproducible, leaves the
    caller's RNG alone, and is the same whether one process evaluates every image or
    ``shard = (rank, world)`` makes each process evaluate images ``rank::world``.
    """
    device = device or model_device(model)
    rank, world = shard
    index = torch.arange(rank, images.shape[0], world)
    sums = torch.zeros(3, dtype=torch.float64)
    for idx, terms in iter_elbo_terms(model, images, batch_size, samples, seed, device, index):
        sums[0] += terms.nll.double().sum().cpu()
        sums[1] += terms.kl.double().sum().cpu()
        sums[2] += idx.numel()
    return sums


@dataclass
class PerImageELBO:
    """Per-image ELBO terms (``(N,)`` float64 nats on the CPU, averaged over the samples)."""

    nll: torch.Tensor  # distortion, -log p(x|z)
    kl: torch.Tensor  # rate, KL(q(z|x) || p(z))
    #: ``2 / mean(sigma^-2)`` over every evaluated data dimension and sample (``None`` for heads
    #: without a sigma): the beta of the equivalent beta-VAE on this data.
    effective_beta: float | None

    @property
    def neg_elbo(self) -> torch.Tensor:
        return self.nll + self.kl


@torch.no_grad()
def elbo_per_image(
    model: Model, images: torch.Tensor, batch_size: int = 256, samples: int = 1, seed: int = 0,
    device: torch.device | str | None = None,
) -> PerImageELBO:
    """Per-image distortion and rate averaged over ``samples`` posterior samples, with the same
    noise as :func:`elbo_sums` (so the means are exactly what :func:`evaluate_elbo` reports)."""
    device = device or model_device(model)
    n = images.shape[0]
    nll, kl = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    inv_var, count = 0.0, 0
    for idx, terms in iter_elbo_terms(model, images, batch_size, samples, seed, device,
                                  torch.arange(n)):
        nll[idx] += terms.nll.double().cpu() / samples
        kl[idx] += terms.kl.double().cpu() / samples
        sigma = terms.likelihood.sigma
        if sigma is not None:
            shape = terms.likelihood.batch_shape + terms.likelihood.event_shape
            inv = sigma.detach().double().pow(-2).expand(shape)
            inv_var += float(inv.sum())
            count += inv.numel()
    beta = 2.0 * count / inv_var if count else None
    return PerImageELBO(nll=nll, kl=kl, effective_beta=beta)


def report_from_sums(model: Model, sums: torch.Tensor, samples: int = 1,
                     validity: tuple[bool, str | None] | None = None) -> ELBOReport:
    """Turn :func:`elbo_sums` (possibly all-reduced over processes) into an :class:`ELBOReport`.

    ``validity``: ``head.bound_validity(images)`` of the evaluated images (default: the head's
    answer without data). Where the bound is not valid, ``nll``, ``neg_elbo`` and
    ``bits_per_dim`` are ``None``: they are never reported as numbers.
    """
    nll, kl, count = sums.tolist()
    if count == 0:
        raise ValueError("no images were evaluated")
    nll, kl = nll / count, kl / count
    head = model.head
    valid, reason = validity if validity is not None else head.bound_validity(None)
    sigma, beta = head.sigma, head.effective_beta
    dims = data_dims(model)
    return ELBOReport(
        num_images=round(count / samples),
        data_dims=dims,
        nll=nll if valid else None,
        kl=kl,
        neg_elbo=nll + kl if valid else None,
        bits_per_dim=bits_per_dim(nll + kl, dims) if valid else None,
        sigma=None if sigma is None else float(sigma),
        effective_beta=None if beta is None else float(beta),
        valid_bound=bool(valid),
        invalid_reason=reason,
        data_scaling=data_scaling(head.data_kind, head.data_range),
        samples_per_image=samples,
        example="sequence" if is_sequence(model) else "image",
    )
