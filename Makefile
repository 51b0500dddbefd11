# Fresh machine: `make run` (set up, serve the bundled model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch; override for CUDA, e.g. `make run TORCH='torch>=2.4'`.
TORCH ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup setup-test run test lint typecheck format clean deploy-check smoke-docker

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PY) -m pip install --quiet "$(TORCH)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

run: setup
	LSTM_SERVE_HOST=$(HOST) LSTM_SERVE_PORT=$(PORT) $(VENV)/bin/lstm-serve

# mypy settings live in pyproject.toml ([tool.mypy]).
typecheck: setup-test
	$(VENV)/bin/mypy models service

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy models service
	$(PY) -m pytest -q

deploy-check: setup-test
	VENV=$(VENV) bash deploy/ci-setup.sh
	$(PY) -m pytest -q tests/test_deploy.py tests/test_prometheus_scrape.py

smoke-docker: setup-test
	VENV=$(VENV) bash deploy/ci-setup.sh --docker
	VENV=$(VENV) deploy/smoke-docker

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
