"""Training throughput of the paper's small conv VAE on 28x28x3 images, batch 128.

Loops over the same model and optimiser (Adam 1e-3, optimal sigma), each run in its own Python
process (so that process-wide state -- the allocator's thresholds and its warm-up, compiled
kernels, thread pools -- cannot carry over from one loop to the next):

* ``compute_only``: the baseline, forward/backward/step on one resident batch and nothing else,
  eager float32 with torch's defaults (default Adam, glibc's allocator); measured before and
  after the other loops and averaged, so a drift of the machine's speed favours neither side;
* ``end_to_end``: ``sigmavae.training.Trainer.fit`` as a user runs it (in-memory uint8 data,
  progress bar, CSV/TensorBoard logs, validation, sample grids, atomic checkpoints every epoch)
  with its defaults (fused Adam; on the CPU glibc's malloc thresholds, ``run.allocator``),
  as on every start after a machine's first: where the CPU has bf16 hardware a float32 run
  times ``--precision auto`` once per machine and model (``training.speed_hints``); that
  one-off timing is made and reported separately, before the run;
* ``reference``: the public sigma-VAE code's data path: torchvision ImageFolder with per-sample
  PIL Resize + ToTensor and a DataLoader (no workers on a CPU; on a GPU 10 workers with pinned
  memory, as that code sets them), a ``loss.item()`` every step, same model and loss;
* ``optimised``: compute-only with the trainer's settings plus ``--optimise`` (bf16 autocast,
  channels_last, torch.compile; the likelihood stays float32), and, if that adds any,
  ``end_to_end_optimised``: Trainer.fit with the same settings (``--precision bf16-mixed
  --channels-last [--compile --drop-last]``; with compile, images/s counts the images actually
  trained and includes the compilation, ``last_epoch_images_per_s`` shows the steady state).

``--optimise auto`` (default) picks what measured best on each kind of machine: bf16 +
channels_last on CPUs with native bf16 (avx512_bf16 / AMX), nothing extra on other CPUs (bf16 is
emulated there, ~15x slower; channels_last and compile were slower too), bf16 + compile on a GPU.

Data: the first ``--images`` JPEGs of the CIFAR-10 JPEG copy in the project's shared data (or
``--cifar-tar``), resized to 28x28 (a stand-in for the paper's 28x28 SVHN). ``--device cuda`` runs
every loop on the GPU (CUDA is synchronised around each timing). Prints images/s and ratios,
writes JSON.

    python benchmarks/throughput.py [--images 20000] [--steps 60] [--device cpu|cuda] [--out FILE]
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
from _common import extract_cifar_jpegs, first_start_speed_hint, machine, time_steps, write_json
from peers import PeerUnavailable, pythae_loop, pythae_python

from sigmavae import likelihoods
from sigmavae.data import load_dataset
from sigmavae.models import build_conv_vae
from sigmavae.objective import elbo_terms
from sigmavae.training import TrainConfig, Trainer, build_adam, tune_cpu_allocator
from sigmavae.training.fastpath import native_cpu_bf16

BATCH = 128
SHAPE = (3, 28, 28)
EXTRAS = ("bf16", "channels_last", "compile", "cudagraphs")


def resolve_optimise(text: str, device: str) -> frozenset[str]:
    """``--optimise``: a comma list of :data:`EXTRAS`, ``none``, or ``auto``."""
    if text == "auto":
        if device == "cuda":
            return frozenset({"bf16", "compile"})
        return frozenset({"bf16", "channels_last"}) if native_cpu_bf16() else frozenset()
    chosen = frozenset(s for s in text.split(",") if s and s != "none")
    unknown = sorted(chosen - set(EXTRAS))
    if unknown:
        raise SystemExit(f"--optimise: unknown setting(s) {unknown}; choose from {EXTRAS}, "
                         f"'none' or 'auto'")
    return chosen


def make_model(device: torch.device, channels_last: bool = False, fused_adam: bool = False):
    model = build_conv_vae(SHAPE, likelihoods.create("optimal_sigma")).to(device)
    model.head.validate_args = False  # as in the trainer: no per-step data check in any loop
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if fused_adam:
        return model, build_adam(model.parameters(), lr=1e-3)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def compute_only(steps: int, warmup: int, device: torch.device,
                 extras: frozenset[str] = frozenset(), trainer_settings: bool = False) -> float:
    """Images/s of forward/backward/step on one resident batch; ``trainer_settings``: the
    trainer's fused Adam and (CPU) allocator setting, plus ``extras``."""
    if trainer_settings and device.type == "cpu":
        tune_cpu_allocator()
    torch.manual_seed(0)
    channels_last, bf16 = "channels_last" in extras, "bf16" in extras
    model, opt = make_model(device, channels_last, fused_adam=trainer_settings)
    # cudagraphs: torch.compile's reduce-overhead mode (CUDA graphs: one launch per step)
    mode = "reduce-overhead" if "cudagraphs" in extras else "default"
    forward = (torch.compile(model, mode=mode) if extras & {"compile", "cudagraphs"}
               else model)
    batch = torch.randint(0, 256, (BATCH, *SHAPE), dtype=torch.uint8).to(device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = elbo_terms(model, batch, forward=forward).loss
        loss.backward()
        opt.step()

    return steps * BATCH / time_steps(step, steps, warmup, device)


def reference(folder: Path, steps: int, warmup: int, device: torch.device) -> float:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Resize((28, 28)), transforms.ToTensor()])
    data = datasets.ImageFolder(str(folder), transform=transform)
    # The public code's loader settings: defaults on a CPU, 10 workers + pinned memory on a GPU.
    workers = {"num_workers": 10, "pin_memory": True} if device.type == "cuda" else {}
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True,
                                         persistent_workers=bool(workers), **workers)
    torch.manual_seed(0)
    model, opt = make_model(device)
    it = iter(loader)
    total = 0.0

    def step():
        nonlocal it, total
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, _ = next(it)
        opt.zero_grad(set_to_none=True)
        loss = elbo_terms(model, x.to(device)).loss
        loss.backward()
        total += loss.item()  # the public code accumulates the epoch loss every step
        opt.step()

    return steps * BATCH / time_steps(step, steps, warmup, device)


