# Everything runs inside ./.venv, created and filled from the exact pins in requirements.txt,
# and everything the pipeline writes goes under $(CHURN_HOME) (default ./.churn).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
PORT ?= 4200
SERVE_PORT ?= 3000
MLFLOW_PORT ?= 5000
export CHURN_HOME ?= $(CURDIR)/.churn

.PHONY: help venv demo test test-prod test-fast lint check-workflows check-k8s format check-repo serve-up serve-down container-base container container-test deploy-model deploy-down data list-features expectations features train package serve monitor simulate rollback mlflow-ui monitor-ui up up-prod down deploy run-features run-train pins clean

help:
	@echo "make demo          set up, generate the synthetic data, run the pipeline, print where to look"
	@echo "make test          set up and run the whole test suite"
	@echo "make test-prod     the prod profile (PostgreSQL, S3 stand-in, MLflow with auth) end to end (CI runs it too)"
	@echo "make test-fast     the layers that start no server (unit, sql, data, model), about a minute"
	@echo "make lint          ruff (lint + format check) and mypy (strict on the churn/ library)"
	@echo "make check-workflows  .github/workflows offline: GitHub's schema, actionlint (+ shellcheck), zizmor"
	@echo "make check-k8s     render deploy/k8s (base, staging, prod) and validate it strictly, offline"
	@echo "make up / down     start / stop a local Prefect server (127.0.0.1:$(PORT)) and process worker"
	@echo "make up PROFILE=prod  (or make up-prod) PostgreSQL, an S3 stand-in, MLflow with auth, Prefect; make down stops them"
	@echo "make deploy        register every deployment in prefect.yaml with the running server"
	@echo "make run-features  run the features deployment through the worker and watch it"
	@echo "make run-train     run the train deployment through the worker and watch it"
	@echo "make package       import @champion and the online snapshot into the Bento model store"
	@echo "make serve         serve it with BentoML on http://127.0.0.1:$(SERVE_PORT) (SERVE_PORT=...) until Ctrl-C"
	@echo "make serve-up / serve-down   the same in the background / stop it, workers included"
	@echo "make monitor       judge the last hour of the prediction log (drift, labels, alerts, retraining)"
	@echo "make simulate      with make serve running: drifted traffic -> alert -> retrain -> new model served"
	@echo "make container     the packaged Bento as a container image, built offline (make container-test: for real)"
	@echo "make deploy-model ENV=dev  roll the packaged champion's image out (dev: docker + nginx on 127.0.0.1:3000)"
	@echo "make rollback REASON=...  move @champion back to @previous and record why"
	@echo "make mlflow-ui     the MLflow UI on the pipeline's tracking store (127.0.0.1:$(MLFLOW_PORT), MLFLOW_PORT=...)"
	@echo "make monitor-ui    the monitoring trends: prints the MLflow Chart view URL of churn-monitoring and serves the UI"
	@echo "make list-features every feature with its view, dtype, SQL hash and description"
	@echo "make check-repo    the feature repo on a sample, in seconds (sources, SQL, .yml contract, point in time)"
	@echo "make expectations  regenerate the Great Expectations suites from the feature metadata"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or pass PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $@

pins: venv  ## recompile the exact pins from requirements.in (and the tools' from requirements-dev.in)
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --no-header --no-annotate -o requirements.txt
	$(BIN)/uv pip compile requirements-dev.in --python-version 3.11 --no-header --no-annotate -o requirements-dev.txt
	$(BIN)/uv pip compile bentos/requirements.in -c requirements.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --no-annotate -o bentos/requirements.txt

demo: venv
	$(BIN)/churn demo

test: venv
	$(BIN)/pytest

test-prod: venv  ## the prod profile for real: PostgreSQL + S3 stand-in + MLflow with auth + Prefect, demo path, two replicas' log
	$(BIN)/pytest --prod -m prod -rs tests/integration/test_prod_profile.py

test-fast: venv  ## no server starts: unit, sql, data and model tests
	$(BIN)/pytest -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

