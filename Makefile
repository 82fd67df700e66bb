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

.PHONY: help venv status demo test test-prod test-fast lint check-workflows check-k8s flows-image flows-image-test flows-deployments format check-repo serve-up serve-down container-base container container-test deploy-model deploy-down data list-features expectations features train package serve monitor simulate rollback mlflow-ui monitor-ui screenshots chromium up up-prod down deploy run-features run-train pins clean

help:
	@echo "make demo          set up, generate the synthetic data, run the pipeline, print where to look"
	@echo "make test          set up and run the whole test suite"
	@echo "make test-prod     the prod profile (PostgreSQL, S3 stand-in, MLflow with auth) end to end (CI runs it too)"
	@echo "make test-fast     the layers that start no server (unit, sql, data, model), about a minute"
	@echo "make lint          ruff (lint + format check) and mypy (strict on the churn/ library)"
	@echo "make check-workflows  .github/workflows offline: GitHub's schema, actionlint (+ shellcheck), zizmor"
	@echo "make check-k8s     render deploy/k8s (base, staging, prod) and every flow deployment's Job, validate them strictly, offline"
	@echo "make flows-image   the flows image (deploy/flows/Dockerfile), churn-flows:<commit>, built offline (make flows-image-test: for real)"
	@echo "make flows-deployments  regenerate deploy/prefect/k8s-deployments.yaml from prefect.yaml and deploy/environments"
	@echo "make up / down     start / stop the local stack: Prefect server (127.0.0.1:$(PORT), PORT=...), a process"
	@echo "                   worker and an MLflow server (127.0.0.1:$(MLFLOW_PORT), MLFLOW_PORT=...)"
	@echo "make status        the local stack's parts: pid, port, healthy or not"
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
	@echo "make screenshots   PNGs of every UI under \$$CHURN_HOME/screenshots (SCENARIO=0: capture only)"
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
	$(BIN)/churn demo --port $(PORT) --serve-port $(SERVE_PORT) --mlflow-port $(MLFLOW_PORT)

TEST_WORKERS ?= 2

test: venv  ## the whole suite on TEST_WORKERS processes (each module's tests in one of them)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

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

check-k8s: venv  ## deploy/k8s rendered with kubectl kustomize, and the Job of every flow deployment rendered by the kubernetes worker, validated against bundled schemas (also in make test)
	$(BIN)/pytest -q tests/unit/test_k8s_manifests.py tests/unit/test_k8s_jobs.py

flows-deployments: venv  ## deploy/prefect/k8s-deployments.yaml from prefect.yaml and deploy/environments/*.yml
	$(BIN)/churn flows generate

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

flows-image: venv  ## the flows image for the kubernetes work pool, built offline from the local base image: churn-flows:<commit>
	$(BIN)/churn container flows

flows-image-test: venv  ## build the flows image and run it read-only: imports, prefect, a repo check (skips without a docker daemon)
	$(BIN)/pytest -s -rs tests/integration/test_flows_image.py

container-test: venv  ## build, run, /readyz, predict, the log on a volume, stop (skips without a docker daemon)
	$(BIN)/pytest -s -rs tests/integration/test_container.py

rollback: venv  ## make rollback REASON="why"
	@test -n "$(REASON)" || { echo 'usage: make rollback REASON="why the champion is rolled back"'; exit 2; }
	$(BIN)/churn rollback --reason "$(REASON)"

mlflow-ui: venv  ## the MLflow UI on the pipeline's tracking store (when make up serves it there, says so)
	$(BIN)/churn mlflow-ui --port $(MLFLOW_PORT)

monitor-ui: venv  ## the MLflow UI at the monitoring experiment's trend charts (prints the URL first)
	$(BIN)/python -m ops.monitor_ui --port $(MLFLOW_PORT)

screenshots: venv chromium  ## PNGs of every UI under $(CHURN_HOME)/screenshots: starts what is not running on free ports, plays the missing outcomes (SCENARIO=0: none), stops what it started
	$(BIN)/churn screenshots $(if $(filter 0,$(SCENARIO)),--no-scenario)

chromium:  ## Debian's chromium for make screenshots: installed when missing and root, else how to
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for make screenshots"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	  else \
	    echo "make screenshots needs Debian's chromium: sudo apt-get install -y chromium"; exit 2; \
	  fi; }

expectations: venv  ## regenerate expectations/*.json from the feature repo's metadata
	$(BIN)/churn expectations generate

list-features: venv
	$(BIN)/churn features list

check-repo: venv  ## the feature repo (CHURN_FEATURE_REPO) on a sample of entities and dates, no Prefect
	$(BIN)/churn repo check

PROFILE ?= local

up: venv  ## Prefect server, process worker, MLflow server on 127.0.0.1; PROFILE=prod: PostgreSQL, the S3 stand-in, MLflow with auth (ops/prod_stack.py)
ifeq ($(PROFILE),prod)
	$(BIN)/churn stack up --profile prod $(if $(filter command line,$(origin PORT)),--port $(PORT)) $(if $(filter command line,$(origin MLFLOW_PORT)),--mlflow-port $(MLFLOW_PORT)) $(if $(PG_PORT),--pg-port $(PG_PORT)) $(if $(S3_PORT),--s3-port $(S3_PORT))
else
	$(BIN)/churn stack up --port $(PORT) --mlflow-port $(MLFLOW_PORT)
endif

up-prod:
	$(MAKE) up PROFILE=prod

down: venv
	$(BIN)/churn stack down

status: venv  ## each part of the local stack: pid, port, healthy or not
	$(BIN)/churn stack status

deploy: venv  ## every deployment in prefect.yaml, schedules paused; ACTIVE=1 turns them on
	$(BIN)/churn stack deploy $(if $(ACTIVE),--active)

run-features: venv  ## needs make up and make deploy (each missing step is one line saying so)
	$(BIN)/churn stack run features/features-daily --watch-timeout 1800

run-train: venv
	$(BIN)/churn stack run train/train-weekly --watch-timeout 1800

clean:
	rm -rf $(CHURN_HOME)
