"""The ``sigmavae`` command line: train | eval | sample | export | data | models | likelihoods |
configs | experiment."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import yaml

from . import __version__, likelihoods, objective, yaml12
from .data import DataError, dataset_names, describe_dataset
from .messages import first_line
from .options import OptionError

#: File types ``sigmavae sample --out`` can write (PIL's writers for these suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class UsageError(ValueError):
    """A command-line value that is wrong before anything runs (printed as one line, exit 2)."""


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["a=1e-3", "b=x"]`` -> ``{"a": 0.001, "b": "x"}`` (values parsed as YAML 1.2 scalars,
    :mod:`sigmavae.yaml12`)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag}: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml12.load(value)
        except yaml.YAMLError as err:
            raise UsageError(f"{flag} {item!r}: the value is not a YAML scalar "
                             f"({first_line(err)})") from None
    return out


def _flag(name: str, kind: type = str) -> str:
    """The flag of a config key: ``batch_size`` -> ``--batch-size``; a mapping takes one
    ``KEY=VALUE`` per flag, so ``likelihood_options`` -> ``--likelihood-option``."""
    if kind is dict:
        name = name.removesuffix("s")
    return "--" + name.replace("_", "-")


_METAVARS = {int: "N", float: "X"}


def _value_parser(kind: type, optional: bool) -> Any:
    """argparse ``type=`` for a config value: ``int`` / ``float`` / ``str``; ``null`` or
    ``none`` gives None where the key allows it."""
    if not optional:
        return kind

    def parse(text: str) -> Any:
        return None if text.lower() in ("null", "none") else kind(text)

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~sigmavae.training.TrainConfig` field, from its declaration
    (:func:`sigmavae.run.config.settings`): type, default, choices and help. A flag that
    is not given is absent from the namespace, so it leaves the config file's value alone."""
    from .run.config import COMMAND_DEFAULTS, settings

    group = parser.add_argument_group("configuration (TrainConfig keys; 'null' for none)")
    for setting in settings():
        flag = _flag(setting.name, setting.kind)
        names = setting.names()
        text = setting.help
        if setting.registered is not None and names:
            text += f": {', '.join(names)}"
        common: dict[str, Any] = {"dest": setting.name, "default": argparse.SUPPRESS}
        if setting.kind is bool:  # (the command's own default where the library's is null)
            state = "on" if COMMAND_DEFAULTS.get(setting.name, setting.default) else "off"
            group.add_argument(flag, action=argparse.BooleanOptionalAction,
                               help=f"{text} (default: {state})", **common)
        elif setting.kind is dict:
            group.add_argument(flag, action="append", metavar="KEY=VALUE",
                               help=f"{text} (repeatable; the value is read as YAML)", **common)
        else:
            default = "null" if setting.default is None else setting.default
            metavar = ("{" + ",".join(setting.choices) + "}" if setting.choices
                       else _METAVARS.get(setting.kind))
            group.add_argument(flag, type=_value_parser(setting.kind, setting.optional),
                               metavar=metavar, help=f"{text} (default: {default})", **common)


def _option_parser(option: Any) -> Any:
    """argparse ``type=`` for a metric option: its own parser (``0.5,0.9`` for a list), named
    for argparse's "invalid int value: 'x'"."""

    def parse(text: str) -> Any:
        return option.parse(text)

    parse.__name__ = "list of numbers" if option.kind is tuple else option.kind.__name__
    return parse


def _add_metric_flags(parser: argparse.ArgumentParser) -> None:
    """One ``sigmavae eval`` flag per metric option, from its declaration in the metric's
    registration (:func:`sigmavae.metrics.metric_options`): type, default and help. A flag that
    is not given is absent from the namespace (the option's declared default applies)."""
    from .metrics.report import metric_options

    group = parser.add_argument_group(
        "metric options (each declared by its metric; sigmavae.metrics.metric_options)")
    for option in metric_options().values():
        common: dict[str, Any] = {"dest": option.name, "default": argparse.SUPPRESS}
        if option.kind is bool:
            state = "on" if option.default else "off"
            group.add_argument(option.flag, *option.aliases,
                               action=argparse.BooleanOptionalAction,
                               help=f"{option.help} (default: {state})", **common)
            continue
        default = "" if option.default is None else f" (default: {option.default})"
        group.add_argument(option.flag, *option.aliases, type=_option_parser(option),
                           metavar=option.metavar or _METAVARS.get(option.kind),
                           help=option.help + default, **common)


