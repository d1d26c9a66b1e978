"""The sigma-VAE paper's Tables 1-4 as data: one row per printed number, with its units.

``published.csv`` (beside this module) is the transcription; its header comments say how each
column is read. The experiments' reports put these numbers beside the measured ones.

>>> published(1, "sigma_vae", "svhn", "neg_log_p").value
-3333.0
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

#: What each ``metric`` value of the table means.
METRICS = {
    "neg_log_p": "upper bound on -log p(x): single-sample -ELBO (8-bit data for discrete heads)",
    "neg_log_pdf": "upper bound on -log pdf of x/255 (continuous density; Table 4)",
    "fid": "Frechet Inception Distance (lower is better)",
    "beta": "the KL weight beta, or the effective beta 2 sigma^2 of a sigma-VAE",
}
BOUNDS = ("neg_log_p", "neg_log_pdf")


@dataclass(frozen=True)
class PublishedValue:
    """One number printed in the paper.

    ``relation`` is ``"<"`` for an upper bound (printed ``< value``), ``"="`` otherwise;
    ``units`` is ``None`` for dimensionless numbers (FID, beta).
    """

    table: int
    row: str
    dataset: str
    model: str
    metric: str
    relation: str
    value: float
    units: str | None
    note: str | None


@functools.cache
def published_values() -> tuple[PublishedValue, ...]:
    """Every published number, in the order of the paper's tables."""
    text = (resources.files("sigmavae.experiments") / "published.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    values = []
    for record in csv.DictReader(lines):
        values.append(PublishedValue(
            table=int(record["table"]), row=record["row"], dataset=record["dataset"],
            model=record["model"], metric=record["metric"], relation=record["relation"],
            value=float(record["value"]), units=record["units"] or None,
            note=record["note"] or None,
        ))
    return tuple(values)


def published(table: int, row: str, dataset: str, metric: str) -> PublishedValue:
    """The number the paper prints in ``table`` for ``row`` on ``dataset`` (``metric`` one of
    :data:`METRICS`).

    Raises:
        KeyError: the paper prints no such number (blank, N/A or -), with what it does print.
    """
    for value in published_values():
        if (value.table, value.row, value.dataset, value.metric) == (table, row, dataset, metric):
            return value
    there = sorted({v.metric for v in published_values()
                    if (v.table, v.row, v.dataset) == (table, row, dataset)})
    raise KeyError(f"Table {table} prints no {metric} for {row} on {dataset}"
                   + (f" (it prints: {', '.join(there)})" if there else ""))
