# Everyday commands. `make demo` starts the product; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast chaos bench lint format sandbox clean

install: $(STAMP)

# Reinstall whenever pyproject.toml changes; a fresh clone builds the virtualenv from scratch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m deployments.demo

# Four pytest workers: most tests wait on vendors, flows and browsers rather than the CPU, and
# each worker has its own databases, Prefect server and sandbox (see tests/conftest.py).
test: install
	$(BIN)/python -m pytest -n 4 --dist worksteal --durations=15

# The fast tier: no Prefect server, no browser (tests/conftest.py marks them by their fixtures),
# no process launching (tests/deployments start and kill real process groups); the money protocol
# runs against the sandbox with the state machines on their smallest budget.
test-fast: install
	RELIABILITY_QUICK=1 $(BIN)/python -m pytest -n 3 --dist worksteal -m "not prefect and not browser" \
		--ignore=tests/deployments

# Long form of the reliability suites (docs/reliability.md): 1,000+ webhook deliveries, larger
# hypothesis budgets (the money state machines of tests/reliability/test_money_state_machine.py:
# 150 examples each), the fault matrix at every step; figures are printed and written to
# instance/reliability.json (fault outcomes to test-artifacts/fault-matrix.jsonl).
chaos: install
	RELIABILITY_LONG=1 RELIABILITY_REPORT=instance/reliability.json $(BIN)/python -m pytest \
		tests/reliability tests/portal/test_authorization_matrix.py \
		tests/core/test_domains.py tests/core/test_mailboxes.py \
		tests/flows/test_provision_faults.py tests/flows/test_provision_db_drop.py \
		tests/flows/test_provision_prefect_restart.py \
		tests/flows/test_upgrade_faults.py tests/flows/test_provision_sigkill.py \
		tests/flows/test_upgrade_sigkill.py

# Issue 7 benchmarks on the full local stack (needs PostgreSQL; never part of `make test`).
# Each writes bench/results/*.json and ends with a RESULT line; docs/benchmarks.md has the table.
# About an hour on 2 cores: availability ~9 min, portal ~3 min, sync ~2 min, cohort 20 + 50
# ~10 min, cohort 200 ~25 min (bounded by Zapmail's 200 calls/min; see docs/benchmarks.md).
bench: install
	$(BIN)/python bench/availability_budget.py --students 60
	$(BIN)/python bench/portal_load.py --students 200
	$(BIN)/python bench/warmup_sync.py --provisions 500
	$(BIN)/python bench/cohort.py --students 20
	$(BIN)/python bench/cohort.py --students 50
	$(BIN)/python bench/cohort.py --students 200

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

sandbox: install
	$(BIN)/python -m sandbox

clean:
	rm -rf $(VENV) .pytest_cache instance/demo
