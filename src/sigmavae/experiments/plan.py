"""``sigmavae experiment NAME --plan``: one folder, copied as it is to the machines that run it.

The plan writes, reading no data and training nothing, into its folder ``OUT``::

    runs/<run id>/train.yaml   each run's config (``out: runs/<run id>``)
    commands.txt               one line per run: sigmavae train ... && sigmavae eval ...
    runs.txt                   the run folder of each line (a finished run is skipped)
    prepare.sh                 once, first: the data into cache/, the FID feature classifier
    slurm-array.sh             sbatch: one array task per line
    run-local.sh [JOBS]        here: prepare, every line JOBS at a time, then collect.sh
    run-task.sh N              line N (0-based) of commands.txt, what both run
    collect.sh                 the reports, into reports/
    README.md, preset.json     how to run it; the preset's sizes
    logs/                      the scripts' logs

Every path in it is relative to ``OUT`` and every script runs from there, so the folder can be
moved or copied to a cluster. The shipped data are extracted (and the FID classifier trained)
by ``prepare.sh`` into the plan's own ``cache/``, where the configs and the evaluations read them.
Nothing names a device: each run takes what it finds (``accelerator: auto``, ``--device
auto``).
"""

from __future__ import annotations

import json
import shlex
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

from .presets import ExperimentError, Preset
from .runs import Evaluation, RunSpec, portable, train_command

#: Folders of a plan, relative to it.
RUNS, CACHE, LOGS, REPORTS = "runs", "cache", "logs", "reports"
#: Written by ``prepare.sh`` once the data and FID features are ready; the runs wait for it.
PREPARED = f"{CACHE}/prepared.txt"


@dataclass(frozen=True)
class Resources:
    """What one array task asks SLURM for (``#SBATCH`` defaults the user edits)."""

    time: str  # HH:MM:SS
    cpus: int
    gpu: bool  # ask for one GPU (else the line is written commented out)


#: Per preset: the quick runs take minutes on 2 CPU cores, paper-length ones hours on a CPU
#: (the 256-way categorical about 5 h on one core), the paper's are made for a GPU.
RESOURCES = {"quick": Resources("01:00:00", 2, False),
             "paper-length": Resources("12:00:00", 4, False),
             "paper": Resources("24:00:00", 8, True)}
DEFAULT_RESOURCES = Resources("04:00:00", 4, False)


@dataclass(frozen=True)
class PlannedRun:
    """One line of a plan: the run and how it is evaluated."""

    spec: RunSpec
    evaluation: Evaluation

    @property
    def folder(self) -> str:
        return f"{RUNS}/{self.spec.run_id}"

    def config(self) -> dict[str, Any]:
        """The run's ``train.yaml`` in the plan: output folder relative to the plan, and a data
        root in the sigmavae cache (the extracted shipped data) moved into the plan's
        ``cache/``, where ``prepare.sh`` puts them."""
        config = self.spec.config(Path(self.folder))
        root = portable(self.spec.train).get("data_root")
        if isinstance(root, str) and root.startswith("<cache>/"):
            config["data_root"] = CACHE + root.removeprefix("<cache>")
        return config

    def line(self) -> str:
        """``sigmavae train ... && sigmavae eval ...``, run from the plan folder."""
        folder = Path(self.folder)
        train = train_command(folder)
        evaluate = self.evaluation.command(folder / "checkpoints" / "last.ckpt",
                                           folder / "eval.json")
        return f"sigmavae {shlex.join(train)} && sigmavae {shlex.join(evaluate)}"


@dataclass(frozen=True)
class Plan:
    """A written plan: its folder and what a user runs, from anywhere (``shown`` is the folder
    as the user named it)."""

    folder: Path
    runs: int
    commands: Path
    collect: str  # the sigmavae command line of collect.sh (run in the plan folder)

    def instructions(self, shown: str | None = None) -> list[str]:
        """What to run: from the folder the plan was made in, where the plan is ``shown``
        (e.g. ``plans/beta``); from inside the plan where ``shown`` is None."""
        cd = f"cd {shlex.quote(shown)} && " if shown else ""
        local = f"{shlex.quote(shown)}/run-local.sh" if shown else "run-local.sh"
        return [
            f"on SLURM: {cd}jid=$(sbatch --parsable prepare.sh) && "
            "sbatch --dependency=afterok:$jid slurm-array.sh",
            f"or here:  bash {local} JOBS   (prepares, runs JOBS at a time, collects)",
            f"then:     {cd}{self.collect}",
        ]


