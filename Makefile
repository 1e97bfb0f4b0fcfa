# Two commands: `make run` (the main job) and `make test` (the tests).
# Each builds .venv with Python 3.10 and the pinned stack when it is missing or stale.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STAMP_TIME := $(shell date +%Y%m%d_%H%M%S)
RUN_DIR ?= runs/point_mass_right_$(STAMP_TIME)
WALKER_RUN_DIR ?= runs/walker_walk_$(STAMP_TIME)
# The default tests run in this many pytest processes (pytest-xdist; a file's tests stay
# on one worker: module fixtures and the rehearsal's machine-wide routes are shared).
TEST_WORKERS ?= 2

.PHONY: run run-walker test test-slow lint format venv clean

venv: $(STAMP)

$(STAMP): requirements.lock requirements-acme.txt pyproject.toml
	@test -x $(PY) || { py=$$(.ci/find_python310.sh) && echo "creating $(VENV) with $$py" && "$$py" -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade "pip==24.3.1"
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -r requirements-acme.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# The quick start: the policy and the prior alone both learn, a few minutes on 2 cores.
run: $(STAMP)
	$(VENV)/bin/bprl run --config=experiments/configs/point_mass_right.py:local_short --workdir=$(RUN_DIR)

# The walker smoke run: the whole program on a bigger body (learns little in its budget).
run-walker: $(STAMP)
	$(VENV)/bin/bprl run --config=experiments/configs/walker_walk.py:local_short --workdir=$(WALKER_RUN_DIR)

test: $(STAMP)
	@.ci/system_packages.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-slow: $(STAMP)
	@.ci/system_packages.sh
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV)