def _check_output_file(path: Path, flag: str, suffixes: tuple[str, ...] | None = None) -> None:
    """An output file must not be a folder and must have a suffix this writer knows."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; expected a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {path}: expected a file ending in {', '.join(suffixes)}")


def _train(args: argparse.Namespace) -> int:
    from . import configs
    from .run import SavedRun, next_version, run_outputs
    from .run.config import settings
    from .training import TrainConfig, Trainer

    for a, b in (("overwrite", "resume"), ("new_version", "resume"),
                 ("overwrite", "new_version")):
        if getattr(args, a) and getattr(args, b):
            raise UsageError(f"{_flag(a)} and {_flag(b)} ask for different runs: give one")
    if args.resume not in (None, "auto") and not Path(args.resume).is_file():
        raise UsageError(f"--resume {args.resume}: no such checkpoint file (pass a .ckpt or "
                         "'auto' for OUT/checkpoints/last.ckpt)")
    config = configs.load(args.config) if args.config else TrainConfig()  # a name or a file
    flags = {s.name: getattr(args, s.name) for s in settings() if s.name in args}  # given ones
    file_keys = _config_keys(configs.resolve(args.config)) if args.config else []
    saved = None
    if args.resume is not None:  # the run folder's own config, with what may change
        out = flags.get("out", config.out if "out" in file_keys else None)
        saved = SavedRun.find(args.resume, out, default_out=config.out)
    if saved is not None and saved.config is not None:
        given = _given(saved.config, {k: getattr(config, k) for k in file_keys}, flags)
        config, line = saved.continued(given)
        print(line)
        finished = saved.finished(config.epochs)
        if finished:
            print(finished)
            return 0
    else:
        config = config.replace(**_given(config, {}, flags))
    if args.new_version and run_outputs(config.out):
        folder = next_version(config.out)
        print(f"{config.out} holds a run: training a new version in {folder}")
        config = config.replace(out=str(folder))
    resume = saved.checkpoint if saved is not None and saved.checkpoint else args.resume
    config = config.with_command_defaults()  # tune_malloc, speed_hint: on unless set off
    result = Trainer(config, overwrite=args.overwrite).fit(resume=resume)
    if result.get("interrupted"):
        return 128 + int(result["signal"])  # the shell convention; the checkpoint is saved
    return 0


def _config_keys(path: Path) -> list[str]:
    """The keys a (valid) config file sets."""
    values = yaml12.load(path.read_text())
    return list(values) if isinstance(values, dict) else []


def _given(base: Any, values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``values`` (of a config file), then the ``flags`` given, as changes to the config
    ``base``: ``KEY=VALUE`` flags add to (or override) the mapping of ``values`` or ``base``."""
    changes = dict(values)
    for name, value in flags.items():
        if isinstance(getattr(base, name), dict):
            value = {**changes.get(name, getattr(base, name)),
                     **_key_values(value, _flag(name, dict))}
        changes[name] = value
    return changes


