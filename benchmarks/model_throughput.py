"""End-to-end against compute-only training throughput for the heavy models and heads.

For each case -- the 15-layer hierarchical VAE on 32x32x3 images, and the small conv VAE on
28x28x3 images with the 256-way ``categorical``, the ``bitwise`` and the 10-component
``logistic_mixture`` heads -- two loops, each in its own Python process:

* ``compute_only``: forward/backward/step on one resident batch with the trainer's settings
  (fused Adam, on the CPU the allocator setting, no per-step data check): the arithmetic the
  trainer cannot avoid; measured before and after the other loop and averaged;
* ``end_to_end``: ``Trainer.fit`` for ``--epochs`` as a user runs it (in-memory uint8 data,
  progress bar, CSV/TensorBoard logs, validation on a tenth of the images every epoch, sample
  and reconstruction grids, curves, atomic checkpoints every epoch), timed over the whole call,
  as on every start after a machine's first: on a CPU with bf16 in hardware a float32 run times
  ``--precision auto`` against float32 once per machine, model and batch shape
  (``training.speed_hints``); that one-off cost is timed separately, on a fresh cache, and
  reported beside (``first_start_speed_hint_seconds``).

Data: the first ``--images`` JPEGs of the CIFAR-10 JPEG copy (90% train, 10% validation).
Target: end-to-end at least 0.95x compute-only for every case. Prints a table (with the training
steps alone as a rate against compute-only, the validation's seconds, and the time outside the
epochs: start-up, grids, curves, checkpoints), writes JSON.

    python benchmarks/model_throughput.py [--cases hierarchical,categorical,bitwise,
                                           logistic_mixture] [--images 10000] [--epochs 2]
                                           [--batch 64]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import extract_cifar_jpegs, first_start_speed_hint, machine, time_steps, write_json

from sigmavae.data import load_dataset
from sigmavae.objective import elbo_terms
from sigmavae.training import (
    TrainConfig,
    Trainer,
    build_adam,
    build_vae,
    tune_cpu_allocator,
)

#: case -> (model, likelihood, image size)
CASES = {"hierarchical": ("hierarchical", "optimal_sigma", 32),
         "categorical": ("conv", "categorical", 28),
         "bitwise": ("conv", "bitwise_categorical", 28),
         "logistic_mixture": ("conv", "logistic_mixture", 28)}


def config(case: str, args: argparse.Namespace, folder: Path, out: Path) -> TrainConfig:
    model, head, _ = CASES[case]
    return TrainConfig(data="folder", data_root=str(folder), model=model, likelihood=head,
                       epochs=args.epochs, batch_size=args.batch, out=str(out), progress=True,
                       log_every_n_steps=10, seed=0, accelerator="cpu",
                       ).with_command_defaults()  # as `sigmavae train` runs it


def compute_only(case: str, args: argparse.Namespace, folder: Path) -> float:
    """Images/s of the lean step on one resident batch, with the trainer's settings."""
    tune_cpu_allocator()
    torch.manual_seed(0)
    size = CASES[case][2]
    model = build_vae(config(case, args, folder, Path(".")), (3, size, size))
    model.head.validate_args = False
    opt = build_adam(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8)
    noise = torch.randn(args.batch, model.latent_dim)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        elbo_terms(model, batch, noise=noise).loss.backward()
        opt.step()

    return args.steps * args.batch / time_steps(step, args.steps, args.warmup)


