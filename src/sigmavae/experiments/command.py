"""``sigmavae experiment NAME``: the command-line shell over :func:`.driver.run_experiments`."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from .driver import run_experiments
from .framework import EXPERIMENTS
from .presets import PRESETS
from .runs import ExperimentStopped


def add_parser(subparsers: Any, key_values: Any) -> None:
    """Add the ``experiment`` sub-command; ``key_values(items, flag)`` parses KEY=VALUE lists."""
    names = ", ".join([*EXPERIMENTS.names(), "all"])
    p = subparsers.add_parser(
        "experiment", help="reproduce a table or figure of the paper",
        description="Run one of the paper's experiments and write report.md (measured beside "
                    "published numbers, verdicts), runs.csv and figures. Experiments:\n"
                    + EXPERIMENTS.describe() + "\nall: every experiment, then an index.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help=f"one of: {names}")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="quick: shared/data stand-ins, ~125 steps per run (minutes on 2 CPU "
                        "cores; verdicts at a reduced budget); paper-length: the CIFAR-10 JPEG "
                        "copy, the paper's 5,632-5,730 Adam steps per run (hours on a CPU); "
                        "paper: App. B's data sets and length")
    p.add_argument("--out", help="folder of the reports (default docs/results); with --plan, "
                                 "the plan's folder (default plans/NAME-PRESET)")
    p.add_argument("--runs-dir",
                   help="folder of the training runs (finished runs are reused; default "
                        "runs/experiments; a plan keeps them in OUT/runs)")
    p.add_argument("--seeds", type=int, help="seeds per configuration (default: the preset's)")
    p.add_argument("--data", help="run on this registered data set instead of the preset's")
    p.add_argument("--data-root")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--jobs", type=int, default=1, help="runs at once on this machine")
    p.add_argument("--threads", type=int,
                   help="torch threads per run (default: the machine's cores divided by "
                        "--jobs); 1 when other work shares the cores, which would leave a "
                        "multi-threaded run waiting on its descheduled threads")
    p.add_argument("--plan", action="store_true",
                   help="only write a plan into OUT, reading no data: every run's train.yaml, "
                        "commands.txt (one line per run), a SLURM array script and a local "
                        "loop; its prepare.sh makes the data and FID features where it runs")
    p.add_argument("--prepare", action="store_true",
                   help="only make what the runs read: extract the preset's data into the "
                        "cache and train the FID feature classifier (a plan's first step)")
    p.add_argument("--collect", action="store_true",
                   help="only build the reports from the finished runs (reads no data)")
    p.add_argument("--status", action="store_true",
                   help="only say where the runs stand: each run's state (evaluated, training "
                        "now, stopped at epoch k, to run) and the training time left, from the "
                        "finished runs' times (reads no data, writes nothing)")
    p.add_argument("--reevaluate", metavar="METRICS",
                   help="only evaluate these metrics (comma-separated, e.g. fid) of the "
                        "evaluated runs again from their checkpoints, in place of the old "
                        "results of those metrics in each eval.json (the others kept; runs "
                        "without a checkpoint keep theirs and are named), then write the "
                        "reports; with --only, of those rows' runs")
    p.add_argument("--records", metavar="DIR",
                   help="also copy each evaluated run's small files (no checkpoints) into "
                        "DIR/<run id>/; --collect --runs-dir DIR rebuilds the reports from them")
    p.add_argument("--only", metavar="ROWS",
                   help="train (or plan) only the runs of these table rows, comma-separated "
                        "(the row column of runs.csv, e.g. gaussian,optimal_sigma); the "
                        "report is still written from every finished run")
    p.set_defaults(func=lambda args: run(args, key_values))


def _reproducing(given: list[str]) -> list[str]:
    """The arguments as a report shows them, the command that makes its runs: without the
    modes that only plan, prepare, collect or re-evaluate (``--reevaluate`` and its value)."""
    shown, skip = [], False
    for arg in given:
        if skip:
            skip = False
        elif arg == "--reevaluate":
            skip = True
        elif arg not in ("--plan", "--collect", "--prepare") \
                and not arg.startswith("--reevaluate="):
            shown.append(arg)
    return shown


def run(args: argparse.Namespace, key_values: Any) -> int:
    # the arguments parsed (main(argv) passes its own list; the console script, sys.argv)
    given = getattr(args, "argv", None)
    given = sys.argv[1:] if given is None else given
    shown = _reproducing(given)
    command = "sigmavae " + " ".join(shlex.quote(a) for a in shown) if shown else None
    try:
        _run(args, key_values, command)
    except ExperimentStopped as stop:  # a scheduler's stop: say so, exit as a signal would
        print(f"sigmavae experiment: {stop}", file=sys.stderr)
        return 128 + stop.signum
    return 0


def _run(args: argparse.Namespace, key_values: Any, command: str | None) -> None:
    run_experiments(
        args.name, preset=args.preset, out=args.out, runs_dir=args.runs_dir, seeds=args.seeds,
        data=args.data, data_root=args.data_root,
        data_options=key_values(args.data_option, "--data-option"), jobs=args.jobs,
        threads=args.threads,
        plan=args.plan, collect=args.collect, prepare=args.prepare, status=args.status,
        command=command,
        records=args.records,
        reevaluate=None if args.reevaluate is None else [m.strip() for m in
                                                         args.reevaluate.split(",")
                                                         if m.strip()],
        only=None if args.only is None else [r.strip() for r in args.only.split(",")
                                             if r.strip()])