def splits(folder_root: Path, cache: Path):
    """The train split and 1,024 validation images of the benchmark's folder data set."""
    opts = {"image_size": 28, "cache_dir": str(cache)}
    train = load_dataset("folder", "train", folder_root, **opts)
    return train, load_dataset("folder", "val", folder_root, **opts).subset(1024)


def end_to_end(folder_root: Path, cache: Path, epochs: int, out: Path, device: torch.device,
               extras: frozenset[str] = frozenset()) -> dict[str, float | None]:
    train, val = splits(folder_root, cache)
    compiled = bool(extras & {"compile", "cudagraphs"})
    cfg = TrainConfig(data="folder", data_root=str(folder_root), epochs=epochs, batch_size=BATCH,
                      out=str(out), progress=True, log_every_n_steps=50, seed=0,
                      accelerator=device.type,
                      precision="bf16-mixed" if "bf16" in extras else "32-true",
                      channels_last="channels_last" in extras, compile=compiled,
                      compile_mode="reduce-overhead" if "cudagraphs" in extras else "default",
                      drop_last=compiled,  # one batch shape: the model compiles once
                      ).with_command_defaults()  # what `sigmavae train` runs: tuned malloc
    # a float32 run on a CPU with bf16 hardware times auto once per machine (speed_hints):
    # timed here, beside the run, which then reads it back as every later start does
    hint = (first_start_speed_hint(make_model(device)[0], train.images[:BATCH],
                                   out.parent / f"hints-{out.name}", device)
            if cfg.precision == "32-true" else None)
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
            "last_epoch_images_per_s": last_epoch, "first_start_speed_hint_seconds": hint}


def run_loop(loop: str, args: argparse.Namespace, folder: Path, work: Path) -> dict:
    """Run one loop (``--loop NAME``, in a fresh Python process); its JSON result."""
    extras = resolve_optimise(args.optimise, args.device)
    device = torch.device(args.device)
    if loop == "compute_only":
        return {"images_per_s": compute_only(args.steps, args.warmup, device)}
    if loop == "reference":
        return {"images_per_s": reference(folder, args.steps, args.warmup, device)}
    if loop == "optimised":
        return {"images_per_s": compute_only(args.steps, max(args.warmup, 10), device, extras,
                                             trainer_settings=True)}
    if loop == "end_to_end":
        return end_to_end(folder.parent, work / "cache", args.epochs, work / "run", device)
    if loop == "pythae":
        train, val = splits(folder.parent, work / "cache")
        return pythae_loop(train.images, val.images, args.epochs, BATCH, 1e-3, work / "pythae",
                           device)
    if loop == "end_to_end_optimised":
        return end_to_end(folder.parent, work / "cache", args.epochs, work / "run-fast", device,
                          extras)
    raise SystemExit(f"--loop: unknown loop {loop!r}")