def end_to_end(case: str, args: argparse.Namespace, folder: Path, work: Path) -> dict:
    """``Trainer.fit`` timed over the whole call, as on every start after a machine's first
    (the speed hint's measurement, made first on a fresh cache, timed separately)."""
    size = CASES[case][2]
    opts = {"image_size": size, "cache_dir": str(work / "cache"), "val_fraction": 0.1}
    train = load_dataset("folder", "train", folder, **opts)
    val = load_dataset("folder", "val", folder, **opts)
    model = build_vae(config(case, args, folder, Path(".")), (3, size, size))
    hint_seconds = first_start_speed_hint(model, train.images[:args.batch], work / f"hints-{case}",
                                          torch.device("cpu"))
    out = work / f"run-{case}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    final = Trainer(config(case, args, folder, out), train, val).fit()
    seconds = time.perf_counter() - start
    assert final["epoch"] == args.epochs
    with (out / "epochs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    epoch_seconds = [float(row["seconds"]) for row in rows]  # the steps and the validation
    val_seconds = [float(row["val_seconds"]) for row in rows]
    steps_seconds = sum(epoch_seconds) - sum(val_seconds)
    return {"images_per_s": len(train) * args.epochs / seconds, "seconds": seconds,
            "train_images": len(train), "val_images": len(val),
            "epoch_seconds": epoch_seconds, "val_seconds": val_seconds,
            # the training steps alone, as a rate: what compute-only measures, on real batches
            "steps_images_per_s": len(train) * args.epochs / steps_seconds,
            # start-up, grids, curves, checkpoints, teardown
            "outside_epochs_seconds": seconds - sum(epoch_seconds),
            "last_epoch_images_per_s": len(train) / epoch_seconds[-1],
            "first_start_speed_hint_seconds": hint_seconds}


def in_subprocess(loop: str, case: str, args: argparse.Namespace, work: Path) -> dict:
    command = [sys.executable, __file__, "--loop", loop, "--cases", case, "--work", str(work),
               "--images", str(args.images), "--epochs", str(args.epochs),
               "--batch", str(args.batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--images", type=int, default=10000, help="CIFAR-10 JPEGs to use")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end epochs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed compute-only steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--loop", default=None, help=argparse.SUPPRESS)  # internal: one loop
    parser.add_argument("--out",
                        default=str(Path(__file__).parent / "results" / "model_throughput.json"))
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"--cases: unknown case(s) {unknown}; choose from {sorted(CASES)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="sigmavae-bench-"))
    folder = extract_cifar_jpegs(work / "jpeg", args.images).parent
    if args.loop:
        (case,) = cases
        result = (end_to_end(case, args, folder, work) if args.loop == "end_to_end"
                  else {"images_per_s": compute_only(case, args, folder)})
        print(json.dumps(result))
        return
    print(f"data: {args.images} CIFAR-10 (JPEG copy) images, 10% for validation, batch "
          f"{args.batch}, {args.epochs} epoch(s); CPU, {torch.get_num_threads()} threads, "
          f"flags {' '.join(machine()['cpu_flags'])}; every loop in its own process")
    results: dict[str, object] = {"machine": machine(), "batch": args.batch,
                                  "images": args.images, "epochs": args.epochs, "cases": {}}
    print(f"{'case':18s} {'compute-only img/s (before/after)':>34s} {'end-to-end img/s':>17s} "
          f"{'ratio':>6s} {'steps alone':>12s} {'validation s':>13s} {'outside epochs s':>17s} "
          f"{'first-start hint s':>19s}")
    for case in cases:
        before = in_subprocess("compute_only", case, args, work)["images_per_s"]
        e2e = in_subprocess("end_to_end", case, args, work)
        after = in_subprocess("compute_only", case, args, work)["images_per_s"]
        compute = (before + after) / 2
        ratio = e2e["images_per_s"] / compute
        steps_ratio = e2e["steps_images_per_s"] / compute
        results["cases"][case] = {  # type: ignore[index]
            "model": CASES[case][0], "likelihood": CASES[case][1],
            "image_size": CASES[case][2], "end_to_end": e2e,
            "compute_only": {"images_per_s": compute, "before": before, "after": after},
            "end_to_end_vs_compute_only": ratio, "steps_vs_compute_only": steps_ratio,
            "target": 0.95}
        hint = e2e["first_start_speed_hint_seconds"]
        print(f"{case:18s} {compute:14.1f} ({before:.1f}/{after:.1f}){'':8s} "
              f"{e2e['images_per_s']:17.1f} {ratio:5.2f}x {steps_ratio:11.2f}x "
              f"{sum(e2e['val_seconds']):13.1f} {e2e['outside_epochs_seconds']:17.1f} "
              f"{'-' if hint is None else f'{hint:.1f}':>19s}", flush=True)
    write_json(results, Path(args.out))


if __name__ == "__main__":
    main()
