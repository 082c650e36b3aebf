# Every target sets itself up: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test test-faults bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(INSTALLED)

install: $(INSTALLED)

## Run the whole system on loopback: broker, Vault, HTX sandbox, bootstrap, the four services.
run: $(INSTALLED)
	$(PY) -m deploy.stack.run

## Run the whole test suite (starts its own broker, Vault and sandbox on free ports), the fault suite apart.
test: $(INSTALLED)
	$(PY) -m pytest

## Run the fault and load suite: kills, outages, HTX trouble and fuzzing over a few hundred bindings each.
test-faults: $(INSTALLED)
	$(PY) -m pytest -m faults tests/faults

## Measure throughput, latency and resource use end to end against the raw Vault and HTX capacity.
bench: $(INSTALLED)
	$(PY) -m deploy.bench.run

clean:
	rm -rf $(VENV) .run .pytest_cache
