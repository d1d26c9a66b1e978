"""Report lines that describe the runs behind a report."""

from __future__ import annotations

from sigmavae.experiments.report import cost_table, markdown_table, precision_line


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


def _timed(run_id: str, device: str | None, precision: str | None, train: float | None,
           evaluation: float | None) -> dict[str, object]:
    return {"run_id": run_id, "trained_on": device, "precision": precision,
            "train_seconds": train, "eval_seconds": evaluation}


def test_cost_counts_a_shared_run_once_per_device_and_precision():
    shared = _timed("optimal-s0", "Xeon, 1 threads", "bf16-mixed", 3600.0, 360.0)
    rows = [shared, dict(shared),  # the same run in two experiments' runs.csv
            _timed("gaussian-s0", "Xeon, 1 threads", "bf16-mixed", 1800.0, 0.0),
            _timed("svg-s0", "EPYC, 2 threads", "32-true", 7200.0, 1800.0)]
    lines = cost_table(rows)
    by_device = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    # Xeon: 2 runs, 1.5 h training, 0.1 h evaluation, 1.6 CPU-hours at 1 thread
    assert by_device["Xeon, 1 threads"] == ("| Xeon, 1 threads | bf16-mixed | 2 | 1.50 | 0.10 | "
                                           "1.60 |")
    # EPYC: 2.5 h at 2 threads = 5 CPU-hours
    assert by_device["EPYC, 2 threads"] == "| EPYC, 2 threads | 32-true | 1 | 2.00 | 0.50 | 5.00 |"
    assert lines[-1] == "| **all** |  | 3 | 3.50 | 0.60 | 6.60 |"


def test_cost_says_what_it_cannot_count():
    lines = cost_table([_timed("old-s0", None, None, None, None),
                        _timed("new-s0", "Xeon, 1 threads", "bf16-mixed", 360.0, 0.0)])
    assert "| not recorded | not recorded | 1 (1 without recorded times) | 0.00 | 0.00 | n/a |" \
        in lines
    assert lines[-1].endswith("| 2 (1 without recorded times) | 0.10 | 0.00 | n/a |")
    assert cost_table([]) == ["(no finished runs)"]


def test_a_pipe_in_a_table_cell_is_escaped_not_replaced():
    """``p(x|z)`` in a header or a cell shows as itself and does not end the cell."""
    lines = markdown_table([{"FID of draws from p(x|z)": "a || b"}])
    assert lines[0] == "| FID of draws from p(x\\|z) |"
    assert lines[2] == "| a \\|\\| b |"
