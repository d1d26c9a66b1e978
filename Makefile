# Quick start: `make demo` (train an optimal-sigma VAE on the shipped Frey Face) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck docs bench results clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sigmavae train --config demo-frey --resume auto  # a second `make demo` says it is finished
	$(BIN)/sigmavae eval runs/demo-frey/checkpoints/last.ckpt --out runs/demo-frey/test-report.json
	@echo "samples: runs/demo-frey/samples/  reconstructions: runs/demo-frey/reconstructions/  curves: runs/demo-frey/curves.png"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples tools

typecheck: $(STAMP)
	$(BIN)/mypy

# the documentation site (docs/ and the API reference from the docstrings, mkdocs.yml) into
# site/; a warning (a broken link, a docstring griffe cannot read) fails it
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# every report under docs/results from the committed records alone (no data, no checkpoints)
results: $(STAMP)
	$(BIN)/sigmavae experiment all --preset paper-length --collect --runs-dir docs/results/runs --out docs/results
	$(BIN)/python tools/readme_verdicts.py

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf runs site .pytest_cache .ruff_cache .mypy_cache