def write_plan(folder: Path, runs: Sequence[PlannedRun], experiment: Sequence[str],
               preset: Preset, jobs: int = 1) -> Plan:
    """Write the plan of ``runs`` into ``folder`` (see the module's docstring).

    Args:
        folder: the plan folder (``--out``); created.
        runs: one per run, in order (unique run ids).
        experiment: the ``sigmavae`` arguments naming the plan's runs (``experiment NAME
            --preset P`` and any ``--seeds``/``--data`` flags); ``prepare.sh`` adds
            ``--prepare``, ``collect.sh`` ``--collect --runs-dir runs --out reports``.
        preset: its name picks the SLURM defaults (:data:`RESOURCES`); written as preset.json.
        jobs: run-local.sh's default number of runs at once.
    """
    if not runs:
        raise ExperimentError("the experiment has no runs to plan")
    for sub in (RUNS, LOGS):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for run in runs:
        run_folder = folder / run.folder
        run_folder.mkdir(parents=True, exist_ok=True)
        _write(run_folder / "train.yaml", yaml.safe_dump(run.config(), sort_keys=True))
    commands = folder / "commands.txt"
    _write(commands, "".join(run.line() + "\n" for run in runs))
    _write(folder / "runs.txt", "".join(run.folder + "\n" for run in runs))
    _write(folder / "preset.json", json.dumps(asdict(preset), indent=2) + "\n")
    prepare = "sigmavae " + shlex.join([*experiment, "--prepare"])
    collect = "sigmavae " + shlex.join([*experiment, "--collect", "--runs-dir", RUNS,
                                        "--out", REPORTS])
    resources = RESOURCES.get(preset.name, DEFAULT_RESOURCES)
    values = {"title": "sigmavae " + shlex.join(experiment), "runs": str(len(runs)),
              "last": str(len(runs) - 1), "jobs": str(jobs), "prepare": prepare,
              "collect": collect, "time": resources.time, "cpus": str(resources.cpus),
              "gpu": "" if resources.gpu else "#", "prepared": PREPARED, "cache": CACHE,
              "name": "-".join(a for a in experiment[1:2]) or "plan"}
    for name, template in SCRIPTS.items():
        _write(folder / name, _Script(template).substitute(values), executable=True)
    plan = Plan(folder, len(runs), commands, collect)
    _write(folder / "README.md", _readme(plan, values))
    return plan


def _readme(plan: Plan, values: dict[str, str]) -> str:
    steps = "\n".join(plan.instructions())
    return (f"# Plan: {values['title']}\n\n{plan.runs} runs, one line each in `commands.txt` "
            "(train, then evaluate); every path is relative to this folder, where every script "
            "runs. Copy the folder to the machine that runs it; set `SIGMAVAE_SHARED_DATA` "
            "there if the preset reads the shipped data (`shared/data`).\n\n"
            f"```text\n{steps}\n```\n\n"
            "`prepare.sh` (once, first) puts the data into `cache/` and trains the FID feature "
            "classifier; `slurm-array.sh` runs line N of `commands.txt` in array task N; "
            "`run-local.sh JOBS` runs them all here; submitted or run again, finished runs are "
            "skipped and started ones go on from their checkpoints. Edit the `#SBATCH` lines "
            "for your cluster.\n")


def _write(path: Path, text: str, executable: bool = False) -> None:
    """Write ``path`` (through a temporary file: a reader never sees half of it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    if executable:
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(path)


class _Script(Template):
    """The scripts' templates: ``@name`` is a value (``$`` is the shell's)."""

    delimiter = "@"


#: Under sbatch a script runs from a copy: the plan is then the folder it was submitted from.
_FIND_PLAN = """\
plan=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -f $plan/run-task.sh ]] || plan=${SLURM_SUBMIT_DIR:-$PWD}
if [[ ! -f $plan/run-task.sh ]]; then
  echo "$(basename "$0"): $plan is not a sigmavae plan folder; submit from the plan" \\
       "folder (cd PLAN && sbatch $(basename "$0"))" >&2
  exit 2
fi
cd "$plan"
"""

_HERE = 'cd "$(dirname "${BASH_SOURCE[0]}")"\n'

SCRIPTS = {
    "run-task.sh": """\
