"""Fréchet distance between prior samples and test images (FID; Heusel et al., 2017).

``N`` prior samples (decoder means of ``z ~ N(0, I)``, images in [0, 1]) are compared with the first
``N`` test images through :class:`torchmetrics.image.fid.FrechetInceptionDistance`; grey images are
repeated to 3 channels. Feature extractors (``--fid-features``):

* ``inception`` (default): the standard InceptionV3 pool features (2048-d). It needs the
  ``torch-fidelity`` package (``pip install torch-fidelity``, not a dependency of sigmavae) and its
  weights file :data:`INCEPTION_WEIGHTS_FILE`, which torch-fidelity downloads on first use into
  ``<torch hub dir>/checkpoints/`` (``torch.hub.get_dir()``, i.e. ``$TORCH_HOME/hub``). Offline,
  copy the file there, or pass ``inception:PATH``. If either is missing FID is reported as not
  available, with that instruction (but a named ``inception:PATH`` that is not a usable weights
  file is an error).
* ``module:function`` or ``path/to/file.py:function``: ``function()`` returns an ``nn.Module``
  (an ``nn.Module`` instance is used as is) mapping float images ``(N, 3, H, W)`` in [0, 1] to
  features ``(N, d)``. Numbers are comparable only for the same extractor and ``N``.
* ``classifier:PATH``: the features of a small CNN trained on a labelled training split and saved
  by :func:`sigmavae.metrics.fid_classifier.train_classifier` (the offline substitute that
  ``sigmavae experiment`` uses; ranks sample quality within one data set, not comparable with a
  published FID).
* ``pixels``: the flattened pixels (a Fréchet distance in pixel space; a weak, offline proxy).

A named extractor that cannot be used (no such module, function or file; it fails to import or
to run; it is not an ``nn.Module`` giving ``(N, d)`` features) raises
:class:`FeatureExtractorError`, a ``ValueError``: an error, never "FID n/a".

FID is biased upwards for small ``N`` (it is usually reported at ``N = 10000`` or more).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ..likelihoods import LikelihoodInputError
from ..messages import first_line
from ..objective import (
    ConditionalModel,
    Model,
    compute_dtype,
    context_frames,
    images_from_params,
    per_frame,
)
from ..streams import stream_seed
from ._common import EvalContext, MetricUnavailable, eval_mode, fmt, model_device
from .frechet import frechet_distance
from .registry import MetricOption, register_metric

if TYPE_CHECKING:  # both imported where used, on demand
    from torchmetrics import Metric

    from .fid_classifier import ClassifierFeatures

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         + INCEPTION_WEIGHTS_FILE)


def inception_weights_location() -> Path:
    """Where torch-fidelity looks for (and downloads) the InceptionV3 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


