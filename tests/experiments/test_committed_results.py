"""The reports under docs/results are rebuilt, byte for byte, from the records committed beside
them (docs/results/runs), with no data and no checkpoints: what `make results` runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sigmavae.experiments.driver import run_experiments
from sigmavae.experiments.stats import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED
from sigmavae.metrics.fid_classifier import weights_digest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
RECORDS = RESULTS / "runs"
#: the command the committed reports print (the Makefile's `results` target, less --collect)
VERDICTS = {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN}
COMMAND = ("sigmavae experiment all --preset paper-length --runs-dir docs/results/runs "
           "--out docs/results")


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rebuilt")
    mp = pytest.MonkeyPatch()
    # nothing to read: no shared data, an empty cache (no FID classifier, no extracted images)
    mp.setenv("SIGMAVAE_SHARED_DATA", str(tmp / "no-data"))
    mp.setenv("SIGMAVAE_CACHE", str(tmp / "cache"))
    try:
        yield run_experiments("all", preset="paper-length", collect=True, runs_dir=RECORDS,
                              out=tmp / "out", command=COMMAND, log=lambda m: None)
    finally:
        mp.undo()


def test_the_records_are_committed():
    records = [p for p in RECORDS.iterdir() if (p / "eval.json").is_file()]
    assert records, "docs/results/runs holds no evaluated run"
    for record in records:
        assert not (record / "checkpoints").exists()


def test_the_fid_classifier_of_every_record_is_committed_beside_them():
    # a record names its classifier by the weights' digest (records from before the digest,
    # scored with a classifier lost with its machine, name none)
    named = {m.group(1) for p in RECORDS.glob("*/eval.json")
             for m in [re.search(r"weights sha256 ([0-9a-f]{12})", p.read_text())] if m}
    kept = {weights_digest(p) for p in (RECORDS / "fid-classifiers").glob("*.safetensors")}
    assert named <= kept, f"records scored with classifiers not committed: {named - kept}"


@pytest.mark.parametrize("name", ["beta-sweep", "mi-vs-beta", "variance-convergence",
                                  "decoders", "discretized", "video"])
def test_each_committed_report_is_rebuilt_from_the_records(rebuilt, name):
    built = rebuilt.reports[name]
    assert built.read_text() == (RESULTS / name / "report.md").read_text()
    assert ((built.parent / "runs.csv").read_text()
            == (RESULTS / name / "runs.csv").read_text())


def test_the_index_is_rebuilt_from_the_records(rebuilt):
    assert rebuilt.index is not None
    assert rebuilt.index.read_text() == (RESULTS / "README.md").read_text()


def test_the_readme_shows_the_reports_verdicts(load_tool):
    """The project README's verdict table is the reports' (experiment, claim, verdict, budget),
    as `make results` copies it (tools/readme_verdicts.py): never a stale verdict or run count."""
    tool = load_tool("readme_verdicts")
    index = (RESULTS / "README.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert tool.updated(readme, index) == readme, "run `python tools/readme_verdicts.py`"
    rows = tool.verdict_rows(index)
    assert len(rows) >= 11 and all(len(row) == 4 for row in rows)
    assert all(row[2].strip("*") in VERDICTS for row in rows)


def test_the_readme_verdict_copy_follows_the_reports(load_tool):
    """The copy changes with the reports: a changed verdict or budget replaces the old row."""
    tool = load_tool("readme_verdicts")
    index = ("# R\n\n## Verdicts\n\n| experiment | claim | verdict | budget of the runs (vs the "
             "paper) | numbers | rule |\n|---|---|---|---|---|---|\n"
             "| a | c1 | **reproduced** | full | 1 | r |\n| b | c2 | inconclusive | partial | 2 "
             "| r |\n\nmore\n")
    readme = f"intro\n{tool.BEGIN}\n| old |\n{tool.END}\n\nafter\n"
    new = tool.updated(readme, index)
    assert "| old |" not in new and new.startswith("intro\n") and new.endswith("\n\nafter\n")
    assert "| a | c1 | **reproduced** | full |\n| b | c2 | inconclusive | partial |\n" in new
    assert tool.updated(new, index) == new


def test_the_readme_verdict_copy_reads_the_verdicts_table_only(load_tool):
    """A table of the same header above '## Verdicts' is not the verdict table; a section
    with no table is a clear error."""
    tool = load_tool("readme_verdicts")
    header = ("| experiment | claim | verdict | budget of the runs (vs the paper) |\n"
              "|---|---|---|---|\n")
    index = (f"# R\n\n{header}| x | old | **reproduced** | full |\n\n## Verdicts\n\n{header}"
             "| a | c1 | inconclusive | partial |\n"
             "| b | draws of p(x\\|z) | reproduced | full |\n")
    assert tool.verdict_rows(index) == [["a", "c1", "inconclusive", "partial"],
                                        ["b", "draws of p(x\\|z)", "reproduced", "full"]]
    with pytest.raises(ValueError, match="has no table"):
        tool.verdict_rows("# R\n\n## Verdicts\n\nnone yet\n")


def test_the_report_shows_the_command_main_was_given(tmp_path, monkeypatch):
    """``main(argv)`` from another program: the report's command is ``argv``, not the caller's
    own ``sys.argv``."""
    from sigmavae.cli import main

    monkeypatch.setenv("SIGMAVAE_SHARED_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("sys.argv", ["some-caller", "--its-own-flag"])
    argv = ["experiment", "variance-convergence", "--preset", "paper-length", "--collect",
            "--runs-dir", str(RECORDS), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    report = (tmp_path / "out" / "variance-convergence" / "report.md").read_text()
    assert (f"Command: `sigmavae experiment variance-convergence --preset paper-length "
            f"--runs-dir {RECORDS} --out {tmp_path / 'out'}`") in report
    assert "--its-own-flag" not in report


def test_the_report_command_leaves_out_the_modes_that_make_no_runs():
    """A report shows the command that makes its runs: --collect, --plan, --prepare and
    --reevaluate (with its value, in either spelling) are left out."""
    from sigmavae.experiments.command import _reproducing

    given = ["experiment", "decoders", "--reevaluate", "fid", "--preset", "paper-length",
             "--reevaluate=fid,mi", "--collect", "--jobs", "2"]
    assert _reproducing(given) == ["experiment", "decoders", "--preset", "paper-length",
                                   "--jobs", "2"]