#!/usr/bin/env bash
# @title
# Runs line N (0-based) of commands.txt, from any folder:
#   bash run-task.sh N
# A run that is evaluated already is skipped; a started one goes on from its checkpoint.
set -euo pipefail
""" + _HERE + """\
task=${1:?usage: run-task.sh N (0-based line of commands.txt)}
lines=$(wc -l < commands.txt)
if ! [[ $task =~ ^(0|[1-9][0-9]*)$ ]] || (( task >= lines )); then
  echo "run-task.sh: N must be 0 to $((lines - 1)) (commands.txt has $lines lines)," \\
       "got '$task'" >&2
  exit 2
fi
if [[ ! -f @prepared ]]; then
  echo "run-task.sh: the plan is not prepared; run prepare.sh once first" \\
       "(bash prepare.sh, or sbatch prepare.sh)" >&2
  exit 2
fi
run=$(sed -n "$((task + 1))p" runs.txt)
if [[ -f $run/eval.json ]]; then
  echo "task $task: $run is evaluated already; nothing to do"
  exit 0
fi
line=$(sed -n "$((task + 1))p" commands.txt)
echo "task $task: $line"
bash -c "$line"
""",
    "slurm-array.sh": """\
#!/usr/bin/env bash
# @title
# @runs runs, one per task of a SLURM array.
# Submit from this folder, prepare.sh first (once):
#   jid=$(sbatch --parsable prepare.sh) && sbatch --dependency=afterok:$jid slurm-array.sh
# Submitted again (or some tasks only: sbatch --array=3,7 slurm-array.sh), finished runs are
# skipped and started ones (a task out of time) go on from their checkpoints.
# Edit the resources for your cluster: a line that starts with ##SBATCH is off. No device is
# named: each run uses a GPU where it finds one, else the CPU.
# At --time SLURM sends SIGTERM to every process of the task and SIGKILL KillWait seconds
# later (30 by default): the training saves its checkpoint on SIGTERM (seconds for these
# models) and the next submission goes on from it. The epoch's checkpoints are atomic, so a
# SIGKILL mid-save loses at most the epoch in progress, never the run.
#SBATCH --job-name=sigmavae-@name
#SBATCH --array=0-@last
#SBATCH --time=@time
#SBATCH --cpus-per-task=@cpus
@gpu#SBATCH --gres=gpu:1
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
""" + _FIND_PLAN + """\
exec bash run-task.sh "${SLURM_ARRAY_TASK_ID:?not a SLURM array task: submit it with sbatch}"
""",
    "prepare.sh": """\
#!/usr/bin/env bash
# @title
# Once, before the runs: puts the data into cache/ (the shipped archives, from
# $SIGMAVAE_SHARED_DATA, are extracted) and trains the FID feature classifier the
# evaluations read (minutes). Here: bash prepare.sh; on SLURM: sbatch prepare.sh.
#SBATCH --job-name=sigmavae-prepare
#SBATCH --time=@time
#SBATCH --cpus-per-task=@cpus
@gpu#SBATCH --gres=gpu:1
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
""" + _FIND_PLAN + """\
SIGMAVAE_CACHE="$PWD/@cache" @prepare
mkdir -p @cache
date -u '+%Y-%m-%dT%H:%M:%SZ' > @prepared
echo "prepared; now the runs: sbatch slurm-array.sh, or bash run-local.sh JOBS"
""",
    "run-local.sh": """\
#!/usr/bin/env bash
# @title
# All @runs runs on this machine: prepare (once), every line of commands.txt, JOBS at a
# time (default @jobs), then the reports (collect.sh). Run it again after a stop:
# finished runs are skipped, started ones go on from their checkpoints.
#   bash run-local.sh [JOBS]
set -euo pipefail
""" + _HERE + """\
jobs=${1:-@jobs}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "run-local.sh: JOBS must be a whole number >= 1, got '$jobs'" >&2
  exit 2
fi
[[ -f @prepared ]] || bash prepare.sh
echo "running @runs runs, $jobs at a time (the output of line N in logs/task-N.log)"
if ! seq 0 @last | xargs -P "$jobs" -I{} sh -c 'if bash run-task.sh {} \\
    > logs/task-{}.log 2>&1; then echo "task {}: done"; else
    echo "task {}: FAILED, see logs/task-{}.log"; exit 1; fi'; then
  echo "run-local.sh: some runs failed (above); run it again to retry them" >&2
  exit 1
fi
bash collect.sh
""",
    "collect.sh": """\
#!/usr/bin/env bash
# @title
# The reports from the finished runs, into reports/ (reads no data; runs that have not
# finished are counted as missing).
set -euo pipefail
""" + _HERE + """\
@collect
""",
}
