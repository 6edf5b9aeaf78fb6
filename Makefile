# ringback: two commands on a bare machine.
#   make run   start every service, the worker and the relay (embedded PostgreSQL/Redis if none configured)
#   make test  the whole suite
# The virtual environment is built from requirements.lock (pinned, hashed) the first time it is needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt demo migrate venv lock clean bench browser

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ringback run

demo: $(STAMP)
	$(BIN)/ringback demo

migrate: $(STAMP)
	$(BIN)/ringback migrate

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests drive the distribution's Chromium (Playwright's own browser download is
# never used). Installed here when missing and this user may; otherwise those tests skip and
# say why. Never fails the build by itself.
browser:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium || true

K8S_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/k8s/base/*.yaml))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services tests
	$(BIN)/lint-imports
	$(BIN)/python -m services.callback.catalogs --check
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/kubernetes-validate --strict --quiet $(K8S_MANIFESTS)

# Benchmarks (not tests; CI does not run them): writes bench/RESULTS.md and bench/results.json.
# BENCH_QUICK=1: every script at tiny scale, to check they work (report under bench/out/quick/).
# BENCH_OUT=DIR: write the results and the report under DIR instead.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(if $(BENCH_QUICK),--quick) $(if $(BENCH_OUT),--out $(BENCH_OUT))

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the locks after changing dependencies in pyproject.toml (needs `uv` on PATH):
# requirements.lock for development and CI, requirements-runtime.lock for the container image.
lock:
	uv pip compile pyproject.toml --extra embedded --extra dev --python-version 3.11 --generate-hashes -o requirements.lock
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
