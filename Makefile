# Two commands for a newcomer: `make run` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint smoke clean screenshots

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

data/catalogs/models.json:
	@mkdir -p data
	cp -R demo/. data/
	@echo "Seeded ./data with the demo catalogs and models."

## Start the service on ./data (seeded from ./demo on first run); prints the URL and the API key.
run: $(STAMP) data/catalogs/models.json
	$(PY) -m service

# axe-core (npm), for the page's accessibility test only; fetched once into .venv.
AXE_VERSION := 4.10.3
AXE := $(VENV)/axe-core/axe.min.js
$(AXE): | $(PY)
	@mkdir -p $(VENV)/axe-core
	@command -v npm >/dev/null && cd $(VENV)/axe-core && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && tar xzf axe-core-$(AXE_VERSION).tgz package/axe.min.js && mv package/axe.min.js . && rm -rf package axe-core-$(AXE_VERSION).tgz || echo "npm is missing: the accessibility test is skipped"

## Install, check the layering of the packages (import-linter), and run the whole test suite.
# Four workers: the tests mostly wait (servers, processes, deadlines), so more workers than
# cores finish sooner. Bytecode is written so that the workers share pytest's rewritten tests.
TEST_WORKERS ?= 4
test: $(STAMP) $(AXE)
	$(VENV)/bin/lint-imports --no-logo --no-cache
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -n $(TEST_WORKERS)

## Measure throughput, freshness, edits under load in every layout, adds, start time, memory, the full map against a bare handler, the test suite's time, downloads, hashing and sidecars (see bench/README.md).
bench: $(STAMP)
	$(PY) -m pytest -q bench/tests
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/run.py --sizes 10000 --threads 1 --conns 8 --skip-freshness --skip-add --skip-rebuild --out bench/results/full-map-10k
	$(PY) bench/suite.py
	$(PY) bench/event_cost.py
	$(PY) bench/lost_updates.py --saves 2000 --runs 2
	$(PY) bench/download.py --size-gb 2 --runs 3
	$(PY) bench/hashing.py --size-gb 4 --files 8 --small 30000 --runs 2
	$(PY) bench/sidecars.py --files 30000
	$(PY) bench/page.py --entries 100000 --runs 3
	$(PY) bench/workflow.py --entries 10000 --nodes 300 --png-mb 50

## Write the README's pictures of the page (docs/screenshots/), from a library of 100,000 entries.
screenshots: $(STAMP)
	$(PY) bench/page.py --entries 100000 --runs 1 --screenshots docs/screenshots

## Lint the Dockerfile, check docker-compose.yml and the layering of the packages.
lint: $(STAMP)
	bash deploy/lint.sh
	$(VENV)/bin/lint-imports --no-logo --no-cache

## Build the container image and check it serves /health and the map.
smoke:
	bash deploy/smoke-test.sh

clean:
	rm -rf $(VENV) data .pytest_cache