def _eval(args: argparse.Namespace) -> int:
    from .metrics.report import evaluate_checkpoint, metric_options, stderr_log

    # the metric options given (flags not given are absent: the declared defaults apply)
    options = {name: getattr(args, name) for name in metric_options() if name in args}
    result = evaluate_checkpoint(
        args.checkpoint, args.metrics, split=args.split, data_root=args.data_root,
        data_options=_key_values(args.data_option, "--data-option"), limit=args.limit,
        batch_size=args.batch_size, seed=args.seed, device=args.device, out=args.out,
        log=stderr_log, tune_malloc=args.tune_malloc, **options)
    print(result.markdown)
    if result.files:
        print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .run import load_model
    from .training.visuals import save_sample_grid

    if args.n < 1:
        raise UsageError(f"--n must be >= 1 (images in the grid), got {args.n}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    _check_output_file(Path(args.out), "--out", IMAGE_SUFFIXES)
    model, config = load_model(args.checkpoint)  # or a run folder, or an export folder
    given = objective.context_frames(cast(objective.Model, model))
    if given:
        if args.draws:
            raise UsageError("--draws: a video model's continuations are its decoder means; "
                             "drop --draws")
        return _sample_video(args, model, config, given)
    if args.gif is not None:
        raise UsageError("--gif: the checkpoint's model is not a conditional sequence model "
                         "(no context frames to continue); drop --gif")
    try:
        path = save_sample_grid(model, Path(args.out), n=args.n, seed=args.seed,
                                draw=args.draws)
    except likelihoods.LikelihoodInputError as err:  # a sigma fitted to each data image
        raise UsageError(f"--draws: the checkpoint's decoder has no p(x|z) at a prior sample "
                         f"({first_line(err)}); drop --draws for its means") from None
    what = ("one draw from p(x|z) at each prior draw" if args.draws
            else "decoder means of prior draws")
    print(f"wrote {args.n} samples ({what}) to {path}")
    return 0


def _sample_video(args: argparse.Namespace, model: Any, config: Any, given: int) -> int:
    """``sigmavae sample`` of a video model: continuations of test sequences (PNG strip, GIF)."""
    from .data import load_dataset
    from .training.video_visuals import (
        predicted_sequences,
        save_prediction_gif,
        save_prediction_strip,
    )

    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1 (continuations per sequence), got "
                         f"{args.samples}")
    if args.gif is not None:
        _check_output_file(Path(args.gif), "--gif", (".gif",))
    root = args.data_root if args.data_root is not None else config.data_root
    data = load_dataset(config.data, args.split, root, **config.data_options)
    truth = data.images[: min(args.n, len(data))]
    predictions = predicted_sequences(model, truth, args.samples, seed=args.seed)
    path = save_prediction_strip(truth, predictions, Path(args.out))
    wrote = [str(path)]
    if args.gif is not None:
        wrote.append(str(save_prediction_gif(truth, predictions, Path(args.gif), given)))
    print(f"wrote {truth.shape[0]} {args.split} sequences x {args.samples} samples (the first "
          f"{given} frames given, the rest sampled from the model's prior; decoder means) to "
          f"{', '.join(wrote)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .run.export import export_checkpoint

    exported = export_checkpoint(args.source, args.out, overwrite=args.overwrite)
    print(exported.summary())
    print(f"load it with: sigmavae.from_pretrained({str(exported.folder)!r})")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.name:  # one paragraph, wrapped for a terminal (paths and names kept whole)
        print(textwrap.fill(describe_dataset(args.name), width=92, break_on_hyphens=False,
                            break_long_words=False))
        return 0
    for name in dataset_names():
        print(f"{name:12s} {describe_dataset(name).split(': ')[0]}")
    return 0


def _configs(args: argparse.Namespace) -> int:
    from . import configs

    if args.name:  # the file as shipped, comments and all, to copy and edit
        print(configs.path(args.name).read_text(), end="")
        return 0
    for name in configs.names():
        print(f"{name:22s} {configs.summary(name)}")
    return 0


def _list_or_describe(name: str | None, names: list[str], summary: Any, describe: Any) -> int:
    """``sigmavae models`` / ``likelihoods``: each name with its summary, or (``name`` given)
    one entry's options with their types, defaults and meaning."""
    if name:
        try:
            print(describe(name))
        except OptionError as err:  # an unknown name: one line listing the known ones
            raise UsageError(str(err)) from None
        return 0
    width = max(map(len, names)) + 2
    for each in names:
        print(f"{each:{width}s} {summary(each)}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import MODELS, describe_model

    return _list_or_describe(args.name, MODELS.names(), MODELS.summary, describe_model)


def _likelihoods(args: argparse.Namespace) -> int:
    return _list_or_describe(args.name, likelihoods.names(), likelihoods.summary,
                             likelihoods.describe)


def build_parser() -> argparse.ArgumentParser:
    """The ``sigmavae`` parser; the train flags and the metric names come from the config
    declaration and the registries."""
    from .metrics.report import METRICS, default_metrics

    parser = argparse.ArgumentParser(
        prog="sigmavae", description="Train and evaluate VAEs with calibrated decoders.")
    parser.add_argument("--version", action="version", version=f"sigmavae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train", help="train a VAE",
        description="Train a VAE. Every TrainConfig key is a flag (--batch-size for "
                    "batch_size); flags override the --config file.")
    t.add_argument("--config", help="a packaged config's name (sigmavae configs lists them) or "
                                    "a YAML file of TrainConfig keys; flags override it")
    t.add_argument("--resume", help="continue a run with its saved config: 'auto' for "
                                    "OUT/checkpoints/last.ckpt, or a checkpoint (its run folder "
                                    "is OUT unless --out says otherwise); flags may change only "
                                    "what is safe (docs/training.md)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run OUT holds (its checkpoints, logs, TensorBoard events)")
    t.add_argument("--new-version", action="store_true",
                   help="if OUT holds a run, train into OUT-2 (OUT-3, ...) instead")
    _add_config_flags(t)
    t.set_defaults(func=_train)

    e = sub.add_parser(
        "eval", help=f"evaluate a checkpoint: {', '.join(METRICS.names())}",
        description="Evaluate a checkpoint on a data split. Writes a JSON report (--out) and a "
                    "markdown summary beside it (.md, also printed); the calibration plot goes "
                    "to OUT_STEM.calibration.png. Numbers are in nats/image (summed over data "
                    "dimensions) and bits/dim; invalid bounds are reported as n/a with the reason.")
    e.add_argument("checkpoint", help="a checkpoint file, a run folder (its "
                   "checkpoints/last.ckpt) or an exported model folder (sigmavae export)")
    e.add_argument("--metrics", default="default",
                   help=f"comma-separated: {', '.join(METRICS.names())}; 'all'; 'default' "
                        f"(= {','.join(default_metrics())})")
    e.add_argument("--split", default="test")
    e.add_argument("--data-root")
    e.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="override one of the run's data options (repeatable), e.g. frames=30 "
                        "to score a video model on longer test sequences")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--limit", type=int, help="evaluate the first N images only")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    e.add_argument("--tune-malloc", action=argparse.BooleanOptionalAction, default=True,
                   help="on the CPU, keep activation blocks in glibc's heap as the trainer "
                        "does (run.allocator; default: on here, off in the library's "
                        "evaluate_checkpoint)")
    e.add_argument("--out", help="write the report as JSON (and the markdown beside it)")
    _add_metric_flags(e)
    e.set_defaults(func=_eval)

    s = sub.add_parser("sample", help="a grid of prior samples from a checkpoint (video "
                                      "models: continuations of test sequences)")
    s.add_argument("checkpoint", help="a checkpoint file, a run folder or an exported model "
                   "folder")
    s.add_argument("--n", type=int, default=64,
                   help="images in the grid (video models: test sequences continued)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--draws", action="store_true",
                   help="one draw x ~ p(x|z) at each prior sample instead of the decoder's "
                        "mean (what the fid_draws metric scores; not for video models)")
    s.add_argument("--out", default="samples.png")
    s.add_argument("--gif", default=None,
                   help="video models: also write an animated GIF of the predictions here")
    s.add_argument("--samples", type=int, default=3,
                   help="video models: sampled continuations of each test sequence")
    s.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="video models: the split whose sequences are continued")
    s.add_argument("--data-root", default=None,
                   help="video models: where the data set is (default: the run's)")
    s.set_defaults(func=_sample)

    x = sub.add_parser(
        "export", help="a trained model as a folder to share (weights only, safetensors)",
        description="Write the model of a run (its checkpoints/last.ckpt) or of a checkpoint "
                    "as model.safetensors (weights and buffers, no optimiser state), "
                    "config.json (what rebuilds it) and README.md (a model card): the layout "
                    "sigmavae.from_pretrained reads and the Hugging Face Hub takes as it is.")
    x.add_argument("source", help="a run folder or a checkpoint file")
    x.add_argument("--out", required=True, help="the export folder (new or empty)")
    x.add_argument("--overwrite", action="store_true",
                   help="replace the export files of a folder that is not empty")
    x.set_defaults(func=_export)

    d = sub.add_parser("data", help="list data sets, or describe one")
    d.add_argument("name", nargs="?")
    d.set_defaults(func=_data)

    c = sub.add_parser("configs", help="list the packaged training configs, or print one",
                       description="The ready-made configs shipped in the package: train one "
                                   "with 'sigmavae train --config NAME'; 'sigmavae configs NAME "
                                   "> mine.yaml' copies one to edit.")
    c.add_argument("name", nargs="?", help="print this config's YAML")
    c.set_defaults(func=_configs)

    m = sub.add_parser("models", help="list the models, or one model's options")
    m.add_argument("name", nargs="?", help="a model: print its options (types, defaults, "
                                           "meaning) for --model-option")
    m.set_defaults(func=_models)
    h = sub.add_parser("likelihoods", help="list the decoder likelihood heads, or one head's "
                                           "options")
    h.add_argument("name", nargs="?", help="a head: print its options (types, defaults, "
                                           "meaning) for --likelihood-option")
    h.set_defaults(func=_likelihoods)

    from .experiments.command import add_parser as add_experiment_parser

    add_experiment_parser(sub, _key_values)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user error is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what a report shows as run
    from .experiments.presets import ExperimentError
    from .likelihoods import LikelihoodInputError
    from .metrics.fid import FeatureExtractorError
    from .metrics.report import EvalOptionError
    from .run import CheckpointError, ConfigError, RunFolderError
    from .run.stopping import StopRequested

    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except StopRequested as stop:  # (training handles its own: it checkpoints and returns)
        print(f"sigmavae {args.command}: {stop}; nothing written", file=sys.stderr)
        return 128 + stop.signum  # the shell convention for a process ended by a signal
    except EvalOptionError as err:  # a keyword of the library call: name it as its flag
        print(f"sigmavae {args.command}: error: {_flag(err.option)}{err.detail}",
              file=sys.stderr)
        return 2
    except (ConfigError, CheckpointError, DataError, LikelihoodInputError, FeatureExtractorError,
            UsageError, ExperimentError, RunFolderError) as err:
        print(f"sigmavae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sigmavae configs | head`: the reader left; no error to report
        # (Python's documented recipe: point stdout at devnull so the exit flush stays quiet)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by SIGPIPE
    except OSError as err:  # the file system refused: permissions, a full disk, a missing folder
        where = f" {err.filename}" if err.filename else ""
        print(f"sigmavae {args.command}: error: cannot access{where}: "
              f"{err.strerror or first_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
