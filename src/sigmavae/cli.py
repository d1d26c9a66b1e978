"""The ``sigmavae`` command line: train | eval | sample | data | likelihoods."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from . import likelihoods
from .data import DataError, dataset_names, describe_dataset

# CLI flag -> TrainConfig key, for the flags that override a config file.
_TRAIN_FLAGS = {
    "data": str, "data_root": str, "likelihood": str, "model": str, "epochs": int,
    "batch_size": int, "lr": float, "beta": float, "seed": int, "out": str, "precision": str,
    "accelerator": str, "devices": int, "num_nodes": int, "latent_dim": int,
    "train_subset": int, "val_subset": int, "log_every_n_steps": int,
    "checkpoint_every_n_steps": int, "grad_clip": float, "max_nonfinite_steps": int,
}
_TRAIN_SWITCHES = ("channels_last", "compile")


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, Trainer

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.likelihood_option:
        extra = _key_values(args.likelihood_option, "--likelihood-option")
        changes["likelihood_options"] = {**config.likelihood_options, **extra}
    if args.data_option:
        changes["data_options"] = {**config.data_options,
                                   **_key_values(args.data_option, "--data-option")}
    if args.no_progress:
        changes["progress"] = False
    changes.update({k: True for k in _TRAIN_SWITCHES if getattr(args, k)})
    config = config.replace(**changes)
    result = Trainer(config).fit(resume=args.resume)
    if result.get("interrupted"):
        return 128 + int(result["signal"])  # the shell convention; the checkpoint is saved
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .metrics import evaluate_elbo
    from .training import load_trained

    model, config = load_trained(args.checkpoint)
    root = args.data_root if args.data_root is not None else config.data_root
    data = load_dataset(config.data, args.split, root, **config.data_options)
    if args.limit:
        data = data.subset(args.limit)
    report = evaluate_elbo(model, data.images, batch_size=args.batch_size, samples=args.samples,
                           seed=args.seed)
    result = {"checkpoint": str(args.checkpoint), "data": config.data, "split": args.split,
              "likelihood": config.likelihood, **report.as_dict()}
    print(f"{config.data} {args.split} ({config.likelihood}): {report.summary()}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .training import load_trained
    from .training.visuals import save_sample_grid

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
    t.add_argument("--model", help="network (default conv: the paper's small conv VAE)")
    t.add_argument("--latent-dim", type=int)
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--beta", type=float, help="KL weight in the loss (1 = the ELBO)")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="output folder")
    t.add_argument("--precision", help="32-true | bf16-mixed | 16-mixed")
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
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="test ELBO of a checkpoint (nats/image, bits/dim)")
    e.add_argument("checkpoint")
    e.add_argument("--split", default="test")
    e.add_argument("--data-root")
    e.add_argument("--samples", type=int, default=1, help="posterior samples per image")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--limit", type=int, help="evaluate the first N images only")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", help="write the report as JSON")
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
    args = build_parser().parse_args(argv)
    from .likelihoods import LikelihoodInputError
    from .training import CheckpointError, ConfigError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DataError, LikelihoodInputError) as err:
        print(f"sigmavae {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
