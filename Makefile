# ringback: two commands on a bare machine.
#   make run   start every service, the worker and the relay (embedded PostgreSQL/Redis if none configured)
#   make test  the whole suite
# The virtual environment is built from requirements.lock (pinned, hashed) the first time it is needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt demo migrate venv lock clean bench browser poolers promtool

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

test: $(STAMP) browser poolers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests drive the distribution's Chromium (Playwright's own browser download is
# never used). Installed here when missing and this user may; otherwise those tests skip and
# say why. Never fails the build by itself.
browser:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium || true

# The scale-out tests (tests/scale) put Debian's PgBouncer and Redis Sentinel in front of the
# test database and Redis. Installed here when missing and this user may; otherwise those tests
# skip and say why. Never fails the build by itself.
poolers:
	@{ command -v pgbouncer || test -x /usr/sbin/pgbouncer; } >/dev/null 2>&1 \
		&& command -v redis-sentinel >/dev/null 2>&1 || scripts/install-poolers || true

K8S_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/k8s/base/*.yaml))
# The scale-out overlay's own resources and patches (PgBouncer, Redis Sentinel) are whole
# objects: validated the same way.
K8S_MANIFESTS += $(filter-out %/kustomization.yaml,$(wildcard deploy/k8s/overlays/scale-out/*.yaml))
RULES := deploy/prometheus/ringback-rules.yaml
# The overlay's PrometheusRule: kubernetes-validate has no schema for that kind (it would pass
# it with a warning), so it is checked against the rules schema instead.
RULE_RESOURCES := $(RULES) deploy/k8s/overlays/example/prometheusrule.yaml
PROMTOOL = $(shell command -v promtool 2>/dev/null || { test -x $(BIN)/promtool && echo $(BIN)/promtool; })

# The alert rules are checked by Prometheus's own promtool (expressions, templates, unit cases).
# Unpacked into the virtual environment when missing and this machine can fetch it; otherwise
# lint checks only the rules' shape, and says so. Never fails the build by itself.
promtool: $(STAMP)
	@command -v promtool >/dev/null 2>&1 || scripts/install-promtool $(BIN) || true

lint: $(STAMP) promtool
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m services.callback.catalogs --check
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/kubernetes-validate --strict --quiet $(K8S_MANIFESTS)
	$(BIN)/check-jsonschema --schemafile deploy/prometheus/rules.schema.json $(RULE_RESOURCES)
	$(if $(PROMTOOL),$(PROMTOOL) check rules $(RULES),@echo "lint: no promtool: alert rules checked against their schema only" >&2)
	$(if $(PROMTOOL),$(PROMTOOL) test rules deploy/prometheus/ringback-rules.test.yaml)
	$(if $(PROMTOOL),$(PROMTOOL) check config deploy/prometheus/compose-prometheus.yml)

# Benchmarks (not tests; CI does not run them): writes bench/RESULTS.md and bench/results.json.
# BENCH_QUICK=1: every script at tiny scale, to check they work (report under bench/out/quick/).
# BENCH_OUT=DIR: write the results and the report under DIR instead.
# The processes a benchmark measures run with the container image's packages
# (requirements-runtime.lock), so their memory and CPU are what production has: see
# SERVICE_PYTHON in bench/common.py. The scripts and load generators run in $(VENV).
RUNTIME_VENV := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed

$(RUNTIME_STAMP): requirements-runtime.lock
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-runtime.lock
	touch $(RUNTIME_STAMP)

bench: $(STAMP) $(RUNTIME_STAMP)
	RINGBACK_BENCH_SERVICE_PYTHON=$(CURDIR)/$(RUNTIME_VENV)/bin/python \
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
	rm -rf $(VENV) $(RUNTIME_VENV) .data .pytest_cache .mypy_cache .ruff_cache
