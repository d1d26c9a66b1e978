"""Report lines that describe the runs behind a report."""

from __future__ import annotations

from sigmavae.experiments.report import precision_line


def _row(label: str, seed: int, precision: str | None) -> dict[str, object]:
    return {"label": label, "seed": seed, "precision": precision}


def test_one_precision_is_said_once():
    rows = [_row("Gaussian VAE", s, "bf16-mixed") for s in range(3)]
    assert precision_line(rows) == "Every run trained at bf16-mixed."
    assert precision_line([]) == ""


def test_runs_at_another_precision_are_named():
    rows = [*(_row("optimal sigma-VAE", s, "bf16-mixed") for s in range(3)),
            _row("Student-t VAE", 0, "32-true"), _row("Student-t VAE", 1, "32-true"),
            _row("old run", 0, None)]
    line = precision_line(rows)
    assert line.startswith("Precision: bf16-mixed for 3 runs;")
    assert "32-true: Student-t VAE seed 0, Student-t VAE seed 1" in line
    assert "unknown: old run seed 0" in line and "optimal sigma-VAE" not in line
