"""The README's "use a calibrated decoder in your own model" example runs as written."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys):
    text = README.read_text()
    match = re.search(r"<!-- readme-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README example block not found"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    sigma = float(re.search(r"sigma ([0-9.]+)", out).group(1))
    assert 0.05 < sigma < 1.0



def test_readme_outside_image_vaes_blocks_run_and_mean_what_they_say():
    """The one-line MSE replacement and the masked episodes, as written, then checked against
    the closed form: sigma^2 is the MSE (of the observed steps), padding adds nothing."""
    blocks = re.findall(r"<!-- readme-outside-images.*?-->\s*```python\n(.*?)```",
                        README.read_text(), re.S)
    assert len(blocks) == 2
    one_line: dict = {}
    exec(compile(blocks[0], str(README), "exec"), one_line)
    pred, target, nll = one_line["pred"].detach(), one_line["target"], one_line["nll"]
    mse = float((pred - target).pow(2).mean())
    assert float(one_line["sigma"]) ** 2 == pytest.approx(mse, rel=1e-5)
    log_density = Normal(pred, math.sqrt(mse)).log_prob(target).sum(1)  # closed form
    torch.testing.assert_close(nll.detach(), -log_density, rtol=1e-5, atol=1e-4)
    assert torch.isfinite(one_line["pred"].grad).all()

    masked: dict = {}
    exec(compile(blocks[1], str(README), "exec"), masked)
    dist, obs, mask, nll = masked["dist"], masked["obs"], masked["mask"], masked["nll"]
    assert nll.shape == (4,) and float(nll[3]) == 0.0  # the empty episode contributes nothing
    observed = mask[:, :, None].expand_as(obs)
    mse_observed = float((dist.mean - obs)[observed].pow(2).mean())
    assert float(dist.sigma) ** 2 == pytest.approx(mse_observed, rel=1e-5)
    sigma = math.sqrt(mse_observed)
    expected = (Normal(dist.mean, sigma).log_prob(obs) * observed).flatten(1).sum(1)
    torch.testing.assert_close(-nll, expected, rtol=1e-5, atol=1e-4)


def test_readme_representation_block_gives_the_encoders_posterior(tmp_path, monkeypatch,
                                                                   capsys):
    """The "use its encoder" block, run where ``runs/frey/export`` is an exported model: the
    shapes it prints, and the numbers against the encoder's own output (mean, log-variance)."""
    from sigmavae.data import load_dataset
    from sigmavae.run import TrainConfig, build_vae, save_pretrained

    blocks = re.findall(r"<!-- readme-representation.*?-->\s*```python\n(.*?)```",
                        README.read_text(), re.S)
    assert len(blocks) == 1
    config = TrainConfig(data="frey")
    model = build_vae(config, (1, 28, 20))
    save_pretrained(model, config, tmp_path / "runs" / "frey" / "export")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert capsys.readouterr().out.strip() == "(16, 20) (16, 20)"
    x = load_dataset("frey", "test").images[:16].float() / 255
    with torch.no_grad():
        mu, logvar = model.eval().encoder(x).chunk(2, dim=1)
    torch.testing.assert_close(namespace["mean"], mu)
    torch.testing.assert_close(namespace["scale"], (0.5 * logvar).exp())
