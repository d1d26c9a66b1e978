"""The objective: what a model computed, plus its likelihood head, as ELBO terms and IWAE weights.

The models compute; this module scores. A model returns a :class:`ModelOutput` (the decoder's
head parameters, the KL of its posterior to its prior, and ``log p(z) - log q(z|x)`` at the drawn
latent); :func:`elbo_terms` turns that and the model's likelihood head into the negative
log-likelihood, the loss and the ELBO, :func:`log_importance_weights` into the weights of the
importance-weighted bound, and :func:`sample` / :func:`reconstruct` into images. The trainer and
every metric go through these functions only, so our conv VAE, the hierarchical VAE, a sequence
model and a user's own ``nn.Module`` are trained and evaluated by the same code.

The model protocol
------------------
Any ``nn.Module`` with these members works; it does not subclass anything of ours.

Required:

* ``head``: a :class:`~sigmavae.likelihoods.LikelihoodHead` (the decoder distribution ``p(x|z)``).
* ``latent_dim: int``: the size ``L`` of the model's flat standard-normal noise. A model with one
  latent Gaussian reparameterises ``z = mu + sigma * noise``; a hierarchical model concatenates
  the noise of all its latent layers into one vector of size ``L``.
* ``data_shape: tuple[int, ...]``: the shape of one example, ``(C, H, W)`` for images (any
  ``(C, *spatial)`` the head accepts), or ``(T, C, H, W)`` for a sequence of ``T`` frames (see
  below).
* ``forward(x, noise=None) -> ModelOutput``: ``x`` is the batch as floats in ``[0, 1]``,
  ``(B, *data_shape)``, in the model's ``compute_dtype``. ``noise`` ``(B, L)`` is the
  standard-normal draw to use (the model draws it itself when ``None``). The trainer passes
  float32 noise (one seeded draw per global example, so any number of processes computes what one
  process would); the IWAE metric passes float64 draws, so cast it (``noise.to(mu)``) before use.
  A model may do the arithmetic of ``z`` and of ``log_prior_ratio`` in the wider of the two dtypes
  (our conv VAE does: IWAE weights are then exact to float64 in the latent terms).
* ``generate(noise) -> params``: head parameters of the prior sample with noise ``(B, L)``
  (used for prior samples and FID), ``(B, head.param_channels(C), H, W)``.

:class:`ModelOutput` fields (``B`` the batch size; the ``(B,)`` terms are nats per example,
summed over all latent dimensions and latent layers):

* ``params``: the head parameters at the drawn latent, ``(B, head.param_channels(C), H, W)``
  (sequences: ``(B, T, head.param_channels(C), H, W)``);
* ``kl``: ``(B,)``, the rate ``KL(q(z|x) || p(z))`` that the ELBO uses (analytic where it can be,
  a single-sample estimate otherwise, e.g. per layer given the sampled layers above);
* ``log_prior_ratio``: ``(B,)``, ``log p(z) - log q(z|x)`` at the drawn ``z`` (optional: ``None``
  where the model cannot evaluate its densities; :func:`log_importance_weights` then raises
  :class:`LogRatioUnavailable` and the IWAE metric reports why it is not available);
* ``z``: the drawn latent (or its noise), for inspection (optional);
* ``posterior``: ``q(z|x)`` as a distribution over a flat latent (optional, may be ``None``).

Optional members:

* ``compute_dtype``: the float dtype of ``x`` (default: float64 if the model's parameters are
  float64, else float32; see :func:`compute_dtype`).
* ``posterior(x)``: ``q(z|x)`` as one diagonal Gaussian over the flat latent,
  ``Independent(Normal(mu, sigma), 1)`` with ``mu``, ``sigma`` of shape ``(B, L)`` (a ``Normal``
  with batch ``(B, L)`` also works); used by the mutual-information and active-units metrics. A
  model whose posterior is not one such Gaussian raises :class:`PosteriorUnavailable` (or has no
  such method); those metrics then report why they are not available.
* ``reconstruction_params(x)``: head parameters at the posterior mean, for reconstructions
  (default: ``forward(x, noise=zeros).params``, which is the posterior mean of a Gaussian
  posterior and of every layer of a hierarchical one).
* ``decode_posterior(posterior, noise) -> ModelOutput``: what ``forward(x, noise)`` returns,
  from ``posterior = self.posterior(x)`` already computed (the rest of ``forward`` after the
  encoder), so that the IWAE metric encodes each image once for its ``K`` importance samples
  instead of ``K`` times; with ``posterior(x)`` (:class:`PosteriorDecoder`,
  :func:`posterior_decoder`). Our :class:`~sigmavae.models.VAE` has it (a subclass that
  redefines ``forward`` has it only if it redefines it too). Without it every (image, sample)
  row goes through ``forward``, with the same weights.
* ``context_frames: int`` and ``generate(noise, context)``: a conditional sequence model (see
  below; :class:`ConditionalModel`).

An optional method can be switched off by setting it to ``None`` in a class body
(``posterior = None``): the model then counts as not having it.

A minimal model (see ``tests/test_user_model.py`` for a complete one)::

    class MyVAE(nn.Module):
        def __init__(self, head, data_shape=(1, 28, 28), latent_dim=8):
            super().__init__()
            self.head, self.data_shape, self.latent_dim = head, data_shape, latent_dim
            d, c = math.prod(data_shape), data_shape[0]
            self.enc = nn.Linear(d, 2 * latent_dim)
            self.dec = nn.Sequential(nn.Linear(latent_dim, head.param_channels(c) * d // c),
                                     nn.Unflatten(1, (head.param_channels(c), *data_shape[1:])))

        def posterior(self, x):
            mu, log_sigma = self.enc(x.flatten(1)).chunk(2, dim=1)
            return Independent(Normal(mu, log_sigma.exp()), 1)

        def generate(self, noise):
            return self.dec(noise)

        def forward(self, x, noise=None):
            q = self.posterior(x)
            eps = torch.randn_like(q.mean) if noise is None else noise.to(q.mean)
            z = q.base_dist.loc + q.base_dist.scale * eps
            p = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
            return ModelOutput(self.generate(z), kl_divergence(q, p),
                               p.log_prob(z) - q.log_prob(z), z, q)

    terms = elbo_terms(model, uint8_images)   # terms.loss, terms.nll, terms.kl: nats per image

Units: every per-example quantity here is in nats, summed over all data dimensions (``nll``) or
all latent dimensions and layers (``kl``, ``log_prior_ratio``); :func:`bits_per_dim` divides by
``D ln 2`` with ``D = prod(data_shape)`` (:func:`data_dims`).

Sequences: a model whose ``data_shape`` has four entries ``(T, C, H, W)`` (or that sets
``is_sequence = True``) returns ``params`` of shape ``(B, T, P, H, W)``; the head is applied per
frame, on ``(B * T, P, H, W)``, and the log-likelihood summed over the ``T`` frames, so trainer
and metrics still see ``(B,)`` nats per example. ``ELBOTerms.likelihood`` is then the per-frame
distribution, batch ``(B * T,)``; :func:`per_frame` flattens data to match it. Set
``is_sequence = False`` on a model of 3-D volumes ``(C, D, H, W)``.

Conditional sequences (video prediction): a sequence model with ``context_frames = c > 0`` is
given the first ``c`` frames and predicts the rest. ``forward(x, noise)`` still gets the whole
sequence ``(B, T, C, H, W)`` but returns ``params`` of the predicted frames only,
``(B, T - c, P, H, W)``; the head scores ``x[:, c:]``, so ``nll``, ``kl`` and the ELBO are nats
per sequence of a bound on ``log p(x_{c:T} | x_{0:c})``, and bits/dim divide by the
``(T - c) C H W`` predicted dimensions (:func:`data_dims`). ``generate(noise, context)`` gets the
context ``(B, c, C, H, W)`` in [0, 1] and returns the predicted frames' parameters
``(B, T - c, P, H, W)``; :func:`sample` passes it (``context=``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.distributions import Distribution

from .likelihoods.base import NUM_LEVELS, ImageLikelihood, LikelihoodHead
from .registry import Registry

#: ``log sqrt(2 pi)``: the normalising constant of a standard normal density, per dimension.
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: ``ln 2``: nats per bit.
LN2 = math.log(2.0)


class PosteriorUnavailable(NotImplementedError):
    """The model's ``q(z|x)`` is not one diagonal Gaussian over a flat latent."""


