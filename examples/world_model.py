"""A small recurrent latent world model (in the spirit of PlaNet / Dreamer's RSSM) with calibrated
decoders: a 7-dim vector observation and a 64x64 image per step, over episodes of different
lengths, optimal sigma on both decoders, and no beta.

Per step ``t`` of an episode: a deterministic GRU state ``h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}])``,
a prior ``p(z_t | h_t)``, a posterior ``q(z_t | h_t, embed(o_t))``, and two decoders from
``[h_t, z_t]``: the vector observation (``data_range="real"``, identity mean) and the image
(``[0, 1]``, 8-bit frames divided by 255, sigmoid mean). The negative ELBO of an episode, in nats,
is the sum over its real steps of both decoders' negative log-likelihoods and
``KL(q(z_t) || p(z_t))``: no beta, no free nats, no KL balancing. Each decoder's sigma is the
analytic optimum (sigma^2 = the MSE of the observed steps), so the weights a hand-tuned loss
would need (``SSE_image + w SSE_vector + beta KL``) come out of the data.

Episodes are padded to a common length with NaN (any value works) and a ``(B, T)`` mask marks the
real steps: the mask goes to both heads (their log-likelihoods and their sigmas) and to the KL sum.

Run: ``python examples/world_model.py --steps 300``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

import sigmavae.likelihoods as L

#: Image side (pixels), ball radius (pixels), vector observation size, action size.
SIZE, RADIUS, OBS_DIM, ACTION_DIM = 64, 6.0, 7, 2
#: Standard deviation of the sensor noise added to the vector observation (its own units).
SENSOR_NOISE = 0.05
#: Largest speed of the ball (pixels per step).
MAX_SPEED = 4.0
#: What the entries of the vector observation are.
FEATURES = ("x", "y", "vx", "vy", "speed", "wall", "centre")


# -- data ----------------------------------------------------------------------------------------
@dataclass
class Episodes:
    """A padded batch of episodes; entries after an episode's end hold ``pad`` (anything).

    obs: ``(B, T, 7)`` vector observations: ball position (2, the box is [-1, 1]), velocity (2,
        in units of the top speed), speed (1, same units), distance to the nearest wall and to
        the centre (2, in half-boxes); plus sensor noise of std :data:`SENSOR_NOISE`.
    frames: ``(B, T, 1, 64, 64)`` images in ``[0, 1]`` (8-bit frames divided by 255).
    actions: ``(B, T, 2)``: the acceleration applied before step ``t`` (0 at ``t = 0``).
    mask: ``(B, T)`` bool, ``True`` on real steps.
    """

    obs: torch.Tensor
    frames: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` real steps per episode."""
        return self.mask.sum(1)


