"""The variance-convergence experiment's instrument: steps until sigma stays near its target,
censored where it never gets there."""

from __future__ import annotations

from pathlib import Path

from sigmavae.experiments.runs import RunResult, RunSpec
from sigmavae.experiments.variance import steps_to_reach


def _run(tmp: Path, sigmas: list[float]) -> RunResult:
    """A run whose steps.csv logs ``sigmas`` at steps 10, 20, ..."""
    folder = tmp / "run"
    folder.mkdir(exist_ok=True)
    rows = ["step,sigma"] + [f"{10 * (i + 1)},{s}" for i, s in enumerate(sigmas)]
    (folder / "steps.csv").write_text("\n".join(rows) + "\n")
    return RunResult(RunSpec("r", "r", {}, 0), folder, {}, {})


def test_steps_to_reach_is_a_measurement_once_sigma_stays_near(tmp_path):
    run = _run(tmp_path, [1.0, 0.5, 0.105, 0.2, 0.104, 0.1, 0.099])
    # within 10% of 0.1 for good from step 50 on (step 30 leaves it again)
    assert steps_to_reach(run, 0.1) == (50.0, 50.0)


def test_steps_to_reach_is_censored_when_sigma_never_gets_there(tmp_path):
    run = _run(tmp_path, [1.0, 0.8, 0.6, 0.5])
    low, high = steps_to_reach(run, 0.1)
    assert low == 41.0 and high is None  # at least the run's last step + 1
