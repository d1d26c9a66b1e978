"""SVG-LP (sigmavae.models.svg): the architecture of the original code, the per-step KL and
log-ratio against torch.distributions, the ELBO as per-frame terms, generation with feedback,
the frame the skips come from, the initialisation, and training with every head."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from sigmavae import likelihoods, objective
from sigmavae.models import SVGLP, build_model, build_svg
from sigmavae.models.svg import BAIR_OPTIONS, SMMNIST_OPTIONS
from sigmavae.models.svg_backbones import FrameEncoder
from sigmavae.objective import PosteriorUnavailable, elbo_terms, prepare_batch
from sigmavae.options import OptionError

TINY = {"width": 4, "g_dim": 8, "z_dim": 3, "rnn_size": 16}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster than several (and than a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _head(name: str) -> likelihoods.LikelihoodHead:
    return likelihoods.create(name, **({"sigma": 0.1} if name == "fixed_sigma" else {}))


def _tiny(frames: int = 4, channels: int = 1, head: str = "learned_sigma", seed: int = 0,
          **options) -> SVGLP:
    torch.manual_seed(seed)
    options = {"context_frames": 2, "backbone": "dcgan", **TINY, **options}
    return build_svg((frames, channels, 64, 64), _head(head), **options)


def _lively(model: SVGLP) -> SVGLP:
    """SVG's N(0, 0.02) weights make a tiny model's output nearly constant: give its networks
    PyTorch's default initialisation, so that what reaches the output shows."""
    with torch.no_grad():
        for net in (model.encoder, model.decoder, model.predictor_rnn, model.posterior_rnn,
                    model.prior_rnn):
            for m in net.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    m.reset_parameters()
    return model


def _spread_gaussians(model: SVGLP) -> None:
    """At SVG's initialisation q and p are both near N(0, 1): move them apart."""
    with torch.no_grad():
        for rnn in (model.posterior_rnn, model.prior_rnn):
            for layer in (rnn.mu, rnn.log_var):
                layer.weight.normal_(0.0, 0.3)
                layer.bias.normal_(0.0, 0.5)


def _frames(batch: int, frames: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, channels, 64, 64), dtype=torch.uint8,
                         generator=g)


class Calls:
    """Records the positional inputs and the output of every call of a module."""

    def __init__(self, module: nn.Module) -> None:
        self.inputs: list[tuple] = []
        self.outputs: list = []
        self.handle = module.register_forward_hook(self._record)

    def _record(self, module, inputs, output) -> None:
        self.inputs.append(inputs)
        self.outputs.append(output)

    def remove(self) -> None:
        self.handle.remove()


def _normal(mu: torch.Tensor, log_var: torch.Tensor) -> Normal:
    return Normal(mu, (0.5 * log_var).exp())


# -- structure ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bair_model() -> SVGLP:
    torch.manual_seed(0)
    return build_svg((12, 3, 64, 64), likelihoods.create("learned_sigma"))


def _convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_defaults_are_the_bair_settings_with_the_vgg_backbone(bair_model) -> None:
    model = bair_model
    assert model.backbone == "vgg" and model.z_dim == 64 and model.g_dim == 128
    assert model.context_frames == 2 and model.latent_dim == 64 * 10
    assert {k: getattr(model, k if k != "context_frames" else "past_frames")
            for k in BAIR_OPTIONS} == BAIR_OPTIONS
    # vgg: 2x64, 2x128, 3x256, 3x512 3x3 convs, then a 4x4 conv to g_dim; max-pooling between
    enc = _convs(model.encoder)
    assert [c.out_channels for c in enc] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 128]
    assert [c.kernel_size for c in enc] == [(3, 3)] * 10 + [(4, 4)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.encoder.modules()) == 1  # reused
    # the decoder mirrors it and ends in the head's channels, with no sigmoid
    dec = _convs(model.decoder)
    assert [c.out_channels for c in dec] == [512, 512, 512, 256, 256, 256, 128, 128, 64, 64, 3]
    assert [c.in_channels for c in dec][1::3][:2] == [1024, 512]  # skips concatenated
    assert not any(isinstance(m, nn.Sigmoid) for m in model.decoder.modules())
    # LSTMs: predictor 2 layers on [h, z] -> tanh(g_dim); posterior, prior 1 layer; rnn 256
    pred, post, prior = model.predictor_rnn, model.posterior_rnn, model.prior_rnn
    assert pred.rnn.embed.in_features == 128 + 64 and len(pred.rnn.cells) == 2
    assert pred.out.out_features == 128 and pred.rnn.cells[0].hidden_size == 256
    assert len(post.rnn.cells) == len(prior.rnn.cells) == 1
    assert post.rnn.embed.in_features == prior.rnn.embed.in_features == 128
    assert post.mu.out_features == post.log_var.out_features == 64


