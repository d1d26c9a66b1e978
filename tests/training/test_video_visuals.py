"""Pictures of a video model's predictions (sigmavae.training.video_visuals): the PNG strip of
truth and sampled continuations, and the animated GIF."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sigmavae import likelihoods
from sigmavae.models import build_svg
from sigmavae.training.video_visuals import (
    predicted_sequences,
    save_prediction_gif,
    save_prediction_strip,
)

TINY = {"backbone": "dcgan", "context_frames": 2, "g_dim": 8, "z_dim": 2, "rnn_size": 8,
        "width": 4}


def _sequences(n: int = 2, frames: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, frames, 1, 64, 64), dtype=torch.uint8, generator=g)


def test_predictions_keep_the_given_frames_and_sample_the_rest(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_svg((4, 1, 64, 64), likelihoods.create("optimal_sigma"), **TINY)
    truth = _sequences()
    predictions = predicted_sequences(model, truth, samples=3, seed=1)
    assert predictions.shape == (2, 3, 4, 1, 64, 64)  # the model's 2 given + 2 predicted frames
    torch.testing.assert_close(predictions[:, :, :2], (truth[:, None, :2].float() / 255)
                               .expand(-1, 3, -1, -1, -1, -1))
    again = predicted_sequences(model, truth, samples=3, seed=1)
    torch.testing.assert_close(predictions, again)  # seeded

    strip = save_prediction_strip(truth, predictions, tmp_path / "strip.png")
    with Image.open(strip) as image:
        # rows: truth + 3 samples per sequence; columns: the longer of 5 true and 4 sampled
        # frames; frames upscaled to at least 64 px, 2 px padding
        assert image.size == (5 * (64 + 2) + 2, 2 * 4 * (64 + 2) + 2)
    gif = save_prediction_gif(truth, predictions, tmp_path / "strip.gif", context_frames=2)
    with Image.open(gif) as image:
        assert image.n_frames == 4  # one GIF frame per time step both have
        image.seek(0)
        given = image.convert("RGB").getpixel((3, 3))
        image.seek(3)
        predicted = image.convert("RGB").getpixel((3, 3))
    assert given != predicted and predicted[0] > 200 and predicted[1] < 60  # red: predicted


def test_an_unconditional_model_is_refused() -> None:
    from sigmavae.models import build_conv_vae

    model = build_conv_vae((1, 28, 28), likelihoods.create("optimal_sigma"))
    with pytest.raises(ValueError, match="not a conditional sequence model"):
        predicted_sequences(model, torch.zeros(2, 3, 1, 28, 28, dtype=torch.uint8), samples=1)
