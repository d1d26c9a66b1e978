"""Copy the verdict table of the reports (``docs/results/README.md``, written by
``sigmavae experiment all --collect``) into the project README, between its verdict markers.

The README shows each claim's experiment, verdict and budget (the numbers and rules stay in the
reports); ``make results`` runs this after rebuilding the reports, so that the README never shows
a verdict or a run count the reports no longer give. ``--check`` only says whether it is current
(exit 1 if not).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- verdicts: copied from docs/results/README.md by `make results`; do not edit -->"
END = "<!-- /verdicts -->"
#: The columns of the reports' verdict table that the README shows.
COLUMNS = ("experiment", "claim", "verdict", "budget of the runs (vs the paper)")


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row; an escaped ``\\|`` stays inside its cell."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def verdict_rows(index: str) -> list[list[str]]:
    """The rows of the first table under ``## Verdicts`` in ``index`` (a results README), each
    cut to :data:`COLUMNS` (found by header name, so the reports may add columns)."""
    lines = index.splitlines()
    try:
        start = lines.index("## Verdicts")
    except ValueError:
        raise ValueError("the results README has no '## Verdicts' section") from None
    first = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("|")), None)
    if first is None:
        raise ValueError("the results README's '## Verdicts' section has no table")
    header = _cells(lines[first])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"the results README's verdict table lacks the column(s) {missing}")
    keep = [header.index(c) for c in COLUMNS]
    rows = []
    for line in lines[first + 2:]:  # after the header and its |---| line
        if not line.startswith("|"):
            break
        cells = _cells(line)
        rows.append([cells[i] for i in keep])
    return rows


def verdict_block(index: str) -> str:
    """The README's block: markers, header and one line per claim."""
    lines = [BEGIN, "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in verdict_rows(index)]
    return "\n".join([*lines, END])


def updated(readme: str, index: str) -> str:
    """``readme`` with the text between its markers (markers included) replaced by
    :func:`verdict_block`."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md must hold the markers {BEGIN!r} and {END!r} once each")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return head + verdict_block(index) + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    new = updated(readme, (ROOT / "docs" / "results" / "README.md").read_text())
    if args.check:
        if new != readme:
            print("README.md: the verdict table differs from docs/results/README.md; run "
                  "`python tools/readme_verdicts.py`", file=sys.stderr)
            return 1
        return 0
    if new != readme:
        readme_path.write_text(new)
        print("README.md: verdict table updated from docs/results/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
