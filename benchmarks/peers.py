"""Peer libraries' training loops for the throughput benchmark, each in an environment of its own.

pythae (Chadebec et al., "Pythae: Unifying Generative Autoencoders in Python", 2022) is installed
on demand from PyPI into a virtual environment under ``benchmarks/.peers/`` that sees the running
environment's packages (torch, sigmavae) through a ``.pth`` file, so that pip adds only what
pythae needs beyond them and both loops run the same torch build. Its loop trains the same
architecture as ours (our conv encoder and decoder, wrapped in pythae's encoder/decoder classes)
with pythae's own VAE loss (Gaussian MSE, fixed variance) and trainer, on the same images held
in memory as pythae expects them (a float tensor in a ``BaseDataset``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import torch

PYTHAE = "pythae==0.1.2"
PEERS = Path(__file__).resolve().parent / ".peers"


class PeerUnavailable(RuntimeError):
    """A peer library could not be installed or imported; the message says why."""


def pythae_python(root: Path = PEERS) -> Path:
    """The Python of a virtual environment with :data:`PYTHAE` installed (made on first use).

    Raises:
        PeerUnavailable: the environment could not be made or pip could not install pythae
            (e.g. no access to a package index).
    """
    env = root / PYTHAE.replace("==", "-")
    python = env / "bin" / "python"
    if python.is_file() and _imports_pythae(python):
        return python
    shutil.rmtree(env, ignore_errors=True)
    try:
        venv.create(env, with_pip=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise PeerUnavailable(f"cannot create a virtual environment in {env}: {err}") from None
    # The running environment's packages (torch, sigmavae and its dependencies), .pth files
    # included, are visible to the peer's interpreter and to pip's resolver.
    site = sysconfig.get_paths()["purelib"]
    purelib = Path(sysconfig.get_paths(vars={"base": str(env), "platbase": str(env)})["purelib"])
    (purelib / "sigmavae-benchmark.pth").write_text(f"import site; site.addsitedir({site!r})\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", PYTHAE],
                          capture_output=True, text=True)
    if done.returncode != 0 or not _imports_pythae(python):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PeerUnavailable(f"pip could not install {PYTHAE} into {env}: {tail[0]}")
    return python


def _imports_pythae(python: Path) -> bool:
    code = "import pythae, torch, sigmavae"
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def pythae_loop(train_images: torch.Tensor, val_images: torch.Tensor, epochs: int, batch: int,
                lr: float, out: Path, device: torch.device) -> dict[str, float]:
    """Train our conv VAE's architecture with pythae's ``BaseTrainer`` (run inside the peer
    environment). ``train_images``/``val_images``: uint8 ``(N, C, H, W)``. Returns images/s over
    the whole ``train()`` call (trainer set-up, epochs, its validation and final save)."""
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from sigmavae import likelihoods
    from sigmavae.models import build_conv_vae

    shape = tuple(train_images.shape[1:])
    ours = build_conv_vae(shape, likelihoods.create("optimal_sigma"))
    latent = ours.latent_dim

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = ours.encoder

        def forward(self, x: torch.Tensor) -> ModelOutput:
            mean, log_var = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = ours.decoder

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.net(z))

    config = VAEConfig(input_dim=shape, latent_dim=latent, reconstruction_loss="mse")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    # pythae holds the data as float tensors (its pipeline converts them so as well).
    train = BaseDataset(train_images.float() / 255, torch.zeros(len(train_images)))
    val = BaseDataset(val_images.float() / 255, torch.zeros(len(val_images)))
    start = time.perf_counter()
    trainer = BaseTrainer(model, train_dataset=train, eval_dataset=val, training_config=(
        BaseTrainerConfig(output_dir=str(out), num_epochs=epochs,
                          per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
                          learning_rate=lr, no_cuda=device.type != "cuda")))
    trainer.train()
    seconds = time.perf_counter() - start
    return {"images_per_s": len(train_images) * epochs / seconds, "seconds": seconds,
            "train_images": len(train_images), "epochs": epochs, "python": sys.executable}