def test_dcgan_backbone_and_the_smmnist_settings() -> None:
    torch.manual_seed(0)
    model = build_svg((15, 1, 64, 64), likelihoods.create("bernoulli"), **SMMNIST_OPTIONS)
    assert model.context_frames == 5 and model.latent_dim == 10 * 10
    enc = _convs(model.encoder)
    assert [c.out_channels for c in enc] == [64, 128, 256, 512, 128]
    assert [(c.kernel_size, c.stride) for c in enc] == [((4, 4), (2, 2))] * 4 + [((4, 4), (1, 1))]
    dec = _convs(model.decoder)
    assert [c.out_channels for c in dec] == [512, 256, 128, 64, 1]
    assert [c.in_channels for c in dec] == [128, 1024, 512, 256, 128]  # skips concatenated
    assert all(isinstance(c, nn.ConvTranspose2d) for c in dec)
    assert isinstance(build_model("svg", (15, 1, 64, 64), likelihoods.create("gaussian"),
                                  **SMMNIST_OPTIONS), SVGLP)


@pytest.mark.parametrize("backbone", ["dcgan", "vgg"])
def test_encoder_gives_a_tanh_code_and_four_skip_maps(backbone) -> None:
    model = _tiny(channels=3, backbone=backbone).eval()
    encoder: FrameEncoder = model.encoder
    code, skips = encoder(torch.rand(5, 3, 64, 64))
    assert code.shape == (5, 8) and code.abs().max() < 1
    assert [tuple(s.shape[1:]) for s in skips] == encoder.skip_shapes
    sizes = [32, 16, 8, 4] if backbone == "dcgan" else [64, 32, 16, 8]
    assert [s.shape[-1] for s in skips] == sizes and [s.shape[1] for s in skips] == [4, 8, 16, 32]


# -- shapes with several heads --------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["dcgan", "vgg"])
@pytest.mark.parametrize("head,channels", [("optimal_sigma", 3), ("bernoulli", 1),
                                           ("categorical", 3), ("logistic_mixture", 1)])
def test_shapes_for_both_backbones_and_several_heads(backbone, head, channels) -> None:
    model = _tiny(channels=channels, head=head, backbone=backbone)
    images = _frames(2, 4, channels)
    x, _ = prepare_batch(images, model.head)
    p = model.head.param_channels(channels)
    out = model(x)
    assert out.params.shape == (2, 2, p, 64, 64)  # frames 2 and 3 of 0..3
    assert out.kl.shape == out.log_prior_ratio.shape == (2,) and (out.kl >= 0).all()
    assert out.z.shape == (2, model.latent_dim) == (2, 3 * 2) and out.posterior is None
    terms = elbo_terms(model, images)
    assert terms.nll.shape == (2,) and torch.isfinite(terms.loss)
    model.eval()
    assert model.reconstruction_params(x).shape == (2, 2, p, 64, 64)
    assert model.generate(torch.randn(2, 3 * 5), x[:, :2]).shape == (2, 5, p, 64, 64)
    samples = objective.sample(model, 2, torch.Generator().manual_seed(0), context=images)
    assert samples.shape == (2, 2, channels, 64, 64) and 0 <= samples.min() <= samples.max() <= 1
    assert objective.reconstruct(model, images).shape == (2, 2, channels, 64, 64)
    assert objective.data_dims(model) == 2 * channels * 64 * 64  # the predicted frames only


