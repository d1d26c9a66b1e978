"""SVG-LP (Denton & Fergus 2018, "Stochastic Video Generation with a Learned Prior").

A conditional sequence model for 64x64 video: given the first ``c = context_frames`` frames of
a sequence ``x_0 .. x_{T-1}``, it models the frames ``x_c .. x_{T-1}`` with one latent ``z_t``
(``z_dim`` values) per predicted frame, a learned prior ``p(z_t | x_{<t})`` and any likelihood
head per frame. Its parts (see :mod:`.svg_backbones` and :mod:`.lstm`):

* a frame encoder ``h_t, skips_t = enc(x_t)`` (``dcgan`` or ``vgg``; ``h_t`` has ``g_dim``
  values) and a frame decoder ``dec(g, skips)`` giving the head's parameters of one frame;
* a posterior LSTM ``q(z_t | x_{<=t}) = N(mu_q, sigma_q)`` fed ``h_t``, a learned-prior LSTM
  ``p(z_t | x_{<t}) = N(mu_p, sigma_p)`` fed ``h_{t-1}``, and a frame-predictor LSTM
  ``g_t = pred([h_{t-1}, z_t])``; every LSTM's state starts at zero for each batch.

Training (``forward``), with teacher forcing as in SVG: for ``t = 1 .. T-1`` the encoder sees
the ground-truth frames (``h_{t-1} = enc(x_{t-1})``, ``h_t = enc(x_t)``), then ``q_t``, ``p_t``,
``z_t``, ``g_t`` as above and ``x_hat_t = dec(g_t, skips)``. The steps ``t < c`` only warm the
LSTMs up: they use the posterior mean ``z_t = mu_q`` (SVG draws a posterior sample there; the
mean makes the conditioning a deterministic function of the context) and are not scored, exactly
as :meth:`SVGLP.generate` conditions on the context, so the ELBO (``-nll - kl``) is a lower bound on
``log p(x_{c:T} | x_{0:c})`` of the model that ``generate`` samples from. The steps ``t >= c``
draw ``z_t = mu_q + sigma_q * noise_t`` and are scored: ``params`` are the head parameters of
frames ``c .. T-1``, ``(B, T - c, P, H, W)``, ``kl = sum_t KL(q_t || p_t)`` (analytic, summed
over the same steps and the ``z_dim`` values, ``(B,)`` nats) and ``log_prior_ratio = sum_t log
p_t(z_t) - log q_t(z_t)``.

The original code (``train_svg_lp.py``) scores every step ``t = 1 .. T-1``, the context steps
``1 .. c-1`` included (a posterior sample there too), while its generation warms the LSTMs up on
the context with posterior samples and draws from the prior only afterwards: its training loss is
not the bound of the model it samples from. ``score_context=True`` keeps the original's scored
steps as one consistent model: the model then conditions on ``x_0`` only (``context_frames`` is 1
for the objective), scores frames ``1 .. T-1``, and ``generate`` draws the frames ``1 .. c-1``
from the prior as well (or uses given frames beyond ``x_0`` as warm-up, see :meth:`generate`).

Skip connections: the decoder of frame ``t`` gets the skip maps of one earlier frame, chosen by
``skip_from``:

* ``"last_context"`` (default, the SVG paper: "skip connections from the last ground truth
  frame"): frame ``c - 1``;
* ``"code"`` (what the original code does: it refreshes the skips from the encoder input
  ``x_{i-1}`` only while ``i < n_past``, so the last refresh is ``x_{n_past - 2}``; with 2 past
  frames that is frame 0): frame ``c - 2`` (needs ``c >= 2``);
* ``"previous"`` (the original's ``--last_frame_skip``): frame ``t - 1``; when generating, the
  encoding of the previously generated frame.

Precisely, frame ``t`` is decoded with the skips of frame ``min(t - 1, anchor)``
(:meth:`SVGLP.skip_source`), ``anchor`` being the frame named above: ``t - 1`` matters only for
frames before the anchor, which are predicted only with ``score_context``. During generation the
skips stay those of the anchor frame.

Sampling (``generate(noise, context)``): encode the context (floats in [0, 1]), warm the LSTMs up
on it with posterior means, then for each future frame draw ``z_t = mu_p + sigma_p * noise_t``
from the learned prior, predict, decode, and feed the head's mean of the predicted frame back as
the next input (detached), as SVG feeds back its decoded frames.

Latents: ``latent_dim = z_dim * (T - context_frames)`` for ``data_shape = (T, C, H, W)``, one
flat standard-normal vector, step-major (``noise.view(B, T - c, z_dim)``). ``forward`` accepts any
number of frames ``T' >= c + 1`` (a model trained on 12 frames can be scored on 30), with noise
``(B, z_dim * (T' - c))``; ``latent_dim`` and ``data_shape`` describe the training length.

BatchNorm: ``forward`` encodes all ``B * T`` frames of a batch at once and decodes all ``B * (T -
c)`` predicted frames at once (SVG runs one frame batch per step), so in training mode the batch
statistics are those of all frames; in evaluation mode the two are the same.

There is no ``q(z|x)`` against a standard-normal prior: :meth:`SVGLP.posterior` raises
:class:`~sigmavae.objective.PosteriorUnavailable` (mutual information and active units are n/a).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..likelihoods import LikelihoodHead
from ..objective import ModelOutput, PosteriorUnavailable
from ..options import OptionError
from .lstm import GaussianLSTM, LSTMState, PredictorLSTM
from .registry import register_model
from .svg_backbones import BACKBONES, FRAME_SIZE, init_weights
from .vae import upcast

Backbone = Literal["dcgan", "vgg"]
SkipFrom = Literal["last_context", "code", "previous"]

#: SVG's settings for 2-digit Stochastic Moving MNIST (5 past + 10 future frames: T = 15).
SMMNIST_OPTIONS: dict[str, object] = {"backbone": "dcgan", "g_dim": 128, "z_dim": 10,
                                      "context_frames": 5}
#: SVG's settings for BAIR robot pushing (2 past + 10 future frames: T = 12), the paper's.
BAIR_OPTIONS: dict[str, object] = {"backbone": "vgg", "g_dim": 128, "z_dim": 64,
                                   "context_frames": 2}

Skips = list[torch.Tensor]


def gaussian_kl(mu_q: torch.Tensor, log_var_q: torch.Tensor, mu_p: torch.Tensor,
                log_var_p: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu_q, exp(log_var_q)) || N(mu_p, exp(log_var_p)))`` summed over dim 1, ``(B,)``
    nats, for ``(B, z_dim)`` arguments."""
    kl = 0.5 * (log_var_p - log_var_q
                + (log_var_q.exp() + (mu_q - mu_p).pow(2)) / log_var_p.exp() - 1.0)
    return kl.sum(1)