def render(position: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``(..., 1, 64, 64)`` of an anti-aliased ball at ``position`` ``(..., 2)``
    (pixels, x then y)."""
    grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dx = grid.view(1, SIZE) - position[..., 0, None, None]
    dy = grid.view(SIZE, 1) - position[..., 1, None, None]
    coverage = (RADIUS + 0.5 - torch.sqrt(dx**2 + dy**2)).clamp(0.0, 1.0)
    return (coverage * 255).round().to(torch.uint8).unsqueeze(-3)


def make_episodes(batch: int, min_len: int = 5, max_len: int = 12, pad_to: int | None = None,
                  pad: float = float("nan"), generator: torch.Generator | None = None) -> Episodes:
    """``batch`` episodes of a ball pushed by random accelerations, bouncing off the walls, of
    random lengths in ``min_len..max_len``, padded with ``pad`` to ``pad_to`` steps (default
    ``max_len``)."""
    pad_to = max_len if pad_to is None else pad_to
    if not 1 <= min_len <= max_len <= pad_to:
        raise ValueError(f"need 1 <= min_len <= max_len <= pad_to, got {min_len}, {max_len}, "
                         f"{pad_to}")
    g = generator
    pos = RADIUS + torch.rand(batch, 2, generator=g) * (SIZE - 2 * RADIUS)
    vel = (torch.rand(batch, 2, generator=g) * 2 - 1) * MAX_SPEED
    actions = (torch.rand(batch, pad_to, 2, generator=g) * 2 - 1) * 0.75
    actions[:, 0] = 0.0
    positions, velocities = [], []
    for t in range(pad_to):
        vel = (vel + actions[:, t]).clamp(-MAX_SPEED, MAX_SPEED)
        pos = pos + vel
        low, high = pos < RADIUS, pos > SIZE - RADIUS  # bounce: reflect position and velocity
        pos = torch.where(low, 2 * RADIUS - pos, torch.where(high, 2 * (SIZE - RADIUS) - pos, pos))
        vel = torch.where(low | high, -vel, vel)
        positions.append(pos)
        velocities.append(vel)
    p, v = torch.stack(positions, 1), torch.stack(velocities, 1)  # (B, T, 2) pixels
    half = SIZE / 2
    wall = torch.minimum(p, SIZE - p).amin(-1, keepdim=True) / half
    centre = (p - half).norm(dim=-1, keepdim=True) / half
    speed = v.norm(dim=-1, keepdim=True) / MAX_SPEED
    obs = torch.cat([p / half - 1, v / MAX_SPEED, speed, wall, centre], -1)
    obs = obs + SENSOR_NOISE * torch.randn(obs.shape, generator=g)
    frames = render(p).float() / 255  # as head.prepare_target(uint8) gives them

    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=g)
    mask = torch.arange(pad_to) < lengths[:, None]  # (B, T)
    obs = torch.where(mask[..., None], obs, pad)
    frames = torch.where(mask[..., None, None, None], frames, pad)
    return Episodes(obs=obs, frames=frames, actions=actions * mask[..., None], mask=mask)


# -- model ---------------------------------------------------------------------------------------
def mlp(inp: int, out: int, hidden: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, out))


class ImageEncoder(nn.Module):
    """``(N, 1, 64, 64)`` -> ``(N, embed)``: four stride-2 convolutions."""

    def __init__(self, embed: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.ELU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ELU(),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.ELU(), nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.ELU(),
            nn.Flatten(), nn.Linear(2 * w * 16, embed))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class ImageDecoder(nn.Module):
    """``(N, feat)`` -> ``(N, 1, 64, 64)`` raw outputs: the image head's parameters (the logits
    of the mean)."""

    def __init__(self, feat: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.fc = nn.Linear(feat, 2 * w * 16)
        self.net = nn.Sequential(
            nn.ELU(), nn.ConvTranspose2d(2 * w, 2 * w, 4, 2, 1), nn.ELU(),
            nn.ConvTranspose2d(2 * w, 2 * w, 4, 2, 1), nn.ELU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ELU(), nn.ConvTranspose2d(w, 1, 4, 2, 1))
        self.width = w
        # Start the mean near the data's mean intensity (a small ball on black: about 3% of the
        # pixels), not at sigmoid(0) = 0.5: the first steps then learn the ball, not the
        # background.
        last = self.net[-1]
        assert isinstance(last, nn.ConvTranspose2d) and last.bias is not None
        nn.init.constant_(last.bias, math.log(0.03 / 0.97))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(feat).view(-1, 2 * self.width, 4, 4))


def gaussian(raw: torch.Tensor, min_std: float = 0.1) -> Normal:
    """A diagonal Gaussian from ``(..., 2 k)`` raw outputs (mean, softplus std + ``min_std``)."""
    mean, std = raw.chunk(2, -1)
    return Normal(mean, nn.functional.softplus(std) + min_std)


@dataclass
class Rollout:
    """What the model predicts for a batch of episodes.

    vector: ``(B, T, 7)`` parameters of the vector head; image: ``(B, T, 1, 64, 64)`` parameters
    of the image head; kl: ``(B, T)`` nats, ``KL(q(z_t) || p(z_t))`` per step (padded steps
    included: the loss masks them).
    """

    vector: torch.Tensor
    image: torch.Tensor
    kl: torch.Tensor


class WorldModel(nn.Module):
    """An RSSM-like latent dynamics model (deterministic GRU state + stochastic latent per step)."""

    def __init__(self, deter: int = 64, stoch: int = 8, embed: int = 64, width: int = 16) -> None:
        super().__init__()
        self.deter, self.stoch = deter, stoch
        self.image_encoder = ImageEncoder(embed, width)
        self.vector_encoder = mlp(OBS_DIM, embed)
        self.cell = nn.GRUCell(stoch + ACTION_DIM, deter)
        self.prior_net = mlp(deter, 2 * stoch)
        self.posterior_net = mlp(deter + 2 * embed, 2 * stoch)
        # One decoder output per data entry: the optimal-sigma heads take the mean only
        # (head.param_channels(C) == C).
        self.vector_decoder = mlp(deter + stoch, OBS_DIM)
        self.image_decoder = ImageDecoder(deter + stoch, width)

    def forward(self, ep: Episodes) -> Rollout:
        b, t = ep.mask.shape
        # What the encoders see: padding replaced by 0. The heads ignore padded targets, but a
        # NaN fed to an encoder would reach the posterior (torch.distributions refuses it) and,
        # unchecked, every weight's gradient (the mask's 0 times NaN is NaN).
        step = ep.mask[..., None]
        obs = torch.where(step, ep.obs, 0.0)
        frames = torch.where(step[..., None, None], ep.frames, 0.0)
        embed = torch.cat([self.image_encoder(frames.flatten(0, 1)).view(b, t, -1),
                           self.vector_encoder(obs)], -1)
        h = obs.new_zeros(b, self.deter)
        z = obs.new_zeros(b, self.stoch)
        feats, kls = [], []
        for i in range(t):
            h = self.cell(torch.cat([z, ep.actions[:, i]], -1), h)
            prior = gaussian(self.prior_net(h))
            posterior = gaussian(self.posterior_net(torch.cat([h, embed[:, i]], -1)))
            z = posterior.rsample()
            feats.append(torch.cat([h, z], -1))
            kls.append(kl_divergence(posterior, prior).sum(-1))
        feat = torch.stack(feats, 1)  # (B, T, deter + stoch)
        image = self.image_decoder(feat.flatten(0, 1)).view(b, t, 1, SIZE, SIZE)
        return Rollout(vector=self.vector_decoder(feat), image=image, kl=torch.stack(kls, 1))


# -- the loss: what a world-model user writes ----------------------------------------------------
@dataclass
class Bound:
    """The negative ELBO of each episode and its parts, ``(B,)`` nats each."""

    vector: torch.Tensor
    image: torch.Tensor
    kl: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.vector + self.image + self.kl


def make_heads() -> tuple[L.LikelihoodHead, L.LikelihoodHead]:
    """The two calibrated decoders: optimal sigma (sigma^2 = MSE of the observed steps)."""
    vector_head = L.create("optimal_sigma", data_range="real")  # identity mean, any real values
    image_head = L.create("optimal_sigma")                       # [0, 1] frames, sigmoid mean
    return vector_head, image_head


def negative_elbo(model: WorldModel, vector_head: L.LikelihoodHead,
                  image_head: L.LikelihoodHead, ep: Episodes) -> Bound:
    """The negative ELBO of each episode, nats: both decoders and the KL over its real steps."""
    out = model(ep)
    vec = vector_head(out.vector, target=ep.obs, mask=ep.mask)    # mask (B, T): steps
    img = image_head(out.image, target=ep.frames, mask=ep.mask)
    return Bound(vector=-vec.log_prob(ep.obs),                    # (B,) nats, real steps only
                 image=-img.log_prob(ep.frames),
                 kl=torch.where(ep.mask, out.kl, 0.0).sum(1))     # no beta


# -- the example ---------------------------------------------------------------------------------
@dataclass
class Result:
    """What :func:`main` measured (nats per episode unless said otherwise)."""

    first_loss: float
    last_loss: float
    test_bound: torch.Tensor       # (B,) per held-out episode, eval mode
    test_lengths: torch.Tensor     # (B,)
    vector_sigma: float
    image_sigma: float
    seconds: float


def main(steps: int = 300, batch: int = 8, min_len: int = 5, max_len: int = 12,
         width: int = 16, lr: float = 2e-3, seed: int = 0, log_every: int = 50) -> Result:
    """Train the world model for ``steps`` steps on fresh batches of ``batch`` episodes of
    ``min_len..max_len`` steps (``width``: channels of the image networks), then print the
    bound of held-out episodes and the sigmas."""
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(seed)
    model = WorldModel(width=width)
    vector_head, image_head = make_heads()
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # the optimal heads have no parameters
    print(f"world model: {batch} episodes of {min_len}..{max_len} steps per batch, padded with "
          f"NaN; per step a {OBS_DIM}-dim vector (real-valued, sensor noise std {SENSOR_NOISE}) "
          f"and a {SIZE}x{SIZE} image in [0, 1] (8-bit / 255)")
    start = time.perf_counter()
    losses = []
    for step in range(steps):
        ep = make_episodes(batch, min_len, max_len, generator=data)
        loss = negative_elbo(model, vector_head, image_head, ep).total.mean()  # nats / episode
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % log_every == 0 or step == steps - 1:
            print(f"  step {step:4d}  train -ELBO {losses[-1]:10.1f} nats/episode  sigma vector "
                  f"{vector_head.scalar_sigma():.4f}  image {image_head.scalar_sigma():.4f}")
    seconds = time.perf_counter() - start

    # Held-out episodes, heads in eval mode: the running sigmas fitted on training batches, so
    # this is a valid bound (a one-sample estimate of the ELBO; the training-mode value fits
    # sigma to the batch it scores and is optimistic, the paper's App. C).
    model.eval()
    vector_head.eval()
    image_head.eval()
    test = make_episodes(batch, min_len, max_len, generator=data)
    with torch.no_grad():
        bound = negative_elbo(model, vector_head, image_head, test)
        err = (model(test).vector - test.obs)[test.mask]  # (real steps, 7)
    rmse = err.pow(2).mean(0).sqrt()
    sv, si = vector_head.scalar_sigma(), image_head.scalar_sigma()
    lengths = test.lengths
    steps_total = int(lengths.sum())
    print(f"trained {steps} steps in {seconds:.1f} s")
    print(f"held-out -ELBO per episode (nats; eval mode, running sigmas; {len(lengths)} episodes, "
          f"{steps_total} real steps):")
    for n, v, i, k, tot in zip(lengths.tolist(), bound.vector.tolist(), bound.image.tolist(),
                               bound.kl.tolist(), bound.total.tolist(), strict=True):
        print(f"  {n:2d} steps: {tot:10.1f}  (vector {v:7.1f}, image {i:10.1f}, KL {k:6.1f})")
    mean = bound.total.mean()
    print(f"  mean {float(mean):.1f} nats/episode = {float(bound.total.sum()) / steps_total:.1f} "
          f"nats/step (image density on [0, 1]^{SIZE * SIZE}: negative values are fine)")
    print(f"sigma vector obs: {sv:.4f} (units of the vector; the sensor noise is {SENSOR_NOISE}); "
          "held-out RMSE per entry: "
          + ", ".join(f"{n} {float(r):.3f}" for n, r in zip(FEATURES, rmse, strict=True)))
    print(f"sigma image:      {si:.4f} (intensity on [0, 1])")
    print(f"effective beta (2 sigma^2): vector {2 * sv**2:.3g}, image {2 * si**2:.3g}; as one "
          f"hand-tuned loss: SSE_image + {si**2 / sv**2:.3g} SSE_vector + {2 * si**2:.3g} KL")
    return Result(first_loss=losses[0], last_loss=losses[-1], test_bound=bound.total,
                  test_lengths=lengths, vector_sigma=sv, image_sigma=si, seconds=seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(steps=args.steps, batch=args.batch, seed=args.seed)
