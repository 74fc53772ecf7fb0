# Two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use; the environment these tools need is set here, not in your shell.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
WORK ?= $(CURDIR)/work
STAMP := $(VENV)/.installed

export FIFTYONE_DO_NOT_TRACK := true
export FIFTYONE_DATABASE_VALIDATION ?= false
export FIFTYONE_DATABASE_DIR ?= $(WORK)/fiftyone-db
export PREFECT_HOME ?= $(WORK)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PYTHONUNBUFFERED := 1

.PHONY: demo test venv lint clean

venv: $(STAMP)

# torch/torchvision first, pinned to the builds available from local disk (CPU or CUDA, same wheel).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(PREFECT_HOME) $(FIFTYONE_DATABASE_DIR)
	$(VENV)/bin/clickpose demo --work $(WORK)/demo

test: $(STAMP)
	mkdir -p $(PREFECT_HOME) $(FIFTYONE_DATABASE_DIR)
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check clickpose selection storage flows tests bench

clean:
	rm -rf $(WORK)