class LogRatioUnavailable(NotImplementedError):
    """The model gives no ``log p(z) - log q(z|x)`` (``ModelOutput.log_prior_ratio`` is ``None``),
    so it has no importance weights."""


class ModelOutput:
    """What a model's ``forward(x, noise)`` computed (see the module docstring for the protocol).

    (A plain class, not a dataclass or tuple, so engines that convert the outputs of a module,
    such as Fabric's precision plugins, leave the distribution inside alone.)

    Attributes:
        params: head parameters at the drawn latent, ``(B, P, ...)`` (sequences
            ``(B, T, P, ...)``).
        kl: ``KL(q(z|x) || p(z))``, ``(B,)`` nats summed over all latent dimensions and layers.
        log_prior_ratio: ``log p(z) - log q(z|x)`` at the drawn ``z``, ``(B,)`` nats, or ``None``
            where the model does not provide it (no IWAE then).
        z: the drawn latent, ``(B, L)`` (hierarchical: its flat noise), or ``None``.
        posterior: ``q(z|x)`` over the flat latent (batch ``(B,)``, event ``(L,)``) or ``None``.
    """

    def __init__(self, params: torch.Tensor, kl: torch.Tensor,
                 log_prior_ratio: torch.Tensor | None = None, z: torch.Tensor | None = None,
                 posterior: Distribution | None = None) -> None:
        self.params = params
        self.kl = kl
        self.log_prior_ratio = log_prior_ratio
        self.z = z
        self.posterior = posterior


