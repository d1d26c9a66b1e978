"""Training throughput of SVG-LP (the video model) on Stochastic Moving MNIST, optimal sigma.

Two loops over the same model (``--model svg``, SVG's SM-MNIST settings: dcgan backbone,
g_dim 128, z_dim 10, 5 context + 10 predicted frames of 64x64; ``--width`` scales the
encoder/decoder) and optimiser (Adam 2e-3), each in its own Python process:

* ``compute_only``: forward/backward/step on one resident batch of sequences and nothing else,
  eager float32 with torch's defaults; measured before and after the other loop and averaged,
  so a drift of the machine's speed favours neither side;
* ``end_to_end``: ``sigmavae.training.Trainer.fit`` as a user runs it on SM-MNIST generated from
  the shipped MNIST test digits (in-memory uint8 sequences, progress bar, CSV/TensorBoard logs,
  validation, prediction grids, atomic checkpoints every epoch) with its defaults;
  ``last_epoch_sequences_per_s`` is the last epoch's training + validation alone.

Prints sequences/s and the ratio, the CPU flags it ran on, writes JSON.

    python benchmarks/video_throughput.py [--sequences 256] [--batch 16] [--width 64]
        [--epochs 2] [--steps 8] [--device cpu|cuda] [--out FILE]
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
from _common import machine, time_steps, write_json

from sigmavae import likelihoods
from sigmavae.data import load_dataset
from sigmavae.experiments.presets import mnist_root, shared_data_dir
from sigmavae.models.svg import SMMNIST_OPTIONS, build_svg
from sigmavae.objective import elbo_terms
from sigmavae.training import TrainConfig, Trainer

FRAMES = 15  # 5 context + 10 predicted, SVG's SM-MNIST
LR = 2e-3


def model_options(width: int) -> dict[str, object]:
    return {**SMMNIST_OPTIONS, "width": width}


def compute_only(args: argparse.Namespace, device: torch.device) -> float:
    """Sequences/s of forward/backward/step on one resident batch."""
    torch.manual_seed(0)
    model = build_svg((FRAMES, 1, 64, 64), likelihoods.create("optimal_sigma"),
                      **model_options(args.width)).to(device)  # type: ignore[arg-type]
    model.head.validate_args = False  # as in the trainer: no per-step data check
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    batch = torch.randint(0, 256, (args.batch, FRAMES, 1, 64, 64), dtype=torch.uint8).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        elbo_terms(model, batch).loss.backward()
        opt.step()

    return args.steps * args.batch / time_steps(step, args.steps, args.warmup, device)


def end_to_end(args: argparse.Namespace, device: torch.device, work: Path) -> dict[str, float]:
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit("no shared/data folder found: run from the project folder beside "
                         "shared/ or set SIGMAVAE_SHARED_DATA")
    root = mnist_root(shared)
    options = {"frames": FRAMES, "digits": 2}
    train = load_dataset("smmnist", "train", root, **options).subset(args.sequences)
    val = load_dataset("smmnist", "val", root, **options).subset(max(args.batch, 32))
    cfg = TrainConfig(data="smmnist", data_root=str(root), data_options=options, model="svg",
                      model_options=model_options(args.width), likelihood="optimal_sigma",
                      epochs=args.epochs, batch_size=args.batch, lr=LR, out=str(work / "run"),
                      progress=True, log_every_n_steps=5, seed=0, num_samples=8,
                      accelerator=device.type,
                      ).with_command_defaults()  # as `sigmavae train` runs it
    start = time.perf_counter()
    final = Trainer(cfg, train, val).fit()
    seconds = time.perf_counter() - start
    trained = len(train) * args.epochs
    return {"sequences_per_s": trained / seconds, "seconds": seconds,
            "train_sequences": len(train), "epochs": args.epochs,
            "last_epoch_sequences_per_s": len(train) / final["seconds"]}


def in_subprocess(loop: str, args: argparse.Namespace, work: Path) -> dict:
    command = [sys.executable, __file__, "--loop", loop, "--work", str(work),
               "--sequences", str(args.sequences), "--batch", str(args.batch),
               "--width", str(args.width), "--epochs", str(args.epochs),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=256, help="training sequences")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--width", type=int, default=64,
                        help="encoder/decoder width (SVG: 64; the cpu preset of `sigmavae "
                             "experiment video`: 32)")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end epochs")
    parser.add_argument("--steps", type=int, default=8, help="timed compute-only steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--loop", default=None, help=argparse.SUPPRESS)  # internal: one loop
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "video_throughput.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    work = Path(args.work or tempfile.mkdtemp(prefix="sigmavae-video-bench-"))
    if args.loop == "compute_only":
        print(json.dumps({"sequences_per_s": compute_only(args, device)}))
        return
    if args.loop == "end_to_end":
        print(json.dumps(end_to_end(args, device, work)))
        return
    info = machine()
    print(f"SVG-LP, SM-MNIST {FRAMES} frames of 64x64 (5 given), width {args.width}, batch "
          f"{args.batch}, optimal sigma; {args.device}, {info['threads']} threads; CPU flags: "
          f"{' '.join(info.get('cpu_flags', [])) or 'n/a'}; every loop in its own process")
    before = in_subprocess("compute_only", args, work)["sequences_per_s"]
    print(f"compute-only (before): {before:.2f} sequences/s")
    e2e = in_subprocess("end_to_end", args, work)
    print(f"end-to-end (Trainer.fit, {args.epochs} epochs of {args.sequences} sequences): "
          f"{e2e['sequences_per_s']:.2f} sequences/s (last epoch "
          f"{e2e['last_epoch_sequences_per_s']:.2f})")
    after = in_subprocess("compute_only", args, work)["sequences_per_s"]
    compute = (before + after) / 2
    print(f"compute-only (after): {after:.2f} sequences/s; mean {compute:.2f}")
    ratios = {"end_to_end_vs_compute_only": e2e["sequences_per_s"] / compute,
              "last_epoch_vs_compute_only": e2e["last_epoch_sequences_per_s"] / compute}
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    write_json({"machine": info, "device": args.device, "batch": args.batch,
                "width": args.width, "frames": FRAMES, "model_options": model_options(args.width),
                "compute_only": {"sequences_per_s": compute, "before": before, "after": after},
                "end_to_end": e2e, "ratios": ratios}, Path(args.out))


if __name__ == "__main__":
    main()
