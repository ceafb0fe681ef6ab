# The two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
MODES := managed-identity keyvault-certificate keyvault-signing federated-managed-identity client-secret

.PHONY: demo doctor-demo test lint infra-check check bench setup clean
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Azurite (the storage emulator) comes from package.json + package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The main job, offline: sandbox + Azurite, provisioning jobs and the sweep through the queue.
demo: $(STAMP) $(NODE_STAMP)
	$(PY) -m sandbox demo

# `doctor` in every auth mode against the offline sandbox.
doctor-demo: $(STAMP) $(NODE_STAMP)
	@set -e; for mode in $(MODES); do \
	  echo "== doctor, auth mode $$mode (offline sandbox) =="; \
	  DAEMON_JOBS_QUEUE=daemon-jobs DAEMON_SWEEP_SCHEDULE='0 */15 * * * *' \
	  DAEMON_USER_DOMAIN=contoso.example \
	  $(PY) -m sandbox exec --auth-mode $$mode -- $(PY) -m shared doctor --azurite; \
	done

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest -q -n 2

lint: $(STAMP) infra-check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# checkov in its own venv (its dependencies are not the app's); --skip-download: offline.
$(INFRA_STAMP): requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $(INFRA_STAMP)

infra-check: $(INFRA_STAMP)
	$(INFRA_VENV)/bin/checkov -d infra --framework bicep --skip-download --compact --quiet

check: lint test

# Benchmark-only dependencies (the real peers: msgraph-sdk; matplotlib), never deployed.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(NODE_STAMP) $(BENCH_STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) $(INFRA_VENV) .venv-py313 .pytest_cache .mypy_cache .ruff_cache
