"""Training throughput of the paper's small conv VAE on 28x28x3 images, batch 128.

Loops over the same model and optimiser (Adam 1e-3, optimal sigma), each run in its own Python
process (so that process-wide state -- the allocator's thresholds and its warm-up, compiled
kernels, thread pools -- cannot carry over from one loop to the next):

* ``end_to_end``: ``sigmavae.training.Trainer.fit`` as a user runs it (in-memory uint8 data,
  progress, CSV/TensorBoard logs, validation, sample grids, atomic checkpoints every epoch; on
  the CPU it sets glibc's malloc thresholds, see ``sigmavae.training.allocator``);
* ``compute_only``: the same forward/backward/step on one pre-made batch, nothing else (eager,
  default allocator), measured before and after the other loops and averaged;
  ``compute_only_tuned_malloc`` is the same loop with the trainer's allocator setting;
* ``reference``: the public sigma-VAE code's data path on a CPU: torchvision ImageFolder with
  per-sample PIL Resize + ToTensor and a DataLoader (no workers), same model and loss;
* ``optimised``: compute-only with ``--optimise`` settings (bf16 autocast, channels_last,
  torch.compile; the likelihood stays float32; the trainer's allocator setting), and
  ``end_to_end_optimised``, Trainer.fit with the same settings (``--precision bf16-mixed
  --channels-last [--compile --drop-last]``; with compile, images/s counts the images actually
  trained and includes the compilation, and ``last_epoch_images_per_s`` shows the steady state).

Data: the first ``--images`` JPEGs of the CIFAR-10 JPEG copy in the project's shared data,
resized to 28x28 (a stand-in for the paper's 28x28 SVHN). Prints images/s and ratios, writes JSON.

    python benchmarks/throughput.py [--images 20000] [--steps 60] [--out FILE]
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
from _common import extract_cifar_jpegs, machine, time_steps, write_json

from sigmavae import likelihoods
from sigmavae.data import load_dataset
from sigmavae.models import build_conv_vae
from sigmavae.training import TrainConfig, Trainer, tune_cpu_allocator

BATCH = 128
SHAPE = (3, 28, 28)


def make_model(channels_last: bool = False):
    model = build_conv_vae(SHAPE, likelihoods.create("optimal_sigma"))
    model.head.validate = False  # as in the trainer: no per-step data check in any loop
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def compute_only(steps: int, warmup: int, channels_last=False, compile_model=False,
                 bf16=False) -> float:
    torch.manual_seed(0)
    model, opt = make_model(channels_last)
    forward = torch.compile(model) if compile_model else model
    batch = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(batch).loss
        loss.backward()
        opt.step()

    return steps * BATCH / time_steps(step, steps, warmup)


def reference(folder: Path, steps: int, warmup: int) -> float:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Resize((28, 28)), transforms.ToTensor()])
    data = datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True)
    torch.manual_seed(0)
    model, opt = make_model()
    it = iter(loader)

    def step():
        nonlocal it
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, _ = next(it)
        opt.zero_grad(set_to_none=True)
        model(x).loss.backward()
        opt.step()

    return steps * BATCH / time_steps(step, steps, warmup)


def end_to_end(folder_root: Path, cache: Path, epochs: int, out: Path,
               optimise: frozenset[str] = frozenset()) -> dict[str, float]:
    opts = {"image_size": 28, "cache_dir": str(cache)}
    train = load_dataset("folder", "train", folder_root, **opts)
    val = load_dataset("folder", "val", folder_root, **opts).subset(1024)
    compiled = "compile" in optimise
    cfg = TrainConfig(data="folder", data_root=str(folder_root), epochs=epochs, batch_size=BATCH,
                      out=str(out), progress=True, log_every_n_steps=50, seed=0,
                      precision="bf16-mixed" if "bf16" in optimise else "32-true",
                      channels_last="channels_last" in optimise, compile=compiled,
                      drop_last=compiled)  # one batch shape: the model compiles once
    start = time.perf_counter()
    final = Trainer(cfg, train, val).fit()
    seconds = time.perf_counter() - start
    assert final["epoch"] == epochs
    trained = final["step"] * BATCH if compiled else len(train) * epochs
    # The last epoch's training + validation time (from epochs.csv, without its sample grids and
    # checkpoint): the steady state once torch.compile has compiled in the first epoch.
    last_epoch = trained / epochs / final["seconds"]
    return {"images_per_s": trained / seconds, "seconds": seconds, "train_images": len(train),
            "images_trained": trained, "epochs": epochs,
            "last_epoch_images_per_s": last_epoch}


def run_loop(loop: str, args: argparse.Namespace, folder: Path, work: Path) -> dict:
    """Run one loop (``--loop NAME``) in a fresh Python process; its JSON result."""
    opt_set = optimise_set(args.optimise)
    if loop == "compute_only":
        result = {"images_per_s": compute_only(args.steps, args.warmup)}
    elif loop == "compute_only_tuned_malloc":
        tune_cpu_allocator()
        result = {"images_per_s": compute_only(args.steps, args.warmup)}
    elif loop == "reference":
        result = {"images_per_s": reference(folder, args.steps, args.warmup)}
    elif loop == "optimised":
        tune_cpu_allocator()
        result = {"images_per_s": compute_only(
            args.steps, max(args.warmup, 10), "channels_last" in opt_set, "compile" in opt_set,
            "bf16" in opt_set), "settings": sorted(opt_set)}
    elif loop == "end_to_end":
        result = end_to_end(folder.parent, work / "cache", args.epochs, work / "run")
    elif loop == "end_to_end_optimised":
        result = end_to_end(folder.parent, work / "cache", args.epochs, work / "run-fast",
                            opt_set)
    else:
        raise SystemExit(f"--loop: unknown loop {loop!r}")
    return result


def optimise_set(text: str) -> frozenset[str]:
    return frozenset(s for s in text.split(",") if s and s != "none")


def in_subprocess(loop: str, args: argparse.Namespace, work: Path) -> dict:
    command = [sys.executable, __file__, "--loop", loop, "--work", str(work),
               "--images", str(args.images), "--epochs", str(args.epochs),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--optimise", args.optimise]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000, help="CIFAR-10 JPEGs to use")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end epochs")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--optimise", default="bf16,channels_last",
                        help="comma list of bf16, channels_last, compile (or 'none')")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--loop", default=None, help=argparse.SUPPRESS)  # internal: one loop
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="sigmavae-bench-"))
    folder = extract_cifar_jpegs(work / "jpeg", args.images)
    if args.loop:
        print(json.dumps(run_loop(args.loop, args, folder, work)))
        return
    print(f"data: {args.images} CIFAR-10 (JPEG copy) images resized to 28x28x3, batch {BATCH}; "
          f"threads {torch.get_num_threads()}; every loop in its own process")
    results: dict[str, object] = {"machine": machine(), "batch": BATCH, "shape": SHAPE}
    opt_set = optimise_set(args.optimise)
    # Compute-only runs before and after the others; their mean is the baseline, so a drift of
    # the machine's speed during the benchmark does not favour either side.
    before = in_subprocess("compute_only", args, work)["images_per_s"]
    print(f"compute-only eager (before):        {before:.0f} images/s")
    e2e = results["end_to_end"] = in_subprocess("end_to_end", args, work)
    print(f"end-to-end (Trainer.fit, {args.epochs} epochs): {e2e['images_per_s']:.0f} images/s "
          f"(last epoch {e2e['last_epoch_images_per_s']:.0f})")
    tuned = in_subprocess("compute_only_tuned_malloc", args, work)["images_per_s"]
    results["compute_only_tuned_malloc"] = {"images_per_s": tuned}
    print(f"compute-only eager, tuned malloc:   {tuned:.0f} images/s")
    ref = in_subprocess("reference", args, work)["images_per_s"]
    results["reference"] = {"images_per_s": ref}
    print(f"reference (ImageFolder + PIL):      {ref:.0f} images/s")
    if opt_set:
        fast = results["optimised"] = in_subprocess("optimised", args, work)
        print(f"compute-only optimised ({','.join(sorted(opt_set))}, tuned malloc): "
              f"{fast['images_per_s']:.0f} images/s")
        e2e_fast = results["end_to_end_optimised"] = in_subprocess(
            "end_to_end_optimised", args, work)
        print(f"end-to-end optimised: {e2e_fast['images_per_s']:.0f} images/s (last epoch "
              f"{e2e_fast['last_epoch_images_per_s']:.0f})")
    after = in_subprocess("compute_only", args, work)["images_per_s"]
    eager = (before + after) / 2
    results["compute_only"] = {"images_per_s": eager, "before": before, "after": after}
    print(f"compute-only eager (after):         {after:.0f} images/s; mean {eager:.0f}")
    ratios = {"end_to_end_vs_compute_only": e2e["images_per_s"] / eager,
              "end_to_end_vs_compute_only_tuned_malloc": e2e["images_per_s"] / tuned,
              "end_to_end_vs_reference": e2e["images_per_s"] / ref}
    if opt_set:
        ratios["optimised_vs_compute_only"] = fast["images_per_s"] / eager
        ratios["end_to_end_optimised_vs_compute_only"] = e2e_fast["images_per_s"] / eager
        ratios["end_to_end_optimised_vs_reference"] = e2e_fast["images_per_s"] / ref
    results["ratios"] = ratios
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    write_json(results, Path(args.out))


if __name__ == "__main__":
    main()
