# IdEinstein hub: `make run` serves on http://127.0.0.1:8080, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JS_DEPS := tests/js/node_modules/.package-lock.json
# The portal and dashboard (web/): built by Vite into web/dist, which `ideinstein serve` serves.
WEB_DEPS := web/node_modules/.package-lock.json
WEB_DIST := web/dist/index.html
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
	web/dashboard/index.html web/package.json web/tsconfig.json web/vite.config.ts
PYTEST_ARGS ?=

.PHONY: install run web test lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Without npm the API is served without the pages (`/` then answers 404 web_not_built).
run: install
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory web; else \
	  echo "make run: npm not found: serving the API without the web pages" \
	    "(install Node.js 20+ and npm, then run make web)" >&2; fi
	$(BIN)/ideinstein migrate
	$(BIN)/ideinstein serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(WEB_DEPS): web/package-lock.json
	npm ci --prefix web --no-audit --no-fund

# tsc --noEmit (strict type check) then vite build; only when a source is newer than the build.
$(WEB_DIST): $(WEB_DEPS) $(WEB_SOURCES)
	npm run --prefix web build

web: $(WEB_DIST)

$(JS_DEPS): tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund

test: lint $(JS_DEPS) $(WEB_DIST)
	$(PY) -m pytest -n auto --dist loadfile --cov --cov-report=term $(PYTEST_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov web/dist
