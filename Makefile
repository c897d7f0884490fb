# AgentGate: every set-up step lives here, so a fresh machine needs only Python 3.11, git and pip.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo up down test lint lock bench bench-quick chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	@$(UV) pip install -q --python $(PY) --require-hashes -r requirements.lock
	@$(UV) pip install -q --python $(PY) --no-deps -e .
	@bash scripts/install-system-packages.sh
	@touch $(STAMP)

## Run the demo: starts the embedded stack (if not running) and drives a work order to "passed".
demo: install
	@$(VENV)/bin/agentgate demo

## The embedded stack in the foreground (Temporal dev server + UI, worker, API); Ctrl-C stops it.
up: install
	@$(VENV)/bin/agentgate up

down: install
	@$(VENV)/bin/agentgate down

test: install
	@bash scripts/install-agent-clis.sh
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/pytest -q

## Benchmarks (not part of make test): prints a table, writes bench/results/<date>.json (docs/performance.md).
bench: install
	@$(PY) -m bench.run

## The same figures at small sizes (a few minutes): bench/results/<date>-quick.json.
bench-quick: install
	@$(PY) -m bench.run --quick

## Long fault tests (not part of make test): Temporal restart, a burst of 200, cancel/kill storms.
chaos: install
	@$(VENV)/bin/pytest -q -m chaos tests/test_chaos.py

lint: install
	@$(VENV)/bin/ruff check .

## Re-pin requirements.lock after changing dependencies in pyproject.toml.
lock: install
	@$(UV) pip compile pyproject.toml --group dev --generate-hashes --python-version 3.11 -o requirements.lock -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