class Model(Protocol):
    """The static type of the model protocol (for type checkers; nothing checks it at run time).

    Optional members (``compute_dtype``, ``posterior``, ``reconstruction_params``,
    ``is_sequence``, ``context_frames``) are looked up with ``getattr`` and not listed here; the
    ones that come with a method of their own are the protocols below: a model that decodes a
    computed posterior (:class:`PosteriorDecoder`) and a conditional model
    (:class:`ConditionalModel`).
    """

    head: LikelihoodHead
    latent_dim: int
    data_shape: tuple[int, ...]
    training: bool

    def __call__(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput: ...

    def generate(self, noise: torch.Tensor) -> torch.Tensor: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...


class PosteriorDecoder(Model, Protocol):
    """A model with the optional pair ``posterior(x)`` and ``decode_posterior(posterior, noise)``:
    its ``forward(x, noise)`` is ``decode_posterior(posterior(x), noise)``, so that a caller can
    encode a batch once and decode it with many noises (the IWAE metric). Found by what the
    model has, not by its class: :func:`posterior_decoder`."""

    def posterior(self, x: torch.Tensor, /) -> Distribution: ...

    def decode_posterior(self, posterior: Distribution, noise: torch.Tensor, /) -> ModelOutput: ...


def posterior_decoder(model: Model) -> PosteriorDecoder | None:
    """``model`` as a :class:`PosteriorDecoder` if it has both members (neither set to
    ``None``), else ``None``."""
    if getattr(model, "posterior", None) is None or getattr(model, "decode_posterior",
                                                            None) is None:
        return None
    return cast(PosteriorDecoder, model)


class ConditionalModel(Model, Protocol):
    """A conditional sequence model (``context_frames > 0``, see the module docstring): its
    ``generate`` also takes the given frames, ``context`` ``(B, c, C, H, W)`` in [0, 1]."""

    context_frames: int

    def generate(self, noise: torch.Tensor,
                 context: torch.Tensor | None = None) -> torch.Tensor: ...


class ELBOTerms:
    """Per-example terms of the evidence lower bound, all in nats (sums over dimensions).

    (A plain class, not a dataclass or tuple, so engines that convert the outputs of a model leave
    the distributions inside alone.)

    Attributes:
        nll: ``-log p(x|z)`` for one posterior sample, ``(B,)`` (the distortion; sequences: summed
            over the frames).
        kl: ``KL(q(z|x) || p(z))``, ``(B,)`` (the rate), as the model computed it.
        loss: ``mean(nll + beta * kl)``, the scalar training loss (``beta = 1``: the negative ELBO).
        likelihood: the decoder distribution ``p(x|z)`` (batch ``(B,)``; sequences: per frame,
            batch ``(B * T,)``).
        posterior: ``q(z|x)`` (batch ``(B,)``, event ``(latent_dim,)``); ``None`` for models
            whose posterior is not one distribution over a flat latent (hierarchical).
        z: the posterior sample, ``(B, latent_dim)`` (hierarchical: its standard-normal noise).
    """

    def __init__(self, nll: torch.Tensor, kl: torch.Tensor, loss: torch.Tensor,
                 likelihood: ImageLikelihood, posterior: Distribution | None,
                 z: torch.Tensor | None) -> None:
        self.nll = nll
        self.kl = kl
        self.loss = loss
        self.likelihood = likelihood
        self.posterior = posterior
        self.z = z

    @property
    def elbo(self) -> torch.Tensor:
        """``-(nll + kl)``, ``(B,)`` nats: a single-sample estimate of the lower bound."""
        return -(self.nll + self.kl)


# -- the protocol's defaults ----------------------------------------------------------------------
def compute_dtype(model: Model) -> torch.dtype:
    """``model.compute_dtype`` if it has one, else float64 for a model whose parameters are
    float64 and float32 otherwise (also under autocast, whose parameters stay float32)."""
    dtype = getattr(model, "compute_dtype", None)
    if dtype is not None:
        return dtype
    param = next(iter(model.parameters()), None)
    return torch.float64 if param is not None and param.dtype == torch.float64 else torch.float32


def model_device(model: Model) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    param = next(iter(model.parameters()), None)
    return torch.device("cpu") if param is None else param.device


def context_frames(model: Model) -> int:
    """How many leading frames a conditional sequence model is given (``model.context_frames``;
    0 for every other model): its likelihood covers the frames after them."""
    return int(getattr(model, "context_frames", 0) or 0) if is_sequence(model) else 0


def data_dims(model: Model) -> int:
    """``D``, the number of data dimensions the likelihood of one example covers (for bits/dim):
    ``prod(data_shape)``, or ``(T - context_frames) C H W`` for a conditional sequence model."""
    dims = math.prod(model.data_shape)
    context = context_frames(model)
    return dims - context * math.prod(model.data_shape[1:]) if context else dims


def match_sequence_length(model: Model, frames: int) -> None:
    """Make a sequence model describe sequences of ``frames`` frames (in place): its
    ``data_shape`` becomes ``(frames, C, H, W)`` and ``latent_dim`` as many latents per
    predicted frame as in training, so a model trained on ``T`` frames is scored and sampled on
    ``frames`` (e.g. SVG's BAIR protocol: trained on 2 + 10 frames, scored on 2 + 28). For a
    sequence model only; one whose ``latent_dim`` is not per predicted frame is refused.

    Raises:
        ValueError: ``frames`` leaves no frame after the context, or the latents are not per frame.
    """
    trained = model.data_shape[0]
    if frames == trained:
        return
    context = context_frames(model)
    if frames <= context:
        raise ValueError(f"sequences of {frames} frames leave none to predict after the "
                         f"model's {context} context frames")
    if model.latent_dim % (trained - context):
        raise ValueError(f"{type(model).__name__}: latent_dim {model.latent_dim} is not a "
                         f"number of latents per predicted frame ({trained - context} frames), "
                         f"so it cannot be scored on {frames}-frame sequences")
    per_frame_latents = model.latent_dim // (trained - context)
    model.data_shape = (frames, *model.data_shape[1:])
    model.latent_dim = per_frame_latents * (frames - context)


def predicted_frames(model: Model, values: torch.Tensor) -> torch.Tensor:
    """``values[:, context_frames:]`` for a conditional sequence model (the frames its likelihood
    scores); unchanged for every other model."""
    context = context_frames(model)
    return values[:, context:] if context else values


def scored_frames(model: Model, target: torch.Tensor) -> torch.Tensor:
    """``target`` as the head's distribution in :func:`likelihood` is laid out: a sequence
    model's predicted frames flattened into one batch of frames ``(B T, C, H, W)``; unchanged
    for every other model."""
    return predicted_frames(model, target).flatten(0, 1) if is_sequence(model) else target


def bits_per_dim(nats_per_example: float, dims: int) -> float:
    """``nats / (D ln 2)``: nats per example to bits per data dimension."""
    return nats_per_example / (dims * LN2)


def is_sequence(model: Model) -> bool:
    """Whether the model's examples are sequences of frames ``(T, C, H, W)`` (see the module
    docstring); a model may say so itself with an ``is_sequence`` attribute."""
    flag = getattr(model, "is_sequence", None)
    return len(model.data_shape) == 4 if flag is None else bool(flag)


def per_frame(model: Model, values: torch.Tensor) -> torch.Tensor:
    """``(B, T, ...)`` -> ``(B * T, ...)`` for a sequence model (what its head sees); unchanged
    for other models."""
    return values.flatten(0, 1) if is_sequence(model) else values


@contextmanager
def eval_mode(model: nn.Module | Model) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, restoring its mode afterwards."""
    was_training = model.training
    model.train(False)
    try:
        yield
    finally:
        model.train(was_training)


def standard_normal_log_prob(values: torch.Tensor) -> torch.Tensor:
    """``log N(values; 0, 1)`` elementwise, nats."""
    return -0.5 * values.pow(2) - HALF_LOG_2PI


# -- data -----------------------------------------------------------------------------------------
def prepare_batch(
    images: torch.Tensor, head: LikelihoodHead, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch into (the model's input in [0, 1], the head's target).

    ``images`` is ``uint8`` ``(B, *data_shape)`` (preferred) or float in ``[0, 1]``; the head's
    target is what it models (:meth:`~sigmavae.likelihoods.LikelihoodHead.from_unit_interval`:
    ``x`` itself, ``2 x - 1`` for ``[-1, 1]`` heads, ``round(255 x)`` for discrete heads).
    The model input is ``dtype`` (float32, or float64 for a model
    trained in double precision, which then also gets a float64 target for continuous heads).
    """
    if images.dtype == torch.uint8:
        x, target = images.to(dtype).div_(NUM_LEVELS - 1), head.prepare_target(images)
    elif not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    else:  # the head's data: x itself, 2 x - 1 ([-1, 1] heads), or round(255 x) (discrete)
        x, target = images, head.from_unit_interval(images)
    if dtype == torch.float64:
        x = x.to(dtype)
        target = target.to(dtype) if target.is_floating_point() else target
    return x, target


def likelihood(model: Model, params: torch.Tensor,
               target: torch.Tensor) -> tuple[ImageLikelihood, torch.Tensor]:
    """``p(x|z)`` from the model's head and ``log p(x|z)`` ``(B,)`` nats of ``target``.

    Sequences: the head is applied per frame and the log-likelihood summed over the frames
    (a conditional model's predicted frames: ``target`` is the whole sequence).
    """
    if is_sequence(model):
        target = predicted_frames(model, target)
        frames = target.shape[1]
        if params.shape[:2] != target.shape[:2]:
            raise ValueError(f"{type(model).__name__}: params for {params.shape[1]} frames but "
                             f"{frames} frames to score (context_frames="
                             f"{context_frames(model)}, sequence of "
                             f"{target.shape[1] + context_frames(model)})")
        flat_target = target.flatten(0, 1)  # = scored_frames(model, the whole sequence)
        dist = model.head(params.flatten(0, 1), target=flat_target)
        return dist, dist.log_prob(flat_target).view(-1, frames).sum(1)
    dist = model.head(params, target=target)
    return dist, dist.log_prob(target)


# -- the bounds -----------------------------------------------------------------------------------
def elbo_terms(
    model: Model, images: torch.Tensor, beta: float = 1.0, noise: torch.Tensor | None = None,
    forward: Callable[..., ModelOutput] | None = None,
) -> ELBOTerms:
    """ELBO terms of a batch (``uint8`` or float in [0, 1], shape ``(B, *model.data_shape)``).

    ``beta`` weights the KL in ``loss`` only; ``nll``/``kl``/``elbo`` are always the true terms.
    ``noise`` ``(B, latent_dim)`` is the standard-normal draw of the reparameterisation (the model
    draws it if ``None``); the trainer passes it so N processes draw exactly what one process with
    the whole batch would. ``forward`` runs the model (default ``model`` itself; the trainer
    passes the Fabric-wrapped or compiled module, so that DDP synchronises the gradients).
    """
    x, target = prepare_batch(images, model.head, compute_dtype(model))
    out = (model if forward is None else forward)(x, noise=noise)
    dist, log_lik = likelihood(model, out.params, target)
    nll = -log_lik
    loss = (nll + beta * out.kl).mean()
    return ELBOTerms(nll=nll, kl=out.kl, loss=loss, likelihood=dist, posterior=out.posterior,
                     z=out.z)


def original_objective_terms(
    model: Model, images: torch.Tensor, beta: float = 1e-4, noise: torch.Tensor | None = None,
    forward: Callable[..., ModelOutput] | None = None,
) -> ELBOTerms:
    """:func:`elbo_terms` with the loss of SVG's code (Denton & Fergus 2018) instead of the ELBO.

    Per example, ``loss_b = sum_t ||mean_t - x_t||^2 / (C H W) + beta * KL_b``, averaged over
    the batch: per step the squared error of the decoder mean (in [0, 1]) averaged over batch and
    pixels, plus ``beta`` times the KL summed over z and averaged over the batch, summed over the
    steps (images: one step). ``nll``, ``kl`` and ``elbo`` stay the true terms of the model's
    head: with the fixed-sigma head at ``2 sigma^2 = beta C H W`` the loss is ``beta`` times the
    negative ELBO up to a constant, so the ELBO reported for such a run is its bound.
    """
    x, target = prepare_batch(images, model.head, compute_dtype(model))
    out = (model if forward is None else forward)(x, noise=noise)
    dist, log_lik = likelihood(model, out.params, target)
    truth = predicted_frames(model, x)
    mean = images_from_params(model, out.params).to(truth.dtype)
    pixels_per_frame = math.prod(truth.shape[2:] if is_sequence(model) else truth.shape[1:])
    squared_error = (mean - truth).pow(2).flatten(1).sum(1)
    loss = (squared_error / pixels_per_frame + beta * out.kl).mean()
    return ELBOTerms(nll=-log_lik, kl=out.kl, loss=loss, likelihood=dist,
                     posterior=out.posterior, z=out.z)


# -- objective variants ---------------------------------------------------------------------------
TermsFn = Callable[..., ELBOTerms]
#: ``(beta, data_shape) -> head``: the head an objective trains, whatever the config names.
ImpliedHead = Callable[[float, tuple[int, ...]], LikelihoodHead]


@dataclass(frozen=True)
class ObjectiveVariant:
    """A training objective, chosen by name (``TrainConfig.objective``, ``--objective``).

    ``terms(model, images, beta=..., noise=..., forward=...)`` gives the step's
    :class:`ELBOTerms` (its ``loss`` is what is minimised; ``nll``, ``kl`` and ``elbo`` are
    always the model head's true terms); ``default_beta`` is the KL weight when the run sets
    none. ``implied_head`` is set where the objective fixes the likelihood itself (SVG's MSE +
    beta is the fixed-sigma Gaussian with ``sigma = sqrt(beta C H W / 2)``): the run's model
    gets that head, its runs are named after the objective, and a config may not name another.
    """

    name: str
    terms: TermsFn
    default_beta: float
    implied_head: ImpliedHead | None = None

    def head(self, beta: float, data_shape: tuple[int, ...]) -> LikelihoodHead | None:
        """The head this objective trains for examples of ``data_shape`` (``None``: the
        config's)."""
        return None if self.implied_head is None else self.implied_head(beta, data_shape)


OBJECTIVES: Registry[ObjectiveVariant] = Registry("objective")


def register_objective(name: str, summary: str, *, default_beta: float = 1.0,
                       implied_head: ImpliedHead | None = None) -> Callable[[TermsFn], TermsFn]:
    """Decorator registering a terms function as the objective ``name``."""

    def wrap(terms: TermsFn) -> TermsFn:
        OBJECTIVES.register(name, summary)(ObjectiveVariant(name, terms, default_beta,
                                                            implied_head))
        return terms

    return wrap


#: SVG's KL weight (Denton & Fergus 2018, BAIR), the default beta of objective ``original``.
ORIGINAL_BETA = 1e-4


def original_sigma(beta: float, data_shape: tuple[int, ...]) -> float:
    """The sigma (on the [0, 1] scale) for which SVG's loss, ``SSE / (C H W) + beta * KL`` per
    example, is ``beta`` times the negative ELBO of the fixed-sigma Gaussian (up to a constant):
    ``2 sigma^2 = beta C H W`` with ``C H W`` the pixels of one frame (or image).

    Raises:
        ValueError: ``beta <= 0``.
    """
    if beta <= 0:
        raise ValueError("objective original needs beta > 0 (sigma = sqrt(beta C H W / 2))")
    return math.sqrt(beta * math.prod(data_shape[-3:]) / 2)


def _original_head(beta: float, data_shape: tuple[int, ...]) -> LikelihoodHead:
    from .likelihoods import create

    return create("fixed_sigma", sigma=original_sigma(beta, data_shape))


register_objective(
    "elbo", "the head's negative ELBO with beta on the KL (the calibrated objective)",
)(elbo_terms)
register_objective(
    "original", "SVG's code: per example the squared error over the predicted pixels divided "
    "by the pixels per frame plus beta * KL; the fixed-sigma head with sigma = "
    "sqrt(beta C H W / 2)", default_beta=ORIGINAL_BETA, implied_head=_original_head,
)(original_objective_terms)


def log_importance_weights(model: Model, images: torch.Tensor, noise: torch.Tensor,
                           posterior: Distribution | None = None) -> torch.Tensor:
    """``log p(x|z) + log p(z) - log q(z|x)`` ``(B,)`` nats at the ``z`` that ``noise``
    ``(B, latent_dim)`` draws: the importance weight of the IWAE bound (all latent layers).
    ``posterior``: ``q(z|x)`` of ``images``, already computed by the model's ``posterior(x)``,
    for a :class:`PosteriorDecoder`: then its ``decode_posterior(posterior, noise)`` runs
    instead of ``forward``, and the images are not encoded again.

    Raises:
        LogRatioUnavailable: the model's output has no ``log_prior_ratio``.
        TypeError: a ``posterior`` for a model that has no ``decode_posterior``.
    """
    x, target = prepare_batch(images, model.head, compute_dtype(model))
    if posterior is None:
        out = model(x, noise=noise)
    elif (decoder := posterior_decoder(model)) is not None:
        out = decoder.decode_posterior(posterior, noise)
    else:
        raise TypeError(f"{type(model).__name__} has no decode_posterior(posterior, noise) "
                        "(optional in the model protocol); pass posterior=None")
    if out.log_prior_ratio is None:
        raise LogRatioUnavailable(f"{type(model).__name__} gives no log p(z) - log q(z|x) "
                         "(ModelOutput.log_prior_ratio), which importance weighting needs")
    _, log_lik = likelihood(model, out.params, target)
    return log_lik + out.log_prior_ratio


# -- images ---------------------------------------------------------------------------------------
def images_from_params(model: Model, params: torch.Tensor, draw: bool = False) -> torch.Tensor:
    """The head's mean of ``p(x|z)`` for head parameters ``params`` (with ``draw``: one draw
    ``x ~ p(x|z)`` from the global random state instead: intensities for a discrete head, the
    mean plus its noise for a continuous one), as images in [0, 1] of shape ``(B, *data_shape)``
    (float32, clamped); sequences ``(B, T', C, H, W)`` with ``T'`` the frames of ``params`` (a
    conditional model's predicted frames)."""
    head = model.head
    frames = per_frame(model, params)
    values = head(frames).sample() if draw else head.predict_mean(frames)
    images = head.to_unit_interval(values)
    if is_sequence(model):
        return images.reshape(*params.shape[:2], *model.data_shape[1:])
    return images.reshape(params.shape[0], *model.data_shape)


def _context_input(model: Model, n: int, context: torch.Tensor | None) -> torch.Tensor | None:
    """The context frames a conditional model's ``generate`` gets, as floats in [0, 1] on the
    model's device; ``None`` for an unconditional model."""
    frames = context_frames(model)
    if frames == 0:
        if context is not None:
            raise ValueError(f"{type(model).__name__} is not conditional (no context_frames): "
                             "sample() takes no context")
        return None
    if context is None:
        raise ValueError(f"{type(model).__name__} predicts frames after {frames} context frames: "
                         f"pass context=(n, {frames}, C, H, W) frames to sample()")
    if context.dim() != 5 or context.shape[0] != n or context.shape[1] < frames:
        raise ValueError(f"context must be ({n}, >= {frames}, C, H, W) frames, got "
                         f"{tuple(context.shape)}")
    context = context[:, :frames].to(model_device(model))
    if context.dtype == torch.uint8:
        return context.to(compute_dtype(model)).div_(NUM_LEVELS - 1)
    return context.to(compute_dtype(model))


@torch.no_grad()
def sample(model: Model, n: int, generator: torch.Generator | None = None,
           context: torch.Tensor | None = None, draw: bool = False) -> torch.Tensor:
    """Means of ``p(x|z)`` for ``n`` prior draws (noise ``N(0, I)`` of size ``latent_dim``, drawn
    on the model's device with ``generator``), images in [0, 1], ``(n, *data_shape)``; with
    ``draw``, one draw ``x ~ p(x|z)`` at each instead (from the global random state, see
    :func:`images_from_params`).

    A conditional sequence model (``context_frames > 0``) needs ``context``: ``(n, T, C, H, W)``
    sequences (uint8 or floats in [0, 1]) whose first ``context_frames`` frames it is given; it
    returns the predicted frames ``(n, T_model - context_frames, C, H, W)``.

    Raises:
        LikelihoodInputError: ``draw`` with a head whose scale needs the data (per-image
            optimal sigma has no ``p(x|z)`` at a prior sample).
    """
    noise = torch.randn(n, model.latent_dim, generator=generator, device=model_device(model))
    noise = noise.to(compute_dtype(model))
    given = _context_input(model, n, context)
    if given is None:
        params = model.generate(noise)
    else:  # context_frames > 0: a conditional model, whose generate takes the context
        params = cast(ConditionalModel, model).generate(noise, given)
    return images_from_params(model, params, draw=draw)


@torch.no_grad()
def reconstruct(model: Model, images: torch.Tensor) -> torch.Tensor:
    """Means of ``p(x|z)`` at the posterior mean (``reconstruction_params(x)`` if the model has
    it, else the parameters at zero noise), images in [0, 1], ``(B, *data_shape)`` (a
    conditional sequence model: its predicted frames, ``(B, T - context_frames, C, H, W)``)."""
    x, _ = prepare_batch(images, model.head, compute_dtype(model))
    at_mean = getattr(model, "reconstruction_params", None)
    if at_mean is not None:
        params = at_mean(x)
    else:
        zeros = torch.zeros(x.shape[0], model.latent_dim, device=x.device, dtype=x.dtype)
        params = model(x, noise=zeros).params
    return images_from_params(model, params)
