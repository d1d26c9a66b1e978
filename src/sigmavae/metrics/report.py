"""Run a list of metrics on a model and render the report as JSON and markdown.

>>> report = evaluate(model, test.images, ["elbo", "iwae"], options={"iwae_samples": 100})
>>> print(render_markdown(report))
>>> write_report(report, "runs/frey/eval.json")     # also writes runs/frey/eval.md

Every metric returns a dict with ``available``; metrics that cannot be computed (an invalid
bound, missing Inception weights) are reported as ``{"available": false, "reason": ...}``, never
as numbers.
Keys carry their units (``*_nats_per_image``, ``*_bits_per_dim``, ``*_nats``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..models.vae import VAE
from . import active_units, calibration, discretized, elbo, fid, iwae, mutual_info
from ._common import BPD, NATS, EvalContext, MetricUnavailable

MetricFn = Callable[[EvalContext], dict]
RowsFn = Callable[[dict], list[tuple[str, str, str]]]

#: name -> (compute, markdown rows). The names are public API (the CLI's ``--metrics``).
METRICS: dict[str, tuple[MetricFn, RowsFn]] = {
    "elbo": (elbo.run, elbo.markdown_rows),
    "discretized": (discretized.run, discretized.markdown_rows),
    "iwae": (iwae.run, iwae.markdown_rows),
    "fid": (fid.run, fid.markdown_rows),
    "mi": (mutual_info.run, mutual_info.markdown_rows),
    "active_units": (active_units.run, active_units.markdown_rows),
    "calibration": (calibration.run, calibration.markdown_rows),
}
#: What ``sigmavae eval`` runs without ``--metrics``: everything that takes seconds on CPU.
DEFAULT_METRICS: tuple[str, ...] = ("elbo", "discretized", "mi", "active_units", "calibration")

TITLES = {
    "elbo": "ELBO", "discretized": "discretised ELBO (Table 4)", "iwae": "IWAE bound",
    "fid": "FID", "mi": "mutual information / marginal KL", "active_units": "active units",
    "calibration": "decoder calibration",
}


def parse_metrics(spec: str | Sequence[str] | None) -> list[str]:
    """``"elbo,iwae"`` / a list / ``"all"`` / ``None`` (the defaults) -> validated names."""
    if spec is None or spec == "default":
        return list(DEFAULT_METRICS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "all":
            names += [n for n in METRICS if n not in names]
        elif item == "default":
            names += [n for n in DEFAULT_METRICS if n not in names]
        elif item not in METRICS:
            raise ValueError(f"unknown metric {item!r}; choose from: {', '.join(METRICS)}, "
                             "all, default")
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


def evaluate(
    model: VAE, images: torch.Tensor, metrics: str | Sequence[str] | None = None,
    options: dict[str, Any] | None = None, batch_size: int = 256, seed: int = 0,
    device: torch.device | str | None = None, meta: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``metrics`` on ``images`` (``uint8 (N, C, H, W)``) and return the report dict.

    ``options`` (all optional): ``elbo_samples``, ``iwae_samples``, ``mi_data``, ``mi_samples``,
    ``fid_samples``, ``fid_features``, ``calibration_levels``, ``active_threshold``,
    ``plot_path`` (calibration PNG), ``title``. ``meta`` is copied into the report (checkpoint,
    data set, split...). ``log`` gets one progress line per metric.
    """
    names = parse_metrics(metrics)
    device = torch.device(device) if device is not None else None
    if device is not None:
        model = model.to(device)
    ctx = EvalContext(model=model, images=images, batch_size=batch_size, seed=seed,
                      device=device, options=dict(options or {}))
    head = model.head
    report: dict[str, Any] = {
        **(meta or {}),
        "likelihood_head": head.name,
        "num_images": int(images.shape[0]),
        "data_shape": list(model.data_shape),
        "data_dims": model.data_dims,
        "data_scaling": elbo.data_scaling(head.data_kind),
        "units": {"nats_per_image": "nats summed over the data dimensions of one image",
                  "bits_per_dim": f"nats per image / ({model.data_dims} ln 2)"},
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
                result = METRICS[name][0](ctx)
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
        f"{report['num_images']} images x {report['data_dims']} dims "
        f"({'x'.join(str(s) for s in report['data_shape'])}); "
        f"{report['data_scaling']}; {NATS} = summed over dims, {BPD} = {NATS} / (D ln 2).",
        "",
        "| metric | value | units / notes |",
        "|---|---|---|",
    ]
    for name, result in report["metrics"].items():
        if not result.get("available", False):
            rows = [(TITLES.get(name, name), "n/a", str(result.get("reason", "")))]
        else:
            rows = METRICS[name][1](result)
        for cells in rows:
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if report.get("checkpoint"):
        lines += ["", f"checkpoint: `{report['checkpoint']}`"]
    return "\n".join(lines) + "\n"


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
