"""Run a list of metrics on a model and render the report as JSON and markdown.

>>> report = evaluate(model, test.images, ["elbo", "iwae"], options={"iwae_samples": 100})
>>> print(render_markdown(report))
>>> write_report(report, "runs/frey/eval.json")     # also writes runs/frey/eval.md

or, all of ``sigmavae eval`` (load a checkpoint, its data split, check, evaluate, write) in one
call: ``evaluate_checkpoint("runs/frey/checkpoints/last.ckpt", "all", out="eval.json")``.

The metrics are the entries of :data:`METRICS` (:mod:`sigmavae.metrics.registry`: each metric
module registers its ``run`` function with ``@register_metric``); their names are what
``--metrics`` takes. Every metric returns a dict with ``available``; metrics that cannot be
computed (an invalid bound, missing Inception weights) are reported as
``{"available": false, "reason": ...}``, never as numbers.
Keys carry their units (``*_nats_per_image``, ``*_bits_per_dim``, ``*_nats``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..dataset_elbo import data_scaling
from ..objective import Model, data_dims, is_sequence, match_sequence_length
from ._common import BPD, NATS, EvalContext, MetricUnavailable
from .registry import (
    METRICS,
    EvalOptionError,
    Metric,
    MetricOption,
    check_metric_options,
    metric_options,
)

__all__ = [
    "METRICS",
    "CheckpointReport",
    "EvalOptionError",
    "MetricOption",
    "default_metrics",
    "eval_flags",
    "evaluate",
    "evaluate_checkpoint",
    "merge_reports",
    "metric_options",
    "parse_metrics",
    "render_markdown",
    "resolve_device",
    "stderr_log",
    "write_report",
]


def default_metrics() -> list[str]:
    """What ``sigmavae eval`` runs without ``--metrics``: the metrics registered with
    ``default=True`` (everything that takes seconds on a CPU)."""
    return [name for name in METRICS if METRICS.get(name).default]


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_METRICS":  # read when asked, so that it includes users' metrics
        return tuple(default_metrics())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_metrics(spec: str | Sequence[str] | None) -> list[str]:
    """``"elbo,iwae"`` / a list / ``"all"`` / ``None`` (the defaults) -> validated names."""
    if spec is None or spec == "default":
        return default_metrics()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "all":
            names += [n for n in METRICS if n not in names]
        elif item == "default":
            names += [n for n in default_metrics() if n not in names]
        elif item not in METRICS:
            raise ValueError(f"unknown metric {item!r}; choose from: "
                             f"{', '.join(METRICS.names())}, all, default")
        elif item not in names:
            names.append(item)
    if not names:
        raise ValueError("no metrics given")
    return names


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def eval_flags(options: Mapping[str, Any]) -> list[str]:
    """The ``sigmavae eval`` flags that give the metric options ``options`` (what
    :func:`evaluate_checkpoint` takes as keywords), e.g. ``{"elbo_samples": 1, "mi_data": None}``
    -> ``["--elbo-samples", "1"]``: ``None`` values are left out (the metric's default), the
    values are checked against the declarations first, and the flags parse back to the same
    options.

    Raises:
        EvalOptionError: an unknown option name (the message lists the valid ones) or a bad value.
    """
    declared = metric_options()
    checked = check_metric_options(options, defaults=False)
    return [arg for name, value in checked.items() for arg in declared[name].render(value)]


def evaluate(
    model: nn.Module, images: torch.Tensor, metrics: str | Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None, batch_size: int = 256, seed: int = 0,
    device: torch.device | str | None = None, meta: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    held_out: Callable[[], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Run ``metrics`` on ``images`` (``uint8 (N, *model.data_shape)``); return the report dict.

    ``held_out`` loads held-out examples for the metrics that fit on other data than they
    score (``refit_sigma``); it is called only if one of them runs.

    ``model`` is any module that follows the model protocol (:mod:`sigmavae.objective`).
    ``options``: the metrics' options (:func:`metric_options`: ``elbo_samples``,
    ``iwae_samples``, ...; those not given get their declared defaults; they are passed as
    given, unchecked, so that code may give what no command line can, e.g. an ``nn.Module`` as
    ``fvd_features``), and ``plot_path`` (calibration PNG), ``video_plot_path``, ``title``.
    ``meta`` is copied into the report (checkpoint, data set, split...). ``log`` gets one
    progress line per metric.
    """
    names = parse_metrics(metrics)
    device = torch.device(device) if device is not None else None
    if device is not None:
        model = model.to(device)
    vae = cast(Model, model)  # the module, typed as the model protocol it follows
    defaults = {name: option.default for name, option in metric_options().items()}
    ctx = EvalContext(model=vae, images=images, batch_size=batch_size, seed=seed,
                      device=device, options={**defaults, **(options or {})},
                      held_out=held_out)
    head = vae.head
    dims = data_dims(vae)  # a conditional sequence model: its predicted frames
    report: dict[str, Any] = {
        **(meta or {}),
        "likelihood_head": head.name,
        "num_images": int(images.shape[0]),
        "data_shape": list(vae.data_shape),
        "data_dims": dims,
        "example": "sequence" if is_sequence(vae) else "image",
        "data_scaling": data_scaling(head.data_kind, head.data_range),
        "units": {"nats_per_image": "nats summed over the data dimensions of one image",
                  "bits_per_dim": f"nats per image / ({dims} ln 2)"},
        "seed": seed,
        "options": {k: v for k, v in ctx.options.items() if v is not None},
        "metrics": {},
    }
    with torch.no_grad():
        for name in names:
            if log is not None:
                log(f"eval: {name} ...")
            start = time.perf_counter()
            try:
                result = METRICS.get(name).run(ctx)
            except MetricUnavailable as err:
                result = {"available": False, "reason": str(err)}
            result["seconds"] = round(time.perf_counter() - start, 3)
            report["metrics"][name] = _clean(result)
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """A short markdown summary: one table row per number, with its units."""
    where = " ".join(str(report[k]) for k in ("data", "split") if report.get(k))
    lines = [
        f"## sigmavae eval: {where or 'data'} ({report['likelihood_head']})",
        "",
        f"{report['num_images']} {report.get('example', 'image')}s x {report['data_dims']} dims "
        f"({'x'.join(str(s) for s in report['data_shape'])}); "
        f"{report['data_scaling']}; {NATS} = summed over dims, {BPD} = {NATS} / (D ln 2)"
        + (" (a sequence model: nats/image below is nats per sequence, summed over its "
           f"{report['data_dims']} predicted dims)." if report.get("example") == "sequence"
           else "."),
        "",
        "| metric | value | units / notes |",
        "|---|---|---|",
    ]
    for name, result in report["metrics"].items():
        metric: Metric | None = METRICS.get(name) if name in METRICS else None
        if not result.get("available", False) or metric is None:
            title = metric.title if metric is not None else name
            rows = [(title, "n/a", str(result.get("reason", "")))]
        else:
            rows = metric.rows(result)
        for cells in rows:
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if report.get("checkpoint"):
        lines += ["", f"checkpoint: `{report['checkpoint']}`"]
    return "\n".join(lines) + "\n"


#: What makes two reports evaluations of the same images the same way (``merge_reports``).
SAME_EVALUATION = ("data", "split", "likelihood_head", "num_images", "data_shape", "seed")


def merge_reports(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a report of :func:`evaluate_checkpoint`) with the metrics of ``update``, a
    report of some metrics evaluated again on the same images, in their place (metrics of
    ``update`` that ``base`` lacks are added; the rest of ``base`` is kept, its option names
    joined with ``update``'s).

    Raises:
        ValueError: the two reports are not of the same evaluation (:data:`SAME_EVALUATION`
            differs: another data set, split, head, number of images, shape or seed).
    """
    differ = [key for key in SAME_EVALUATION if base.get(key) != update.get(key)]
    if differ:
        detail = "; ".join(f"{k}: {base.get(k)!r} vs {update.get(k)!r}" for k in differ)
        raise ValueError(f"the reports are not of the same evaluation ({detail})")
    merged = dict(base)
    merged["metrics"] = {**base.get("metrics", {}), **update.get("metrics", {})}
    options = list(base.get("options", []))
    merged["options"] = options + [o for o in update.get("options", []) if o not in options]
    return merged


def _cell(text: str) -> str:
    """A markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_report(report: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and the markdown summary beside it (same name, ``.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    md = path.with_suffix(".md")
    md.write_text(render_markdown(report))
    return path, md


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_device(device: str) -> str:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` -> a torch device string (EvalOptionError
    for anything else, or for CUDA where there is none)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise EvalOptionError("device", f": expected cpu, cuda, cuda:N or auto, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise EvalOptionError("device", f" {device}: no CUDA device is available here; use cpu")
    return device


@dataclass
class CheckpointReport:
    """What :func:`evaluate_checkpoint` returns: the report, its markdown, the files written."""

    report: dict[str, Any]
    markdown: str
    files: list[Path] = field(default_factory=list)


def evaluate_checkpoint(
    checkpoint: str | Path, metrics: str | Sequence[str] | None = None, *,
    split: str = "test", data_root: str | Path | None = None, limit: int | None = None,
    data_options: Mapping[str, Any] | None = None, batch_size: int = 256, seed: int = 0,
    device: str = "auto", out: str | Path | None = None,
    log: Callable[[str], None] | None = None, tune_malloc: bool = False,
    **metric_options: Any,
) -> CheckpointReport:
    """Evaluate a training checkpoint on a split of its data set: ``sigmavae eval``.

    Every argument is checked before anything is loaded; then the model and its config come
    from the checkpoint (:func:`sigmavae.run.load_trained`), a named FID extractor is
    tried, the split is loaded (the data set and options of the run; ``data_root`` overrides
    the run's; ``data_options`` override single options of the run's, e.g. ``{"frames": 30}``
    to score a video model on longer test sequences than it was trained on), its first
    ``limit`` images are evaluated, and with ``out`` the JSON report, the
    markdown beside it (``.md``), the calibration plot (``OUT_STEM.calibration.png``) and the
    video PSNR/SSIM plot (``OUT_STEM.video.png``) are written.

    Args:
        checkpoint: a ``.ckpt`` written by the trainer.
        metrics: names (see :func:`parse_metrics`); ``None`` runs :func:`default_metrics`.
        split: the split of the run's data set to evaluate.
        data_root: where that data set is (default: the run's).
        limit: evaluate the first N images only.
        data_options: data set options overriding the run's.
        batch_size: images per batch.
        seed: seed of the noise.
        device: cpu, cuda, cuda:N or auto.
        out: where to write the JSON report (its folder is made), or ``None``.
        log: gets one progress line per metric.
        tune_malloc: on the CPU, set this process's glibc allocator thresholds as the trainer
            does (:func:`sigmavae.run.tune_cpu_allocator`; process-wide, for the rest of the
            process, hence off unless asked; ``sigmavae eval`` asks): the metrics run the
            networks on batch after batch of activation-sized blocks, and IWAE's 1000 samples
            per image ran about 30% faster with it on a 2-core CPU.
        **metric_options: the metrics' options, as each metric declares them
            (:func:`metric_options`; ``sigmavae eval --help`` lists them): ``elbo_samples``,
            ``iwae_samples``, ``mi_data``, ``fid_features``, ``video_samples``, ...; checked
            against the declarations, the rest get their declared defaults.

    SIGTERM and SIGINT stop it within seconds, wherever it is (loading, any metric's batches):
    for the call, in the main thread, their handlers raise
    :class:`~sigmavae.run.stopping.StopRequested` (:class:`~sigmavae.run.stopping.StopSignals`),
    and nothing is written: no report, and the plots of metrics that had finished are removed.
    A signal that comes while the finished report is being written lets the writing end.

    Raises:
        EvalOptionError: a bad argument, or an unknown metric option (before anything is read).
        CheckpointError, ConfigError, DataError, FeatureExtractorError: the checkpoint, its
            config, the data or the FID extractor cannot be used (one line each).
        StopRequested: a stop signal came before the report was complete (``signum``).
    """
    from ..run import tune_cpu_allocator
    from ..run.stopping import StopRequested, StopSignals

    try:
        names = parse_metrics(metrics)
    except ValueError as err:
        raise EvalOptionError("metrics", f": {err}") from None
    options = check_metric_options(metric_options)
    for option, value, least in (("batch_size", batch_size, 1), ("limit", limit, 1)):
        if value is not None and value < least:
            raise EvalOptionError(option, f" must be >= {least}, got {value}")
    if seed < 0:
        raise EvalOptionError("seed", f" must be >= 0, got {seed}")
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.is_dir():
        raise EvalOptionError("out", f" {out_path}: is a folder; expected a file name")
    device = resolve_device(device)
    if tune_malloc and device == "cpu":
        tune_cpu_allocator()

    plots = _plot_paths(out_path, names)
    before = {p: _mtime(p) for p in plots.values() if p is not None}
    with StopSignals() as stops:  # handlers for the call; while writing, a signal only waits
        try:
            with stops.interruptible("evaluation"):
                report = _evaluate_checkpoint(checkpoint, names, options, plots, split=split,
                                              data_root=data_root, limit=limit,
                                              data_options=data_options, batch_size=batch_size,
                                              seed=seed, device=device, log=log)
        except StopRequested:
            for path, mtime in before.items():  # a plot written by this call: not left alone
                if _mtime(path) != mtime:
                    path.unlink(missing_ok=True)
            raise
        result = CheckpointReport(report=report, markdown=render_markdown(report))
        if out_path is not None:
            result.files = list(write_report(report, out_path))
            result.files += [p for p in plots.values() if p is not None and p.is_file()]
    return result


def _plot_paths(out: Path | None, names: Sequence[str]) -> dict[str, Path | None]:
    """Where the calibration and video plots go (beside ``out``), for the metrics that make
    them."""
    def beside(metric: str, suffix: str) -> Path | None:
        return out.with_name(out.stem + suffix) if out is not None and metric in names else None

    return {"plot_path": beside("calibration", ".calibration.png"),
            "video_plot_path": beside("video", ".video.png")}


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.is_file() else None


def _evaluate_checkpoint(
    checkpoint: str | Path, names: list[str], options: dict[str, Any],
    plots: dict[str, Path | None], *, split: str, data_root: str | Path | None,
    limit: int | None, data_options: Mapping[str, Any] | None, batch_size: int, seed: int,
    device: str, log: Callable[[str], None] | None,
) -> dict[str, Any]:
    """The report of :func:`evaluate_checkpoint`, its arguments checked: load, evaluate."""
    from ..data import load_dataset
    from ..run import load_model
    from .fid import check_fid_features

    model, config = load_model(checkpoint)  # a checkpoint, a run folder or an export folder
    if {"fid", "fid_draws"} & set(names):  # an extractor that cannot work: fail now, not later
        check_fid_features(options["fid_features"], cast(Model, model).data_shape)
    if "fvd" in names:
        from .fvd import check_fvd_features

        check_fvd_features(options["fvd_features"], cast(Model, model).data_shape)
    root = data_root if data_root is not None else config.data_root
    data = load_dataset(config.data, split, root,
                        **{**config.data_options, **dict(data_options or {})})
    if limit:
        data = data.subset(limit)
    vae = cast(Model, model)
    if is_sequence(vae) and data.data_shape[0] != vae.data_shape[0]:
        try:  # e.g. --data-option frames=30 for a model trained on 12-frame sequences
            match_sequence_length(vae, data.data_shape[0])
        except ValueError as err:
            raise EvalOptionError("data_option", f": {err}") from None
    options = options | {key: None if path is None else str(path) for key, path in plots.items()}
    options["title"] = f"{config.data} {split} ({config.likelihood})"
    meta = {"checkpoint": str(checkpoint), "data": config.data, "split": split,
            "likelihood": config.likelihood, "device": str(device)}
    def validation_split() -> torch.Tensor:  # the run's own validation data, when asked for
        held = load_dataset(config.data, "val", root,
                            **{**config.data_options, **dict(data_options or {})})
        n = config.val_subset or limit  # the run's validation examples, at most
        return (held.subset(n) if n else held).images

    return evaluate(model, data.images, names, options, batch_size=batch_size, seed=seed,
                    device=device, meta=meta, log=log, held_out=validation_split)