def test_longer_sequences_than_the_training_length_are_scored() -> None:
    model = _tiny(frames=4).eval()
    images = _frames(2, 7)
    x, _ = prepare_batch(images, model.head)
    noise = torch.randn(2, 3 * 5)
    out = model(x, noise=noise)
    assert out.params.shape[1] == 5 and out.z.shape == (2, 15) and model.latent_dim == 6
    terms = elbo_terms(model, images, noise=noise)
    torch.testing.assert_close(terms.kl, out.kl)
    assert model.reconstruction_params(x).shape[1] == 5


# -- the KL, the log-ratio and the ELBO -----------------------------------------------------------
def _per_step(model: SVGLP, x: torch.Tensor, noise: torch.Tensor):
    """Run the model with its LSTMs recorded; return its output, the recorded calls and the
    per-frame codes of ``x`` from the encoder alone."""
    post, prior, pred = (Calls(model.posterior_rnn), Calls(model.prior_rnn),
                         Calls(model.predictor_rnn))
    try:
        out = model(x, noise=noise)
    finally:
        for calls in (post, prior, pred):
            calls.remove()
    codes = torch.stack([model.encoder(x[:, t])[0] for t in range(x.shape[1])], 1)
    return out, post, prior, pred, codes


def test_kl_and_log_ratio_match_torch_distributions_per_step() -> None:
    model = _tiny(frames=5, context_frames=2).eval()
    _spread_gaussians(model)
    x = torch.rand(3, 5, 1, 64, 64)
    noise = torch.randn(3, 3 * 3)
    with torch.no_grad():
        out, post, prior, pred, codes = _per_step(model, x, noise)
    assert len(post.outputs) == len(prior.outputs) == len(pred.outputs) == 4  # t = 1 .. 4
    kl = ratio = 0.0
    z = out.z.view(3, 3, 3)
    for t in range(1, 5):
        # teacher forcing: q_t sees h_t = enc(x_t), p_t sees h_{t-1} = enc(x_{t-1})
        torch.testing.assert_close(post.inputs[t - 1][0], codes[:, t])
        torch.testing.assert_close(prior.inputs[t - 1][0], codes[:, t - 1])
        q = _normal(*post.outputs[t - 1][:2])
        p = _normal(*prior.outputs[t - 1][:2])
        if t < 2:  # the context step warms up with the posterior mean and is not scored
            z_t = q.mean
        else:
            z_t = z[:, t - 2]
            torch.testing.assert_close(z_t, q.mean + q.stddev * noise.view(3, 3, 3)[:, t - 2])
            kl = kl + kl_divergence(q, p).sum(1)
            ratio = ratio + (p.log_prob(z_t) - q.log_prob(z_t)).sum(1)
        torch.testing.assert_close(pred.inputs[t - 1][0], torch.cat([codes[:, t - 1], z_t], 1))
    assert (kl > 0.1).all()  # the Gaussians were moved apart: a test that can fail
    torch.testing.assert_close(out.kl, kl)
    torch.testing.assert_close(out.log_prior_ratio, ratio)


