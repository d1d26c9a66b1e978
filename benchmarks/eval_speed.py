"""Evaluation speed: ``sigmavae eval --metrics all`` timed per metric, against the decoder alone.

Trains the paper's small conv VAE (optimal sigma) for one epoch on 28x28x3 CIFAR-10 JPEG images
(a checkpoint like any user's), then runs ``sigmavae eval CKPT --metrics all`` in a subprocess on
``--limit`` validation images and reads each metric's ``seconds`` from the JSON report. Reference
rates, timed in this process on the same model (eval mode, no gradients, batches of
``--batch-size``):

* ``decoder``: the decoder network alone on ``limit * K`` latents (``K = --iwae-samples``);
* ``decoder_and_head``: the decoder plus the head's ``log_prob`` of the image (what an
  importance weight needs beyond the latent terms).

Targets: IWAE with K = 1000 at least 0.8x the decoder-only rate (latents per second), and the
mutual-information estimate at least 0.8x the decoder-only rate for the same number of latent
draws. Prints a table, writes JSON.

    python benchmarks/eval_speed.py [--limit 200] [--iwae-samples 1000] [--images 4000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import extract_cifar_jpegs, machine, write_json

from sigmavae.data import load_dataset
from sigmavae.objective import prepare_batch
from sigmavae.training import TrainConfig, Trainer, load_trained


def train_checkpoint(folder: Path, work: Path) -> Path:
    """A one-epoch run of the small conv VAE; its ``last.ckpt``."""
    out = work / "run"
    ckpt = out / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        cfg = TrainConfig(data="folder", data_root=str(folder), epochs=1, batch_size=128,
                          out=str(out), progress=False, seed=0, accelerator="cpu",
                          data_options={"image_size": 28, "cache_dir": str(work / "cache")})
        Trainer(cfg).fit()
    return ckpt


def decoder_rates(ckpt: Path, folder: Path, work: Path, latents: int,
                  batch: int) -> dict[str, float]:
    """Latents per second through the decoder alone and the decoder plus the head's log_prob."""
    model, _ = load_trained(ckpt)
    images = load_dataset("folder", "val", folder, image_size=28,
                          cache_dir=str(work / "cache")).images
    images = images[torch.arange(batch) % len(images)]  # one batch of real images
    _, target = prepare_batch(images, model.head, torch.float32)
    z = torch.randn(batch, model.latent_dim)
    steps = max(1, latents // batch)

    def rate(with_head: bool) -> float:
        with torch.no_grad():
            model.decoder(z)  # warm-up
            start = time.perf_counter()
            for _ in range(steps):
                params = model.decoder(z)
                if with_head:
                    model.head(params, target=target).log_prob(target).sum()
            return steps * batch / (time.perf_counter() - start)

    return {"decoder": rate(False), "decoder_and_head": rate(True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4000, help="CIFAR-10 JPEGs to use")
    parser.add_argument("--limit", type=int, default=200, help="images evaluated")
    parser.add_argument("--iwae-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="sigmavae-bench-"))
    folder = extract_cifar_jpegs(work / "jpeg", args.images).parent
    ckpt = train_checkpoint(folder, work)
    report_path = work / "eval.json"
    command = [sys.executable, "-m", "sigmavae", "eval", str(ckpt), "--metrics", "all",
               "--split", "val", "--limit", str(args.limit), "--iwae-samples",
               str(args.iwae_samples), "--batch-size", str(args.batch_size), "--device", "cpu",
               "--out", str(report_path)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - start
    metrics = json.loads(report_path.read_text())["metrics"]
    latents = args.limit * args.iwae_samples
    reference = decoder_rates(ckpt, folder, work, latents, args.batch_size)
    rows = {}
    for name, result in metrics.items():
        row = {"seconds": result["seconds"], "available": result.get("available", True)}
        if name == "iwae" and row["available"]:
            row["latents"] = latents
        if name == "mi" and row["available"]:
            row["latents"] = result["num_samples"]
        if "latents" in row:
            row["latents_per_s"] = row["latents"] / max(result["seconds"], 1e-9)
            row["vs_decoder"] = row["latents_per_s"] / reference["decoder"]
        rows[name] = row
    print(f"sigmavae eval --metrics all on {args.limit} images (28x28x3, conv VAE, optimal "
          f"sigma), {total:.1f} s in all (process start and data loading included); CPU, "
          f"{torch.get_num_threads()} threads, flags {' '.join(machine()['cpu_flags'])}")
    print(f"decoder alone: {reference['decoder']:.0f} latents/s; decoder + head log_prob: "
          f"{reference['decoder_and_head']:.0f} latents/s")
    print(f"{'metric':14s} {'seconds':>8s} {'latents/s':>10s} {'vs decoder':>10s}")
    for name, row in rows.items():
        extra = (f"{row['latents_per_s']:10.0f} {row['vs_decoder']:9.2f}x"
                 if "latents_per_s" in row else "")
        note = "" if row["available"] else " (unavailable)"
        print(f"{name:14s} {row['seconds']:8.2f} {extra}{note}")
    write_json({"machine": machine(), "limit": args.limit, "iwae_samples": args.iwae_samples,
                "batch_size": args.batch_size, "eval_seconds": total, "reference": reference,
                "metrics": rows}, Path(args.out))


if __name__ == "__main__":
    main()
