# The README's first two commands: `make serve` and `make test`. Each creates .venv when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# one stamp per dependency set, so that a changed pyproject.toml reinstalls
SERVE_STAMP := $(VENV)/.serve-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.dev-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: serve test lint typecheck unit screenshots train eval clean FORCE

# A .venv that cannot be used is made again, with every package: one whose `python -m venv` or
# pip upgrade was cut short (no pip), whose Python is gone, or of another version than $(PYTHON)
# (pip would refuse the package for ever). It costs two interpreter starts a run. Where $(PYTHON)
# does not run, .venv is kept as it is: it could not be made again.
VENV_VERSION := $(shell $(BIN)/python -c 'import importlib.util as u, sys; \
	u.find_spec("pip") and print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifneq ($(VENV_VERSION),$(or $(PYTHON_VERSION),$(VENV_VERSION)))
$(BIN)/python $(SERVE_STAMP) $(DEV_STAMP): FORCE
endif

$(BIN)/python:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(SERVE_STAMP)

# the API on 127.0.0.1:8000 with the committed model and a SQLite file in ./data
serve: $(SERVE_STAMP)
	$(BIN)/qinglang serve

test: lint typecheck unit

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP)
	$(BIN)/pytest

# The console screenshots docs/console.md shows. The browser test writes its screenshots to
# artifacts/screenshots/{sqlite,postgresql}/ on every run (the folder CI keeps, ignored by git);
# only this copies them over docs/screenshots/.
screenshots: $(DEV_STAMP)
	$(BIN)/pytest -q tests/test_console_browser.py -k sqlite
	cp artifacts/screenshots/sqlite/queue.png artifacts/screenshots/sqlite/item.png \
		artifacts/screenshots/sqlite/dashboard.png docs/screenshots/

# Regenerates models/ from ../shared/data (QINGLANG_DATA_DIR to point elsewhere), then measures it.
# RECIPE=full pretrains on a GPU (or reuses an encoder pretrained on one: docs/classifier.md, "Training");
# RECIPE=cpu pretrains briefly on the CPU; auto takes full where a GPU or such an encoder is at
# hand, else cpu.
RECIPE ?= auto
train: $(DEV_STAMP)
	$(BIN)/python -m training.run --recipe $(RECIPE) --out models --work runs/full
	$(BIN)/python -m eval.crossdata --work runs/full --card models
	$(BIN)/python -m eval --card models

eval: $(DEV_STAMP)
	$(BIN)/python -m eval

# what a run and a build (pip install . or -e ., pip wheel .) leave; ./data, the service's state
# (its database, its subject key), is kept
clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache build *.egg-info