def test_float64_noise_gives_float64_latent_terms() -> None:
    model = _tiny().eval()
    _spread_gaussians(model)
    x = torch.rand(2, 4, 1, 64, 64)
    noise = torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        wide = model(x, noise=noise)
        narrow = model(x, noise=noise.float())
    assert wide.log_prior_ratio.dtype == torch.float64 and wide.params.dtype == torch.float32
    torch.testing.assert_close(wide.log_prior_ratio.float(), narrow.log_prior_ratio,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("head", ["learned_sigma", "categorical"])
def test_elbo_is_the_sum_over_predicted_frames_of_nll_and_kl(head) -> None:
    model = _tiny(frames=4, head=head, context_frames=1).eval()
    _spread_gaussians(model)
    images = _frames(2, 4)
    noise = torch.randn(2, 3 * 3)
    with torch.no_grad():
        terms = elbo_terms(model, images, noise=noise)
        x, target = prepare_batch(images, model.head)
        out, post, prior, _, _ = _per_step(model, x, noise)
        nll = sum(-model.head(out.params[:, k], target=target[:, 1 + k])
                  .log_prob(target[:, 1 + k]) for k in range(3))
        kl = sum(kl_divergence(_normal(*post.outputs[t][:2]), _normal(*prior.outputs[t][:2]))
                 .sum(1) for t in range(3))
    torch.testing.assert_close(terms.nll, nll)
    torch.testing.assert_close(terms.kl, kl)
    torch.testing.assert_close(terms.elbo, -(nll + kl))
    assert terms.likelihood.batch_shape == (2 * 3,)


def test_each_batch_starts_from_a_zero_lstm_state() -> None:
    model = _tiny().eval()
    x = torch.rand(2, 4, 1, 64, 64)
    noise = torch.randn(2, 6)
    with torch.no_grad():
        both = model(x, noise=noise)
        again = model(x, noise=noise)
        first = model(x[:1], noise=noise[:1])
    torch.testing.assert_close(both.params, again.params)
    torch.testing.assert_close(both.params[:1], first.params)  # nothing leaks between examples
    torch.testing.assert_close(both.kl[:1], first.kl)


# -- generation -----------------------------------------------------------------------------------
def test_generate_is_deterministic_and_feeds_back_its_predictions(monkeypatch) -> None:
    model = _lively(_tiny(frames=4, head="optimal_sigma")).eval()
    context = torch.rand(2, 2, 1, 64, 64)
    noise = torch.randn(2, 3 * 4)
    with torch.no_grad():
        params = model.generate(noise, context)
        torch.testing.assert_close(model.generate(noise.clone(), context.clone()), params)
        assert not torch.allclose(model.generate(torch.randn(2, 12), context), params)
        # the encoder's input after a generated frame is that frame's head mean in [0, 1]
        seen = Calls(model.encoder)
        model.generate(noise, context)
        seen.remove()
        head = model.head
        for k in range(3):
            fed = head.to_unit_interval(head.predict_mean(params[:, k]))
            torch.testing.assert_close(seen.inputs[1 + k][0], fed)
        # feeding back other frames changes every later frame but not the first
        monkeypatch.setattr(head, "predict_mean", lambda p: torch.zeros_like(p[:, :1]))
        other = model.generate(noise, context)
    torch.testing.assert_close(other[:, 0], params[:, 0])
    assert all(not torch.allclose(other[:, k], params[:, k]) for k in range(1, 4))


def test_generation_conditions_on_the_context_as_forward_does() -> None:
    """The warm-up on the context is the same in forward and generate, so the first prior
    p(z_c | x_<c) that generate samples from is the one the ELBO's KL used."""
    model = _lively(_tiny(frames=5, context_frames=3)).eval()
    _spread_gaussians(model)
    x = torch.rand(2, 5, 1, 64, 64)
    with torch.no_grad():
        train_prior = Calls(model.prior_rnn)
        model(x, noise=torch.randn(2, 6))
        train_prior.remove()
        gen_prior = Calls(model.prior_rnn)
        model.generate(torch.randn(2, 6), x[:, :3])
        gen_prior.remove()
    for i in range(3):  # t = 1, 2 (warm-up) and 3 (the first generated frame)
        torch.testing.assert_close(gen_prior.outputs[i][0], train_prior.outputs[i][0])
        torch.testing.assert_close(gen_prior.outputs[i][1], train_prior.outputs[i][1])


# -- skip connections -----------------------------------------------------------------------------
@pytest.mark.parametrize("skip_from,sources", [("last_context", [2, 2]), ("code", [1, 1]),
                                               ("previous", [2, 3])])
def test_skips_come_from_the_configured_frame(skip_from, sources) -> None:
    model = _lively(_tiny(frames=5, context_frames=3, skip_from=skip_from)).eval()
    assert [model.skip_source(t) for t in (3, 4)] == sources
    x = torch.rand(2, 5, 1, 64, 64)
    noise = torch.randn(2, 6)
    with torch.no_grad():
        finest = model.encoder(x.flatten(0, 1))[1][0].unflatten(0, (2, 5))
        decoded = Calls(model.decoder)
        model(x, noise=noise)
        perturbed = x.clone()
        others = [t for t in range(5) if t not in sources]
        perturbed[:, others] = torch.rand_like(perturbed[:, others])
        model(perturbed, noise=noise)
        source_perturbed = x.clone()
        source_perturbed[:, sources[0]] = torch.rand_like(x[:, 0])
        model(source_perturbed, noise=noise)
        decoded.remove()
    skips, skips_perturbed, skips_moved = (call[1][0].unflatten(0, (2, 2))
                                           for call in decoded.inputs)
    torch.testing.assert_close(skips, finest[:, sources])
    torch.testing.assert_close(skips_perturbed, skips)  # other frames do not reach the skips
    assert not torch.allclose(skips_moved[:, 0], skips[:, 0])  # the source frame does


@pytest.mark.parametrize("skip_from,source", [("last_context", 2), ("code", 1)])
def test_generated_frames_keep_the_skips_of_that_context_frame(skip_from, source) -> None:
    model = _lively(_tiny(frames=5, context_frames=3, skip_from=skip_from)).eval()
    context = torch.rand(2, 3, 1, 64, 64)
    noise = torch.randn(2, 3 * 3)
    with torch.no_grad():
        expected = model.encoder(context[:, source])[1]
        decoded = Calls(model.decoder)
        model.generate(noise, context)
        perturbed = context.clone()
        others = [t for t in range(3) if t != source]
        perturbed[:, others] = torch.rand_like(perturbed[:, others])
        params = model.generate(noise, perturbed)
        decoded.remove()
        unperturbed = model.generate(noise, context)
    assert len(decoded.inputs) == 6
    for call in decoded.inputs:
        for got, want in zip(call[1], expected, strict=True):
            torch.testing.assert_close(got, want)
    assert params.shape[1] == 3
    assert not torch.allclose(params, unperturbed)  # the other frames reach the LSTMs only


def test_previous_frame_skips_follow_the_generated_frames() -> None:
    model = _lively(_tiny(frames=5, context_frames=2, skip_from="previous")).eval()
    context = torch.rand(2, 2, 1, 64, 64)
    with torch.no_grad():
        decoded = Calls(model.decoder)
        params = model.generate(torch.randn(2, 6), context)
        decoded.remove()
        head = model.head
        first = head.to_unit_interval(head.predict_mean(params[:, 0]))
    torch.testing.assert_close(decoded.inputs[0][1][0], model.encoder(context[:, 1])[1][0])
    torch.testing.assert_close(decoded.inputs[1][1][0], model.encoder(first)[1][0])


def test_score_context_scores_every_frame_after_the_first() -> None:
    """SVG's training loss covers the steps 1 .. T-1: as a consistent model, it conditions on
    frame 0 only; the context structure (skips of frame c - 1) stays."""
    model = _tiny(frames=4, context_frames=2, score_context=True).eval()
    _spread_gaussians(model)
    assert model.context_frames == 1 and model.past_frames == 2 and model.latent_dim == 9
    assert [model.skip_source(t) for t in (1, 2, 3)] == [0, 1, 1]
    images = _frames(2, 4)
    with torch.no_grad():
        x, target = prepare_batch(images, model.head)
        noise = torch.randn(2, 9)
        out, post, prior, _, _ = _per_step(model, x, noise)
        terms = elbo_terms(model, images, noise=noise)
        kl = sum(kl_divergence(_normal(*post.outputs[t][:2]), _normal(*prior.outputs[t][:2]))
                 .sum(1) for t in range(3))
        assert out.params.shape[1] == 3
        nll = sum(-model.head(out.params[:, k], target=target[:, 1 + k])
                  .log_prob(target[:, 1 + k]) for k in range(3))
        torch.testing.assert_close(terms.kl, kl)
        torch.testing.assert_close(terms.nll, nll)
        assert model.generate(torch.randn(2, 9), x[:, :1]).shape[1] == 3
        assert model.generate(torch.randn(2, 6), x[:, :2]).shape[1] == 2  # SVG's generation


# -- initialisation -------------------------------------------------------------------------------
def test_initialisation_follows_svg(bair_model) -> None:
    model = bair_model
    nets = [model.encoder, model.decoder, model.predictor_rnn, model.posterior_rnn,
            model.prior_rnn]
    modules = [m for net in nets for m in net.modules()]
    weights = torch.cat([m.weight.detach().flatten() for m in modules
                         if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))])
    assert abs(float(weights.std()) - 0.02) < 0.0005 and abs(float(weights.mean())) < 0.0005
    biases = [m.bias for m in modules if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d,
                                                        nn.Linear, nn.BatchNorm2d))]
    assert all(float(b.detach().abs().max()) == 0.0 for b in biases)
    gammas = torch.cat([m.weight.detach() for m in modules if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(gammas.mean()) - 1.0) < 0.003 and 0.015 < float(gammas.std()) < 0.025
    # LSTM cells keep PyTorch's U(-1/sqrt(H), 1/sqrt(H)), as in SVG (its rule skips them)
    cell = model.predictor_rnn.rnn.cells[0]
    hh = cell.weight_hh.detach()
    assert float(hh.abs().max()) <= 1 / 16 and float(hh.std()) > 0.03
    fresh = likelihoods.create("learned_sigma")
    assert all(torch.equal(a, b) for a, b in zip(model.head.parameters(), fresh.parameters(),
                                                  strict=True))  # the head is left alone


# -- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", likelihoods.names())
def test_a_few_adam_steps_lower_the_loss_with_every_head(head) -> None:
    model = _tiny(frames=3, context_frames=1, head=head)
    images = _frames(2, 3, seed=1)
    noise = torch.randn(2, model.latent_dim, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        terms = elbo_terms(model, images, noise=noise)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        losses.append(float(terms.loss.detach()))
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0], losses


# -- errors ---------------------------------------------------------------------------------------
def test_bad_shapes_and_options_are_one_clear_error() -> None:
    head = likelihoods.create("gaussian")
    with pytest.raises(OptionError, match=r"model 'svg': svg's vgg backbone needs 64x64 frames, "
                                          r"got 32x32"):
        build_model("svg", (4, 3, 32, 32), head)
    with pytest.raises(OptionError, match=r"sequences of frames \(T, C, H, W\)"):
        build_model("svg", (3, 64, 64), head)
    with pytest.raises(OptionError, match=r"need T >= 3"):
        build_model("svg", (2, 3, 64, 64), head)
    with pytest.raises(OptionError, match="needs context_frames >= 2"):
        build_model("svg", (4, 3, 64, 64), head, context_frames=1, skip_from="code")
    with pytest.raises(OptionError, match="option backbone must be 'dcgan' or 'vgg'"):
        build_model("svg", (4, 3, 64, 64), head, backbone="resnet")
    with pytest.raises(OptionError, match="unknown option latent_dim; its options are: backbone"):
        build_model("svg", (4, 3, 64, 64), head, latent_dim=10)
    with pytest.raises(OptionError, match="sizes must be >= 1, got z_dim=0"):
        build_svg((4, 3, 64, 64), head, z_dim=0)


def test_bad_inputs_are_one_clear_error() -> None:
    model = _tiny().eval()
    x = torch.rand(2, 4, 1, 64, 64)
    with pytest.raises(ValueError, match=r"svg: x must have shape \(B, T, 1, 64, 64\) with T >= "
                                         r"3 frames"):
        model(x[:, :2])
    with pytest.raises(ValueError, match=r"svg: x must have shape"):
        model(torch.rand(2, 4, 3, 64, 64))
    with pytest.raises(ValueError, match=r"noise must have shape .* = \(2, 6\) for 4 frames"):
        model(x, noise=torch.randn(2, 5))
    with pytest.raises(ValueError, match="generate needs context"):
        model.generate(torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"svg: context must have shape"):
        model.generate(torch.randn(2, 6), x[:, :1])
    with pytest.raises(ValueError, match=r"generate's noise must have shape"):
        model.generate(torch.randn(2, 7), x[:, :2])
    with pytest.raises(PosteriorUnavailable, match="learned and conditional"):
        model.posterior(x)