def in_subprocess(loop: str, args: argparse.Namespace, work: Path,
                  python: Path | None = None) -> dict:
    """Run ``loop`` in a fresh process of ``python`` (default: this one's interpreter)."""
    command = [str(python or sys.executable), __file__, "--loop", loop, "--work", str(work),
               "--images", str(args.images), "--epochs", str(args.epochs),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--optimise", args.optimise, "--device", args.device]
    if args.cifar_tar:
        command += ["--cifar-tar", args.cifar_tar]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000, help="CIFAR-10 JPEGs to use")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end epochs")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--optimise", default="auto",
                        help="comma list of bf16, channels_last, compile, cudagraphs "
                             "(compile in reduce-overhead mode); 'none'; or 'auto' "
                             "(default: what measured best on this kind of machine)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where every loop runs (default: cpu)")
    parser.add_argument("--cifar-tar", default=None,
                        help="CIFAR-10 JPEG train.tar (default: the project's shared data)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--loop", default=None, help=argparse.SUPPRESS)  # internal: one loop
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="sigmavae-bench-"))
    folder = extract_cifar_jpegs(work / "jpeg", args.images,
                                 tar_path=Path(args.cifar_tar) if args.cifar_tar else None)
    if args.loop:
        print(json.dumps(run_loop(args.loop, args, folder, work)))
        return
    extras = resolve_optimise(args.optimise, args.device)
    settings = ["fused_adam", *(["tuned_malloc"] if args.device == "cpu" else []), *sorted(extras)]
    where = (f"CPU, {torch.get_num_threads()} threads, native bf16: {native_cpu_bf16()}"
             if args.device == "cpu" else f"GPU {torch.cuda.get_device_name()}")
    print(f"data: {args.images} CIFAR-10 (JPEG copy) images resized to 28x28x3, batch {BATCH}; "
          f"{where}; every loop in its own process; optimised: {', '.join(settings)}")
    results: dict[str, object] = {"machine": machine(), "device": args.device, "batch": BATCH,
                                  "shape": SHAPE, "optimised_settings": settings}
    before = in_subprocess("compute_only", args, work)["images_per_s"]
    print(f"compute-only eager, torch defaults (before): {before:.0f} images/s")
    e2e = results["end_to_end"] = in_subprocess("end_to_end", args, work)
    hint = e2e["first_start_speed_hint_seconds"]
    print(f"end-to-end (Trainer.fit, {args.epochs} epochs): {e2e['images_per_s']:.0f} images/s "
          f"(last epoch {e2e['last_epoch_images_per_s']:.0f})"
          + ("" if hint is None else f"; the speed hint's one-off timing on a machine's first "
                                     f"start, not in the rate: {hint:.1f} s"))
    ref = in_subprocess("reference", args, work)["images_per_s"]
    results["reference"] = {"images_per_s": ref}
    print(f"reference (ImageFolder + PIL + DataLoader): {ref:.0f} images/s")
    try:
        peer = results["pythae"] = in_subprocess("pythae", args, work, python=pythae_python())
        print(f"pythae 0.1.2 BaseTrainer (same architecture, data in memory, {args.epochs} "
              f"epochs): {peer['images_per_s']:.0f} images/s")
    except (PeerUnavailable, subprocess.CalledProcessError) as err:
        peer = None
        results["pythae"] = {"unavailable": str(err)}
        print(f"pythae: not measured ({err})")
    fast = results["optimised"] = in_subprocess("optimised", args, work)
    print(f"compute-only optimised ({', '.join(settings)}): {fast['images_per_s']:.0f} images/s")
    e2e_fast = None
    if extras:
        e2e_fast = results["end_to_end_optimised"] = in_subprocess(
            "end_to_end_optimised", args, work)
        print(f"end-to-end optimised ({', '.join(sorted(extras))}): "
              f"{e2e_fast['images_per_s']:.0f} images/s "
              f"(last epoch {e2e_fast['last_epoch_images_per_s']:.0f})")
    after = in_subprocess("compute_only", args, work)["images_per_s"]
    eager = (before + after) / 2
    results["compute_only"] = {"images_per_s": eager, "before": before, "after": after}
    print(f"compute-only eager, torch defaults (after): {after:.0f} images/s; mean {eager:.0f}")
    ratios = {"end_to_end_vs_compute_only": e2e["images_per_s"] / eager,
              "end_to_end_vs_reference": e2e["images_per_s"] / ref,
              "end_to_end_vs_optimised_compute_only": e2e["images_per_s"] / fast["images_per_s"],
              "optimised_vs_compute_only": fast["images_per_s"] / eager,
              "optimised_vs_reference": fast["images_per_s"] / ref}
    if peer is not None:
        ratios["end_to_end_vs_pythae"] = e2e["images_per_s"] / peer["images_per_s"]
        if e2e_fast is not None:
            ratios["end_to_end_optimised_vs_pythae"] = (e2e_fast["images_per_s"]
                                                        / peer["images_per_s"])
    if e2e_fast is not None:
        ratios["end_to_end_optimised_vs_compute_only"] = e2e_fast["images_per_s"] / eager
        ratios["end_to_end_optimised_vs_reference"] = e2e_fast["images_per_s"] / ref
    results["ratios"] = ratios
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    write_json(results, Path(args.out))


if __name__ == "__main__":
    main()
