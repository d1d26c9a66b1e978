"""An experiment's ``report.md`` and ``runs.csv``, and the index of ``all``."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .framework import EXPERIMENTS, Context, Experiment, Section, Verdict
from .heads import HEAVY_HEADS
from .stats import fmt_number, most_common


def table_cell(text: object) -> str:
    """``text`` as one markdown table cell: a ``|`` in it (``p(x|z)``) escaped, so that it
    shows as itself instead of ending the cell."""
    return str(text).replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, str]]) -> list[str]:
    if not rows:
        return ["(no finished runs)"]
    keys = list(rows[0])
    lines = ["| " + " | ".join(table_cell(k) for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(table_cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return lines


def verdict_table(verdicts: Sequence[Verdict], with_experiment: bool = False) -> list[str]:
    head = ["experiment"] if with_experiment else []
    lines = ["| " + " | ".join([*head, "claim", "verdict", "budget of the runs (vs the paper)",
                                "numbers (mean ± SE over seeds)", "rule"]) + " |",
             "|" + "---|" * (len(head) + 5)]
    for v in verdicts:
        cells = [v.claim.experiment] if with_experiment else []
        cells += [v.claim.text, f"**{v.status}**", v.budget or "-", v.evidence, v.claim.rule]
        lines.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
    return lines


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else
                             ("" if v is None else v) for k, v in row.items()})
    return path


def wall_minutes(rows: Sequence[dict[str, Any]]) -> float | None:
    seconds = [r["wall_seconds"] for r in rows if r.get("wall_seconds") is not None]
    return sum(seconds) / 60 if seconds else None


def _threads(device: str) -> int | None:
    """The torch threads a run trained with, from its device label (``"..., 2 threads"``,
    :func:`~sigmavae.training.speed_hints.device_description`)."""
    match = re.search(r"(\d+) threads?$", device)
    return int(match.group(1)) if match else None


def cost_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What the runs of ``rows`` (``runs.csv`` rows of one or more experiments; a run shared
    by several counted once) cost, one line per device and precision they trained on: runs,
    hours of training and of evaluation (each run's own clock), and CPU-hours (those hours x the
    run's threads), with a total."""
    unique = {r["run_id"]: r for r in rows if r.get("run_id")}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in unique.values():
        key = (str(row.get("trained_on") or "not recorded"),
               str(row.get("precision") or "not recorded"))
        groups.setdefault(key, []).append(row)
    if not groups:
        return ["(no finished runs)"]

    def hours(group: list[dict[str, Any]], name: str) -> float:
        return sum(float(r.get(f"{name}_seconds") or 0) for r in group) / 3600

    def cpu_hours(group: list[dict[str, Any]]) -> float | None:
        total = 0.0
        for r in group:
            threads = _threads(str(r.get("trained_on") or ""))
            if threads is None:
                return None
            total += threads * (float(r.get("train_seconds") or 0)
                                + float(r.get("eval_seconds") or 0)) / 3600
        return total

    def line(name: str, precision: str, group: list[dict[str, Any]]) -> str:
        cpu = cpu_hours(group)
        untimed = sum(1 for r in group if r.get("train_seconds") is None)
        runs = f"{len(group)}" + (f" ({untimed} without recorded times)" if untimed else "")
        return (f"| {name} | {precision} | {runs} | {hours(group, 'train'):.2f} | "
                f"{hours(group, 'eval'):.2f} | {'n/a' if cpu is None else f'{cpu:.2f}'} |")

    lines = ["| trained on (CPU/GPU, threads) | precision | runs | training (h) | "
             "evaluation (h) | CPU-hours (threads x hours) |", "|---|---|---|---|---|---|"]
    lines += [line(name, precision, group) for (name, precision), group in sorted(groups.items())]
    lines.append(line("**all**", "", list(unique.values())))
    return lines


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def setup_lines(ctx: Context, experiment: Experiment) -> list[str]:
    """The setup of the image experiments: data, the conv VAE, preset sizes, seeds, FID."""
    preset = ctx.preset
    lines = []
    for role in experiment.roles:
        data = ctx.data[role]
        stand_in = f", standing in for {data.stands_in_for}" if data.stands_in_for else ""
        lines.append(f"- Data: {data.label}{stand_in} (`{data.data}` with options "
                     f"{json.dumps(data.data_options)}).")
    lines += [
        f"- Training: the small conv VAE of App. B (latent 20), Adam lr {preset.lr:g}, batch "
        f"{preset.batch_size}, {preset.epochs} epochs, "
        + (f"the first {preset.train_subset} training images" if preset.train_subset
           else "the whole training split") + ".",
        "- Scaling: continuous heads model x/255 in [0, 1] with a density; discrete heads model "
        "the 8-bit intensities. Bounds are -ELBO in nats per image (sums over all C x H x W "
        "data dimensions and the latent dimensions), single-sample, on "
        + (f"the first {preset.eval_images} test images" if preset.eval_images
           else "the whole test split") + ".",
        seeds_line(ctx, experiment),
        "- FID: " + ("; ".join(f"{k}: {v}" for k, v in ctx.fid_features.items())
                     or "the features of the runs' evaluations (none evaluated yet)")
        + f"; {preset.fid_samples} prior samples (decoder means) against as many test images.",
    ]
    lines += [f"- {note}" for note in preset.notes]
    return lines