class SVGLP(nn.Module):
    """SVG-LP with a likelihood head per frame (see the module docstring for the model).

    Args:
        head: the likelihood head; the decoder outputs ``head.param_channels(C)`` channels.
        data_shape: ``(T, C, 64, 64)`` of one training sequence.
        backbone: ``"dcgan"`` or ``"vgg"`` frame encoder and decoder.
        context_frames: ``c``, the frames conditioned on (SVG's ``n_past``).
        g_dim: size of a frame's code (encoder output, predictor output).
        z_dim: size of ``z_t``, per predicted frame.
        rnn_size: hidden size of the three LSTMs.
        predictor_layers: LSTM cells of the frame predictor.
        posterior_layers: LSTM cells of the posterior.
        prior_layers: LSTM cells of the learned prior.
        width: channels of the backbone's first stage (then 2x, 4x, 8x).
        skip_from: which frame's skip maps the decoder gets (module docstring).
        score_context: score the frames ``1 .. c-1`` too, as SVG's training loss does (the model
            then conditions on frame 0 only).

    Raises:
        OptionError: a shape or option the model cannot take.
    """

    is_sequence = True

    def __init__(
        self,
        head: LikelihoodHead,
        data_shape: tuple[int, ...],
        *,
        backbone: Backbone = "vgg",
        context_frames: int = 2,
        g_dim: int = 128,
        z_dim: int = 64,
        rnn_size: int = 256,
        predictor_layers: int = 2,
        posterior_layers: int = 1,
        prior_layers: int = 1,
        width: int = 64,
        skip_from: SkipFrom = "last_context",
        score_context: bool = False,
    ) -> None:
        super().__init__()
        _check_options(tuple(data_shape), backbone, context_frames, skip_from,
                       {"g_dim": g_dim, "z_dim": z_dim, "rnn_size": rnn_size,
                        "predictor_layers": predictor_layers,
                        "posterior_layers": posterior_layers, "prior_layers": prior_layers,
                        "width": width})
        frames, channels = data_shape[0], data_shape[1]
        self.head = head
        self.data_shape = tuple(int(s) for s in data_shape)
        #: SVG's ``n_past``: the frames whose structure the model uses (skips, warm-up).
        self.past_frames = context_frames
        #: The frames the model is conditioned on (the protocol's ``context_frames``).
        self.context_frames = 1 if score_context else context_frames
        self.z_dim, self.g_dim = z_dim, g_dim
        self.backbone, self.skip_from, self.score_context = backbone, skip_from, score_context
        self.latent_dim = z_dim * (frames - self.context_frames)
        #: The frame whose skips decode every frame after it (``None``: the previous frame).
        self.skip_anchor: int | None = {"last_context": context_frames - 1,
                                        "code": context_frames - 2,
                                        "previous": None}[skip_from]
        encoder_class, decoder_class = BACKBONES[backbone]
        self.encoder = encoder_class(channels, g_dim, width)
        self.decoder = decoder_class(g_dim, head.param_channels(channels), width)
        self.predictor_rnn = PredictorLSTM(g_dim + z_dim, g_dim, rnn_size, predictor_layers)
        self.posterior_rnn = GaussianLSTM(g_dim, z_dim, rnn_size, posterior_layers)
        self.prior_rnn = GaussianLSTM(g_dim, z_dim, rnn_size, prior_layers)
        for part in (self.encoder, self.decoder, self.predictor_rnn, self.posterior_rnn,
                     self.prior_rnn):
            part.apply(init_weights)

    # -- the protocol's members --------------------------------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        """float64 for a model converted to double precision, else float32."""
        dtype = next(self.encoder.parameters()).dtype
        return torch.float64 if dtype == torch.float64 else torch.float32

    def skip_source(self, t: int) -> int:
        """The index of the frame whose encoder skip maps decode frame ``t >= 1``."""
        return t - 1 if self.skip_anchor is None else min(t - 1, self.skip_anchor)

    def posterior(self, x: torch.Tensor) -> torch.distributions.Distribution:
        """Always raises :class:`~sigmavae.objective.PosteriorUnavailable`: SVG's posterior is
        one Gaussian per step, against a learned prior that is conditional on the past frames."""
        raise PosteriorUnavailable(
            "svg: q(z|x) is one Gaussian per predicted frame and its prior p(z_t | x_<t) is "
            "learned and conditional, not N(0, I); metrics that compare one Gaussian posterior "
            "with a standard-normal prior do not apply")

    def reconstruction_params(self, x: torch.Tensor) -> torch.Tensor:
        """Head parameters ``(B, T - context_frames, P, H, W)`` of the predicted frames at the
        posterior means (noise zero), ``x`` ``(B, T, C, H, W)`` in [0, 1]."""
        batch, frames = self._check_frames(x, "x", self.context_frames + 1)
        zeros = x.new_zeros(batch, self.z_dim * (frames - self.context_frames))
        return self(x, noise=zeros).params

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        """Score a batch of sequences ``x`` ``(B, T, C, H, W)`` in [0, 1] (any ``T >= c + 1``).

        ``noise`` ``(B, z_dim * (T - c))`` (step-major) draws ``z_t`` of the predicted frames
        (drawn here if ``None``). Returns ``params`` ``(B, T - c, P, H, W)`` of frames
        ``c .. T-1``, ``kl`` and ``log_prior_ratio`` ``(B,)`` nats summed over those steps, and
        ``z`` ``(B, z_dim * (T - c))``. ``z`` and ``log_prior_ratio`` are computed in the wider
        of the model's and the noise's dtype.
        """
        batch, frames = self._check_frames(x, "x", self.context_frames + 1)
        c, steps = self.context_frames, frames - self.context_frames
        codes, skips = self._encode(x)
        eps = self._step_noise(noise, batch, steps, codes)
        pred_state = post_state = prior_state = None
        outputs, zs, kls, ratios = [], [], [], []
        for t in range(1, frames):
            mu_q, log_var_q, post_state = self.posterior_rnn(codes[:, t], post_state)
            mu_p, log_var_p, prior_state = self.prior_rnn(codes[:, t - 1], prior_state)
            if t < c:  # warm-up on the context: the posterior mean, not scored
                z = mu_q
            else:
                mu_q, log_var_q = upcast(mu_q), upcast(log_var_q)
                mu_p, log_var_p = upcast(mu_p), upcast(log_var_p)
                kls.append(gaussian_kl(mu_q, log_var_q, mu_p, log_var_p))
                e = eps[:, t - c]
                wide = [v.to(e.dtype) for v in (mu_q, log_var_q, mu_p, log_var_p)]
                z_wide = wide[0] + (0.5 * wide[1]).exp() * e
                log_q = -0.5 * e.pow(2) - 0.5 * wide[1]  # the log(2 pi) terms cancel
                log_p = -0.5 * (z_wide - wide[2]).pow(2) / wide[3].exp() - 0.5 * wide[3]
                ratios.append((log_p - log_q).sum(1))
                zs.append(z_wide)
                z = z_wide.to(codes.dtype)
            g, pred_state = self.predictor_rnn(torch.cat([codes[:, t - 1], z], 1), pred_state)
            if t >= c:
                outputs.append(g)
        sources = [self.skip_source(t) for t in range(c, frames)]
        params = self._decode(torch.stack(outputs, 1), [s[:, sources] for s in skips])
        return ModelOutput(params=params, kl=torch.stack(kls).sum(0),
                           log_prior_ratio=torch.stack(ratios).sum(0),
                           z=torch.cat(zs, 1), posterior=None)

    def generate(self, noise: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Head parameters ``(B, S, P, H, W)`` of ``S`` frames generated after ``context``.

        ``noise`` ``(B, z_dim * S)`` (step-major) draws ``z_t = mu_p + sigma_p * noise_t`` from
        the learned prior; ``context`` ``(B, k, C, H, W)``, floats in [0, 1], holds the first
        ``k >= context_frames`` frames (normally exactly ``context_frames``; more frames are
        used as warm-up, with posterior means, as SVG's generation does with its ``n_past``
        frames). Each generated frame's head mean (in [0, 1], detached) is the next input.
        """
        if context is None:
            raise ValueError(f"svg: generate needs context, the first {self.context_frames} "
                             f"frame(s) (B, {self.context_frames}, C, H, W) in [0, 1] to "
                             "condition on")
        batch, given = self._check_frames(context, "context", self.context_frames)
        if (noise.dim() != 2 or noise.shape[0] != batch or noise.shape[1] == 0
                or noise.shape[1] % self.z_dim):
            raise ValueError(f"svg: generate's noise must have shape (B, z_dim * frames) = "
                             f"({batch}, {self.z_dim} * S) with S >= 1, got "
                             f"{tuple(noise.shape)}")
        steps = noise.shape[1] // self.z_dim
        codes, skips = self._encode(context)
        pred_state: LSTMState | None = None
        post_state: LSTMState | None = None
        prior_state: LSTMState | None = None
        for t in range(1, given):  # warm up on the context, as forward does
            mu_q, _, post_state = self.posterior_rnn(codes[:, t], post_state)
            _, _, prior_state = self.prior_rnn(codes[:, t - 1], prior_state)
            _, pred_state = self.predictor_rnn(torch.cat([codes[:, t - 1], mu_q], 1),
                                               pred_state)
        frame_skips: dict[int, Skips] = {i: [s[:, i] for s in skips] for i in range(given)}
        eps = noise.view(batch, steps, self.z_dim)
        h = codes[:, given - 1]
        outputs = []
        for k in range(steps):
            t = given + k
            mu_p, log_var_p, prior_state = self.prior_rnn(h, prior_state)
            mu_p, log_var_p = upcast(mu_p), upcast(log_var_p)
            z = mu_p + (0.5 * log_var_p).exp() * eps[:, k].to(mu_p)
            g, pred_state = self.predictor_rnn(torch.cat([h, z.to(h.dtype)], 1), pred_state)
            source = self.skip_source(t)
            params = self.decoder(g, frame_skips[source])
            outputs.append(params)
            if k + 1 < steps:
                frame = self.head.to_unit_interval(self.head.predict_mean(params)).detach()
                h, frame_skips[t] = self.encoder(frame.to(context.dtype))
                needed = self.skip_source(t + 1)  # sources never go back in time
                frame_skips = {i: s for i, s in frame_skips.items() if i >= needed}
        return torch.stack(outputs, 1)

    # -- helpers ----------------------------------------------------------------------------------
    def _check_frames(self, x: torch.Tensor, what: str, min_frames: int) -> tuple[int, int]:
        frame_shape = self.data_shape[1:]
        if x.dim() != 5 or tuple(x.shape[2:]) != frame_shape or x.shape[1] < min_frames:
            shape = ", ".join(str(s) for s in frame_shape)
            raise ValueError(f"svg: {what} must have shape (B, T, {shape}) with T >= "
                             f"{min_frames} frames (context_frames = {self.context_frames}), got "
                             f"{tuple(x.shape)}")
        return int(x.shape[0]), int(x.shape[1])

    def _step_noise(self, noise: torch.Tensor | None, batch: int, steps: int,
                    like: torch.Tensor) -> torch.Tensor:
        """``(B, steps * z_dim)`` noise -> ``(B, steps, z_dim)`` in the wider dtype."""
        size = steps * self.z_dim
        dtype = upcast(like).dtype
        if noise is None:
            return torch.randn(batch, steps, self.z_dim, device=like.device, dtype=dtype)
        if noise.dim() != 2 or tuple(noise.shape) != (batch, size):
            raise ValueError(f"svg: noise must have shape (B, z_dim * (T - context_frames)) = "
                             f"({batch}, {size}) for {steps + self.context_frames} frames, got "
                             f"{tuple(noise.shape)}")
        wide = torch.float64 if torch.float64 in (dtype, noise.dtype) else dtype
        return noise.to(device=like.device, dtype=wide).view(batch, steps, self.z_dim)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, Skips]:
        """``(B, T, C, H, W)`` -> codes ``(B, T, g_dim)`` and skip maps ``(B, T, ...)``."""
        batch, frames = x.shape[:2]
        codes, skips = self.encoder(x.flatten(0, 1))
        return (codes.unflatten(0, (batch, frames)),
                [s.unflatten(0, (batch, frames)) for s in skips])

    def _decode(self, g: torch.Tensor, skips: Skips) -> torch.Tensor:
        """Codes ``(B, S, g_dim)`` and skip maps ``(B, S, ...)`` -> ``(B, S, P, H, W)``."""
        batch, steps = g.shape[:2]
        params = self.decoder(g.flatten(0, 1), [s.flatten(0, 1) for s in skips])
        return params.unflatten(0, (batch, steps))


def _check_options(data_shape: tuple[int, ...], backbone: str, context_frames: int,
                   skip_from: str, sizes: dict[str, int]) -> None:
    if len(data_shape) != 4:
        raise OptionError(f"svg is a sequence model: data must be sequences of frames (T, C, "
                          f"H, W), got examples of shape {data_shape}")
    frames, channels, height, width = data_shape
    if (height, width) != (FRAME_SIZE, FRAME_SIZE):
        raise OptionError(f"svg's {backbone} backbone needs {FRAME_SIZE}x{FRAME_SIZE} frames, "
                          f"got {height}x{width} (resize the data, e.g. the image_size data "
                          "option)")
    if channels < 1:
        raise OptionError(f"svg needs frames with at least one channel, got {data_shape}")
    if backbone not in BACKBONES:
        raise OptionError(f"svg: backbone must be one of {', '.join(BACKBONES)}, got "
                          f"{backbone!r}")
    if skip_from not in ("last_context", "code", "previous"):
        raise OptionError(f"svg: skip_from must be 'last_context', 'code' or 'previous', got "
                          f"{skip_from!r}")
    if context_frames < 1:
        raise OptionError(f"svg: context_frames must be >= 1, got {context_frames}")
    if skip_from == "code" and context_frames < 2:
        raise OptionError("svg: skip_from='code' takes the skips of frame context_frames - 2, "
                          "so it needs context_frames >= 2")
    if frames < context_frames + 1:
        raise OptionError(f"svg: sequences of {frames} frames leave none to predict after "
                          f"context_frames = {context_frames} (need T >= {context_frames + 1})")
    small = [f"{name}={value}" for name, value in sizes.items() if value < 1]
    if small:
        raise OptionError(f"svg: sizes must be >= 1, got {', '.join(small)}")


@register_model("svg", "SVG-LP video prediction (learned prior, LSTMs, dcgan/vgg 64x64 frames)")
def build_svg(
    image_shape: tuple[int, int, int, int],
    head: LikelihoodHead,
    backbone: Backbone = "vgg",
    context_frames: int = 2,
    g_dim: int = 128,
    z_dim: int = 64,
    rnn_size: int = 256,
    predictor_layers: int = 2,
    posterior_layers: int = 1,
    prior_layers: int = 1,
    width: int = 64,
    skip_from: SkipFrom = "last_context",
    score_context: bool = False,
) -> SVGLP:
    """SVG-LP for sequences ``(T, C, 64, 64)`` with likelihood ``head`` (see :class:`SVGLP`).

    The defaults are SVG's BAIR settings (:data:`BAIR_OPTIONS`: ``vgg``, ``g_dim`` 128,
    ``z_dim`` 64, 2 context frames; train on 2 + 10 frames); for Stochastic Moving MNIST pass
    :data:`SMMNIST_OPTIONS` (``dcgan``, ``z_dim`` 10, 5 context frames; 5 + 10 frames).
    ``latent_dim = z_dim * (T - context_frames)``.
    """
    return SVGLP(head, image_shape, backbone=backbone, context_frames=context_frames,
                 g_dim=g_dim, z_dim=z_dim, rnn_size=rnn_size, predictor_layers=predictor_layers,
                 posterior_layers=posterior_layers, prior_layers=prior_layers, width=width,
                 skip_from=skip_from, score_context=score_context)


__all__ = ["BAIR_OPTIONS", "SMMNIST_OPTIONS", "SVGLP", "build_svg", "gaussian_kl"]