class PixelFeatures(nn.Module):
    """The identity feature map: ``(N, 3, H, W)`` -> ``(N, 3 H W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def torch_fidelity_installed() -> bool:
    """Whether the ``torch-fidelity`` package (torchmetrics' Inception backend) is importable."""
    return importlib.util.find_spec("torch_fidelity") is not None


def _inception_help() -> str:
    return (f"put the InceptionV3 weights {INCEPTION_WEIGHTS_FILE} (from {INCEPTION_WEIGHTS_URL}) "
            f"in {inception_weights_location().parent} or pass --fid-features inception:PATH, "
            "or use a custom extractor (--fid-features module:function, or pixels)")


class FeatureExtractorError(ValueError):
    """The FID feature extractor the user named (``--fid-features``) cannot be used: no such
    module, function or file, it fails to import or to run, it does not give an ``nn.Module``
    mapping images to ``(N, d)`` features, or a named Inception weights file is missing or
    unreadable. An error, not "FID n/a": what was asked for cannot be computed."""


#: What ``--fid-features`` accepts (for error messages).
FEATURES_EXPECTED = ("inception, inception:WEIGHTS.pth, classifier:PATH, pixels, "
                     "module:function or "
                     "file.py:function (a function returning an nn.Module, or an nn.Module "
                     "instance)")


def _spec_error(spec: str, what: str) -> FeatureExtractorError:
    return FeatureExtractorError(f"--fid-features {spec!r}: {what}")


def _load_custom(spec: str) -> nn.Module:
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise _spec_error(spec, f"expected module:function or file.py:function; the choices "
                                f"are {FEATURES_EXPECTED}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise _spec_error(spec, f"no such file {target}")
        name = f"_sigmavae_fid_features_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise _spec_error(spec, f"cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # the user's file fails to run: say how, in one line
            sys.modules.pop(name, None)
            reason = first_line(err, with_type=True)
            raise _spec_error(spec, f"cannot import {target}: {reason}") from err
    else:
        try:
            module = importlib.import_module(target)
        except Exception as err:  # no such module, or it fails on import
            raise _spec_error(spec, f"cannot import module {target!r} "
                                    f"({first_line(err, with_type=True)})") from err
    obj = getattr(module, attr, None)
    if obj is None:
        raise _spec_error(spec, f"{target} has no attribute {attr!r}")
    if isinstance(obj, nn.Module):
        extractor = obj
    elif callable(obj):
        try:
            extractor = obj()
        except Exception as err:
            reason = first_line(err, with_type=True)
            raise _spec_error(spec, f"calling {attr}() failed ({reason}); expected "
                                    "a function without arguments returning an nn.Module") \
                from err
    else:
        raise _spec_error(spec, f"{attr} in {target} is of type {type(obj).__name__}, not an "
                                "nn.Module or a function returning one")
    if not isinstance(extractor, nn.Module):
        raise _spec_error(spec, f"{attr}() returned {type(extractor).__name__}, not an "
                                "nn.Module")
    return extractor


def _check_extractor(extractor: nn.Module, spec: str, image_shape: tuple[int, ...]) -> None:
    """Run ``extractor`` on two grey test images: it must give ``(2, d)`` float features."""
    h, w = image_shape[-2:]
    param = next(extractor.parameters(), None)
    probe = torch.full((2, 3, h, w), 0.5, device=None if param is None else param.device)
    try:
        with torch.no_grad(), eval_mode(extractor):
            out = extractor(probe)
    except Exception as err:
        raise _spec_error(spec, f"the extractor fails on a (2, 3, {h}, {w}) batch of images in "
                                f"[0, 1] ({first_line(err, with_type=True)})") from err
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 \
            or not out.is_floating_point():
        got = (f"a {out.dtype} tensor of shape {tuple(out.shape)}"
               if isinstance(out, torch.Tensor) else type(out).__name__)
        raise _spec_error(spec, f"the extractor maps (2, 3, {h}, {w}) images to {got}; expected "
                                "(2, d) float features")


def check_fid_features(spec: str | None, image_shape: tuple[int, ...]) -> None:
    """Fail early on a ``--fid-features`` value that cannot work, before any metric runs.

    Checks the syntax, that a named Inception weights file exists, and loads and runs a custom
    extractor once. Missing torch-fidelity or default weights are not checked here: FID is then
    reported as not available, with the reason.

    Raises:
        FeatureExtractorError: one line naming the value and what is expected.
    """
    if spec is None or spec == "pixels" or spec == "inception":
        return
    if spec.startswith("inception:"):
        _inception_weights(spec)
        return
    if spec.startswith("classifier:"):
        _check_extractor(_classifier(spec), spec, image_shape)
        return
    _check_extractor(_load_custom(spec), spec, image_shape)


def _classifier(spec: str) -> ClassifierFeatures:
    """The extractor of ``classifier:PATH`` (a FeatureExtractorError if it is not one)."""
    from .fid_classifier import load_classifier_features

    try:
        return load_classifier_features(spec.partition(":")[2])
    except ValueError as err:
        raise _spec_error(spec, str(err)) from None


def _inception_weights(spec: str) -> str | None:
    """The weights path of ``inception[:PATH]`` (``None``: torch-fidelity's cache); a named path
    that is not a file is the user's error."""
    weights = spec.partition(":")[2] or None
    if weights is not None and not Path(weights).is_file():
        what = "is a directory" if Path(weights).is_dir() else "does not exist"
        raise _spec_error(spec, f"the Inception weights file {weights} {what}; expected the "
                                f"torch-fidelity file {INCEPTION_WEIGHTS_FILE} (from "
                                f"{INCEPTION_WEIGHTS_URL})")
    return weights


def build_fid_metric(spec: str | None, image_shape: tuple[int, ...]) -> tuple[Metric, str]:
    """The torchmetrics FID metric for feature spec ``spec`` and its description.

    Raises:
        FeatureExtractorError: an extractor or weights file named in ``spec`` cannot be used
            (see :func:`check_fid_features`).
        MetricUnavailable: the default Inception features cannot be loaded (one line saying what
            to install or where to put the weights).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    spec = spec or "inception"
    h, w = image_shape[-2:]  # (C, H, W), or (T, C, H, W) frames
    if spec == "inception" or spec.startswith("inception:"):
        weights = _inception_weights(spec)
        if not torch_fidelity_installed():
            raise MetricUnavailable(
                "Inception features need the torch-fidelity package (pip install torch-fidelity, "
                f"or torchmetrics[image]); then {_inception_help()}")
        try:
            metric = FrechetInceptionDistance(feature=2048, normalize=False,
                                              feature_extractor_weights_path=weights)
        except Exception as err:  # no network, corrupt file, ...: report, don't crash
            first = first_line(err)
            if weights is not None:  # the file the user named is not usable
                raise _spec_error(spec, f"could not load the InceptionV3 weights {weights} "
                                        f"({first}); expected the torch-fidelity file "
                                        f"{INCEPTION_WEIGHTS_FILE}") from err
            raise MetricUnavailable(f"could not load the InceptionV3 weights ({first}); "
                                    f"{_inception_help()}") from err
        return metric, f"InceptionV3 pool3 (2048-d, torch-fidelity weights {weights or 'cache'})"
    extractor: nn.Module
    if spec == "pixels":
        extractor, desc = PixelFeatures(), f"pixels (3x{h}x{w} flattened; not Inception)"
    elif spec.startswith("classifier:"):
        classifier = _classifier(spec)
        extractor, desc = classifier, classifier.describe()
    else:
        extractor, desc = _load_custom(spec), f"custom extractor {spec} (not Inception)"
        _check_extractor(extractor, spec, image_shape)
    extractor.eval()
    metric = FrechetInceptionDistance(feature=extractor, normalize=True,
                                      input_img_size=(3, h, w))
    return metric, desc


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` with ``C`` 1 (repeated) or 3, as float in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"FID needs grey or RGB images, got {images.shape[1]} channels")
    return images


@torch.no_grad()
def fid_from_images(metric: Metric, real: torch.Tensor, fake: torch.Tensor,
                    batch_size: int = 256) -> float:
    """Feed ``real`` and ``fake`` (already in the extractor's input format) to ``metric``."""
    metric.reset()
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, images.shape[0], batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    return float(metric.compute())


@torch.no_grad()
def metric_features(metric: Metric, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The features ``(N, d)`` (float64, CPU) that ``metric`` (from :func:`build_fid_metric`)
    computes of ``images`` (in its input format), batch by batch: the ones its ``update`` sums."""
    extractor = cast(nn.Module, metric.inception)  # torchmetrics' name for any extractor
    with eval_mode(extractor):
        return torch.cat([extractor(images[start:start + batch_size]).double().cpu()
                          for start in range(0, images.shape[0], batch_size)])


@torch.no_grad()
def bootstrap_stderr(real: torch.Tensor, fake: torch.Tensor, resamples: int,
                     seed: int = 0) -> float | None:
    """The bootstrap standard error of the Fréchet distance of two feature sets ``(N, d)``,
    ``(M, d)``: the standard deviation (unbiased) of the distance over ``resamples`` draws of
    ``N`` real and ``M`` fake feature vectors with replacement (a CPU generator seeded with
    ``seed``). The error of evaluating one model with finite samples and test images, not the
    spread between trainings (seeds). ``None`` for fewer than 2 resamples."""
    if resamples < 2:
        return None
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor([
        frechet_distance(real[torch.randint(real.shape[0], (real.shape[0],), generator=gen)],
                         fake[torch.randint(fake.shape[0], (fake.shape[0],), generator=gen)])
        for _ in range(resamples)], dtype=torch.float64)
    return float(values.std(correction=1))


@torch.no_grad()
def prior_samples(model: Model, n: int, seed: int = 0, batch_size: int = 256,
                  device: torch.device | None = None,
                  context: torch.Tensor | None = None,
                  draw_seed: int | None = None) -> torch.Tensor:
    """Decoder means of ``n`` prior draws (noise ``(n, latent_dim)`` from a CPU generator seeded
    with ``seed``, through ``model.generate``), images in [0, 1] ``(n, *data_shape)`` on the CPU
    (the model runs in its precision: float64 for a ``.double()`` model). A conditional sequence
    model continues the ``n`` sequences of ``context`` (uint8 ``(n, T, C, H, W)``) and gives its
    predicted frames ``(n, T_model - context_frames, C, H, W)``.

    With ``draw_seed``: one draw ``x ~ p(x|z)`` at each of the same prior draws instead of the
    decoder mean (the global random state seeded with ``draw_seed`` inside, restored after).
    """
    device = device or model_device(model)
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    dtype = compute_dtype(model)
    given = context_frames(model)
    if given and (context is None or context.shape[0] < n):
        raise ValueError(f"prior samples of a model given {given} context frames need {n} "
                         "context sequences")
    out = []
    devices = [device] if device.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=devices, enabled=draw_seed is not None):
        if draw_seed is not None:
            torch.manual_seed(draw_seed)
        for start in range(0, n, batch_size):
            noise = z[start:start + batch_size].to(device, dtype)
            if given and context is not None:
                frames = context[start:start + batch_size, :given].to(device, dtype) / 255.0
                params = cast(ConditionalModel, model).generate(noise, frames)
            else:
                params = model.generate(noise)
            out.append(images_from_params(model, params, draw=draw_seed is not None).cpu())
    return torch.cat(out)


def _markdown_rows(title: str, shown: str) -> Callable[[dict], list[tuple[str, str, str]]]:
    """The report's table row of an FID result, ``shown`` saying what a prior sample is."""

    def rows(result: dict) -> list[tuple[str, str, str]]:
        stderr = result.get("fid_bootstrap_stderr")
        value = fmt(result["fid"], 2) + ("" if stderr is None else f" ± {fmt(stderr, 2)}")
        error = ("" if stderr is None else
                 f"; ± bootstrap SE over the samples and test images "
                 f"({result['bootstrap_resamples']} resamples; not the spread between trainings)")
        return [(title, value,
                 f"{result['features']}; N = {result['num_real']} prior samples ({shown}) vs "
                 f"test images; biased upwards for small N{error}")]

    return rows


#: The report rows of ``fid`` (decoder means).
markdown_rows = _markdown_rows("FID", "decoder means")


@register_metric("fid", "Frechet distance of prior samples to the test images (Inception or "
                 "custom features)", title="FID", rows=markdown_rows, options=[
                     MetricOption("fid_samples", int, 10_000, "prior samples and test images for "
                                  "FID (at most the split's size)", ge=2),
                     MetricOption("fid_bootstrap", int, 20, "bootstrap resamples of the "
                                  "samples' and test images' features for FID's standard error "
                                  "(0: none)", ge=0),
                     MetricOption("fid_features", str | None, None, "inception (default; needs "
                                  "torch-fidelity and its weights), inception:WEIGHTS.pth, "
                                  "pixels, or module:function / file.py:function returning an "
                                  "nn.Module that maps (N, 3, H, W) floats in [0, 1] to (N, d)",
                                  metavar="PATH_OR_NAME"),
                 ])
def run(ctx: EvalContext) -> dict:
    return _frechet(ctx, draws=False)


@register_metric("fid_draws", "FID of one draw x ~ p(x|z) at each prior sample instead of its "
                 "decoder mean (reads the fid_* options)", title="FID of draws from p(x|z)",
                 rows=_markdown_rows("FID of draws from p(x|z)", "one draw x ~ p(x|z) each"))
def run_draws(ctx: EvalContext) -> dict:
    """``fid`` of draws from the decoder at the same prior latents: what a multimodal decoder
    (a mixture, a categorical) gives, which its mean averages away; a continuous head adds its
    noise. A head whose sigma is fitted to each data image (per-image optimal sigma) has no
    draw at a prior sample: not available, with that reason."""
    return _frechet(ctx, draws=True)


def _frechet(ctx: EvalContext, draws: bool) -> dict:
    n = min(int(ctx.option("fid_samples")), ctx.images.shape[0])
    if n < 2:
        raise ValueError("FID needs at least 2 images")
    # a --fid-features value that names something unusable raises FeatureExtractorError (an
    # error, not n/a); missing default Inception weights raise MetricUnavailable (n/a, why)
    metric, desc = build_fid_metric(ctx.option("fid_features"), tuple(ctx.images.shape[1:]))
    metric = metric.to(ctx.device)
    # sequence models: every frame is an image (per-frame FID); a conditional model's frames
    # sampled after the test sequences' context frames against those sequences' own frames
    given = context_frames(ctx.model)
    frames = ctx.model.data_shape[0] if given else None
    real = to_rgb(per_frame(ctx.model, ctx.images[:n, given:frames] if given else ctx.images[:n]))
    try:  # draws at the same latents as the means (paired), their noise a stream of its own
        fake = to_rgb(per_frame(ctx.model, prior_samples(
            ctx.model, n, stream_seed(ctx.seed, "fid_prior"), ctx.batch_size, ctx.device,
            context=ctx.images[:n] if given else None,
            draw_seed=stream_seed(ctx.seed, "fid_draws") if draws else None)))
    except LikelihoodInputError as err:  # a sigma that needs the data (per-image scope)
        raise MetricUnavailable(f"no draw from p(x|z) at a prior sample: {first_line(err)}") \
            from None
    if not getattr(metric, "used_custom_model", False):  # Inception: uint8 0..255
        real = torch.round(real * 255).to(torch.uint8)
        fake = torch.round(fake * 255).to(torch.uint8)
    real_features = metric_features(metric, real.to(ctx.device), ctx.batch_size)
    fake_features = metric_features(metric, fake.to(ctx.device), ctx.batch_size)
    value = frechet_distance(real_features, fake_features)
    resamples = int(ctx.option("fid_bootstrap"))
    stderr = bootstrap_stderr(real_features, fake_features, resamples,
                              stream_seed(ctx.seed, "fid_bootstrap"))
    if given:
        samples = (f"predicted frames sampled after each test sequence's {given} context "
                   "frames vs those sequences' own frames"
                   + (" (one draw from p(x|z) per frame)" if draws else ""))
    else:
        samples = (("one draw x ~ p(x|z) at each" if draws else "decoder means of")
                   + " z ~ N(0, I) vs the first N test images")
    return {"available": True, "fid": value, "features": desc, "num_real": n, "num_fake": n,
            "fid_bootstrap_stderr": stderr, "bootstrap_resamples": resamples,
            "units": "squared feature distance; comparable only for the same extractor and N",
            "samples": samples}