WORKFLOWS ?= $(wildcard .github/workflows/*.yml)

check-workflows: venv  ## the CI/CD workflows, offline: the vendored GitHub workflow schema, actionlint, zizmor
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck $(WORKFLOWS)
	$(BIN)/zizmor --offline --persona auditor $(WORKFLOWS)

check-k8s: venv  ## deploy/k8s rendered with kubectl kustomize, validated against bundled schemas (also in make test)
	$(BIN)/pytest -q tests/unit/test_k8s_manifests.py

format: venv  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

data: venv
	$(BIN)/churn generate

features: venv
	$(BIN)/churn features build

train: venv
	$(BIN)/churn train

package: venv  ## @champion + online snapshot into the Bento model store
	$(BIN)/churn package

monitor: venv  ## the monitor flow in-process over the last hour
	$(BIN)/churn monitor

simulate: venv  ## the level-3 loop against the service make serve runs (needs a world with a drift period)
	$(BIN)/churn simulate --url http://127.0.0.1:$(SERVE_PORT) $(if $(CHURN_API_TOKEN),--token $(CHURN_API_TOKEN),)

serve: venv  ## serve the packaged champion on 127.0.0.1:$(SERVE_PORT) until Ctrl-C (which stops every worker)
	$(BIN)/churn serve --port $(SERVE_PORT)

serve-up: venv  ## the same in the background (pid files and log in $(CHURN_HOME)/stack)
	$(BIN)/churn serve up --port $(SERVE_PORT)

serve-down: venv  ## stop exactly what serve-up started, workers included
	$(BIN)/churn serve down

container-base: venv  ## the local base image (debootstrap, Python 3.11) and its -wheels builder
	$(BIN)/churn container base

container: venv  ## the packaged Bento as an image, built offline: churn-service:v<model version>-<commit>
	$(BIN)/churn container build

deploy-model: venv  ## make deploy-model ENV=dev|staging|prod [OVERRIDE="why"]: the packaged champion's image rolled out
	$(BIN)/churn deploy --env $(or $(ENV),dev) $(if $(OVERRIDE),--override "$(OVERRIDE)")

deploy-down: venv  ## stop what deploy-model ENV=dev started on this docker host (container and nginx)
	$(BIN)/churn undeploy --env $(or $(ENV),dev)

container-test: venv  ## build, run, /readyz, predict, the log on a volume, stop (skips without a docker daemon)
	$(BIN)/pytest -s -rs tests/integration/test_container.py

rollback: venv  ## make rollback REASON="why"
	@test -n "$(REASON)" || { echo 'usage: make rollback REASON="why the champion is rolled back"'; exit 2; }
	$(BIN)/churn rollback --reason "$(REASON)"

mlflow-ui: venv  ## the MLflow UI on the pipeline's tracking store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CHURN_HOME)/mlflow.db --artifacts-destination $(CHURN_HOME)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

monitor-ui: venv  ## the MLflow UI at the monitoring experiment's trend charts (prints the URL first)
	$(BIN)/python -m ops.monitor_ui --port $(MLFLOW_PORT)

expectations: venv  ## regenerate expectations/*.json from the feature repo's metadata
	$(BIN)/churn expectations generate

list-features: venv
	$(BIN)/churn features list

check-repo: venv  ## the feature repo (CHURN_FEATURE_REPO) on a sample of entities and dates, no Prefect
	$(BIN)/churn repo check

PROFILE ?= local

up: venv  ## PROFILE=prod: PostgreSQL + the S3 stand-in + MLflow with auth + Prefect on free ports (ops/prod_stack.py)
ifeq ($(PROFILE),prod)
	$(BIN)/churn stack up --profile prod $(if $(filter command line,$(origin PORT)),--port $(PORT)) $(if $(filter command line,$(origin MLFLOW_PORT)),--mlflow-port $(MLFLOW_PORT)) $(if $(PG_PORT),--pg-port $(PG_PORT)) $(if $(S3_PORT),--s3-port $(S3_PORT))
else
	$(BIN)/churn stack up --port $(PORT) --mlflow-port $(MLFLOW_PORT)
endif

up-prod:
	$(MAKE) up PROFILE=prod

down: venv
	$(BIN)/churn stack down

deploy: venv  ## every deployment in prefect.yaml, schedules paused; ACTIVE=1 turns them on
	$(BIN)/churn stack deploy $(if $(ACTIVE),--active)

run-features: venv
	. $(CHURN_HOME)/stack/env.sh && $(BIN)/prefect deployment run 'features/features-daily' --watch --watch-timeout 1800

run-train: venv
	. $(CHURN_HOME)/stack/env.sh && $(BIN)/prefect deployment run 'train/train-weekly' --watch --watch-timeout 1800

clean:
	rm -rf $(CHURN_HOME)