def seeds_line(ctx: Context, experiment: Experiment) -> str:
    """The seeds of the experiment's configurations: the preset's, and the heavy heads' where
    they have fewer (:meth:`Context.seeds`), with what their ± then leaves out."""
    seeds = ctx.preset.seeds
    line = (f"- Seeds: {seeds} per configuration (0..{seeds - 1}); every number is the mean ± "
            "its standard error over seeds. A claim is reproduced only when it holds beyond two "
            "standard errors.")
    counts: dict[str, int] = {}
    for spec in experiment.runs(ctx):
        if spec.train.get("likelihood") in HEAVY_HEADS:
            counts[spec.label] = max(counts.get(spec.label, 0), spec.seed + 1)
    for n in sorted({n for n in counts.values() if n < seeds}):
        heads = sorted(label for label, m in counts.items() if m == n)
        one = len(heads) == 1
        line += (f" {n} seed{'' if n == 1 else 's'} for the {' and the '.join(heads)} "
                 f"({'a heavy head' if one else 'heavy heads'}: a run costs several times a "
                 "Gaussian run at the same length)"
                 + (f"; {'its' if one else 'their'} ± is the standard error over the test "
                    "images, which leaves out the seed-to-seed spread." if n == 1 else "."))
    return line


def write_report(ctx: Context, experiment: Experiment, section: Section, command: str,
                 missing: int) -> Path:
    """Write ``report.md`` and ``runs.csv`` into ``ctx.out``; return the report's path."""
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    write_csv(section.rows, out / "runs.csv")
    minutes = wall_minutes(section.rows)
    lines = [f"# {experiment.title} ({experiment.paper})", "",
             _summary(experiment), "", f"Command: `{command}`", "", "## Setup", "",
             *(experiment.setup(ctx) or setup_lines(ctx, experiment)), ""]
    has_published = any(key.startswith("paper") for row in section.table for key in row)
    lines += ["## Measured" + (" beside published" if has_published else ""), ""]
    lines += markdown_table(section.table)
    if has_published:
        lines += ["", "Published numbers are the paper's, as printed (its own data sets at full "
                  "size and with Inception FID): they show the paper's ordering, not values to "
                  "match on this data."]
    lines += [f"- {note}" for note in section.notes]
    if missing:
        lines += ["", f"**{missing} run(s) not finished yet**: the numbers above use the "
                  "finished ones; rerun the command to complete them."]
    lines += ["", "## Verdicts", "", *verdict_table(section.verdicts), ""]
    if section.figures:
        lines += ["## Figures", ""]
        for caption, path in section.figures:
            lines += [f"![{caption}]({_relative(path, out)})", "", f"*{caption}*", ""]
    lines += ["## Runs", "",
              f"Every run: `runs.csv` ({len(section.rows)} runs; one row per run and seed, "
              "units in the column names). Wall time of these runs on the machines that ran "
              "them: " + (f"{fmt_number(minutes)} min" if minutes is not None else "n/a")
              + " (runs shared with other experiments are counted in each). "
              + precision_line(section.rows), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def precision_line(rows: Sequence[dict[str, Any]]) -> str:
    """The precision the runs trained at (``runs.csv``'s ``precision``): one, or the most
    common and each run at another, named (a reproduction continued on a CPU without bf16
    trains its later runs in float32)."""
    if not rows:
        return ""
    common, counts = most_common(str(r.get("precision") or "unknown") for r in rows)
    if len(counts) == 1:
        return f"Every run trained at {common}."
    others = [f"{p}: " + ", ".join(f"{r['label']} seed {r['seed']}" for r in rows
                                   if str(r.get("precision") or "unknown") == p)
              for p in sorted(counts) if p != common]
    return (f"Precision: {common} for {counts[common]} runs; other runs ({'; '.join(others)}): "
            "a seed at another precision is one more source of seed-to-seed spread.")


def _summary(experiment: Experiment) -> str:
    return EXPERIMENTS.summary(experiment.name)


def write_index(out: Path, reports: Sequence[tuple[Experiment, Path, Section]],
                command: str) -> Path:
    """``out/README.md``: every experiment's verdicts in one table, with links."""
    lines = ["# Reproducing the paper: results", "", f"Command: `{command}`", "",
             "| experiment | paper | report |", "|---|---|---|"]
    for experiment, path, _ in reports:
        lines.append(f"| {experiment.name} | {experiment.paper} | "
                     f"[{experiment.title}]({_relative(path, out)}) |")
    verdicts = [v for _, _, section in reports for v in section.verdicts]
    lines += ["", "## Verdicts", "", *verdict_table(verdicts, with_experiment=True), ""]
    rows = [row for _, _, section in reports for row in section.rows]
    lines += ["## Cost", "",
              "What the finished runs took, each counted once where experiments share it "
              "(from each run's `train_seconds.txt` and `eval_seconds.txt`; a resumed run's "
              "training sums its parts; on the machines named, which differ in speed):", "",
              *cost_table(rows), ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
