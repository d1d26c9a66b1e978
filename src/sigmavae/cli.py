"""The ``sigmavae`` command line: train | eval | sample | data | likelihoods."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from . import likelihoods
from .data import DataError, dataset_names, describe_dataset
from .messages import first_line

#: File types ``sigmavae sample --out`` can write (PIL's writers for these suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# CLI flag -> TrainConfig key, for the flags that override a config file.
_TRAIN_FLAGS = {
    "data": str, "data_root": str, "likelihood": str, "model": str, "epochs": int,
    "batch_size": int, "lr": float, "beta": float, "seed": int, "out": str, "precision": str,
    "accelerator": str, "devices": int, "num_nodes": int, "latent_dim": int,
    "train_subset": int, "val_subset": int, "log_every_n_steps": int,
    "checkpoint_every_n_steps": int, "grad_clip": float, "max_nonfinite_steps": int,
}
_TRAIN_SWITCHES = ("channels_last", "compile", "drop_last")


class UsageError(ValueError):
    """A command-line value that is wrong before anything runs (printed as one line, exit 2)."""


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag}: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UsageError(f"{flag} {item!r}: the value is not a YAML scalar "
                             f"({first_line(err)})") from None
    return out


def _check_device(device: str, flag: str = "--device") -> str:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` -> a torch device string."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise UsageError(f"{flag}: expected cpu, cuda, cuda:N or auto, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {device}: no CUDA device is available here; use --device cpu")
    return device


def _check_output_file(path: Path, flag: str, suffixes: tuple[str, ...] | None = None) -> None:
    """An output file must not be a folder and must have a suffix this writer knows."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; expected a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {path}: expected a file ending in {', '.join(suffixes)}")


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, Trainer

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.likelihood_option:
        extra = _key_values(args.likelihood_option, "--likelihood-option")
        changes["likelihood_options"] = {**config.likelihood_options, **extra}
    if args.model_option:
        changes["model_options"] = {**config.model_options,
                                    **_key_values(args.model_option, "--model-option")}
    if args.data_option:
        changes["data_options"] = {**config.data_options,
                                   **_key_values(args.data_option, "--data-option")}
    if args.no_progress:
        changes["progress"] = False
    changes.update({k: True for k in _TRAIN_SWITCHES if getattr(args, k)})
    if args.no_tune_malloc:
        changes["tune_malloc"] = False
    if args.no_fused_adam:
        changes["fused_adam"] = False
    config = config.replace(**changes)
    if args.resume not in (None, "auto") and not Path(args.resume).is_file():
        raise UsageError(f"--resume {args.resume}: no such checkpoint file (pass a .ckpt or "
                         "'auto' for OUT/checkpoints/last.ckpt)")
    result = Trainer(config).fit(resume=args.resume)
    if result.get("interrupted"):
        return 128 + int(result["signal"])  # the shell convention; the checkpoint is saved
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .metrics.fid import check_fid_features
    from .metrics.report import evaluate, parse_metrics, render_markdown, stderr_log, write_report
    from .training import load_trained

    try:
        metrics = parse_metrics(args.metrics)
    except ValueError as err:
        raise UsageError(f"--metrics: {err}") from None
    for flag, value, least in (("--elbo-samples", args.elbo_samples, 1),
                               ("--iwae-samples", args.iwae_samples, 1),
                               ("--mi-data", args.mi_data, 2), ("--mi-samples", args.mi_samples, 1),
                               ("--fid-samples", args.fid_samples, 2),
                               ("--batch-size", args.batch_size, 1), ("--limit", args.limit, 1)):
        if value is not None and value < least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.out:
        _check_output_file(Path(args.out), "--out")
    device = _check_device(args.device)
    model, config = load_trained(args.checkpoint)
    if "fid" in metrics:  # a named extractor that cannot work: fail now, not after the others
        check_fid_features(args.fid_features, model.data_shape)
    root = args.data_root if args.data_root is not None else config.data_root
    data = load_dataset(config.data, args.split, root, **config.data_options)
    if args.limit:
        data = data.subset(args.limit)
    out = Path(args.out) if args.out else None
    plot = None
    if out is not None and "calibration" in metrics:
        plot = out.with_name(out.stem + ".calibration.png")
    options = {
        "elbo_samples": args.elbo_samples, "iwae_samples": args.iwae_samples,
        "mi_data": args.mi_data, "mi_samples": args.mi_samples,
        "fid_samples": args.fid_samples, "fid_features": args.fid_features,
        "plot_path": None if plot is None else str(plot),
        "title": f"{config.data} {args.split} ({config.likelihood})",
    }
    meta = {"checkpoint": str(args.checkpoint), "data": config.data, "split": args.split,
            "likelihood": config.likelihood, "device": str(device)}
    report = evaluate(model, data.images, metrics, options, batch_size=args.batch_size,
                      seed=args.seed, device=device, meta=meta, log=stderr_log)
    print(render_markdown(report))
    if out is not None:
        json_path, md_path = write_report(report, out)
        wrote = [str(json_path), str(md_path)] + ([str(plot)] if plot and plot.is_file() else [])
        print(f"wrote {', '.join(wrote)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .training import load_trained
    from .training.visuals import save_sample_grid

    if args.n < 1:
        raise UsageError(f"--n must be >= 1 (images in the grid), got {args.n}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    _check_output_file(Path(args.out), "--out", IMAGE_SUFFIXES)
    model, _ = load_trained(args.checkpoint)
    path = save_sample_grid(model, Path(args.out), n=args.n, seed=args.seed)
    print(f"wrote {args.n} samples (decoder means of prior draws) to {path}")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.name:
        print(describe_dataset(args.name))
        return 0
    for name in dataset_names():
        print(f"{name:8s} {describe_dataset(name).split(': ')[0]}")
    return 0


def _likelihoods(args: argparse.Namespace) -> int:
    for name in likelihoods.names():
        print(f"{name:24s} {likelihoods.summary(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sigmavae", description="Train and evaluate VAEs with calibrated decoders.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a VAE")
    t.add_argument("--config", help="YAML file with TrainConfig keys (flags override it)")
    t.add_argument("--data", help=f"data set: {', '.join(dataset_names())}")
    t.add_argument("--data-root", help="folder with the data set's files")
    t.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="data set option, e.g. image_size=32 (repeatable)")
    t.add_argument("--likelihood", help=f"decoder head: {', '.join(likelihoods.names())}")
    t.add_argument("--likelihood-option", action="append", metavar="KEY=VALUE",
                   help="head option, e.g. beta=0.006 for fixed_sigma (repeatable)")
    t.add_argument("--model", help="network: conv (default; the paper's small conv VAE) or "
                                    "hierarchical (15 layers of latent variables)")
    t.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help="network option, e.g. width=32 or layers=6 for hierarchical "
                        "(repeatable)")
    t.add_argument("--latent-dim", type=int,
                   help="conv: size of z (default 20); hierarchical: latent channels per layer "
                        "(default 8)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--beta", type=float, help="KL weight in the loss (1 = the ELBO)")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="output folder")
    t.add_argument("--precision",
                   help="32-true (default) | bf16-mixed | 16-mixed (GPU) | 64-true (float64, "
                        "for exactness checks)")
    t.add_argument("--accelerator", help="cpu | cuda | auto")
    t.add_argument("--devices", type=int, help="processes per node")
    t.add_argument("--num-nodes", type=int)
    t.add_argument("--train-subset", type=int, help="use the first N training images")
    t.add_argument("--val-subset", type=int)
    t.add_argument("--log-every-n-steps", type=int)
    t.add_argument("--checkpoint-every-n-steps", type=int)
    t.add_argument("--grad-clip", type=float)
    t.add_argument("--max-nonfinite-steps", type=int)
    t.add_argument("--resume", help="checkpoint to resume, or 'auto' for OUT/checkpoints/last.ckpt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--no-tune-malloc", action="store_true",
                   help="leave glibc's malloc thresholds alone (CPU training tunes them)")
    t.add_argument("--no-fused-adam", action="store_true",
                   help="torch's default Adam instead of its fused kernel")
    t.add_argument("--drop-last", action="store_true",
                   help="drop each epoch's partial last batch (with --compile: no recompile)")
    t.set_defaults(func=_train)

    e = sub.add_parser(
        "eval", help="evaluate a checkpoint: ELBO, IWAE, discretised ELBO, FID, MI, calibration",
        description="Evaluate a checkpoint on a data split. Writes a JSON report (--out) and a "
                    "markdown summary beside it (.md, also printed); the calibration plot goes "
                    "to OUT_STEM.calibration.png. Numbers are in nats/image (summed over data "
                    "dimensions) and bits/dim; invalid bounds are reported as n/a with the reason.")
    e.add_argument("checkpoint")
    e.add_argument("--metrics", default="default",
                   help="comma-separated: elbo, discretized, iwae, fid, mi, active_units, "
                        "calibration; 'all'; 'default' (= elbo,discretized,mi,active_units,"
                        "calibration)")
    e.add_argument("--split", default="test")
    e.add_argument("--data-root")
    e.add_argument("--elbo-samples", "--samples", dest="elbo_samples", type=int, default=10,
                   help="posterior samples per image for the multi-sample ELBO (the "
                        "single-sample ELBO is always reported)")
    e.add_argument("--iwae-samples", type=int, default=1000,
                   help="K importance samples per image (decoded in chunks of --batch-size)")
    e.add_argument("--mi-data", type=int,
                   help="data points N forming the aggregate posterior m(z) (default: all)")
    e.add_argument("--mi-samples", type=int,
                   help="Monte Carlo draws M for I(x;z) (default: max(10 N, 10000))")
    e.add_argument("--fid-samples", type=int, default=10000,
                   help="prior samples and test images for FID (at most the split's size)")
    e.add_argument("--fid-features", metavar="PATH_OR_NAME",
                   help="inception (default; needs torch-fidelity and its weights), "
                        "inception:WEIGHTS.pth, pixels, or module:function / file.py:function "
                        "returning an nn.Module that maps (N, 3, H, W) floats in [0, 1] to (N, d)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--limit", type=int, help="evaluate the first N images only")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto", help="cpu | cuda | auto")
    e.add_argument("--out", help="write the report as JSON (and the markdown beside it)")
    e.set_defaults(func=_eval)

    s = sub.add_parser("sample", help="a grid of prior samples from a checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="samples.png")
    s.set_defaults(func=_sample)

    d = sub.add_parser("data", help="list data sets, or describe one")
    d.add_argument("name", nargs="?")
    d.set_defaults(func=_data)

    h = sub.add_parser("likelihoods", help="list the decoder likelihood heads")
    h.set_defaults(func=_likelihoods)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user error is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    from .likelihoods import LikelihoodInputError
    from .metrics.fid import FeatureExtractorError
    from .training import CheckpointError, ConfigError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DataError, LikelihoodInputError, FeatureExtractorError,
            UsageError) as err:
        print(f"sigmavae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused: permissions, a full disk, a missing folder
        where = f" {err.filename}" if err.filename else ""
        print(f"sigmavae {args.command}: error: cannot access{where}: "
              f"{err.strerror or first_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
